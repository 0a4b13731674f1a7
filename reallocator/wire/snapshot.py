"""CampaignSnapshot message -> domain CampaignSnapshot, or violations naming every bad field."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pandas.api.internals import (  # type: ignore[import-not-found]  # no stubs for it
    create_dataframe_from_blocks,
)

from reallocator.core.model import (
    GROUP_COLUMNS,
    CampaignSnapshot,
    DeliverySeries,
    PacingSpec,
    Policy,
)
from reallocator.v1 import snapshot_pb2
from reallocator.wire import deals as wire_deals
from reallocator.wire.limits import DEFAULT_LIMITS, MAX_AMOUNT, WireLimits
from reallocator.wire.pacing import decode_pacing
from reallocator.wire.timefields import to_datetime
from reallocator.wire.violations import Violations

_CURRENCY = re.compile(r"[A-Z]{3}")


def _time_zone(name: str, path: str, errors: Violations) -> str:
    if not name:
        return "UTC"
    if len(name) > 64:  # IANA names are at most 30-odd characters
        errors.add(path, f"not an IANA time zone name ({len(name)} characters)")
        return name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        errors.add(path, f"unknown IANA time zone {name!r}")
    return name


def _usable_ids(
    ids: list[str], id_field: str, path: str, errors: Violations, limits: WireLimits
) -> list[int]:
    """The positions whose id is set, short enough and first of its kind; a violation for each
    other one."""
    kept: list[int] = []
    seen: dict[str, int] = {}
    longest = limits.max_id_length
    for i, gid in enumerate(ids):
        if gid and gid not in seen and len(gid) <= longest:  # the usual case: no path built
            seen[gid] = i
            kept.append(i)
            continue
        p = f"{path}[{i}].{id_field}"
        if not gid:
            errors.add(p, "required")
        elif gid in seen:
            errors.add(p, f"duplicate {id_field} {gid!r} (first at {path}[{seen[gid]}])")
        else:
            errors.add(p, f"longer than {longest} characters ({len(gid)})")
    return kept


def _limit_values(lim: snapshot_pb2.GroupLimits, p: str, errors: Violations) -> list[float]:
    """One group's limits as GROUP_COLUMNS values (NaN where unset), checked."""
    values = [
        float(lim.min_total) if lim.HasField("min_total") else math.nan,
        float(lim.max_total) if lim.HasField("max_total") else math.nan,
        lim.min_share if lim.HasField("min_share") else math.nan,
        lim.max_share if lim.HasField("max_share") else math.nan,
    ]
    for name, v in zip(("min_total", "max_total"), values[:2], strict=True):
        if v < 0:
            errors.add(f"{p}.limits.{name}", f"must not be negative (got {int(v)})")
        if v > MAX_AMOUNT:
            errors.add(f"{p}.limits.{name}", f"must be at most 2**53 ({MAX_AMOUNT})")
    shares_set = (lim.HasField("min_share"), lim.HasField("max_share"))
    for name, v, is_set in zip(("min_share", "max_share"), values[2:], shares_set, strict=True):
        if is_set and not (math.isfinite(v) and 0 <= v <= 1):
            errors.add(f"{p}.limits.{name}", f"must be a share in [0, 1] (got {v})")
    if values[0] > values[1]:
        errors.add(
            f"{p}.limits.max_total",
            f"must be >= min_total ({int(values[1])} < {int(values[0])})",
        )
    if values[2] > values[3]:
        errors.add(f"{p}.limits.max_share", f"must be >= min_share ({values[3]} < {values[2]})")
    return values


_GROUP_INDEX = pd.Index(list(GROUP_COLUMNS))
"""The groups table's columns, one immutable Index all tables share."""
_GROUP_PLACES = np.arange(len(GROUP_COLUMNS))
_GROUP_PLACES.flags.writeable = False  # shared by every table's block
assert set(GROUP_COLUMNS.values()) == {"float64"}, "_groups builds the table as one float block"


def _groups(
    msgs: Sequence[snapshot_pb2.Seller] | Sequence[snapshot_pb2.Channel],
    id_field: str,
    path: str,
    errors: Violations,
    limits: WireLimits,
) -> pd.DataFrame:
    """The sellers' or channels' limits table, indexed by id. One pass over the messages; only
    groups with a limit set are read field by field (a 50-deal snapshot's ~50 groups cost ~0.3
    ms read so), and the table is one block of floats built as such (~10 us less than by
    columns)."""
    ids: list[str] = []
    limited: list[int] = []
    for i, g in enumerate(msgs):
        ids.append(getattr(g, id_field))
        if g.HasField("limits"):
            limited.append(i)
    kept = _usable_ids(ids, id_field, path, errors, limits)
    table = np.full((len(GROUP_COLUMNS), len(kept)), np.nan)
    if limited:
        row_of = {i: row for row, i in enumerate(kept)}
        for i in limited:
            row = row_of.get(i)
            lim = msgs[i].limits
            # An empty limits message (an encoder's default) has nothing to read or check.
            if row is not None and lim.ListFields():
                table[:, row] = _limit_values(lim, f"{path}[{i}]", errors)
    names = ids if len(kept) == len(ids) else [ids[i] for i in kept]
    # The table is the frame's one block as pandas holds it (a row per column): no checks or
    # copy of the constructor's (~2 us a table).
    frame: pd.DataFrame = create_dataframe_from_blocks(
        [(table, _GROUP_PLACES)], index=_group_ids(names, id_field), columns=_GROUP_INDEX
    )
    return frame


_SHARED_IDS = 1_000
"""Longest id list whose Index is shared (`_shared_group_ids`): a larger list's fixed cost is
small beside its size."""


def _group_ids(names: list[str], id_field: str) -> pd.Index:
    if len(names) > _SHARED_IDS:
        return pd.Index(names, name=id_field, dtype=object)
    return _shared_group_ids(id_field, tuple(names))


@functools.lru_cache(maxsize=256)
def _shared_group_ids(id_field: str, names: tuple[str, ...]) -> pd.Index:
    """The sellers' or channels' id Index per id list: a campaign sends the same groups call
    after call, and pandas' Index constructor costs ~25 us for 40 ids (two per snapshot). An
    Index is immutable, so the tables of every call share it."""
    return pd.Index(names, name=id_field, dtype=object)


def _id_length(value: str, path: str, limit: int, errors: Violations) -> None:
    if len(value) > limit:
        errors.add(path, f"longer than {limit} characters ({len(value)})")


def decode_snapshot(
    msg: snapshot_pb2.CampaignSnapshot,
    policy: Policy,
    errors: Violations,
    path: str = "snapshot",
    *,
    limits: WireLimits = DEFAULT_LIMITS,
) -> CampaignSnapshot | None:
    """Decodes and validates; adds violations to `errors` and returns None when there are any.
    `limits` bounds what the request may ask of the server (wire/limits.py)."""
    if not msg.campaign_id:
        errors.add(f"{path}.campaign_id", "required")
    _id_length(msg.campaign_id, f"{path}.campaign_id", limits.max_id_length, errors)
    as_of: datetime | None = None
    if not msg.HasField("as_of"):
        errors.add(f"{path}.as_of", "required")
    else:
        as_of = to_datetime(msg.as_of, f"{path}.as_of", errors)
    if not msg.currency_code:
        errors.add(f"{path}.currency_code", "required (ISO 4217, one currency per campaign)")
    elif not _CURRENCY.fullmatch(msg.currency_code):
        errors.add(
            f"{path}.currency_code",
            f"must be an ISO 4217 code like 'USD' (got {msg.currency_code!r})",
        )
    tz = _time_zone(msg.time_zone, f"{path}.time_zone", errors)
    if msg.HasField("pacing"):
        pacing = decode_pacing(msg.pacing, f"{path}.pacing", as_of, errors, limits)
    else:
        errors.add(f"{path}.pacing", "required (budgets and dates or flights)")
        pacing = PacingSpec()
    sellers = _groups(msg.sellers, "seller_id", f"{path}.sellers", errors, limits)
    channels = _groups(msg.channels, "channel_id", f"{path}.channels", errors, limits)

    has_table = msg.HasField("deals_table")
    raw: wire_deals.RawDeals | None = None
    series = None
    deals = None
    beside: Violations | None = None  # check_deals' own, when it ran during the series' read
    if len(msg.deals) and has_table:
        errors.add(f"{path}.deals_table", "set either deals or deals_table, not both")
    elif has_table:
        table = msg.deals_table
        fmt = table.WhichOneof("format")
        if fmt == "columns":
            raw = wire_deals.from_columns(table.columns, f"{path}.deals_table.columns", errors)
        elif fmt == "arrow_ipc":
            raw = wire_deals.from_arrow(
                table.arrow_ipc,
                f"{path}.deals_table.arrow_ipc",
                errors,
                max_bytes=limits.max_arrow_bytes,
            )
        else:
            errors.add(f"{path}.deals_table", "set columns or arrow_ipc")
        if raw is not None and table.HasField("recent_delivery"):
            matrix = table.recent_delivery
            # A large series stream is read (decompressed) on a thread while the deals are
            # checked, their violations kept apart to follow the series' as before (100k deals:
            # the decode ~80 -> ~63 ms wall where a core is free, the same CPU).
            data = matrix.arrow_ipc  # read once: each read of a bytes field copies it
            reading = wire_deals.read_matrix_ahead(matrix, data, limits)
            if reading is not None and raw.n:
                beside = Violations()
                deals = wire_deals.check_deals(
                    raw, sellers.index, channels.index, as_of, beside, limits
                )
            series = wire_deals.series_from_matrix(
                matrix,
                raw.n,
                f"{path}.deals_table.recent_delivery",
                as_of,
                errors,
                limits,
                arrow=reading or data,
            )
    elif len(msg.deals):
        raw = wire_deals.from_messages(msg.deals, f"{path}.deals")
        series = wire_deals.series_from_messages(msg.deals, f"{path}.deals", as_of, errors, limits)
    else:
        errors.add(f"{path}.deals", "at least one deal is required (in deals or deals_table)")

    if raw is not None and raw.n == 0:
        errors.add(f"{path}.deals_table", "at least one deal is required")
        raw = None
    if beside is not None:
        errors.items += beside.items
    elif raw is not None:
        deals = wire_deals.check_deals(raw, sellers.index, channels.index, as_of, errors, limits)
    if errors or as_of is None or deals is None:
        return None
    delivery = None
    if series is not None:
        grid, arrays = series
        delivery = DeliverySeries(
            window_start=grid.window_start,
            bucket=grid.bucket,
            spend_micros=arrays["spend_micros"],
            impressions=arrays["impressions"],
            avails=arrays["avails"],
            wins=arrays["wins"],
        )
    return CampaignSnapshot(
        campaign_id=msg.campaign_id,
        as_of=as_of,
        timezone=tz,
        currency=msg.currency_code,
        deals=deals,  # check_deals built it on a RangeIndex
        sellers=sellers,
        channels=channels,
        pacing=pacing,
        delivery=delivery,
        policy=policy,
    )

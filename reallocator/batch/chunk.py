"""Decoding a chunk of campaigns at once: the wire's deal decoder and the API's `check_deals`
run once over all the chunk's deal rows instead of once per campaign.

At 20 deals a campaign, the per-call fixed cost of `from_arrow_table` + `check_deals` (a
DataFrame, two dozen column checks, the dtype conversion) was a third of the plan's own time.
One call over the chunk checks the same rules, made per campaign by qualifying the keys: each
non-empty deal, seller and channel id is prefixed with the campaign's place in the chunk
(`"7\\x1fS3"`), and the known sellers and channels are the qualified ids of each campaign's own
lists, so a duplicate deal id or an unknown seller is found within its campaign only, exactly as
a per-campaign call finds it. `as_of` is the earliest of the chunk's, and the column-sum checks
see the chunk's sums; both are at least as strict as each campaign's own.

So a chunk that passes has no error a per-campaign call would find, and its rows are the same
canonical rows (the original ids put back). A chunk where anything fails, even a stricter check
that a campaign alone would pass, is decoded again campaign by campaign (`campaign.decode`),
which gives each campaign its own errors with its own row numbers. Decoding a chunk is therefore
exactly `campaign.decode` on each campaign, only faster when the chunk is clean (the tests
compare both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from reallocator.batch.campaign import (
    CampaignFields,
    Decoded,
    Options,
    attach,
    decode,
    decode_fields,
    on_infeasible,
)
from reallocator.wire import deals as wire_deals
from reallocator.wire.violations import Violations

_SEP = "\x1f"
_IDS = ("deal_id", "seller_id", "channel_id")


def _qualify(values: npt.NDArray[Any], labels: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`label + SEP + value` where the value is non-empty; empty stays empty (still 'required')."""
    values = np.asarray(values, dtype=object)
    empty = values == ""
    out: npt.NDArray[Any] = np.where(empty, "", labels + values)
    return out


def decode_chunk(
    rows: Sequence[Mapping[str, Any]],
    deals: pa.Table,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    options: Options,
) -> list[Decoded]:
    """Every campaign of a chunk decoded (see the module docstring): row i's deal rows are
    `deals[starts[i]:stops[i]]` (no campaign_id column)."""
    slices = [deals.slice(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]
    fields: list[CampaignFields | None] = []
    relax: list[bool] = []
    for row, piece in zip(rows, slices, strict=True):
        errors = Violations()
        relax.append(on_infeasible(row, errors))
        decoded = decode_fields(row, options.default_policy, errors)
        clean = not errors and decoded.as_of is not None and piece.num_rows > 0
        fields.append(decoded if clean else None)
    picked = [i for i, f in enumerate(fields) if f is not None]
    checked = _check_together(picked, fields, slices) if len(picked) > 1 else None
    out = []
    for i, row in enumerate(rows):
        f = fields[i]
        if checked is not None and f is not None:
            errors = Violations()
            out.append(Decoded(attach(f, checked[i], errors), errors, slices[i], relax[i]))
        else:
            out.append(decode(row, slices[i], options))
    return out


def _check_together(
    picked: list[int], fields: Sequence[CampaignFields | None], slices: Sequence[pa.Table]
) -> dict[int, pd.DataFrame] | None:
    """The picked campaigns' deal rows checked in one call; None if anything failed."""
    chosen = [f for f in fields if f is not None]
    table = pa.concat_tables([slices[i] for i in picked]).combine_chunks()
    errors = Violations()
    raw = wire_deals.from_arrow_table(table, "deals", errors)
    if raw is None or errors:
        return None
    counts = np.asarray([slices[i].num_rows for i in picked], dtype=np.int64)
    labels = np.repeat(np.asarray([f"{k}{_SEP}" for k in range(len(picked))], dtype=object), counts)
    original = {c: np.asarray(raw.table[c], dtype=object) for c in _IDS}
    for c in _IDS:
        raw.table[c] = _qualify(original[c], labels)
    sellers = pd.Index(
        [f"{k}{_SEP}{s}" for k, f in enumerate(chosen) for s in f.sellers.index.astype(str)]
    )
    channels = pd.Index(
        [f"{k}{_SEP}{c}" for k, f in enumerate(chosen) for c in f.channels.index.astype(str)]
    )
    as_of = min(f.as_of for f in chosen if f.as_of is not None)
    checked = wire_deals.check_deals(raw, sellers, channels, as_of, errors)
    if errors:
        return None
    for c in _IDS:
        checked[c] = pd.Series(original[c], index=checked.index, dtype=checked[c].dtype)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {i: checked.iloc[int(bounds[k]) : int(bounds[k + 1])] for k, i in enumerate(picked)}

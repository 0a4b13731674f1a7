"""Domain CampaignSnapshot -> CampaignSnapshot message, in any of the three deal forms.

The inverse of wire.snapshot.decode_snapshot (decode(encode(s)) == s, tested). Clients written in
Python (the simulator over gRPC, batch jobs, benchmarks) build requests with it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from reallocator.core.model import (
    GROUP_COLUMNS,
    INT64_MAX,
    CampaignSnapshot,
    DeliverySeries,
    PacingSpec,
    PriceKind,
)
from reallocator.v1 import pacing_pb2, snapshot_pb2
from reallocator.wire.pacing import BUDGET_TYPES, CHANGE_BEHAVIORS, MODES, PERIODS

Form = Literal["deals", "columns", "arrow"]

_PERIOD = {v: k for k, v in PERIODS.items()}
_BUDGET_TYPE = {v: k for k, v in BUDGET_TYPES.items() if k}
_MODE = {v: k for k, v in MODES.items() if k}
_CHANGE = {v: k for k, v in CHANGE_BEHAVIORS.items() if k}


COMPRESS_FROM_BYTES = 32 << 20
"""`compression="auto"` compresses (zstd) a table of at least this many bytes, none below: where
compression keeps a large request under the message limit. Below it, inflating costs the server
more than the bytes cost the network on a LAN (zstd inflates ~1.5 GB/s on one core: a 10k-deal
day of hourly series, 7.7 MB, costs 5 ms of server CPU, while loopback moves it in ~3 ms)."""


def narrowest(values: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """`values` in the narrowest integer type that holds them all (unsigned when none is
    negative): an hourly series of micros fits 32 bits, impressions often 16, halving or
    quartering what is sent, compressed and read. The server reads any integer width."""
    if values.size == 0:
        return values
    low, high = int(values.min()), int(values.max())
    kinds = (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int8, np.int16, np.int32)
    for kind in kinds:
        info = np.iinfo(kind)
        if info.min <= low and high <= info.max:
            return values.astype(kind)
    return values


def arrow_stream(table: pa.Table, compression: str | None = None) -> bytes:
    """`table` as an Arrow IPC stream (the bytes DealsTable/DeliveryMatrix.arrow_ipc hold); see
    `arrow_buffer`."""
    return bytes(arrow_buffer(table, compression).to_pybytes())


def arrow_buffer(table: pa.Table, compression: str | None = None) -> pa.Buffer:
    """`table` as an Arrow IPC stream in Arrow's own buffer (`arrow_stream` copies it into
    bytes; a writer of bytes by parts takes the buffer as it is).

    `compression="auto"`: zstd from `COMPRESS_FROM_BYTES` of data up, none below. A small
    table gains nothing on the wire and costs the server's CPU: pyarrow decompresses each
    buffer apart, ~5 us of zstd set-up per buffer, so a 50-deal deals table reads in 0.33 ms
    with zstd, 0.03 ms with lz4 and 0.014 ms plain; a large one inflates at ~1.5 GB/s.

    A plain stream is sized first and written into a buffer of that size: a growing sink's
    reallocations copied a 100k-deal plan's 20 MB of schedules about twice over (2.5 -> 1.3 ms
    in isolation, more where the copies page-fault)."""
    if compression == "auto":
        compression = "zstd" if table.nbytes >= COMPRESS_FROM_BYTES else None
    options = pa.ipc.IpcWriteOptions(compression=compression)
    if compression is None:  # measured first (no copy), then written once into its buffer
        mock = pa.MockOutputStream()
        with pa.ipc.new_stream(mock, table.schema, options=options) as writer:
            writer.write_table(table)
        buffer = pa.allocate_buffer(mock.size())
        with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buffer), table.schema) as writer:
            writer.write_table(table)
        return buffer
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    out: pa.Buffer = sink.getvalue()
    return out


def encode_pacing(spec: PacingSpec) -> pacing_pb2.PacingTarget:
    msg = pacing_pb2.PacingTarget(
        budget_type=_BUDGET_TYPE[spec.budget_type],
        mode=_MODE[spec.mode],
        budget_change_behavior=_CHANGE[spec.change_behavior],
        budgets=[
            pacing_pb2.Budget(period=_PERIOD[b.period], amount=b.amount) for b in spec.budgets
        ],
    )
    if spec.start is not None:
        msg.start_time.FromDatetime(spec.start)
    if spec.end is not None:
        msg.end_time.FromDatetime(spec.end)
    for f in spec.flights:
        flight = msg.flights.add(flight_id=f.flight_id)
        flight.start_time.FromDatetime(f.start)
        flight.end_time.FromDatetime(f.end)
        flight.budgets.extend(
            pacing_pb2.Budget(period=_PERIOD[b.period], amount=b.amount) for b in f.budgets
        )
    msg.even.catch_up_fraction = spec.catch_up_fraction
    msg.front_loaded.share = spec.front_share
    msg.front_loaded.fraction = spec.front_fraction
    msg.back_loaded.share = spec.back_share
    msg.back_loaded.fraction = spec.back_fraction
    if spec.custom_weights is not None:
        msg.custom_curve.hour_weights.extend(np.asarray(spec.custom_weights, float).tolist())
    if spec.daypart is not None:
        for day in range(7):
            hours = np.flatnonzero(spec.daypart[day])
            if hours.size == 0:
                continue
            # Runs of consecutive active hours become windows; DayOfWeek MONDAY=1.
            breaks = np.flatnonzero(np.diff(hours) > 1)
            starts = np.concatenate([[hours[0]], hours[breaks + 1]])
            ends = np.concatenate([hours[breaks], [hours[-1]]]) + 1
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                msg.dayparting.windows.add(day=day + 1, start_hour=a, end_hour=b)  # type: ignore[arg-type]
    for c in spec.budget_changes:
        change = msg.budget_changes.add(
            period=_PERIOD[c.period],
            flight_id=c.flight_id,
            old_amount=c.old_amount,
            new_amount=c.new_amount,
        )
        change.change_time.FromDatetime(c.at)
    if spec.max_spend_micros is not None:
        msg.max_spend_micros = spec.max_spend_micros
    if spec.paced_period is not None:
        msg.paced_period = _PERIOD[spec.paced_period]  # type: ignore[assignment]
    return msg


def _limits(frame: pd.DataFrame) -> list[snapshot_pb2.GroupLimits | None]:
    """Each group's limits message, None where it has none (no empty message is sent)."""
    values = {c: frame[c].to_numpy(np.float64).tolist() for c in GROUP_COLUMNS}
    out: list[snapshot_pb2.GroupLimits | None] = []
    for i in range(len(frame)):
        limits = snapshot_pb2.GroupLimits()
        for name in ("min_total", "max_total"):
            if not math.isnan(values[name][i]):
                setattr(limits, name, int(values[name][i]))
        for name in ("min_share", "max_share"):
            if not math.isnan(values[name][i]):
                setattr(limits, name, values[name][i])
        out.append(limits if limits.ListFields() else None)
    return out


def _columns(deals: pd.DataFrame) -> dict[str, np.ndarray]:
    """Deals table -> DealColumns-named arrays, with presence masks for the optional fields."""
    per_unit = deals["price_kind"].to_numpy() == PriceKind.PER_UNIT
    price = deals["price_micros"].to_numpy()
    applied = deals["plan_applied_at"].to_numpy()
    cols: dict[str, np.ndarray] = {
        name: deals[name].to_numpy()
        for name in (
            "deal_id",
            "seller_id",
            "channel_id",
            "deal_type",
            "premium",
            "status",
            "locked",
            "allocation",
            "min_allocation",
            "max_allocation",
            "spend_micros",
            "impressions",
            "clicks",
            "completes",
            "requests",
            "value_per_unit",
            "avails",
            "bids",
            "wins",
            "participation_rate",
            "available_inventory",
            "capacity_forecast",
        )
    }
    cols["seller_order_id"] = deals["order_id"].to_numpy()
    cols["ecpm_micros"] = np.where(per_unit, 0, price)
    cols["cost_per_unit_micros"] = np.where(per_unit, price, 0)
    cols["plan_apply_unix_seconds"] = np.where(applied < 0, 0, applied)
    cols["delivered_at_apply"] = deals["delivered_at_plan"].to_numpy()
    cols["has_min_allocation"] = cols["min_allocation"] > 0
    cols["has_max_allocation"] = cols["max_allocation"] != INT64_MAX
    cols["has_available_inventory"] = cols["available_inventory"] >= 0
    cols["available_inventory"] = np.maximum(cols["available_inventory"], 0)
    cols["has_capacity_forecast"] = cols["capacity_forecast"] >= 0
    cols["capacity_forecast"] = np.maximum(cols["capacity_forecast"], 0)
    return cols


_FLAGS = {
    "min_allocation": "has_min_allocation",
    "max_allocation": "has_max_allocation",
    "available_inventory": "has_available_inventory",
    "capacity_forecast": "has_capacity_forecast",
}


def _arrow_deals(cols: dict[str, np.ndarray], compression: str | None = None) -> bytes:
    arrays = {}
    for name, values in cols.items():
        if name.startswith("has_"):
            continue
        if name in _FLAGS:
            arrays[name] = pa.array(values, mask=~cols[_FLAGS[name]])
        elif name == "participation_rate":
            arrays[name] = pa.array(values, mask=np.isnan(values))
        elif name in ("deal_id", "seller_id", "channel_id", "seller_order_id"):
            arrays[name] = pa.array(values.astype(object), type=pa.string())
        else:
            arrays[name] = pa.array(values)
    return arrow_stream(pa.table(arrays), compression)


def _matrix(
    series: DeliverySeries, arrow: bool, compression: str | None = None
) -> snapshot_pb2.DeliveryMatrix:
    m = snapshot_pb2.DeliveryMatrix(bucket_count=series.n_buckets)
    m.window_start.FromDatetime(series.window_start)
    m.bucket_width.FromTimedelta(series.bucket)
    values = {
        "spend_micros": series.spend_micros,
        "impressions": series.impressions,
        "avails": series.avails,
        "wins": series.wins,
    }
    # A matrix has no "unknown" rows: deals without a series read as zeros there.
    ints = {k: np.nan_to_num(v, nan=0.0).astype(np.int64).ravel() for k, v in values.items()}
    if arrow:
        m.arrow_ipc = arrow_stream(
            pa.table({k: narrowest(v) for k, v in ints.items()}), compression
        )
    else:
        for k, v in ints.items():
            getattr(m, k).extend(v.tolist())
    return m


def _deal_messages(
    cols: dict[str, np.ndarray], series: DeliverySeries | None
) -> list[snapshot_pb2.Deal]:
    lists = {k: v.tolist() for k, v in cols.items()}
    out = []
    for i in range(len(lists["deal_id"])):
        d = snapshot_pb2.Deal(
            deal_id=lists["deal_id"][i],
            seller_id=lists["seller_id"][i],
            channel_id=lists["channel_id"][i],
            seller_order_id=lists["seller_order_id"][i],
            deal_type=lists["deal_type"][i],
            premium=lists["premium"][i],
            status=lists["status"][i],
            locked=lists["locked"][i],
            allocation=lists["allocation"][i],
            value_per_unit=lists["value_per_unit"][i],
        )
        if lists["has_min_allocation"][i]:
            d.min_allocation = lists["min_allocation"][i]
        if lists["has_max_allocation"][i]:
            d.max_allocation = lists["max_allocation"][i]
        for k in ("spend_micros", "impressions", "clicks", "completes", "requests"):
            setattr(d.delivered, k, lists[k][i])
        if lists["cost_per_unit_micros"][i]:
            d.cost_per_unit_micros = lists["cost_per_unit_micros"][i]
        else:
            d.ecpm_micros = lists["ecpm_micros"][i]
        for k in ("avails", "bids", "wins"):
            setattr(d.supply, k, lists[k][i])
        if not math.isnan(lists["participation_rate"][i]):
            d.supply.participation_rate = lists["participation_rate"][i]
        if lists["has_available_inventory"][i]:
            d.supply.available_inventory = lists["available_inventory"][i]
        if lists["has_capacity_forecast"][i]:
            d.supply.capacity_forecast = lists["capacity_forecast"][i]
        if lists["plan_apply_unix_seconds"][i]:
            d.last_plan_application.apply_time.seconds = lists["plan_apply_unix_seconds"][i]
            d.last_plan_application.delivered_at_apply = lists["delivered_at_apply"][i]
        if series is not None and not np.isnan(series.impressions[i]).all():
            s = d.recent_delivery
            s.window_start.FromDatetime(series.window_start)
            s.bucket_width.FromTimedelta(series.bucket)
            for k in ("spend_micros", "impressions", "avails", "wins"):
                getattr(s, k).extend(getattr(series, k)[i].astype(np.int64).tolist())
        out.append(d)
    return out


def encode_snapshot(
    snapshot: CampaignSnapshot, form: Form = "arrow", *, compression: str | None = None
) -> snapshot_pb2.CampaignSnapshot:
    """The snapshot as a message; `form` picks how deals (and recent delivery) travel.

    `compression` ("zstd", "lz4" or "auto", arrow form only): Arrow IPC body compression, which
    the server reads as it is. Recent delivery compresses about 4x: at 100k deals a day of
    hourly series is 77 MB plain and 20 MB with zstd. "auto" compresses each table of 32 MiB
    or more with zstd and sends smaller ones plain (see `arrow_stream`). Series go in the
    narrowest integer type that holds them (`narrowest`)."""
    msg = snapshot_pb2.CampaignSnapshot(
        campaign_id=snapshot.campaign_id,
        time_zone=snapshot.timezone,
        currency_code=snapshot.currency,
        pacing=encode_pacing(snapshot.pacing),
        sellers=[
            snapshot_pb2.Seller(seller_id=str(i), limits=lim)
            for i, lim in zip(snapshot.sellers.index, _limits(snapshot.sellers), strict=True)
        ],
        channels=[
            snapshot_pb2.Channel(channel_id=str(i), limits=lim)
            for i, lim in zip(snapshot.channels.index, _limits(snapshot.channels), strict=True)
        ],
    )
    msg.as_of.FromDatetime(snapshot.as_of)
    cols = _columns(snapshot.deals)
    if form == "deals":
        msg.deals.extend(_deal_messages(cols, snapshot.delivery))
        return msg
    table = msg.deals_table
    if form == "arrow":
        table.arrow_ipc = _arrow_deals(cols, compression)
    else:
        for name, values in cols.items():
            getattr(table.columns, name).extend(values.tolist())
    if snapshot.delivery is not None:
        table.recent_delivery.CopyFrom(
            _matrix(snapshot.delivery, arrow=form == "arrow", compression=compression)
        )
    return msg

"""Valid CampaignSnapshot messages for tests and benchmarks, in every wire form from the same data.

A snapshot is described once, form-free, as a `SnapshotSpec` (deals as `DealSpec`s, recent delivery
as one `RecentDelivery` grid), then rendered in one of the wire forms of `snapshot.proto`:

- ``"deals"``: one `Deal` message per deal, each with its own `DeliverySeries`;
- ``"columns"``: `DealsTable.columns` (packed `DealColumns`) with a `DeliveryMatrix`;
- ``"arrow"``: `DealsTable.arrow_ipc` (an Arrow IPC stream) with a `DeliveryMatrix`.

All forms of one spec mean the same thing, so they must decode to identical tables. The documented
differences between the forms are handled here, in one place:

- `DealColumns`: an empty optional column means "unset for every deal"; `has_*` flags mark which
  rows of min/max allocation and available inventory count; participation NaN = unset;
  `plan_apply_unix_seconds` 0 = never applied; `cost_per_unit_micros` > 0 overrides `ecpm_micros`.
- Arrow: nulls mean unset (no `has_*` columns).

Typical use::

    msg = snapshot_messages(1_000, seed=3, form="columns")
    spec = random_snapshot_spec(10, seed=1)
    forms = {form: build_snapshot(spec, form) for form in FORMS}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from reallocator.core.plan.model import RequestHistory
from reallocator.v1 import common_pb2, pacing_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as service_pb2

Form = Literal["deals", "columns", "arrow"]
FORMS: tuple[Form, ...] = ("deals", "columns", "arrow")

AS_OF = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
"""Default snapshot instant: a Monday, noon UTC."""

CAMPAIGN_START = AS_OF - timedelta(days=10)
CAMPAIGN_END = AS_OF + timedelta(days=20)


# --- pacing ----------------------------------------------------------------------------------


def default_pacing(
    start: datetime = CAMPAIGN_START, end: datetime = CAMPAIGN_END, lifetime: int = 10**13
) -> pacing_pb2.PacingTarget:
    """A spend campaign paced EVEN from `start` to `end`: a lifetime budget and a daily cap."""
    target = pacing_pb2.PacingTarget(
        budget_type=common_pb2.BUDGET_TYPE_SPEND,
        mode=common_pb2.PACING_MODE_EVEN,
        budgets=[
            pacing_pb2.Budget(period=common_pb2.PERIOD_LIFETIME, amount=lifetime),
            pacing_pb2.Budget(period=common_pb2.PERIOD_DAY, amount=lifetime // 10),
        ],
    )
    target.start_time.FromDatetime(start)
    target.end_time.FromDatetime(end)
    return target


def lifetime_pacing(
    lifetime: int, start: datetime = CAMPAIGN_START, end: datetime = CAMPAIGN_END
) -> pacing_pb2.PacingTarget:
    """A spend campaign paced EVEN from `start` to `end` on one lifetime budget (no daily cap)."""
    target = pacing_pb2.PacingTarget(
        budget_type=common_pb2.BUDGET_TYPE_SPEND,
        mode=common_pb2.PACING_MODE_EVEN,
        budgets=[pacing_pb2.Budget(period=common_pb2.PERIOD_LIFETIME, amount=lifetime)],
    )
    target.start_time.FromDatetime(start)
    target.end_time.FromDatetime(end)
    return target


def flight(
    flight_id: str,
    start: datetime,
    end: datetime,
    *budgets: tuple[common_pb2.Period.ValueType, int],
) -> pacing_pb2.Flight:
    """A flight with (period, amount) budgets, e.g. `(common_pb2.PERIOD_DAY, 10**9)`."""
    msg = pacing_pb2.Flight(
        flight_id=flight_id,
        budgets=[pacing_pb2.Budget(period=p, amount=a) for p, a in budgets],
    )
    msg.start_time.FromDatetime(start)
    msg.end_time.FromDatetime(end)
    return msg


@dataclass(frozen=True)
class DealSpec:
    """One deal, form-free. `None` means unset for the optional fields of `Deal`.

    Price: `cost_per_unit_micros` set (> 0) prices the deal per budget unit, otherwise
    `ecpm_micros` applies (a 0 cost per unit cannot be told from "unset" in DealColumns).
    Plan application: `plan_apply_unix_seconds` None = never applied; set, it must be > 0 (0 means
    never in DealColumns) and `delivered_at_apply` goes with it.
    """

    deal_id: str
    seller_id: str
    channel_id: str
    allocation: int
    deal_type: int = common_pb2.DEAL_TYPE_PREFERRED
    seller_order_id: str = ""
    premium: bool = False
    status: int = common_pb2.DEAL_STATUS_UNSPECIFIED
    locked: bool = False
    min_allocation: int | None = None
    max_allocation: int | None = None
    spend_micros: int = 0
    impressions: int = 0
    clicks: int = 0
    completes: int = 0
    requests: int = 0
    ecpm_micros: int = 0
    cost_per_unit_micros: int | None = None
    value_per_unit: float | None = None
    avails: int = 0
    bids: int = 0
    wins: int = 0
    participation_rate: float | None = None
    available_inventory: int | None = None
    capacity_forecast: int | None = None
    plan_apply_unix_seconds: int | None = None
    delivered_at_apply: int = 0


SERIES_MEASURES = ("spend_micros", "impressions", "avails", "wins")


@dataclass(frozen=True)
class RecentDelivery:
    """Every deal's recent delivery on one grid: int64 arrays of shape (n_deals, n_buckets)."""

    window_start: datetime
    bucket_width: timedelta
    spend_micros: npt.NDArray[np.int64]
    impressions: npt.NDArray[np.int64]
    avails: npt.NDArray[np.int64]
    wins: npt.NDArray[np.int64]

    @property
    def n_buckets(self) -> int:
        return int(self.spend_micros.shape[1])

    def measure(self, name: str) -> npt.NDArray[np.int64]:
        values: npt.NDArray[np.int64] = getattr(self, name)
        return values


@dataclass(frozen=True)
class SnapshotSpec:
    """A whole snapshot, form-free. `pacing` is copied into every message built from it."""

    deals: tuple[DealSpec, ...]
    seller_ids: tuple[str, ...]
    channel_ids: tuple[str, ...]
    campaign_id: str = "campaign-1"
    as_of: datetime = AS_OF
    time_zone: str = "America/New_York"
    currency_code: str = "USD"
    pacing: pacing_pb2.PacingTarget = dataclasses.field(default_factory=default_pacing)
    delivery: RecentDelivery | None = None

    def replace(self, **changes: Any) -> SnapshotSpec:
        return dataclasses.replace(self, **changes)

    def replace_deal(self, row: int, **changes: Any) -> SnapshotSpec:
        deals = list(self.deals)
        deals[row] = dataclasses.replace(deals[row], **changes)
        return dataclasses.replace(self, deals=tuple(deals))


# --- random valid data -----------------------------------------------------------------------


def random_deals(
    n_deals: int,
    seed: int,
    seller_ids: Sequence[str],
    channel_ids: Sequence[str],
    as_of: datetime = AS_OF,
) -> tuple[DealSpec, ...]:
    """`n_deals` valid deals with every optional field set on some rows and unset on others."""
    rng = np.random.default_rng(seed)
    n = n_deals

    def chance(p: float) -> npt.NDArray[np.bool_]:
        return rng.random(n) < p

    allocation = rng.integers(0, 10**10, n)
    spend = (allocation * rng.random(n)).astype(np.int64)
    ecpm = rng.integers(500_000, 20_000_000, n)
    impressions = spend * 1000 // ecpm
    wins = impressions + rng.integers(0, 100, n)
    bids = wins + rng.integers(0, 1000, n)
    avails = bids + rng.integers(0, 10_000, n)
    min_allocation = (allocation * rng.random(n) * 0.5).astype(np.int64)
    max_allocation = allocation + rng.integers(0, 10**9, n)
    applied_at = int(as_of.timestamp()) - rng.integers(3600, 7 * 86_400, n)
    columns: dict[str, npt.NDArray[Any]] = {
        "seller": rng.integers(0, len(seller_ids), n),
        "channel": rng.integers(0, len(channel_ids), n),
        "deal_type": rng.integers(1, 5, n),
        "status": rng.integers(0, 4, n),
        "premium": chance(0.1),
        "locked": chance(0.05),
        "has_min": chance(0.3),
        "has_max": chance(0.3),
        "per_unit": chance(0.2),
        "has_value": chance(0.5),
        "value": rng.random(n) * 3,
        "has_participation": chance(0.5),
        "participation": rng.uniform(0.05, 1.0, n),
        "has_inventory": chance(0.3),
        "inventory": rng.integers(0, 10**10, n),
        "has_forecast": chance(0.2),
        "forecast": rng.integers(0, 10**10, n),
        "applied": chance(0.3),
    }
    c = {k: v.tolist() for k, v in columns.items()}
    sellers, channels = list(seller_ids), list(channel_ids)
    return tuple(
        DealSpec(
            deal_id=f"deal-{i:06d}",
            seller_id=sellers[c["seller"][i]],
            channel_id=channels[c["channel"][i]],
            seller_order_id=f"order-{i}" if i % 3 else "",
            deal_type=c["deal_type"][i],
            premium=c["premium"][i],
            status=c["status"][i],
            locked=c["locked"][i],
            allocation=int(allocation[i]),
            min_allocation=int(min_allocation[i]) if c["has_min"][i] else None,
            max_allocation=int(max_allocation[i]) if c["has_max"][i] else None,
            spend_micros=int(spend[i]),
            impressions=int(impressions[i]),
            clicks=int(impressions[i]) // 500,
            completes=int(impressions[i]) // 3,
            requests=int(avails[i]),
            ecpm_micros=0 if c["per_unit"][i] else int(ecpm[i]),
            cost_per_unit_micros=int(ecpm[i]) // 100 + 1 if c["per_unit"][i] else None,
            value_per_unit=c["value"][i] if c["has_value"][i] else None,
            avails=int(avails[i]),
            bids=int(bids[i]),
            wins=int(wins[i]),
            participation_rate=c["participation"][i] if c["has_participation"][i] else None,
            available_inventory=c["inventory"][i] if c["has_inventory"][i] else None,
            capacity_forecast=c["forecast"][i] if c["has_forecast"][i] else None,
            plan_apply_unix_seconds=int(applied_at[i]) if c["applied"][i] else None,
            delivered_at_apply=int(spend[i]) // 2 if c["applied"][i] else 0,
        )
        for i in range(n)
    )


def random_delivery(
    n_deals: int,
    n_buckets: int,
    seed: int,
    as_of: datetime = AS_OF,
    bucket_width: timedelta = timedelta(hours=1),
) -> RecentDelivery:
    """Hourly buckets whose last one starts one width before `as_of` (so it ends at as_of)."""
    rng = np.random.default_rng(seed + 1)
    shape = (n_deals, n_buckets)
    impressions = rng.integers(0, 5_000, shape)
    return RecentDelivery(
        window_start=as_of - bucket_width * n_buckets,
        bucket_width=bucket_width,
        spend_micros=impressions * rng.integers(500, 20_000, shape),
        impressions=impressions,
        avails=impressions * 10 + rng.integers(0, 1000, shape),
        wins=impressions,
    )


def random_snapshot_spec(
    n_deals: int,
    seed: int,
    *,
    n_sellers: int | None = None,
    n_channels: int | None = None,
    n_buckets: int = 48,
    as_of: datetime = AS_OF,
) -> SnapshotSpec:
    """A valid snapshot of `n_deals` random deals; `n_buckets=0` leaves out recent delivery."""
    n_sellers = n_sellers or max(1, min(100, n_deals // 10))
    n_channels = n_channels or max(1, min(10, n_deals // 100))
    sellers = tuple(f"seller-{i}" for i in range(n_sellers))
    channels = tuple(f"channel-{i}" for i in range(n_channels))
    return SnapshotSpec(
        deals=random_deals(n_deals, seed, sellers, channels, as_of),
        seller_ids=sellers,
        channel_ids=channels,
        campaign_id=f"campaign-{seed}",
        as_of=as_of,
        delivery=random_delivery(n_deals, n_buckets, seed, as_of) if n_buckets else None,
    )


# --- wire forms ------------------------------------------------------------------------------

_DELIVERED = ("spend_micros", "impressions", "clicks", "completes", "requests")
_SUPPLY = ("avails", "bids", "wins")


def deal_message(deal: DealSpec) -> snapshot_pb2.Deal:
    """The per-deal form of one deal (without its recent delivery)."""
    msg = snapshot_pb2.Deal(
        deal_id=deal.deal_id,
        seller_id=deal.seller_id,
        channel_id=deal.channel_id,
        seller_order_id=deal.seller_order_id,
        deal_type=deal.deal_type,  # type: ignore[arg-type]
        premium=deal.premium,
        status=deal.status,  # type: ignore[arg-type]
        locked=deal.locked,
        allocation=deal.allocation,
        delivered=snapshot_pb2.DeliveryTotals(**{k: getattr(deal, k) for k in _DELIVERED}),
        supply=snapshot_pb2.SupplySignals(**{k: getattr(deal, k) for k in _SUPPLY}),
    )
    if deal.min_allocation is not None:
        msg.min_allocation = deal.min_allocation
    if deal.max_allocation is not None:
        msg.max_allocation = deal.max_allocation
    if deal.cost_per_unit_micros is not None:
        msg.cost_per_unit_micros = deal.cost_per_unit_micros
    else:
        msg.ecpm_micros = deal.ecpm_micros
    if deal.value_per_unit is not None:
        msg.value_per_unit = deal.value_per_unit
    if deal.participation_rate is not None:
        msg.supply.participation_rate = deal.participation_rate
    if deal.available_inventory is not None:
        msg.supply.available_inventory = deal.available_inventory
    if deal.capacity_forecast is not None:
        msg.supply.capacity_forecast = deal.capacity_forecast
    if deal.plan_apply_unix_seconds is not None:
        applied = msg.last_plan_application
        applied.plan = "campaigns/campaign-1/plans/previous"
        applied.apply_time.seconds = deal.plan_apply_unix_seconds
        applied.delivered_at_apply = deal.delivered_at_apply
    return msg


def _column_values(deals: Sequence[DealSpec]) -> dict[str, list[Any]]:
    """DealColumns field -> one value per deal, with the columnar encoding of "unset"."""

    def values(name: str) -> list[Any]:
        return [getattr(d, name) for d in deals]

    out: dict[str, list[Any]] = {
        name: values(name)
        for name in (
            "deal_id",
            "seller_id",
            "channel_id",
            "seller_order_id",
            "deal_type",
            "premium",
            "status",
            "locked",
            "allocation",
            *_DELIVERED,
            *_SUPPLY,
        )
    }
    for name in ("min_allocation", "max_allocation", "available_inventory", "capacity_forecast"):
        out[name] = [0 if v is None else v for v in values(name)]
        out[f"has_{name}"] = [v is not None for v in values(name)]
    out["ecpm_micros"] = [0 if d.cost_per_unit_micros is not None else d.ecpm_micros for d in deals]
    out["cost_per_unit_micros"] = [d.cost_per_unit_micros or 0 for d in deals]
    out["value_per_unit"] = [1.0 if v is None else v for v in values("value_per_unit")]
    out["participation_rate"] = [np.nan if v is None else v for v in values("participation_rate")]
    out["plan_apply_unix_seconds"] = [v or 0 for v in values("plan_apply_unix_seconds")]
    out["delivered_at_apply"] = [
        d.delivered_at_apply if d.plan_apply_unix_seconds is not None else 0 for d in deals
    ]
    return out


_REQUIRED = ("deal_id", "seller_id", "channel_id", "deal_type", "allocation")
# Optional value column -> how "unset" is told apart in DealColumns.
_FLAGGED = {
    "min_allocation": "has_min_allocation",
    "max_allocation": "has_max_allocation",
    "available_inventory": "has_available_inventory",
    "capacity_forecast": "has_capacity_forecast",
}


def _all_unset(name: str, deals: Sequence[DealSpec], values: list[Any]) -> bool:
    """Whether a column can be left empty ("unset for every deal") without changing the table."""
    if name in _REQUIRED:
        return False
    if name in _FLAGGED:
        return all(getattr(d, name) is None for d in deals)
    if name in _FLAGGED.values():
        return not any(values)
    if name == "value_per_unit":
        return all(d.value_per_unit is None for d in deals)
    if name == "participation_rate":
        return all(d.participation_rate is None for d in deals)
    return not any(values)  # 0, "", False: the defaults of an empty column


def deal_columns(deals: Sequence[DealSpec], *, compact: bool = True) -> snapshot_pb2.DealColumns:
    """Packed columns. `compact` leaves empty every column that is unset (or default) for all."""
    cols = snapshot_pb2.DealColumns()
    for name, values in _column_values(deals).items():
        if compact and _all_unset(name, deals, values):
            continue
        getattr(cols, name).extend(values)
    return cols


_ARROW_TYPES: dict[str, pa.DataType] = {
    **{n: pa.string() for n in ("deal_id", "seller_id", "channel_id", "seller_order_id")},
    **{n: pa.int32() for n in ("deal_type", "status")},
    **{n: pa.bool_() for n in ("premium", "locked")},
    **{n: pa.float64() for n in ("value_per_unit", "participation_rate")},
}


def deal_arrow_table(deals: Sequence[DealSpec], *, compact: bool = False) -> pa.Table:
    """The Arrow form: DealColumns names, nulls for unset. `compact` drops all-null columns."""
    arrays: dict[str, pa.Array] = {}
    for name in _column_values(deals):
        if name.startswith("has_"):
            continue
        if name in _FLAGGED or name in ("value_per_unit", "participation_rate"):
            values: list[Any] = [getattr(d, name) for d in deals]
        elif name == "cost_per_unit_micros":
            values = [d.cost_per_unit_micros for d in deals]
        elif name == "ecpm_micros":
            values = [None if d.cost_per_unit_micros is not None else d.ecpm_micros for d in deals]
        elif name in ("plan_apply_unix_seconds", "delivered_at_apply"):
            values = [
                getattr(d, name) if d.plan_apply_unix_seconds is not None else None for d in deals
            ]
        else:
            values = [getattr(d, name) for d in deals]
        if compact and name not in _REQUIRED and all(v is None for v in values):
            continue
        arrays[name] = pa.array(values, type=_ARROW_TYPES.get(name, pa.int64()))
    return pa.table(arrays)


def arrow_ipc(table: pa.Table) -> bytes:
    """An Arrow IPC stream (`pyarrow.ipc.new_stream`) of one table."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def delivery_series(delivery: RecentDelivery, row: int) -> snapshot_pb2.DeliverySeries:
    """One deal's series, the per-deal form of row `row`."""
    msg = snapshot_pb2.DeliverySeries(
        **{k: delivery.measure(k)[row].tolist() for k in SERIES_MEASURES}
    )
    msg.window_start.FromDatetime(delivery.window_start)
    msg.bucket_width.FromTimedelta(delivery.bucket_width)
    return msg


def delivery_matrix(
    delivery: RecentDelivery, *, arrow: bool = False
) -> snapshot_pb2.DeliveryMatrix:
    """Every deal's series, row-major; `arrow` sends the arrays as one Arrow IPC stream."""
    msg = snapshot_pb2.DeliveryMatrix(bucket_count=delivery.n_buckets)
    msg.window_start.FromDatetime(delivery.window_start)
    msg.bucket_width.FromTimedelta(delivery.bucket_width)
    flat = {
        k: np.ascontiguousarray(delivery.measure(k), dtype=np.int64).ravel()
        for k in SERIES_MEASURES
    }
    if arrow:
        msg.arrow_ipc = arrow_ipc(pa.table({k: pa.array(v) for k, v in flat.items()}))
    else:
        for k, values in flat.items():
            getattr(msg, k).extend(values.tolist())
    return msg


def build_snapshot(
    spec: SnapshotSpec,
    form: Form = "deals",
    *,
    compact: bool | None = None,
    matrix_arrow: bool = False,
) -> snapshot_pb2.CampaignSnapshot:
    """Renders `spec` in one wire form.

    `compact` (columns: default True; arrow: default False) leaves out columns that are unset
    for every deal; `matrix_arrow` sends the DeliveryMatrix as Arrow IPC (table forms only).
    """
    msg = snapshot_pb2.CampaignSnapshot(
        campaign_id=spec.campaign_id,
        time_zone=spec.time_zone,
        currency_code=spec.currency_code,
        sellers=[snapshot_pb2.Seller(seller_id=s, display_name=s.title()) for s in spec.seller_ids],
        channels=[
            snapshot_pb2.Channel(channel_id=c, display_name=c.title()) for c in spec.channel_ids
        ],
    )
    msg.as_of.FromDatetime(spec.as_of)
    msg.pacing.CopyFrom(spec.pacing)
    if form == "deals":
        for row, deal in enumerate(spec.deals):
            d = msg.deals.add()
            d.CopyFrom(deal_message(deal))
            if spec.delivery is not None:
                d.recent_delivery.CopyFrom(delivery_series(spec.delivery, row))
        return msg
    table = msg.deals_table
    if form == "columns":
        table.columns.CopyFrom(
            deal_columns(spec.deals, compact=True if compact is None else compact)
        )
    elif form == "arrow":
        table.arrow_ipc = arrow_ipc(deal_arrow_table(spec.deals, compact=bool(compact)))
    else:
        raise ValueError(f"unknown form {form!r}")
    if spec.delivery is not None:
        table.recent_delivery.CopyFrom(delivery_matrix(spec.delivery, arrow=matrix_arrow))
    return msg


def snapshot_messages(
    n_deals: int,
    seed: int,
    form: Form = "deals",
    *,
    n_buckets: int = 48,
    matrix_arrow: bool = False,
) -> snapshot_pb2.CampaignSnapshot:
    """A valid random snapshot of `n_deals` deals in `form` (same seed: same data in every form)."""
    spec = random_snapshot_spec(n_deals, seed, n_buckets=n_buckets)
    return build_snapshot(spec, form, matrix_arrow=matrix_arrow)


def replan_request(
    snapshot: snapshot_pb2.CampaignSnapshot, **fields: Any
) -> service_pb2.ReplanRequest:
    """A ReplanRequest around `snapshot` (a copy); `fields` set other request fields."""
    request = service_pb2.ReplanRequest(**fields)
    request.snapshot.CopyFrom(snapshot)
    return request


def assess_request(
    snapshot: snapshot_pb2.CampaignSnapshot, **fields: Any
) -> service_pb2.AssessPacingRequest:
    """An AssessPacingRequest around `snapshot` (a copy)."""
    request = service_pb2.AssessPacingRequest(**fields)
    request.snapshot.CopyFrom(snapshot)
    return request


# --- where violations point ------------------------------------------------------------------

_DEAL_MESSAGE_PATHS = {
    **{k: f"delivered.{k}" for k in _DELIVERED},
    **{
        k: f"supply.{k}"
        for k in (*_SUPPLY, "participation_rate", "available_inventory", "capacity_forecast")
    },
    "plan_apply_unix_seconds": "last_plan_application.apply_time",
    "delivered_at_apply": "last_plan_application.delivered_at_apply",
}


def deal_path(form: Form, row: int, column: str, prefix: str = "snapshot") -> str:
    """The field path naming deal `row`'s `column` (a DealColumns field name) in `form`."""
    if form == "deals":
        return f"{prefix}.deals[{row}].{_DEAL_MESSAGE_PATHS.get(column, column)}"
    where = "columns" if form == "columns" else "arrow_ipc"
    return f"{prefix}.deals_table.{where}.{column}[{row}]"


__all__ = [
    "AS_OF",
    "CAMPAIGN_END",
    "CAMPAIGN_START",
    "FORMS",
    "SERIES_MEASURES",
    "DealSpec",
    "Form",
    "RecentDelivery",
    "SnapshotSpec",
    "arrow_ipc",
    "assess_request",
    "build_snapshot",
    "deal_arrow_table",
    "deal_columns",
    "deal_message",
    "deal_path",
    "default_pacing",
    "delivery_matrix",
    "delivery_series",
    "flight",
    "random_deals",
    "random_delivery",
    "random_snapshot_spec",
    "replan_request",
    "snapshot_messages",
]


TINY_SCENARIO: dict[str, Any] = {
    "name": "tiny",
    "budget": 5_000,
    "flight": {"days": 1},
    "portfolio": {"deals": 8, "sellers": 3, "channels": 2},
    "collapses": [{"select": {"channels": ["video"]}, "start_hour": 8, "level": 0.3}],
}
"""A simulator scenario small enough for a test: one day, 8 deals, video collapsing at 08:00."""


def request_history(*rows: tuple[str, datetime, str, int, str, int]) -> RequestHistory:
    """A `RequestHistory` of seller requests: (deal_id, requested_at, kind, target_total,
    response, accepted_total) per row."""
    deal, at, kind, target, response, accepted = zip(*rows, strict=True)
    return RequestHistory(
        pd.DataFrame(
            {
                "deal_id": list(deal),
                "requested_at": [a.timestamp() for a in at],
                "kind": list(kind),
                "target_total": np.asarray(target, np.int64),
                "response": list(response),
                "accepted_total": np.asarray(accepted, np.int64),
            }
        )
    )

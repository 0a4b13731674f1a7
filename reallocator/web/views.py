"""What the pages show, computed from the store's records: plans (the v1 Plan message as
GetPlan returns it) and the snapshots they were computed from.

The assessment of a snapshot (pacing ratios, alerts with their confidence) is recomputed by
the pure core from the recorded snapshot, so the dashboard shows the verdicts the planner saw;
a snapshot never changes once recorded, so each is decoded and assessed once per process
(an LRU keyed by its content hash). Words come from the same formatter as the plan's
rationale (core/plan/text.py), so the dashboard and the plan never disagree on an amount.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from google.protobuf.message import DecodeError

from reallocator.core.model import BudgetType, Policy, values_of
from reallocator.core.pacing.assessment import Assessment, assess
from reallocator.core.pacing.calendar import default_span
from reallocator.core.pacing.curves import build_curve
from reallocator.core.plan.model import ScheduleTable
from reallocator.core.plan.text import amount, amounts
from reallocator.store.sql import unpack
from reallocator.v1 import common_pb2, plan_pb2, snapshot_pb2
from reallocator.web.queries import SnapshotRow
from reallocator.wire.plan import deal_rationales
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

# Okabe-Ito: distinguishable with every common colour-vision deficiency.
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#7f7f7f",
}

_UNIT_FIELD = {
    BudgetType.SPEND: "spend_micros",
    BudgetType.IMPRESSIONS: "impressions",
    BudgetType.CLICKS: "clicks",
    BudgetType.COMPLETES: "completes",
    BudgetType.REQUESTS: "requests",
}

K = TypeVar("K")
V = TypeVar("V")


class Lru:
    """A small thread-safe LRU for immutable records (snapshots by content hash)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                found: V = self._items[key]
                return found
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def budget_type(value: int) -> BudgetType:
    name = common_pb2.BudgetType.Name(common_pb2.BudgetType.ValueType(value))
    name = name.removeprefix("BUDGET_TYPE_")
    return BudgetType(name) if name in BudgetType.__members__ else BudgetType.SPEND


def display_scale(bt: BudgetType) -> float:
    """Chart values are in currency units (micros / 1e6) for SPEND, counts otherwise."""
    return 1e6 if bt is BudgetType.SPEND else 1.0


def when(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(micros: int | float) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- snapshots --------------------------------------------------------------------------------


def delivered_total(msg: snapshot_pb2.CampaignSnapshot) -> int:
    """The campaign's delivery to date in its budget unit, read straight from the message in
    any of its three deal forms (no decoding of the whole snapshot: the chart needs one number
    per recorded snapshot)."""
    field = _UNIT_FIELD[budget_type(msg.pacing.budget_type)]
    if msg.deals:
        return sum(getattr(d.delivered, field) for d in msg.deals)
    table = msg.deals_table
    if table.WhichOneof("format") == "columns":
        return int(np.asarray(getattr(table.columns, field), np.int64).sum())
    if table.WhichOneof("format") == "arrow_ipc":
        data = pa.ipc.open_stream(pa.py_buffer(table.arrow_ipc)).read_all()
        if field not in data.column_names:
            return 0
        return int(pa.compute.sum(data[field]).as_py() or 0)
    return 0


@dataclass(frozen=True)
class SnapshotFacts:
    """A recorded snapshot, decoded and assessed once."""

    as_of: int  # unix micros
    budget_type: BudgetType
    currency: str
    delivered: int
    assessment: Assessment | None
    curve_t: list[str]  # the pacing curve over the horizon, ISO times
    curve_y: list[float]  # expected cumulative delivery, display units
    problem: str  # why the snapshot could not be assessed ("" when it could)
    _curve: Any = None

    def expected_at(self, unix_seconds: np.ndarray) -> np.ndarray:
        if self._curve is None:
            return np.zeros(len(unix_seconds))
        out: np.ndarray = self._curve.cumulative(unix_seconds)
        return out


def parse_snapshot(row: SnapshotRow) -> snapshot_pb2.CampaignSnapshot:
    data = unpack(row.payload, row.size)
    return snapshot_pb2.CampaignSnapshot.FromString(data)


def snapshot_facts(row: SnapshotRow, *, full: bool) -> SnapshotFacts:
    """Totals of a snapshot; with `full`, its assessment and pacing curve too. A record that
    cannot be read says so in `problem` (the page shows it) instead of failing the page."""
    try:
        msg = parse_snapshot(row)
        total = delivered_total(msg)
    except (DecodeError, pa.ArrowException, ValueError) as exc:
        problem = f"the recorded snapshot cannot be read ({type(exc).__name__}: {exc})"
        return SnapshotFacts(row.as_of, BudgetType.SPEND, "", 0, None, [], [], problem)
    bt = budget_type(msg.pacing.budget_type)
    base = SnapshotFacts(row.as_of, bt, msg.currency_code, total, None, [], [], "")
    if not full:
        return base
    errors = Violations()
    snapshot = decode_snapshot(msg, Policy(), errors)
    if snapshot is None:
        problem = "; ".join(f"{v.field}: {v.description}" for v in errors.items[:3])
        return SnapshotFacts(**{**base.__dict__, "problem": problem})
    try:
        assessment = assess(snapshot)
        span = default_span(snapshot.pacing, snapshot.timezone, snapshot.as_of)
        curve = build_curve(snapshot.pacing, snapshot.timezone, span=span)
    except ValueError as exc:
        return SnapshotFacts(**{**base.__dict__, "problem": str(exc)})
    t = np.linspace(span[0].timestamp(), span[1].timestamp(), 200)
    y = curve.cumulative(t) / display_scale(bt)
    return SnapshotFacts(
        as_of=row.as_of,
        budget_type=bt,
        currency=msg.currency_code,
        delivered=base.delivered,
        assessment=assessment,
        curve_t=[iso(v * 1e6) for v in t.tolist()],
        curve_y=np.round(y, 2).tolist(),
        problem="",
        _curve=curve,
    )


@dataclass(frozen=True)
class PlanSummary:
    """What the campaign list shows of a plan: the campaign's pacing and alerts when it was
    computed (its decision record's figures) and its largest change's severity."""

    pacing: float  # NaN when the plan has no pacing figure
    pacing_text: str
    alerts: int
    severity: str
    heat: str


def plan_summary(payload: bytes, size: int) -> PlanSummary:
    data = unpack(payload, size)
    plan = plan_pb2.Plan.FromString(data)
    pacing = factor(plan, "campaign pacing ratio")
    alerts = factor(plan, "alerts")
    ratio = pacing[0] if pacing else float("nan")
    severity = common_pb2.Severity.Name(plan.max_severity).removeprefix("SEVERITY_")  # type: ignore[arg-type]
    return PlanSummary(
        pacing=ratio,
        pacing_text=pacing[1] if pacing else "",
        alerts=int(alerts[0]) if alerts else len(plan.alerts),
        severity="" if severity == "UNSPECIFIED" else severity,
        heat=heat(ratio),
    )


# --- the chart --------------------------------------------------------------------------------


def spend_chart(
    points: list[SnapshotFacts], latest: SnapshotFacts, plan: plan_pb2.Plan | None
) -> dict[str, Any]:
    """Cumulative delivery against the pacing curve and the newest plan, as a Plotly figure
    (plotly.js renders it in the browser): one delivered point per recorded snapshot."""
    bt, currency = latest.budget_type, latest.currency
    scale = display_scale(bt)
    points = [p for p in points if not p.problem.startswith("the recorded snapshot cannot")]
    unit = currency if bt is BudgetType.SPEND else bt.value.lower()
    fmt = ",.2f" if bt is BudgetType.SPEND else ",.0f"
    traces: list[dict[str, Any]] = []
    if latest.curve_t:
        traces.append({
            "name": "pacing curve (expected)", "type": "scatter", "mode": "lines",
            "x": latest.curve_t, "y": latest.curve_y,
            "line": {"color": PALETTE["grey"], "dash": "dot", "width": 2},
            "hovertemplate": f"%{{x}}<br>expected %{{y:{fmt}}} {unit}<extra></extra>",
        })  # fmt: skip
    traces.append({
        "name": "delivered", "type": "scatter", "mode": "lines+markers",
        "x": [iso(p.as_of) for p in points],
        "y": [round(p.delivered / scale, 2) for p in points],
        "line": {"color": PALETTE["blue"], "width": 3},
        "marker": {"size": 8, "symbol": "circle"},
        "hovertemplate": f"%{{x}}<br>delivered %{{y:{fmt}}} {unit}<extra></extra>",
    })  # fmt: skip
    if plan is not None and latest._curve is not None and latest.curve_t:
        start = plan.as_of.ToMicroseconds() / 1e6
        end = datetime.fromisoformat(latest.curve_t[-1].replace("Z", "+00:00")).timestamp()
        if end > start:
            t = np.linspace(start, end, 30)
            cum = latest.expected_at(t)
            span = float(cum[-1] - cum[0])
            share = (cum - cum[0]) / span if span > 0 else np.linspace(0, 1, len(t))
            y = (latest.delivered + plan.allocated * share) / scale
            traces.append({
                "name": "plan (delivered + allocated)", "type": "scatter", "mode": "lines",
                "x": [iso(v * 1e6) for v in t.tolist()], "y": np.round(y, 2).tolist(),
                "line": {"color": PALETTE["orange"], "dash": "dash", "width": 3},
                "hovertemplate": f"%{{x}}<br>planned %{{y:{fmt}}} {unit}<extra></extra>",
            })  # fmt: skip
    return {
        "data": traces,
        "layout": {
            "margin": {"l": 70, "r": 10, "t": 10, "b": 40},
            "height": 320,
            "legend": {"orientation": "h", "y": -0.2},
            "yaxis": {
                "title": {"text": f"cumulative ({unit})"},
                "tickformat": ",.0f",
                "automargin": True,
            },
            "xaxis": {"type": "date"},
            "font": {"size": 13},
        },
    }


def moves_chart(plan: plan_pb2.Plan) -> dict[str, Any]:
    """The plan's moves as before/after bars per channel (remaining allocation)."""
    bt = budget_type(plan.budget_type)
    scale = display_scale(bt)
    unit = plan.currency_code if bt is BudgetType.SPEND else bt.value.lower()
    ids = [c.id for c in plan.channels]
    before = [round(c.old_allocation / scale, 2) for c in plan.channels]
    after = [round(c.new_allocation / scale, 2) for c in plan.channels]
    fmt = ",.2f" if bt is BudgetType.SPEND else ",.0f"
    return {
        "data": [
            {
                "name": "before",
                "type": "bar",
                "x": ids,
                "y": before,
                "marker": {"color": PALETTE["sky"]},
                "hovertemplate": f"%{{x}}: before %{{y:{fmt}}} {unit}<extra></extra>",
            },
            {
                "name": "after",
                "type": "bar",
                "x": ids,
                "y": after,
                "marker": {"color": PALETTE["vermillion"], "pattern": {"shape": "/"}},
                "hovertemplate": f"%{{x}}: after %{{y:{fmt}}} {unit}<extra></extra>",
            },
        ],
        "layout": {
            "barmode": "group",
            "margin": {"l": 70, "r": 10, "t": 10, "b": 40},
            "height": 260,
            "legend": {"orientation": "h", "y": -0.25},
            "yaxis": {
                "title": {"text": f"remaining ({unit})"},
                "tickformat": ",.0f",
                "automargin": True,
            },
            "font": {"size": 13},
        },
    }


# --- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupLine:
    id: str
    delivered: str
    before: str
    after: str
    change: str
    change_sign: int
    pacing: str  # "93%" or "" when not assessed
    status: str
    heat: str  # CSS class of the pacing-ratio cell


def heat(ratio: float) -> str:
    """A pacing-ratio cell's class: a diverging blue (under) - white - orange (over) scale,
    distinguishable without red/green."""
    if not np.isfinite(ratio):
        return "heat-na"
    if ratio < 0.7:
        return "heat-under2"
    if ratio < 0.9:
        return "heat-under1"
    if ratio <= 1.1:
        return "heat-on"
    if ratio <= 1.3:
        return "heat-over1"
    return "heat-over2"


def group_lines(groups: Any, plan: plan_pb2.Plan, frame: pd.DataFrame | None) -> list[GroupLine]:
    bt = budget_type(plan.budget_type)
    cur = plan.currency_code
    ratios: dict[Any, Any] = {} if frame is None else frame["pacing_ratio"].to_dict()
    statuses: dict[Any, Any] = {} if frame is None else frame["status"].to_dict()
    out = []
    for g in groups:
        ratio = float(ratios.get(g.id, float("nan")))
        status = str(statuses.get(g.id, ""))
        delta = g.new_allocation - g.old_allocation
        out.append(
            GroupLine(
                id=g.id,
                delivered=amount(g.delivered, bt, cur),
                before=amount(g.old_allocation, bt, cur),
                after=amount(g.new_allocation, bt, cur),
                change=("+" if delta > 0 else "") + amount(delta, bt, cur) if delta else "—",
                change_sign=int(np.sign(delta)),
                pacing=f"{ratio:.0%}" if np.isfinite(ratio) else "",
                status=status,
                heat=heat(ratio),
            )
        )
    return out


DEAL_SORTS = ("delta", "-delta", "pacing", "-pacing", "deal", "new", "-new")


@dataclass(frozen=True, eq=False)
class PlanRows:
    """A plan's deals and schedules as the pages read them, once per plan (they never change):
    from the stored tables, with words rendered only for the rows a page shows (a 100k-deal
    plan's messages cost ~1 s to build, its table ~0.1 s to read); or, for a plan stored whole
    before the tables existed, from its messages."""

    deals: pd.DataFrame  # deal_id seller_id channel_id old new delta reason, the plan's order
    words: Callable[[npt.NDArray[np.int64]], list[str]]  # the rationales of those rows
    schedules: Callable[[int], list[dict[str, Any]]]  # the first k, as the review panel lists
    schedule_total: int


def plan_rows(
    plan: plan_pb2.Plan, tables: tuple[pd.DataFrame, ScheduleTable | None] | None
) -> PlanRows:
    """`plan`'s rows from its stored tables (`SqlStore.plan_tables`), or from its own messages
    when there are none (`plan` read whole)."""
    if tables is None:
        return _message_rows(plan)
    table, schedules = tables
    bt, currency = budget_type(plan.budget_type), plan.currency_code
    deals = pd.DataFrame(
        {
            "deal_id": values_of(table, "deal_id", object),
            "seller_id": values_of(table, "seller_id", object),
            "channel_id": values_of(table, "channel_id", object),
            "old": values_of(table, "old_allocation", np.int64),
            "new": values_of(table, "new_allocation", np.int64),
            "delta": values_of(table, "delta", np.int64),
            "reason": values_of(table, "reason", object),
        }
    )

    def words(rows: npt.NDArray[np.int64]) -> list[str]:
        texts: list[str] = deal_rationales(table, bt, currency, rows).tolist()
        return texts

    def first(k: int) -> list[dict[str, Any]]:
        if schedules is None:
            return []
        return [
            _schedule_line(s.deal_id, s.pacing.value, s.throttle, len(s.hourly_target), s.rationale)
            for s in schedules.rows(np.arange(min(k, len(schedules))))
        ]

    return PlanRows(deals, words, first, 0 if schedules is None else len(schedules))


def _message_rows(plan: plan_pb2.Plan) -> PlanRows:
    d = plan.deals
    deals = pd.DataFrame(
        {
            "deal_id": [x.deal_id for x in d],
            "seller_id": [x.seller_id for x in d],
            "channel_id": [x.channel_id for x in d],
            "old": np.fromiter((x.old_allocation for x in d), np.int64, len(d)),
            "new": np.fromiter((x.new_allocation for x in d), np.int64, len(d)),
            "delta": np.fromiter((x.delta for x in d), np.int64, len(d)),
            "reason": [plan_pb2.ReasonCode.Name(x.reason).removeprefix("REASON_CODE_") for x in d],
        }
    )

    def first(k: int) -> list[dict[str, Any]]:
        return [
            _schedule_line(
                s.deal_id,
                plan_pb2.DealPacing.Name(s.pacing).removeprefix("DEAL_PACING_"),
                s.throttle,
                len(s.hourly_target),
                s.rationale,
            )
            for s in plan.schedules[:k]
        ]

    return PlanRows(
        deals, lambda rows: [d[int(i)].rationale for i in rows], first, len(plan.schedules)
    )


def _schedule_line(
    deal_id: str, pacing: str, throttle: float, hours: int, rationale: str
) -> dict[str, Any]:
    shown = throttle if math.isfinite(throttle) else 0.0  # as the message carries it
    return {
        "deal_id": deal_id,
        "pacing": pacing,
        "throttle": f"{shown:.2f}",
        "hours": hours,
        "rationale": rationale,
    }


def deal_frame(rows: PlanRows, assessment: Assessment | None) -> pd.DataFrame:
    """The plan's deals with their pacing verdicts, one row per deal (numbers only)."""
    frame = rows.deals.assign(row=np.arange(len(rows.deals)))
    if assessment is not None and len(frame):
        verdicts = assessment.deals[["pacing_ratio", "status"]]
        frame = frame.join(verdicts, on="deal_id")
        frame["status"] = frame["status"].astype(object).fillna("")
    else:
        frame["pacing_ratio"] = np.nan
        frame["status"] = ""
    return frame


@dataclass(frozen=True)
class DealLine:
    deal_id: str
    seller_id: str
    channel_id: str
    before: str
    after: str
    change: str
    change_sign: int
    pacing: str
    status: str
    heat: str
    reason: str
    rationale: str


def deal_page(
    plan: plan_pb2.Plan,
    rows_of: PlanRows,
    frame: pd.DataFrame,
    *,
    sort: str,
    query: str,
    page: int,
    size: int,
) -> tuple[list[DealLine], int]:
    """One page of the deals table, sorted and filtered; returns the lines and the number of
    matching deals."""
    rows = frame
    if query:
        q = query.lower()
        hit = (
            rows["deal_id"].str.lower().str.contains(q, regex=False)
            | rows["seller_id"].str.lower().str.contains(q, regex=False)
            | rows["channel_id"].str.lower().str.contains(q, regex=False)
        )
        rows = rows[hit]
    key = {"delta": "delta", "pacing": "pacing_ratio", "deal": "deal_id", "new": "new"}
    column = key.get(sort.lstrip("-"), "delta")
    if column == "delta" and sort == "delta":
        order = rows["delta"].abs().sort_values(ascending=False, kind="stable").index
        rows = rows.loc[order]
    else:
        rows = rows.sort_values(
            column, ascending=not sort.startswith("-"), kind="stable", na_position="last"
        )
    total = len(rows)
    chunk = rows.iloc[page * size : (page + 1) * size]
    bt, cur = budget_type(plan.budget_type), plan.currency_code
    before = amounts(chunk["old"].to_numpy(), bt, cur)
    after = amounts(chunk["new"].to_numpy(), bt, cur)
    deltas = chunk["delta"].to_numpy()
    change = amounts(np.abs(deltas), bt, cur)
    ratios = chunk["pacing_ratio"].to_numpy(np.float64)
    ids, sellers, channels = (chunk[c].tolist() for c in ("deal_id", "seller_id", "channel_id"))
    status, reason, row = (chunk[c].tolist() for c in ("status", "reason", "row"))
    words = rows_of.words(np.asarray(row, dtype=np.int64))  # for the rows shown only
    lines = []
    for i in range(len(chunk)):
        d = int(deltas[i])
        ratio = float(ratios[i])
        lines.append(
            DealLine(
                deal_id=ids[i],
                seller_id=sellers[i],
                channel_id=channels[i],
                before=before[i],
                after=after[i],
                change=("+" if d > 0 else "-") + change[i] if d else "—",
                change_sign=int(np.sign(d)),
                pacing=f"{ratio:.0%}" if np.isfinite(ratio) else "",
                status=str(status[i]),
                heat=heat(ratio),
                reason=str(reason[i]),
                rationale=words[i],
            )
        )
    return lines, total


@dataclass(frozen=True)
class AlertLine:
    severity: str
    reason: str
    entity: str
    confidence: str
    message: str


def alert_lines(
    assessment: Assessment | None, plan: plan_pb2.Plan | None, limit: int = 50
) -> tuple[list[AlertLine], int]:
    """The plan's own alerts, then the assessment's, most severe first; and how many in all."""
    out: list[AlertLine] = []
    if plan is not None:
        for a in plan.alerts:
            out.append(
                AlertLine(
                    severity=common_pb2.Severity.Name(a.severity).removeprefix("SEVERITY_"),  # type: ignore[arg-type]
                    reason=a.reason_code,
                    entity=f"{a.entity.id}",
                    confidence=f"{a.confidence:.0f}",
                    message=a.message,
                )
            )
    total = len(out)
    if assessment is not None:
        alerts = assessment.alerts
        total += len(alerts)
        head = alerts.head(max(0, limit - len(out)))
        for kind, eid, sev, reason, message, confidence in zip(
            head["entity_kind"], head["entity_id"], head["severity"], head["reason"],
            head["message"], head["confidence"], strict=True,
        ):  # fmt: skip
            out.append(
                AlertLine(
                    severity=str(sev),
                    reason=str(reason),
                    entity=f"{str(kind).lower()} {eid}",
                    confidence=f"{float(confidence):.0f}",
                    message=str(message),
                )
            )
    return out[:limit], total


def state_name(state: int) -> str:
    return plan_pb2.PlanState.Name(plan_pb2.PlanState.ValueType(state)).removeprefix("PLAN_STATE_")


def factor(plan: plan_pb2.Plan, name: str) -> tuple[float, str] | None:
    for f in plan.rationale.factors:
        if f.name == name:
            return f.value, f.display_value
    return None


__all__ = [
    "DEAL_SORTS",
    "PALETTE",
    "AlertLine",
    "DealLine",
    "GroupLine",
    "Lru",
    "PlanRows",
    "PlanSummary",
    "SnapshotFacts",
    "alert_lines",
    "amount",
    "amounts",
    "budget_type",
    "deal_frame",
    "deal_page",
    "delivered_total",
    "factor",
    "group_lines",
    "moves_chart",
    "plan_rows",
    "plan_summary",
    "snapshot_facts",
    "spend_chart",
    "state_name",
    "when",
]

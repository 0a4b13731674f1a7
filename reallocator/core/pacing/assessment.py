"""Pacing assessment: for every deal, seller, channel and the campaign, is delivery on pace?

`assess(snapshot)` is the pure core behind the AssessPacing RPC. Everything is vectorised over
deals: the campaign's curve and calendar are built once, deals scale the campaign share by their
allocation, recent delivery comes from one matrix-vector product over the delivery series, and
seller/channel rows are group sums of the same additive quantities, re-judged as wholes.

Rates are per *opportunity hour* (an active hour of average expected traffic; see
`PacingCalendar`), so a snapshot taken at night or outside a daypart neither reads as a
slowdown nor projects the night's rate over the day: projections follow the remaining
opportunity curve.

Status precedence: COMPLETED (horizon over, or the deal ENDED) > NOT_STARTED > STALLED > OVER >
COMPLETED (allocation delivered) > UNDER > ON_PACE. So a deal that exhausted its allocation far
ahead of schedule reads OVER (reason EARLY_EXHAUSTION), one that did so on schedule COMPLETED.
With a ceiling shape (ASAP, or a FRONT head with f = 0) UNDER is judged on the projected
end-of-flight total instead of the curve.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from reallocator.core.figures import texts
from reallocator.core.interrupt import Checkpoint, never
from reallocator.core.model import (
    DELIVERED_COLUMN,
    TEXT_DTYPE,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DeliverySeries,
    Policy,
    PriceKind,
    Severity,
    first_seen_of,
    group_codes,
    is_text_array,
    nan_to_num,
    reading,
    sorted_codes,
    text_array,
    text_column,
    values_of,
)
from reallocator.core.pacing import confidence as conf
from reallocator.core.pacing.calendar import (
    BoolArray,
    FloatArray,
    IntArray,
    PacingCalendar,
    default_span,
    to_datetime,
    to_unix,
)
from reallocator.core.pacing.curves import PacingCurve, build_curve, deal_expected


class PacingStatus(StrEnum):
    ON_PACE = "ON_PACE"
    OVER = "OVER"
    UNDER = "UNDER"
    STALLED = "STALLED"
    NOT_STARTED = "NOT_STARTED"
    COMPLETED = "COMPLETED"


AlertSeverity = Severity
"""Alert severities are the shared Severity (MINOR / MATERIAL / CRITICAL)."""


class EntityKind(StrEnum):
    DEAL = "DEAL"
    SELLER = "SELLER"
    CHANNEL = "CHANNEL"
    CAMPAIGN = "CAMPAIGN"


class Reason(StrEnum):
    """Machine-readable alert reasons (the message carries the numbers)."""

    OVERPACING = "OVERPACING"
    EARLY_EXHAUSTION = "EARLY_EXHAUSTION"  # OVER, and the whole allocation is already delivered
    UNDERPACING = "UNDERPACING"
    PROJECTED_UNDERDELIVERY = "PROJECTED_UNDERDELIVERY"  # UNDER judged on the projection (ASAP)
    PAUSED = "PAUSED"  # UNDER, and the deal is paused
    STALLED = "STALLED"
    BROKEN_COMMITMENT = "BROKEN_COMMITMENT"  # raised by a plan: a minimum its deals cannot meet


UNIT_COLUMN = DELIVERED_COLUMN
"""The deals column that counts delivery in each budget type's unit (model.DELIVERED_COLUMN)."""

ASSESSMENT_COLUMNS: tuple[str, ...] = (
    "allocation",  # budget units over the horizon (campaign: its budgets' expected total)
    "expected",  # expected delivery by as_of, budget units
    "actual",  # delivered, budget units
    "expected_spend_micros",  # expected converted at the observed (or priced) cost per unit
    "actual_spend_micros",
    "pacing_ratio",  # actual / expected (0 when both are 0, inf when only expected is 0)
    "status",  # PacingStatus (categorical of the enum's values)
    "recent_rate",  # budget units per opportunity hour (active hour of average traffic), recent
    # window; comparable with required_rate
    "recent_rate_clock",  # budget units per wall-clock hour over the same window
    "projected_end",  # actual + recent_rate * remaining opportunity hours, capped by allocation
    "projected_exhaustion",  # unix s when the allocation runs out at that rate; NaN: not before
    # the horizon ends; as_of when already delivered
    "required_rate",  # units per opportunity hour to finish exactly on the allocation
    "confidence",  # 0..100
    "conf_gap",  # components, 0..1 (see confidence.py)
    "conf_outlook",
    "conf_trend",
    "conf_evidence",
    "evidence_hours",  # active hours the verdict rests on
    "evidence_events",  # impressions (actual or expected, whichever is larger)
    "severity",  # AlertSeverity of an OVER/UNDER/STALLED verdict, "" otherwise (categorical)
    "reason",  # Reason of an OVER/UNDER/STALLED verdict, "" otherwise (categorical)
    "alert",  # True when the verdict passes the policy's confidence and evidence gates
)

ALERT_COLUMNS: tuple[str, ...] = (
    "entity_kind",
    "entity_id",
    "status",
    "severity",
    "reason",
    "message",
    "confidence",
    "pacing_ratio",
    "expected",
    "actual",
    "projected_end",
    "allocation",
)

RECENT_WINDOW = timedelta(hours=6)
"""Default window of the recent rate (widened to the whole series when it has no opportunity)."""

MIN_WINDOW_OPPORTUNITY_HOURS = 1.0
"""A rate measured over less opportunity than this is noise: widen the window or fall back."""

_STATUSES = [str(s) for s in PacingStatus]
_SEVERITIES = ["", *(str(s) for s in AlertSeverity)]
_REASONS = ["", *(str(r) for r in Reason)]
_STATUS_DTYPE = pd.CategoricalDtype(pd.Index(_STATUSES))
_SEVERITY_DTYPE = pd.CategoricalDtype(pd.Index(_SEVERITIES))
_REASON_DTYPE = pd.CategoricalDtype(pd.Index(_REASONS))
_STATUS_CODE = {PacingStatus(s): i for i, s in enumerate(_STATUSES)}
_SEVERITY_CODE = {AlertSeverity(s): i for i, s in enumerate(_SEVERITIES) if s}
_REASON_CODE = {Reason(r): i for i, r in enumerate(_REASONS) if r}
_SEVERITY_RANK = {AlertSeverity.CRITICAL: 0, AlertSeverity.MATERIAL: 1, AlertSeverity.MINOR: 2}
_KIND_RANK = {
    EntityKind.CAMPAIGN: 0,
    EntityKind.CHANNEL: 1,
    EntityKind.SELLER: 2,
    EntityKind.DEAL: 3,
}


@dataclass(frozen=True)
class Alert:
    entity_kind: EntityKind
    entity_id: str
    status: PacingStatus
    severity: AlertSeverity
    reason: Reason
    message: str
    confidence: float


_STATUS_ENUMS = tuple(PacingStatus(s) for s in _STATUSES)
_SEVERITY_ENUMS = tuple(AlertSeverity(s) if s else None for s in _SEVERITIES)
_REASON_ENUMS = tuple(Reason(r) if r else None for r in _REASONS)
_KINDS = (EntityKind.DEAL, EntityKind.SELLER, EntityKind.CHANNEL, EntityKind.CAMPAIGN)
_KIND_LABELS = np.asarray([str(k) for k in _KINDS], dtype=object)
_KIND_WORDS = tuple(k.lower() for k in _KINDS)
_KIND_BREADTH = np.asarray([_KIND_RANK[k] for k in _KINDS], dtype=np.float64)
_SEVERITY_ORDER = np.asarray(
    [_SEVERITY_RANK.get(AlertSeverity(s), np.nan) if s else np.nan for s in _SEVERITIES]
)
_INDEX_NAMES = {
    EntityKind.DEAL: "deal_id",
    EntityKind.SELLER: "seller_id",
    EntityKind.CHANNEL: "channel_id",
    EntityKind.CAMPAIGN: "campaign_id",
}
_LABEL_DTYPES = {"status": _STATUS_DTYPE, "severity": _SEVERITY_DTYPE, "reason": _REASON_DTYPE}
_LABEL_COLUMNS = ("status", "severity", "reason")


@dataclass(frozen=True, eq=False)
class Assessment:
    """The full assessment. Frames are indexed by deal_id / seller_id / channel_id / campaign_id
    and carry ASSESSMENT_COLUMNS (deals also seller_id and channel_id); `alerts` carries
    ALERT_COLUMNS, most severe first, then broadest entity, then most confident.

    The verdicts are numpy columns (one fused evaluation over deals, sellers, channels and the
    campaign); each frame, and the alerts' words, are built on first read: a planner reading a
    few columns (`column`) or counting alerts (`n_alerts`) builds none (frames were most of a
    50-deal assessment).
    """

    campaign_id: str
    as_of: datetime
    horizon_start: datetime  # the flight (or campaign span) the allocations refer to
    horizon_end: datetime
    budget_type: BudgetType
    currency: str
    share_now: float  # campaign's expected share of the horizon delivered by as_of
    opportunity_elapsed_hours: float
    opportunity_remaining_hours: float
    rate_window_hours: float  # opportunity hours behind recent_rate (0: lifetime average used)
    ceiling: bool  # UNDER judged on projections (ASAP-like shape)
    curve: PacingCurve | None = field(default=None, repr=False)
    """The pacing curve the verdicts used (over `default_span`): the plan reuses it."""
    verdicts: dict[EntityKind, _Verdicts] = field(default_factory=dict, repr=False)
    """Every kind's verdicts as columns; framed on first read."""
    table: _AlertTable | None = field(default=None, repr=False)
    """The alerts as columns (sorted); framed, and worded, on first read."""

    @cached_property
    def deals(self) -> pd.DataFrame:
        return self.verdicts[EntityKind.DEAL].frame

    @cached_property
    def sellers(self) -> pd.DataFrame:
        return self.verdicts[EntityKind.SELLER].frame

    @cached_property
    def channels(self) -> pd.DataFrame:
        return self.verdicts[EntityKind.CHANNEL].frame

    @cached_property
    def campaign(self) -> pd.DataFrame:
        return self.verdicts[EntityKind.CAMPAIGN].frame

    @cached_property
    def alerts(self) -> pd.DataFrame:
        assert self.table is not None
        return self.table.frame

    @property
    def groups(self) -> dict[str, _Verdicts]:
        """The seller and channel verdicts (as before: framed on first read)."""
        return {
            "sellers": self.verdicts[EntityKind.SELLER],
            "channels": self.verdicts[EntityKind.CHANNEL],
        }

    @property
    def n_alerts(self) -> int:
        """len(alerts), without building the frame or any message."""
        return 0 if self.table is None else int(self.table.alerted.size)

    @property
    def most_severe(self) -> AlertSeverity | None:
        """The severity of the most severe alert (None: no alert), without building the frame
        or any message: the alerts are sorted most severe first."""
        if self.table is None or not self.table.alerted.size:
            return None
        code = self.table.evaluated.codes["severity"][self.table.rows[0]]
        return AlertSeverity(_LABELS["severity"][code])

    def column(self, kind: EntityKind, name: str) -> np.ndarray:
        """One ASSESSMENT_COLUMNS column of `kind` as numpy, without a frame: numbers as
        float64 (alert as bool), labels (status, severity, reason) as an object array of str.
        Read-only: it is the assessment's own memory."""
        return self.verdicts[kind].column(name)

    def columns_of(self, kinds: tuple[EntityKind, ...], names: tuple[str, ...]) -> np.ndarray:
        """Numeric ASSESSMENT_COLUMNS `names` over the rows of `kinds` (in that order), as one
        float64 matrix (a row per name): an encoder reads a handful of arrays instead of one
        per kind and column (~60 small numpy calls a 50-deal assessment's groups)."""
        slices = [self.verdicts[kind].rows for kind in kinds]
        whole = all(a.stop == b.start for a, b in itertools.pairwise(slices))
        if whole:  # consecutive in the evaluated order: one slice of each column
            span = slice(slices[0].start, slices[-1].stop)
            columns = self.verdicts[kinds[0]].evaluated.columns
            return np.array([columns.at(name, span) for name in names], dtype=np.float64)
        return np.array(
            [np.concatenate([self.column(kind, name) for kind in kinds]) for name in names],
            dtype=np.float64,
        )

    def labels(self, kind: EntityKind, name: str) -> Any:
        """A label column (status, severity, reason) as a table's "str" column, picked by code
        from its few labels: no object per row converted to Arrow (~3 ms a column at 100k).
        A short column's objects are converted: there Arrow's take cost ~25 us more."""
        codes = self.verdicts[kind].code(name)
        if codes.size <= _SMALL_LABELS:
            return text_array(_LABELS[name][codes])
        return _LABEL_TEXT[name].take(codes)

    def ids(self, kind: EntityKind) -> list[str]:
        """The entity ids of `kind` as str, in row order (the frame's index, without it)."""
        out: list[str] = np.asarray(self.verdicts[kind].ids).astype(str).tolist()
        return out

    def alert_columns(self) -> dict[str, np.ndarray]:
        """The alerts' ALERT_COLUMNS as numpy, sorted as `alerts` (labels and text as object
        arrays of str), without the frame."""
        if self.table is None or not self.table.rows.size:
            return {c: self.alerts[c].to_numpy() for c in ALERT_COLUMNS}
        return self.table.columns()

    def alert_inputs(self) -> tuple[dict[str, np.ndarray], AlertWording] | None:
        """What the alerts' messages are worded from, sorted as `alerts`, without wording them:
        ALERT_INPUTS (labels and ids as object arrays of str, numbers as float64) and the
        campaign-wide `AlertWording`; `alert_messages` of them is the `message` column. None
        when there are no alert columns to read them from (no alert table, or one made
        without words). A recorded Replan stores these and words the alerts when they are read
        back (~0.3 ms of its thread CPU at 50 deals)."""
        if self.table is None or not self.table.words:
            return None
        return self.table.inputs(), _wording(self.table.ctx)

    def codes(self, kind: EntityKind, name: str) -> np.ndarray:
        """A label column as its integer codes into the categories of the frame's dtype."""
        return self.verdicts[kind].code(name)

    def alert_list(self) -> list[Alert]:
        """Alerts as typed records (for the gRPC adapter)."""
        return [] if self.table is None else self.table.records()


@dataclass(frozen=True)
class _Context:
    """Campaign-level scalars shared by every row (one curve, one calendar)."""

    curve: PacingCurve
    policy: Policy
    budget_type: BudgetType
    currency: str
    as_of: float
    h0: float
    h1: float
    share_now: float
    elapsed_active_hours: float
    active_hours_start: float  # the calendar's active hours at h0 and at as_of
    active_hours_as_of: float
    elapsed_opportunity: float
    remaining_opportunity: float
    opportunity_now: float
    opportunity_end: float
    rate_window: tuple[float, float] | None
    rate_window_opportunity: float
    rate_window_clock_hours: float
    stall_window: tuple[float, float] | None
    series_start: float  # the delivery series' first instant (0 without a series)
    tol_over: float
    tol_under: float

    @property
    def calendar(self) -> PacingCalendar:
        return self.curve.calendar


@dataclass
class _Rows:
    """Additive quantities of a set of entities: deals, or group sums of deals."""

    allocation: FloatArray
    expected: FloatArray
    actual: FloatArray
    expected_spend: FloatArray
    actual_spend: FloatArray
    events: FloatArray
    window_units: FloatArray
    window_expected: FloatArray
    stall_impressions: FloatArray
    stall_lambda: FloatArray
    should_deliver: FloatArray  # count of members that should deliver in the stalled window
    has_series: FloatArray  # count of members with a delivery series


_ROW_FIELDS = tuple(f.name for f in fields(_Rows))
"""The quantities in their order: the rows of the assessment's matrices."""


_FIELD_ROW = {name: i for i, name in enumerate(_ROW_FIELDS)}
"""Each quantity's row in the assessment's matrix of _ROW_FIELDS."""

_TREND_SHIFT = np.array([[1.0], [1.0], [0.0]])
"""`conf.scores`' shift of the gap, outlook and trend rows: a judged gap or outlook is scored
`beyond` its threshold, a judged trend `toward` its direction (see confidence.py)."""


def _reason_table(under: Reason) -> IntArray:
    """Reason codes by [status code, whole allocation delivered, paused]: STALLED's, OVER's
    (EARLY_EXHAUSTION when delivered), UNDER's (`under`, PAUSED when paused), else none (0)."""
    table = np.zeros((len(_STATUSES), 2, 2), dtype=np.int64)
    table[_STATUS_CODE[PacingStatus.STALLED]] = _REASON_CODE[Reason.STALLED]
    over = _STATUS_CODE[PacingStatus.OVER]
    table[over] = _REASON_CODE[Reason.OVERPACING]
    table[over, 1] = _REASON_CODE[Reason.EARLY_EXHAUSTION]
    under_code = _STATUS_CODE[PacingStatus.UNDER]
    table[under_code] = _REASON_CODE[under]
    table[under_code, :, 1] = _REASON_CODE[Reason.PAUSED]
    table.flags.writeable = False
    return table


_REASONS_BY = {
    False: _reason_table(Reason.UNDERPACING),
    True: _reason_table(Reason.PROJECTED_UNDERDELIVERY),  # a ceiling shape judges projections
}
"""Reason tables by whether the curve is a ceiling."""

_ACTIVE, _PAUSED, _ENDED = int(DealStatus.ACTIVE), int(DealStatus.PAUSED), int(DealStatus.ENDED)
_ECPM, _PER_UNIT = int(PriceKind.ECPM), int(PriceKind.PER_UNIT)
"""The codes as plain ints: numpy compares a column with an IntEnum member ~2 us slower."""

_ONE_BINCOUNT = 2048
"""Up to this many deals the group sums are one bincount (fewer calls); past it, three a
quantity (no copies: at 100k deals the copies cost more than the calls)."""


def _column_array(frame: pd.DataFrame, name: str) -> Any:
    """A column's array without building a Series (~15 us each at 50 deals)."""
    get = getattr(frame, "_get_column_array", None)
    if get is None or not frame.columns.is_unique:
        return frame[name].array
    return get(frame.columns.get_loc(name))


def _factorize(deals: pd.DataFrame, name: str) -> tuple[IntArray, np.ndarray]:
    """`pd.factorize(deals[name], sort=True)` (codes, sorted uniques as objects): for a short str
    column without missing values from its values in order of first appearance, sorted (the
    same order: both compare code points)."""
    small = first_seen_of(deals, name)  # a short column's, else None
    if small is not None:
        codes, uniques = sorted_codes(*small)
        return codes, np.array(uniques, dtype=object)
    shared = group_codes(deals, name)  # a long one's, as the plan's problem groups it
    if shared is not None:
        codes, uniques = sorted_codes(shared[0], shared[1].tolist())
        return codes, np.array(uniques, dtype=object)
    found, labels = pd.factorize(_column_array(deals, name), sort=True)
    return found.astype(np.int64), np.asarray(labels, dtype=object)


def _zero_nan(x: FloatArray) -> FloatArray:
    """`np.nan_to_num(x)` (NaN 0, infinities the largest doubles) at a fraction of its cost
    when every value is finite (the usual case: one check instead of four passes)."""
    x = np.asarray(x, dtype=np.float64)
    if np.isfinite(x).all():
        return x
    return np.nan_to_num(x)


def assess(
    snapshot: CampaignSnapshot,
    *,
    recent_window: timedelta = RECENT_WINDOW,
    checkpoint: Checkpoint = never,
    alert_messages: bool = True,
) -> Assessment:
    """Assess pacing of every deal, seller, channel and the campaign at `snapshot.as_of`.
    `checkpoint` is called between phases (core/interrupt.py): it may raise Interrupted.
    `alert_messages` False leaves the alerts' messages empty (a planner that only counts the
    alerts does not pay for 100k sentences); with True they are worded on first read."""
    with reading(snapshot.deals):  # each deals column read once (a plan's block holds on)
        return _assess(snapshot, recent_window, checkpoint, alert_messages)


def _assess(
    snapshot: CampaignSnapshot,
    recent_window: timedelta,
    checkpoint: Checkpoint,
    alert_messages: bool,
) -> Assessment:
    spec = snapshot.pacing
    as_of = float(to_unix(snapshot.as_of))
    span = default_span(spec, snapshot.timezone, snapshot.as_of)
    checkpoint("pacing curve")
    curve = build_curve(spec, snapshot.timezone, span=span)
    checkpoint("deal verdicts")
    ctx = _context(snapshot, as_of, curve, recent_window)

    deals = snapshot.deals
    bt = spec.budget_type
    n = len(deals)
    alloc = values_of(deals, "allocation", np.float64)
    actual = values_of(deals, UNIT_COLUMN[bt], np.float64)
    spend = values_of(deals, "spend_micros", np.float64)
    impressions = values_of(deals, "impressions", np.float64)
    plan_at = values_of(deals, "plan_applied_at", np.float64)
    status = values_of(deals, "status")
    horizon = (ctx.h0, ctx.h1)
    if plan_at.size and plan_at.max() >= ctx.h0:
        restarted = (plan_at >= ctx.h0) & (plan_at <= as_of) & (plan_at < ctx.h1)
    else:  # every plan applied before the horizon, or never (-1): one max tells most calls
        restarted = np.zeros(n, dtype=bool)
    any_restart = bool(restarted.any())

    at_instant: dict[float, FloatArray] = {}  # the windows end at one instant: read once

    def expected_at(t: float | FloatArray) -> FloatArray:
        if not any_restart:  # deal_expected's own answer when no plan restarted a curve
            if isinstance(t, float) and math.isfinite(t):  # one instant: its share as a float
                if t not in at_instant:
                    at_instant[t] = np.asarray(alloc * curve.share_at(t, horizon), np.float64)
                return at_instant[t]
            return np.asarray(alloc * curve.share(t, horizon), dtype=np.float64)
        at_plan = values_of(deals, "delivered_at_plan", np.float64)  # read once, when needed
        return deal_expected(curve, horizon, t, alloc, plan_at, at_plan)

    def expected_over(a: float, b: float) -> FloatArray:
        """Expected delivery in [a, b]; for a plan applied inside it, only since the plan."""
        # One instant for all deals unless a plan was applied inside the window (the same
        # numbers: the curve is read per element either way).
        late = restarted & (plan_at > a) if any_restart else None
        since = np.where(late, plan_at, a) if late is not None and late.any() else a
        return np.maximum(expected_at(b) - expected_at(since), 0.0)

    expected = expected_at(as_of) if any_restart else alloc * ctx.share_now  # the same share
    ipu = _impressions_per_unit(deals, bt, actual, impressions)
    cost = _cost_per_unit(deals, bt, actual, spend)
    cal = ctx.calendar
    if any_restart:
        clock_start = np.where(restarted, plan_at, ctx.h0)
        since_clock = cal.active_hours_at(clock_start)
        evidence_hours = np.maximum(ctx.active_hours_as_of - since_clock, 0.0)
    else:  # every deal's clock started with the horizon: one number
        evidence_hours = np.full(n, max(ctx.active_hours_as_of - ctx.active_hours_start, 0.0))

    nothing, no = np.zeros(n), np.zeros(n, dtype=bool)  # defaults, only read
    window_units = window_expected = stall_impressions = stall_expected = nothing
    has_series = trend_ok = no
    recurring: BoolArray | None = None
    series = snapshot.delivery
    if series is not None:
        units, impr_series, has_series = _series_matrices(series, bt, n, actual, impressions)
        weights = _window_weights(series, as_of, ctx)
        if ctx.rate_window is not None:
            a, b = ctx.rate_window
            window_units = units @ weights["rate"]
            window_expected = expected_over(a, b)
            trend_ok = has_series & ~(restarted & (plan_at > a)) if any_restart else has_series
        if ctx.stall_window is not None:
            a, b = ctx.stall_window
            stall_impressions = impr_series @ weights["stall"]
            stall_expected = expected_over(a, b)
            recurring = _recurring_hole(impr_series, weights)
            if any_restart:
                # Only where bid requests are reported: for a deal offered some to date, or any
                # deal of a campaign whose platform reports them (one offered none since the
                # start was offered none: judged only on the hours since each plan, a deal
                # silent from the start of a campaign-wide stall was never confidently
                # stalled, and kept what it held while the stall outlook drained the others,
                # so the budget they could not keep piled into it: `random_scenarios.py
                # --seed 33`, world 11, 2.7 % of the budget spent where the booking spent
                # 33.1 %, now 30.5 %). Where no deal reports any, nothing tells the two
                # silences apart.
                candidates = restarted & (plan_at > a) & (stall_impressions <= 0)
                offered = values_of(deals, "avails", np.float64) > 0  # NaN: False
                candidates &= offered | offered.any()
                stall_expected, evidence_hours = _silent_across_plan(
                    series, as_of, ctx, (a, b), candidates,
                    (alloc, plan_at, values_of(deals, "delivered_at_plan", np.float64)),
                    stall_expected, evidence_hours,
                )  # fmt: skip
    active = status == _ACTIVE
    # A deal left less than one impression's worth cannot deliver: silent, it is not stalled
    # (a sliver a cut leaves, 1 micro, read as a stall kept its deal cut for good).
    can_buy = ~((alloc - actual) * ipu < 1.0)  # unknown impressions per unit: as before
    should = (
        has_series
        & active
        & (stall_expected > 0)
        & (actual < alloc)
        & can_buy
        & (ctx.stall_window is not None)
    )
    if recurring is not None:
        should &= ~recurring
    # The deals' additive quantities (_ROW_FIELDS, counts as 0/1) and trend_ok, a row each.
    raw = np.array(
        [
            alloc,
            expected,
            actual,
            expected * cost,  # expected_spend
            spend,  # actual_spend
            np.fmax(impressions, expected * ipu),  # events
            window_units,
            window_expected,
            stall_impressions,
            np.where(should, stall_expected * ipu, 0.0),  # stall_lambda
            should,  # should_deliver
            has_series,
            trend_ok,
        ],
        dtype=np.float64,
    )

    checkpoint("group verdicts")
    # Sellers, channels and the campaign: one bincount over every quantity and the three
    # codings (each group's sum is in deal order, as a bincount per quantity makes it).
    seller_codes, seller_ids = _factorize(deals, "seller_id")
    channel_codes, channel_ids = _factorize(deals, "channel_id")
    n_sellers, n_channels = len(seller_ids), len(channel_ids)
    n_groups = n_sellers + n_channels + 1
    codes = np.concatenate(
        [seller_codes, channel_codes + n_sellers, np.full(n, n_sellers + n_channels)]
    )
    n_fields = len(_ROW_FIELDS) + 1
    clean = _zero_nan(raw)
    if n <= _ONE_BINCOUNT:
        keys = codes[None, :] + n_groups * np.arange(n_fields)[:, None]
        summed = np.bincount(
            keys.ravel(),
            weights=np.concatenate([clean, clean, clean], axis=1).ravel(),
            minlength=n_fields * n_groups,
        )
        sums = np.asarray(summed, dtype=np.float64).reshape(n_fields, n_groups)
    else:  # the same sums without the three-fold copies of every quantity and code
        sums = np.empty((n_fields, n_groups))
        everyone = np.zeros(n, dtype=np.int64)
        for i in range(n_fields):
            sums[i, :n_sellers] = np.bincount(seller_codes, clean[i], minlength=n_sellers)
            sums[i, n_sellers:-1] = np.bincount(channel_codes, clean[i], minlength=n_channels)
            sums[i, -1] = np.bincount(everyone, clean[i], minlength=1)[0]
    members_trend = sums[-1] > 0
    matrix = np.concatenate([raw[:-1], sums[:-1]], axis=1)
    for name, value in _campaign_rows(ctx, curve, bt).items():  # the last column: the campaign
        matrix[_FIELD_ROW[name], -1] = value
    matrix.flags.writeable = False  # its rows are columns of the verdicts: read-only
    all_rows = _Rows(*matrix)
    statuses = np.concatenate([status, np.zeros(n_groups, dtype=status.dtype)])  # groups: none
    out = _evaluate(
        all_rows,
        ctx,
        np.concatenate([evidence_hours, np.full(n_groups, ctx.elapsed_active_hours)]),
        paused=statuses == _PAUSED,
        ended=statuses == _ENDED,
        trend_ok=np.concatenate([trend_ok, members_trend]),
    )
    bounds = list(itertools.accumulate([0, n, n_sellers, n_channels, 1]))
    sources: tuple[Any, ...] = (
        None,  # the deals' ids are read from their frame when asked for
        seller_ids,  # others' made str when read (a plan reads none)
        channel_ids,
        np.array([snapshot.campaign_id]),
    )
    verdicts = {
        kind: _Verdicts(
            kind, out, slice(bounds[i], bounds[i + 1]), sources[i], deals if i == 0 else None
        )
        for i, kind in enumerate(_KINDS)
    }
    return Assessment(
        campaign_id=snapshot.campaign_id,
        as_of=snapshot.as_of,
        horizon_start=to_datetime(ctx.h0),
        horizon_end=to_datetime(ctx.h1),
        budget_type=bt,
        currency=snapshot.currency,
        share_now=ctx.share_now,
        opportunity_elapsed_hours=ctx.elapsed_opportunity,
        opportunity_remaining_hours=ctx.remaining_opportunity,
        rate_window_hours=ctx.rate_window_opportunity,
        ceiling=curve.ceiling,
        curve=curve,
        verdicts=verdicts,
        table=_AlertTable.of(out, verdicts, bounds, ctx, alert_messages),
    )


def _context(
    snapshot: CampaignSnapshot, as_of: float, curve: PacingCurve, recent: timedelta
) -> _Context:
    """The campaign-level scalars at `as_of` (the snapshot's, unix seconds)."""
    policy = snapshot.policy
    cal = curve.calendar
    h0, h1 = cal.horizon_at(as_of)
    now = min(max(as_of, h0), h1)
    series = snapshot.delivery
    lo = hi = first = 0.0
    candidates: tuple[float, ...] = ()  # rate windows [a, hi], the first with opportunity
    if series is not None:
        first = float(to_unix(series.window_start))
        lo = max(first, h0)
        hi = min(first + series.n_buckets * series.bucket.total_seconds(), as_of, h1)
        candidates = (max(as_of - recent.total_seconds(), lo), lo)
    # One read of the calendar per curve, elementwise the values of one read per instant.
    opp_now, opp_start, opp_end, opp_hi, *opp_from = cal.opportunity_at(
        np.array([now, h0, h1, hi, *candidates])
    ).tolist()
    active_now, active_start, active_as_of = cal.active_hours_at(np.array([now, h0, as_of]))
    tol_over, tol_under = conf.tolerances(policy)

    rate_window: tuple[float, float] | None = None
    rate_opp = 0.0
    stall_window: tuple[float, float] | None = None
    if series is not None:
        for a, opp_a in zip(candidates, opp_from, strict=True):
            opp = max(opp_hi - opp_a, 0.0) if hi > a else 0.0  # cal.opportunity_hours(a, hi)
            if opp >= MIN_WINDOW_OPPORTUNITY_HOURS:
                rate_window, rate_opp = (a, hi), opp
                break
        # A stall verdict needs the whole window of evidence: a window cut short by the start
        # of the flight (or of the series) would read a deal that has not had its first
        # delivery hour yet - night supply at an hourly replan - as STALLED.
        a_s = as_of - policy.stalled_window.total_seconds()
        if a_s >= lo and hi > a_s:
            stall_window = (a_s, hi)
    return _Context(
        curve=curve,
        policy=policy,
        budget_type=snapshot.pacing.budget_type,
        currency=snapshot.currency,
        as_of=as_of,
        h0=h0,
        h1=h1,
        share_now=curve.share_at(as_of, (h0, h1)),
        elapsed_active_hours=float(active_now - active_start),
        active_hours_start=float(active_start),
        active_hours_as_of=float(active_as_of),
        elapsed_opportunity=opp_now - opp_start,
        remaining_opportunity=opp_end - opp_now,
        opportunity_now=opp_now,
        opportunity_end=opp_end,
        rate_window=rate_window,
        rate_window_opportunity=rate_opp,
        rate_window_clock_hours=(rate_window[1] - rate_window[0]) / 3600.0 if rate_window else 0.0,
        stall_window=stall_window,
        series_start=first,
        tol_over=tol_over,
        tol_under=tol_under,
    )


def _impressions_per_unit(
    deals: pd.DataFrame, bt: BudgetType, actual: FloatArray, impressions: FloatArray
) -> FloatArray:
    """Impressions per budget unit: observed, else from an eCPM price; NaN when unknowable."""
    if bt is BudgetType.IMPRESSIONS:
        return np.ones(actual.size)
    # Each quotient taken only where it is chosen (divide's `where`): no select afterwards.
    out = np.full(actual.size, np.nan)
    if bt is BudgetType.SPEND:
        price = values_of(deals, "price_micros", np.float64)
        ecpm = values_of(deals, "price_kind") == _ECPM
        np.divide(1000.0, price, out=out, where=ecpm & (price > 0))
    observed = (actual > 0) & (impressions > 0)
    np.divide(impressions, actual, out=out, where=observed)
    return out


def _cost_per_unit(
    deals: pd.DataFrame, bt: BudgetType, actual: FloatArray, spend: FloatArray
) -> FloatArray:
    """Micros per budget unit: observed, else from the price; NaN when unknowable."""
    if bt is BudgetType.SPEND:
        return np.ones(actual.size)
    price = values_of(deals, "price_micros", np.float64)
    kind = values_of(deals, "price_kind")
    priced = np.where(kind == _PER_UNIT, price, np.nan)
    if bt is BudgetType.IMPRESSIONS:
        priced = np.where(kind == _ECPM, price / 1000.0, priced)
    observed = actual > 0
    return np.where(observed, spend / np.where(observed, actual, 1.0), priced)


def _series_matrices(
    series: DeliverySeries, bt: BudgetType, n: int, actual: FloatArray, impressions: FloatArray
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """(units, impressions, has_series): the series in budget units (NaN rows zeroed).

    The series carries spend and impressions only; other units are impressions scaled by the
    deal's observed units per impression.
    """
    whole = series.impressions.dtype.kind in "iu"  # the matrix form's integers: no NaN
    raw = np.asarray(series.impressions, dtype=np.float64)
    if raw.shape[0] != n:
        raise ValueError(f"delivery series has {raw.shape[0]} rows for {n} deals")
    impr = raw if whole else _zero_nan(raw)
    # All finite (one sum tells): every row with a bucket has a series.
    has = np.full(n, raw.shape[1] > 0) if impr is raw else ~np.all(np.isnan(raw), axis=1)
    if bt is BudgetType.SPEND:
        spend = series.spend_micros
        units = (
            spend.astype(np.float64)
            if spend.dtype.kind in "iu"
            else _zero_nan(np.asarray(spend, dtype=np.float64))
        )
    elif bt is BudgetType.IMPRESSIONS:
        units = impr
    else:
        per = np.where(impressions > 0, actual / np.where(impressions > 0, impressions, 1.0), 0.0)
        units = impr * per[:, None]
    return units, impr, has


DAY_SECONDS = 86_400.0


def _window_weights(series: DeliverySeries, as_of: float, ctx: _Context) -> dict[str, FloatArray]:
    """The bucket weights of every window the assessment reads, in one pass over the buckets
    (a row each, the same numbers as one window at a time): "rate" and "stall" (the context's
    windows, when it has them) and the two a daily hole compares (`_recurring_hole`): the stall
    window's clock hours a day earlier ("day_before") and the time between ("between"), when
    the series reaches back that far and the window is shorter than a day."""
    windows: dict[str, tuple[float, float]] = {}
    if ctx.rate_window is not None:
        windows["rate"] = ctx.rate_window
    if ctx.stall_window is not None:
        a, b = ctx.stall_window
        windows["stall"] = (a, b)
        if b - a < DAY_SECONDS and a - DAY_SECONDS >= ctx.series_start:
            windows["day_before"] = (a - DAY_SECONDS, b - DAY_SECONDS)
            windows["between"] = (b - DAY_SECONDS, a)
    if not windows:
        return {}
    ends = np.array(list(windows.values()))  # (window, 2): each row's weights broadcast
    grid = _bucket_grid(ctx.series_start, series, as_of)
    rows = _bucket_weights(grid, ends[:, :1], ends[:, 1:])
    return dict(zip(windows, rows, strict=True))


def _silent_across_plan(
    series: DeliverySeries,
    as_of: float,
    ctx: _Context,
    window: tuple[float, float],
    candidates: BoolArray,
    deal: tuple[FloatArray, FloatArray, FloatArray],
    stall_expected: FloatArray,
    evidence_hours: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The stall `window`'s expected delivery and evidence hours of the `candidates` (a plan
    applied inside the window, nothing delivered in it) that were offered no bid requests in
    the window before that plan: judged over the whole window, on the plan's pace extended
    back to the window's start, and with at least the window's hours as evidence.

    A plan restarts a deal's clock because the silence before it may be the plan's own doing
    (a deal left nothing to spend, raised an hour ago, has had an hour to deliver). Without
    supply before the plan the silence was not the plan's: restarted, the verdict of a silent
    deal the plans kept moving never gathered confidence, so it was never read as a stall,
    and budget the stalled deals could not hold piled into it plan after plan (a stall of
    every deal of a campaign, hourly replans)."""
    if not candidates.any():
        return stall_expected, evidence_hours
    a, b = window
    rows = np.flatnonzero(candidates)
    alloc, plan_at, at_plan = (x[rows] for x in deal)
    before = _bucket_weights(_bucket_grid(ctx.series_start, series, as_of), a, plan_at[:, None])
    offered = (_zero_nan(np.asarray(series.avails[rows], np.float64)) * before).sum(axis=1)
    quiet = offered <= 0
    if not quiet.any():
        return stall_expected, evidence_hours
    rows, alloc, at_plan = rows[quiet], alloc[quiet], at_plan[quiet]
    s_a, s_b = (float(ctx.curve.share(t, (ctx.h0, ctx.h1))) for t in (a, b))
    room = np.maximum(alloc - at_plan, 0.0)
    extended = room * (s_b - s_a) / (1.0 - s_a) if 1.0 - s_a > 1e-12 else room
    expected_out = stall_expected.copy()
    expected_out[rows] = np.maximum(extended, stall_expected[rows])
    window_hours = float(ctx.calendar.active_hours_at(b) - ctx.calendar.active_hours_at(a))
    evidence_out = evidence_hours.copy()
    evidence_out[rows] = np.maximum(evidence_hours[rows], window_hours)
    return expected_out, evidence_out


def _recurring_hole(impressions: FloatArray, weights: dict[str, FloatArray]) -> BoolArray | None:
    """Deals whose silence over the stall window is a daily hole, not a stall: the same clock
    hours a day earlier were silent too and the deal delivered between the two (a deal
    without night supply, every night, is not STALLED each morning; one silent since
    yesterday is). None when the series does not reach a day before the window (the proto
    recommends 48 h of buckets) or the window is a day or longer (no such `weights`)."""
    if "day_before" not in weights:
        return None
    before = impressions @ weights["day_before"]
    between = impressions @ weights["between"]
    return np.asarray((before <= 0) & (between > 0), dtype=bool)


_BucketGrid = tuple[FloatArray, FloatArray, BoolArray, FloatArray]
"""A series' buckets: start, end (the one holding `as_of` ends there: data is to date),
whether each has a length, and that length (1 where it has none)."""


def _bucket_grid(first: float, series: DeliverySeries, as_of: float) -> _BucketGrid:
    """The buckets' times (from the series' `first` instant, unix seconds), computed once
    for the windows an assessment reads."""
    step = series.bucket.total_seconds()
    start = np.asarray(first + step * np.arange(series.n_buckets), np.float64)
    end: FloatArray = np.minimum(start + step, as_of)
    length = end - start
    positive: BoolArray = length > 0
    return start, end, positive, np.where(positive, length, 1.0)


def _bucket_weights(grid: _BucketGrid, a: float | FloatArray, b: float | FloatArray) -> FloatArray:
    """Share of each bucket inside [a, b], assuming delivery is uniform within a bucket (a
    column of `a` and of `b`: a row of shares per window)."""
    start, end, positive, length = grid
    overlap = np.maximum(np.minimum(end, b) - np.maximum(start, a), 0.0)  # clip(.., 0, None)
    return np.where(positive, overlap / length, 0.0)


def _campaign_rows(ctx: _Context, curve: PacingCurve, bt: BudgetType) -> dict[str, float]:
    """The campaign's own quantities where they are not its deals' sums: with budgets, its
    allocation and expected delivery (and spend, window) follow its own curve; without,
    nothing (every quantity is the deals' sum)."""
    if not curve.budget_units:
        return {}
    allocation = curve.total((ctx.h0, ctx.h1))
    expected = ctx.share_now * allocation
    own = {"allocation": allocation, "expected": expected}
    if ctx.rate_window is not None:
        a, b = ctx.rate_window
        own["window_expected"] = curve.cumulative_at(b) - curve.cumulative_at(a)
    if bt is BudgetType.SPEND:
        own["expected_spend"] = expected
    return own


Deferred = Callable[[], np.ndarray]
"""A column computed when first read."""


@dataclass(frozen=True, eq=False)
class _RowWise:
    """A deferred column each row of which depends on that row of `arrays` alone, so some rows
    can be computed without the rest (`_Columns.at`)."""

    func: Callable[..., np.ndarray]
    ctx: _Context
    arrays: tuple[np.ndarray, ...]

    def __call__(self) -> np.ndarray:
        return self.func(self.ctx, *self.arrays)

    def at(self, rows: slice | IntArray) -> np.ndarray:
        return self.func(self.ctx, *(a[rows] for a in self.arrays))


class _Columns(dict[str, np.ndarray]):
    """Evaluated columns by name; those in `deferred` are computed on first read and kept,
    read-only: columns nothing in a plan reads (exhaustion and severity were ~70 us of a
    50-deal assessment's ~650)."""

    def __init__(self, columns: dict[str, np.ndarray], deferred: dict[str, Deferred]) -> None:
        super().__init__(columns)
        self.deferred = deferred

    def __missing__(self, name: str) -> np.ndarray:
        values = self.deferred[name]()  # KeyError for a name that is no column, as a dict's
        values.flags.writeable = False
        return self.setdefault(name, values)  # a concurrent first read keeps one array

    def at(self, name: str, rows: slice | IntArray) -> np.ndarray:
        """`self[name][rows]`; a row-wise deferred column not read yet is computed at those rows
        only, and not kept (an answer without the deals' verdicts dates 17.7k alerts and 111
        groups, not 100k deals: ~7 ms less)."""
        deferred = self.deferred.get(name)
        if name in self or not isinstance(deferred, _RowWise):
            return self[name][rows]
        return deferred.at(rows)


@dataclass(frozen=True, eq=False)
class _Evaluated:
    """The verdict columns of every row (deals, sellers, channels, the campaign, in order)."""

    columns: _Columns  # the numeric ASSESSMENT_COLUMNS and `alert` (some on first read)
    codes: _Columns  # status, severity, reason codes (into _STATUSES, ...; severity on first read)
    stall_lambda: FloatArray


def _evaluate(
    rows: _Rows,
    ctx: _Context,
    evidence_hours: FloatArray,
    *,
    paused: BoolArray,
    ended: BoolArray,
    trend_ok: BoolArray,
) -> _Evaluated:
    """Verdicts, projections and confidence for rows of additive quantities (vectorised, every
    entity kind at once: each row's numbers depend on that row and the campaign only)."""
    policy = ctx.policy
    n = rows.actual.size
    alloc, expected, actual = rows.allocation, rows.expected, rows.actual
    due = expected > 0
    ratio = np.where(actual > 0, np.inf, 0.0)  # where nothing is due yet
    np.divide(actual, expected, out=ratio, where=due)  # no error state to set: no 0/0 done

    # Rate per opportunity hour: recent window when it is usable, else flight-to-date average.
    elapsed = ctx.elapsed_opportunity
    average = actual / elapsed if elapsed > 0 else np.full(n, np.nan)
    windowed = (rows.has_series > 0) & (ctx.rate_window is not None)
    recent = rows.window_units / ctx.rate_window_opportunity if ctx.rate_window else average
    rate = np.where(windowed, recent, average)
    remaining_opp = max(ctx.remaining_opportunity, 0.0)
    # Uncapped for the confidence signals; the reported figure is capped by the allocation
    # (delivery stops there), never below what is already delivered.
    projected = actual + _zero_nan(rate) * remaining_opp
    projected_capped = np.minimum(projected, np.maximum(alloc, actual))
    remaining = np.maximum(alloc - actual, 0.0)
    required = remaining / remaining_opp if remaining_opp > 0 else np.full(n, np.nan)

    # Status, in precedence order.
    over_th, under_th = policy.over_threshold, policy.under_threshold
    stalled = (rows.should_deliver > 0) & (rows.stall_impressions <= 0)
    delivered = (alloc > 0) & (actual >= alloc)
    on_curve = due & (ratio < under_th)
    under = (alloc > 0) & (projected < under_th * alloc) if ctx.curve.ceiling else on_curve
    conditions = [
        ended | (ctx.as_of >= ctx.h1),
        ((ctx.share_now <= 0) & (actual <= 0)) | (ctx.as_of < ctx.h0),
        stalled,
        ratio > over_th,
        delivered,
        under,
    ]
    status = _first_code(conditions, _STATUS_CHOICES, _STATUS_CODE[PacingStatus.ON_PACE])

    # Signals (log-ratios) and confidence: gap, outlook and trend as the rows of one matrix.
    tol_o, tol_u = ctx.tol_over, ctx.tol_under
    if ctx.curve.ceiling:
        trend_num, trend_den = rate * ctx.elapsed_opportunity, actual
    else:
        trend_num, trend_den = rows.window_units * expected, rows.window_expected * actual
    gap_num, gap_den = (projected, alloc) if ctx.curve.ceiling else (actual, expected)
    signals = conf.log_ratio(
        np.array([gap_num, projected, trend_num]), np.array([gap_den, alloc, trend_den])
    )
    np.copyto(signals[2], np.nan, where=~(windowed & trend_ok))  # no usable trend
    gap_x = signals[0]
    is_over = status == _STATUS_CODE[PacingStatus.OVER]
    is_under = status == _STATUS_CODE[PacingStatus.UNDER]
    judged = is_over | is_under
    components = conf.scores(signals, judged, is_over, _TREND_SHIFT, tol_o, tol_u)
    hours_evidence = conf.evidence_time(evidence_hours, policy)  # read by both scores below
    events = nan_to_num(rows.events)  # read by the evidence score and the alert gate
    ev = conf.evidence_of(hours_evidence, events, policy)
    score = conf.combine(components[0], components[1], components[2], ev)
    is_stalled = status == _STATUS_CODE[PacingStatus.STALLED]
    stalled_score = conf.stalled_of(rows.stall_lambda, hours_evidence)
    fact = (status == _STATUS_CODE[PacingStatus.COMPLETED]) | (
        status == _STATUS_CODE[PacingStatus.NOT_STARTED]
    )
    score = np.where(is_stalled, stalled_score, np.where(fact, 100.0, score))
    np.copyto(components[0], stalled_score / 100.0, where=is_stalled)  # the gap's
    np.copyto(components, np.nan, where=fact)  # a mask per column, over every row
    np.copyto(components[1:], np.nan, where=is_stalled)
    components.flags.writeable = False  # done: its rows (columns below) are born read-only
    gap, outlook, trend = components

    # Reason and the gates (the severity is graded when first read).
    # A status has one reason, two of them told apart by the deal: one lookup, no select.
    reason = _REASONS_BY[ctx.curve.ceiling][status, delivered.view(np.uint8), paused.view(np.uint8)]
    min_hours = policy.min_evidence.total_seconds() / 3600.0
    alert = (
        (reason != 0)
        & (score > policy.confidence_threshold)
        & (evidence_hours >= min_hours)
        & (events >= policy.min_evidence_impressions)
    )
    columns = {
            "allocation": alloc,
            "expected": expected,
            "actual": actual,
            "expected_spend_micros": rows.expected_spend,
            "actual_spend_micros": rows.actual_spend,
            "pacing_ratio": ratio,
            "recent_rate": rate,
            "recent_rate_clock": rows.window_units / ctx.rate_window_clock_hours
            if ctx.rate_window_clock_hours > 0
            else np.full(n, np.nan),
            "projected_end": projected_capped,
            "required_rate": required,
            "confidence": score,
            "conf_gap": gap,
            "conf_outlook": outlook,
            "conf_trend": trend,
            "conf_evidence": ev,
            "evidence_hours": np.asarray(evidence_hours, dtype=np.float64),
            "evidence_events": rows.events,
            "alert": alert,
        }  # fmt: skip
    for values in columns.values():  # shared by every frame and column read
        if values.flags.writeable:  # (rows of a frozen matrix already are: reading is cheaper)
            values.flags.writeable = False
    # Nothing a plan reads depends on when the allocation runs out or how severe an alert is
    # (it counts them): dated and graded on first read.
    exhaustion = _RowWise(_exhaustion, ctx, (alloc, actual, remaining, rate))
    severity = functools.partial(_severity, ctx, gap_x, is_over, judged, is_stalled)
    return _Evaluated(
        columns=_Columns(columns, {"projected_exhaustion": exhaustion}),
        codes=_Columns({"status": status, "reason": reason}, {"severity": severity}),
        stall_lambda=rows.stall_lambda,
    )


_STATUS_CHOICES = tuple(
    _STATUS_CODE[s]
    for s in (
        PacingStatus.COMPLETED,
        PacingStatus.NOT_STARTED,
        PacingStatus.STALLED,
        PacingStatus.OVER,
        PacingStatus.COMPLETED,
        PacingStatus.UNDER,
    )
)
"""The status codes of `_evaluate`'s conditions, in precedence order."""


_SEVERITY_CHOICES = tuple(
    _SEVERITY_CODE[s]
    for s in (
        AlertSeverity.CRITICAL,
        AlertSeverity.CRITICAL,
        AlertSeverity.MATERIAL,
        AlertSeverity.MINOR,
    )
)
"""The severity codes of `_severity`'s conditions, in precedence order."""


def _first_code(conditions: list[BoolArray], codes: tuple[int, ...], default: int) -> IntArray:
    """The code of each row's first true condition, else `default`: `select`'s own steps
    (int64, the last condition first) without finding the codes' common dtype each call."""
    out = np.empty(conditions[0].shape, dtype=np.int64)
    out.fill(default)
    for condition, code in zip(reversed(conditions), reversed(codes), strict=True):
        np.copyto(out, code, where=condition)
    return out


def _severity(
    ctx: _Context, gap_x: FloatArray, is_over: BoolArray, judged: BoolArray, stalled: BoolArray
) -> IntArray:
    """Severity codes: a stall is critical; an OVER/UNDER verdict by how many tolerance bands
    its gap lies beyond the threshold (3: critical, 1.5: material, else minor)."""
    deviation = np.where(is_over, gap_x / ctx.tol_over, -gap_x / ctx.tol_under)
    return _first_code(
        [stalled, judged & (deviation >= 3.0), judged & (deviation >= 1.5), judged],
        _SEVERITY_CHOICES,
        0,
    )


@dataclass(frozen=True, eq=False)
class _Verdicts:
    """One entity kind's verdicts: its rows of the evaluated columns, framed on first read."""

    kind: EntityKind
    evaluated: _Evaluated
    rows: slice
    source: np.ndarray | None  # the entity ids, made str when read (None: the deals' deal_id)
    deals: pd.DataFrame | None = None  # the deals, whose seller and channel lead the frame

    def code(self, name: str) -> np.ndarray:
        """A label column's codes (one at a time: a severity is graded only when read)."""
        codes: np.ndarray = self.evaluated.codes[name][self.rows]
        return codes

    @property
    def stall_lambda(self) -> FloatArray:
        return self.evaluated.stall_lambda[self.rows]

    def column(self, name: str) -> np.ndarray:
        if name in _LABEL_COLUMNS:
            # A new pick, made read-only as the numbers are: a reader keeps it as it is (the
            # schedules' inputs do not copy it, ~0.6 ms at 100k deals).
            picked: np.ndarray = _LABELS[name][self.code(name)]
            picked.flags.writeable = False
            return picked
        values: np.ndarray = self.evaluated.columns[name][self.rows]
        return values

    @cached_property
    def ids(self) -> np.ndarray:
        if self.source is None:
            assert self.deals is not None
            return np.asarray(self.deals["deal_id"].astype(str).to_numpy())
        return np.asarray(self.source).astype(str)

    def ids_at(self, rows: IntArray) -> np.ndarray:
        """The ids of some rows as Python str (what the whole column would give there)."""
        if self.source is None:
            assert self.deals is not None
            column = text_column(self.deals, "deal_id")
            if is_text_array(column):  # the rows taken from the Arrow strings: no Series built
                return np.asarray(column.take(np.asarray(rows)).to_numpy(dtype=object))
            part = np.asarray(self.deals["deal_id"].iloc[rows].astype(str).to_numpy())
        else:
            part = np.asarray(self.source)[rows]
        return part.astype(str).astype(object)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Built once, when first read (the arrays are never changed after `_evaluate`)."""
        columns: dict[str, Any] = {}
        if self.deals is not None:
            for name in ("seller_id", "channel_id"):
                column = self.deals[name]
                # A str column as it is (no round trip through objects); others as numpy.
                columns[name] = column.array if column.dtype == "str" else column.to_numpy()
        for name in ASSESSMENT_COLUMNS:
            if name in _LABEL_COLUMNS:
                columns[name] = _categorical(self.code(name), _LABEL_DTYPES[name])
            else:
                columns[name] = self.evaluated.columns[name][self.rows]
        return pd.DataFrame(columns, index=pd.Index(self.ids, name=_INDEX_NAMES[self.kind]))


def _categorical(codes: np.ndarray, dtype: pd.CategoricalDtype) -> pd.Categorical[str]:
    """Label columns as categoricals built from codes: no per-row string work, and one dtype
    per label list (building its categories each call was ~3 % of a 50-deal plan)."""
    # pandas-stubs types the dtype by its codes, not its labels
    return pd.Categorical.from_codes(  # type: ignore[return-value]
        np.asarray(codes, dtype=np.int64),
        dtype=dtype,  # type: ignore[arg-type]
    )


def _exhaustion(
    ctx: _Context, alloc: FloatArray, actual: FloatArray, remaining: FloatArray, rate: FloatArray
) -> FloatArray:
    """When the allocation runs out if the rate follows the opportunity curve (NaN: not before
    the horizon ends; as_of when already delivered)."""
    done = (alloc > 0) & (actual >= alloc)
    moving = (rate > 0) & ~done & (alloc > 0)
    with np.errstate(over="ignore", divide="ignore"):
        needed = remaining / np.where(moving, rate, 1.0)
    target = np.where(moving, ctx.opportunity_now + needed, np.nan)
    target = np.where(target <= ctx.opportunity_end * (1 + 1e-12) + 1e-9, target, np.nan)
    when = ctx.calendar.time_at_opportunity(target)
    return np.where(done, ctx.as_of, np.where(moving, np.maximum(when, ctx.as_of), np.nan))


@dataclass(frozen=True)
class AlertWording:
    """What every alert's sentence of one assessment shares: its budget's unit and the stalled
    window (the rest is the alert's own `ALERT_INPUTS`)."""

    budget_type: BudgetType
    currency: str
    stalled_window: timedelta


ALERT_INPUTS: tuple[str, ...] = (
    "entity_kind", "entity_id", "status", "severity", "reason", "confidence", "pacing_ratio",
    "expected", "actual", "projected_end", "allocation", "recent_rate", "required_rate",
    "projected_exhaustion", "stall_lambda",
)  # fmt: skip
"""The alerts' columns an alert's message is worded from (`Assessment.alert_inputs`)."""

_REASON_OF_LABEL = {label: i for i, label in enumerate(_REASONS)}
_KIND_OF_LABEL = {str(kind): i for i, kind in enumerate(_KINDS)}


def _wording(ctx: _Context) -> AlertWording:
    return AlertWording(ctx.budget_type, ctx.currency, ctx.policy.stalled_window)


def alert_messages(inputs: dict[str, Any], wording: AlertWording) -> list[str]:
    """The alerts' messages from their `ALERT_INPUTS` (`Assessment.alert_inputs`, as they are
    or read back from storage: kinds, ids and reasons as str, the numbers as float64): the
    sentences `Assessment.alerts` carries, word for word."""
    kinds = [_KIND_OF_LABEL[str(k)] for k in inputs["entity_kind"]]
    who = [f"{_KIND_WORDS[k]} {i}" for k, i in zip(kinds, list(inputs["entity_id"]), strict=True)]
    reasons = np.array([_REASON_OF_LABEL[str(r)] for r in inputs["reason"]], dtype=np.int64)
    hit = {name: np.asarray(inputs[name], dtype=np.float64) for name in _ALERT_NUMBERS}
    stall = np.asarray(inputs["stall_lambda"], dtype=np.float64)
    return _messages(who, reasons, hit, stall, wording)


def _messages(
    who: list[str],
    reasons: IntArray,
    hit: dict[str, FloatArray],
    stall_lambda: FloatArray,
    wording: AlertWording,
) -> list[str]:
    """A human sentence with the numbers behind each alert (`who`: "deal d1", "seller s2"...).

    Built per reason from plain Python lists, each number formatted only where its sentence
    uses it, a column at a time (`figures.texts`: at 17.7k alerts the numbers' f-strings were
    most of the ~55 ms), so a campaign-wide outage alerting on 100k deals still fits the
    latency budget.
    """
    money = wording.budget_type is BudgetType.SPEND
    scale = 1e-6 if money else 1.0
    unit = f" {wording.currency}" if money else f" {wording.budget_type.lower()}"
    amt, per = (2, 2) if money else (0, 1)  # decimals of an amount and of a rate
    hours = f"{wording.stalled_window.total_seconds() / 3600.0:g}"
    out = [""] * len(who)

    def scaled(name: str, rows: IntArray) -> list[str]:
        """The amounts as `f"{v:,.2f} USD"` writes them (NaN as "nan USD", as it does)."""
        return texts(hit[name][rows] * scale, amt, suffix=unit)

    def rates(name: str, rows: IntArray) -> list[str]:
        return texts(hit[name][rows] * scale, per, suffix=f"{unit}/h", nan="n/a")

    def percent(values: FloatArray) -> list[str]:
        return texts(values, 0, grouping=False, percent=True, nan="n/a")

    worded = [
        _REASON_CODE[r]
        for r in (
            Reason.STALLED, Reason.EARLY_EXHAUSTION, Reason.OVERPACING,
            Reason.PROJECTED_UNDERDELIVERY,
        )
    ]  # fmt: skip

    def sentences(
        reason: Reason, others: bool = False
    ) -> tuple[IntArray, list[int], list[str], list[str]]:
        """The rows of a reason (`others`: of every reason without a sentence of its own, the
        under-pace one): as an array (to index the numbers) and a list (to place the
        sentences), who they are, and their confidence tail."""
        chosen = ~np.isin(reasons, worded) if others else reasons == _REASON_CODE[reason]
        rows = np.flatnonzero(chosen)
        at = rows.tolist()
        tails = texts(
            hit["confidence"][rows], 0, grouping=False, prefix=" (confidence ", suffix=")"
        )
        return rows, at, [who[i] for i in at], tails

    # Only the reasons some alert has are worded: an absent one cost ~10 numpy calls for none.
    present = set(reasons.tolist())
    if _REASON_CODE[Reason.STALLED] in present:
        rows, at, names, tails = sentences(Reason.STALLED)
        for i, w, lam, a, al, t in zip(
            at, names, texts(stall_lambda[rows], 0), scaled("actual", rows),
            scaled("allocation", rows), tails, strict=True,
        ):  # fmt: skip
            out[i] = (
                f"{w} delivered no impressions in the last {hours} h while about {lam} were "
                f"expected; {a} of {al} delivered{t}"
            )
    if _REASON_CODE[Reason.EARLY_EXHAUSTION] in present:
        rows, at, names, tails = sentences(Reason.EARLY_EXHAUSTION)
        for i, w, a, al, r, e, t in zip(
            at, names, scaled("actual", rows), scaled("allocation", rows),
            percent(hit["pacing_ratio"][rows]), scaled("expected", rows), tails, strict=True,
        ):  # fmt: skip
            out[i] = (
                f"{w} already delivered its whole allocation: {a} of {al}, "
                f"{r} of the {e} expected by now{t}"
            )
    if _REASON_CODE[Reason.OVERPACING] in present:
        rows, at, names, tails = sentences(Reason.OVERPACING)
        for i, w, a, e, r, when, rate, t in zip(
            at, names, scaled("actual", rows), scaled("expected", rows),
            percent(hit["pacing_ratio"][rows]), _utc_minutes(hit["projected_exhaustion"][rows]),
            rates("recent_rate", rows), tails, strict=True,
        ):  # fmt: skip
            tail = f"; at {rate} it runs out at {when} UTC" if when else ""
            out[i] = f"{w} is over pace: {a} delivered vs {e} expected ({r}){tail}{t}"
    if _REASON_CODE[Reason.PROJECTED_UNDERDELIVERY] in present:
        rows, at, names, tails = sentences(Reason.PROJECTED_UNDERDELIVERY)
        with np.errstate(divide="ignore", invalid="ignore"):
            end_share = percent(hit["projected_end"][rows] / hit["allocation"][rows])
        for i, w, p, al, s, rate, need, t in zip(
            at, names, scaled("projected_end", rows), scaled("allocation", rows), end_share,
            rates("recent_rate", rows), rates("required_rate", rows), tails, strict=True,
        ):  # fmt: skip
            out[i] = (
                f"{w} is projected to deliver {p} of {al} ({s}) at the "
                f"recent {rate}; it needs {need}{t}"
            )
    paused_code = _REASON_CODE[Reason.PAUSED]
    if not present.issubset(worded):
        rows, at, names, tails = sentences(Reason.UNDERPACING, others=True)
        for i, w, code, a, e, r, rate, p, al, need, t in zip(
            at, names, reasons[rows].tolist(), scaled("actual", rows), scaled("expected", rows),
            percent(hit["pacing_ratio"][rows]), rates("recent_rate", rows),
            scaled("projected_end", rows), scaled("allocation", rows), rates("required_rate", rows),
            tails, strict=True,
        ):  # fmt: skip
            paused = " and paused" if code == paused_code else ""
            out[i] = (
                f"{w} is under pace{paused}: {a} delivered vs {e} expected "
                f"({r}); at the recent {rate} it ends at {p} of {al}, "
                f"needs {need}{t}"
            )
    return out


_LAST_SECOND = 253_402_300_799
"""9999-12-31 23:59:59 UTC in unix seconds: the last instant a datetime holds."""


def _utc_minutes(seconds: FloatArray) -> list[str]:
    """Each instant as `f"{to_datetime(s):%Y-%m-%d %H:%M}"`, "" where not finite: in one numpy
    pass (a datetime and its strftime per alert cost ~15 ms of 7.6k overpacing alerts). The
    seconds are rounded to microseconds as `datetime.fromtimestamp` rounds them (half to even,
    the carry into the second), so a minute's last half microsecond reads as the next minute
    there too. Instants before 1970 or past 9999 take `to_datetime` (its error where it has one).
    """
    finite = np.isfinite(seconds)
    values = np.where(finite, seconds, 0.0)
    if not bool(((values >= 0) & (values <= _LAST_SECOND)).all()):
        return [
            f"{to_datetime(v):%Y-%m-%d %H:%M}" if math.isfinite(v) else "" for v in seconds.tolist()
        ]
    whole = np.trunc(values)
    micros = np.rint((values - whole) * 1e6)  # fromtimestamp's rounding: half to even
    stamps = (whole + (micros >= 1e6)).astype(np.int64).astype("datetime64[s]")
    text = np.datetime_as_string(stamps, unit="m").tolist()
    return [m.replace("T", " ") if ok else "" for m, ok in zip(text, finite.tolist(), strict=True)]


_ALERT_NUMBERS = (
    "confidence", "pacing_ratio", "expected", "actual", "projected_end", "allocation",
    "recent_rate", "required_rate", "projected_exhaustion",
)  # fmt: skip


_LABELS = {
    "status": np.asarray(_STATUSES, dtype=object),
    "severity": np.asarray(_SEVERITIES, dtype=object),
    "reason": np.asarray(_REASONS, dtype=object),
}
_LABEL_TEXT = {name: pd.array(labels, dtype=TEXT_DTYPE) for name, labels in _LABELS.items()}
_SMALL_LABELS = 128
"""Up to this many rows `Assessment.labels` converts the labels' objects rather than take."""
_TEXT_COLUMNS = {"entity_kind", "entity_id", "status", "severity", "reason", "message"}


@dataclass(frozen=True, eq=False)
class _AlertTable:
    """Alerts of every entity that passed the gates: most severe first, then the broadest
    (campaign, channels, sellers, deals: a campaign-wide outage leads), then most confident.

    Row numbers into the evaluated columns; their order, ids, words and the frame are built
    on first read (a planner only counts the alerts)."""

    alerted: IntArray  # into the evaluated columns (deals, sellers, channels, campaign), in order
    evaluated: _Evaluated
    verdicts: dict[EntityKind, _Verdicts]
    bounds: list[int]  # first row of each kind, and the end
    ctx: _Context
    words: bool

    @staticmethod
    def of(
        evaluated: _Evaluated,
        verdicts: dict[EntityKind, _Verdicts],
        bounds: list[int],
        ctx: _Context,
        words: bool,
    ) -> _AlertTable:
        hit = np.flatnonzero(evaluated.columns["alert"])
        return _AlertTable(hit, evaluated, verdicts, bounds, ctx, words)

    @cached_property
    def _sorted(self) -> tuple[IntArray, IntArray]:
        """(rows, kinds): the alerts' rows sorted, and the index into _KINDS of each."""
        hit, columns = self.alerted, self.evaluated.columns
        kinds = np.searchsorted(np.asarray(self.bounds[1:-1]), hit, side="right")
        severity = _SEVERITY_ORDER[self.evaluated.codes["severity"][hit]]
        order = np.lexsort((-columns["confidence"][hit], _KIND_BREADTH[kinds], severity))
        return hit[order], kinds[order]

    @property
    def rows(self) -> IntArray:
        """Into the evaluated columns, most severe first, then broadest, then most confident."""
        return self._sorted[0]

    @property
    def kinds(self) -> IntArray:
        """The index into _KINDS of each of `rows`."""
        return self._sorted[1]

    @cached_property
    def entity_ids(self) -> np.ndarray:
        out = np.empty(self.rows.size, dtype=object)
        for k, kind in enumerate(_KINDS):
            chosen = self.kinds == k
            if chosen.any():
                out[chosen] = self.verdicts[kind].ids_at(self.rows[chosen] - self.bounds[k])
        return out

    @cached_property
    def messages(self) -> np.ndarray:
        if not self.words:
            return np.full(self.rows.size, "", dtype=object)
        hit = {name: self.evaluated.columns.at(name, self.rows) for name in _ALERT_NUMBERS}
        who = [
            f"{_KIND_WORDS[k]} {i}"
            for k, i in zip(self.kinds.tolist(), self.entity_ids.tolist(), strict=True)
        ]
        words = _messages(
            who,
            self.evaluated.codes["reason"][self.rows],
            hit,
            self.evaluated.stall_lambda[self.rows],
            _wording(self.ctx),
        )
        return np.array(words, dtype=object)

    def inputs(self) -> dict[str, np.ndarray]:
        """ALERT_INPUTS (`Assessment.alert_inputs`): what `messages` words, unworded."""
        out: dict[str, np.ndarray] = {
            "entity_kind": _KIND_LABELS[self.kinds],
            "entity_id": self.entity_ids,
        }
        for name in _LABEL_COLUMNS:
            out[name] = _LABELS[name][self.evaluated.codes[name][self.rows]]
        for name in _ALERT_NUMBERS:
            out[name] = np.asarray(self.evaluated.columns.at(name, self.rows), dtype=np.float64)
        out["stall_lambda"] = np.asarray(self.evaluated.stall_lambda[self.rows], np.float64)
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """ALERT_COLUMNS as numpy (labels and text as object arrays of str)."""
        out: dict[str, np.ndarray] = {}
        for name in ALERT_COLUMNS:
            if name == "entity_kind":
                out[name] = _KIND_LABELS[self.kinds]
            elif name == "entity_id":
                out[name] = self.entity_ids
            elif name == "message":
                out[name] = self.messages
            elif name in _LABEL_COLUMNS:
                out[name] = _LABELS[name][self.evaluated.codes[name][self.rows]]
            else:
                out[name] = np.asarray(self.evaluated.columns[name][self.rows], dtype=np.float64)
        return out

    @cached_property
    def frame(self) -> pd.DataFrame:
        if not self.rows.size:
            return pd.DataFrame(
                {
                    c: pd.Series(dtype=object if c in _TEXT_COLUMNS else np.float64)
                    for c in ALERT_COLUMNS
                }
            )
        return pd.DataFrame(self.columns())

    def records(self) -> list[Alert]:
        codes = {name: self.evaluated.codes[name][self.rows].tolist() for name in _LABEL_COLUMNS}
        return [
            Alert(_KINDS[k], str(i), _STATUS_ENUMS[s], v, r, str(m), c)  # type: ignore[arg-type]
            for k, i, s, v, r, m, c in zip(
                self.kinds.tolist(),
                self.entity_ids.tolist(),
                codes["status"],
                [_SEVERITY_ENUMS[v] for v in codes["severity"]],
                [_REASON_ENUMS[r] for r in codes["reason"]],
                self.messages.tolist(),
                self.evaluated.columns["confidence"][self.rows].tolist(),
                strict=True,
            )
        ]

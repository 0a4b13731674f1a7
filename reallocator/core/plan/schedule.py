"""Buyer-side delivery schedules: hourly targets and a throttle for the deals the buyer paces.

Non-guaranteed deals (preferred, private auction, open) deliver what the buyer bids on, so a new
plan reaches them as a schedule for the coming window (until the next replan) instead of a seller
request: per local hour, the budget units (and spend) to deliver, and the participation a
probabilistic pacer should apply to get there.

Which deals: non-guaranteed, ACTIVE, not COMPLETED (unless the plan gives it more), while the
horizon has opportunity left, and
either the plan changed the deal's allocation or its required rate (new allocation / remaining
opportunity hours) is beyond ``policy.request_tolerance`` of the recent rate (a deal that needs
re-throttling although its allocation stood); in both cases the change must be worth making:
max(|new - old allocation|, |new - projection at the recent rate|) >= ``policy.min_change``
(see `severity.worth_changing`). No cooldown: the buyer changes its own pacer, nobody is asked.

Shape (one hourly profile for the campaign, one (deals x hours) matrix):

* Hours run from ``as_of`` floored to the *local* hour (so hours line up with dayparts in any
  timezone, including half-hour offsets) to ``window_end``; the first hour counts only from
  ``as_of``, the last only up to ``window_end``, nothing after the horizon end.
* ``shape="curve"`` (default): the deal's remaining allocation follows the campaign's pacing
  curve from ``as_of`` - exactly what the assessment expects of a deal after a plan is applied
  (`curves.deal_expected` restarts there) - so a deal that meets its schedule reads ON_PACE. The
  curve is zero outside dayparts and flights and honours the mode (front/back loading, custom
  weights) and shorter budget caps. When the curve is a ceiling (ASAP) or has nothing left in the
  horizon (an EVEN catch-up already reached), the opportunity shape is used instead.
* ``shape="opportunity"``: allocation x (opportunity hours in the hour / opportunity hours left
  in the horizon): traffic-shaped (custom weights), zero outside dayparts.
* Hourly targets are integers summing exactly to the window total (the rounded share of the new
  allocation falling in the window), by largest remainder; hours with no share get nothing.
* Spend per hour = target x the deal's cost per unit (SPEND budgets: identical; unknown cost: 0).

Throttle: ``clip(participation x required / observed, 0, 1)``, with ``required`` the window's
target per opportunity hour (window total / window opportunity; the horizon's required rate when
the window has no opportunity), ``observed`` the recent rate per opportunity hour and unknown
participation taken as 1 (we did not throttle). Delivery scales with participation, so this is
the participation that would have produced the required rate. ``required`` 0 gives 0 (stop);
an unknown or zero ``observed`` gives 1.0 (open fully: nothing says less is enough).

Pacing ahead (`pacing_modes`): a deal the plan gives all the supply it forecasts (new allocation
>= a supply-based capacity forecast, or beyond it) is worth every impression it can get. Paced
on the curve it would throttle away the hours its traffic runs above the forecast and could not
win them back in the hours it runs below, ending short of even its forecast - the shortfall going
to deals worth less. So it is paced AHEAD: throttle 1.0 and an ``hourly_ceiling`` of
``policy.pace_ahead`` x the hourly target (rounded up) - the pacer may take supply up to the
ceiling when there is some, never more than the allocation. Every AHEAD deal gets a schedule
(the ceiling is the instruction), changed or not. Deals whose capacity is only the booked
fallback (too little evidence) stay on the curve: nothing says they are supply-bound.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reallocator.core.model import (
    TEXT_DTYPE,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DealType,
    Policy,
    PriceKind,
    factorize,
    flag_counts,
    is_text_array,
    label_codes,
    labels_by_code,
    labels_of,
    nan_to_num,
    select,
    text_column,
    text_of,
    values_of,
)
from reallocator.core.pacing.assessment import UNIT_COLUMN, Assessment, EntityKind, PacingStatus
from reallocator.core.pacing.curves import PacingCurve
from reallocator.core.plan.model import DealPacing, DeliverySchedule, ReasonCode, ScheduleTable
from reallocator.core.plan.requests import (
    ObjArray,
    beyond_tolerance,
    format_deadline,
    pacing_status,
)
from reallocator.core.plan.severity import (
    BoolArray,
    FloatArray,
    IntArray,
    change_size,
    coerce_columns,
    worth_changing,
)

Shape = Literal["curve", "opportunity"]

_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class ScheduleInputs:
    """Per-deal arrays (aligned) and campaign scalars `derive_schedules` reads.

    Amounts are budget units, rates units per opportunity hour, `cost_per_unit` micros per
    budget unit (NaN unknown). Arrays are coerced to their dtypes on construction.
    """

    deal_id: ObjArray
    seller_id: ObjArray
    deal_type: IntArray
    deal_status: IntArray
    pacing_status: ObjArray
    old_allocation: IntArray
    new_allocation: IntArray
    current_rate: FloatArray  # recent rate per opportunity hour, NaN unknown
    participation_rate: FloatArray  # NaN unknown (= 1)
    cost_per_unit: FloatArray  # micros per budget unit, NaN unknown
    as_of: datetime
    window_end: datetime
    horizon_end: datetime
    budget_type: BudgetType
    currency: str
    timezone: str = "UTC"
    plan_reason: ObjArray | None = None
    pacing: ObjArray | None = None  # DealPacing per deal; None: all on the curve
    # The snapshot's deal_id column ("str", the values of `deal_id`) for a long plan, else None:
    # the schedules' Arrow stream takes its rows from it (ScheduleTable.deal_ids).
    deal_ids: Any = None
    # `pacing_status` as integer codes (any numbering: rows of one code hold one label), and
    # the plan's reasons as codes into their distinct `reason_labels`, when the caller has them:
    # the reasons are decided per code, without hashing 100k objects (`_schedule_reasons`);
    # with the codes, `plan_reason` may be None (not converted to objects and checked: ~1.2 ms
    # at 100k deals).
    status_codes: IntArray | None = None
    reason_codes: IntArray | None = None
    reason_labels: ObjArray | None = None
    # Which deals pace AHEAD, where the caller read it from the plan's column by Arrow (then
    # `pacing` is None): ~0.2 ms at 100k deals, where its labels as objects, checked and
    # compared, cost ~2.5 ms.
    ahead: BoolArray | None = None

    def __post_init__(self) -> None:
        dtypes: dict[str, Any] = {
            "deal_id": object,
            "seller_id": object,
            "deal_type": np.int64,
            "deal_status": np.int64,
            "pacing_status": object,
            "old_allocation": np.int64,
            "new_allocation": np.int64,
            "current_rate": np.float64,
            "participation_rate": np.float64,
            "cost_per_unit": np.float64,
            "plan_reason": object,
            "pacing": object,
            "status_codes": np.intp,
            "reason_codes": np.intp,
            "ahead": bool,
        }
        coerce_columns(self, dtypes)
        if (self.reason_codes is None) != (self.reason_labels is None):
            raise ValueError("reason_codes and reason_labels go together")
        if self.window_end <= self.as_of:
            raise ValueError("window_end must be after as_of")

    @property
    def n(self) -> int:
        return len(self.deal_id)

    @classmethod
    def from_plan(
        cls,
        snapshot: CampaignSnapshot,
        assessment: Assessment,
        plan_deals: pd.DataFrame,
        *,
        window_end: datetime,
        texts: Mapping[str, ObjArray] | None = None,
    ) -> ScheduleInputs:
        """Inputs from the snapshot, its assessment and the plan's deals frame, in deal order."""
        deals = snapshot.deals
        # `texts`: the label columns as object arrays when the caller already has them
        # (build_plan makes requests and schedules from one conversion).
        texts = texts or {}

        def text(frame: pd.DataFrame, name: str, key: str) -> ObjArray:
            given = texts.get(key)
            return given if given is not None else text_of(frame, name)

        bt = snapshot.pacing.budget_type
        ids = text_column(deals, "deal_id") if len(deals) > SMALL_IDS else None
        reasons = label_codes(plan_deals, "reason") if "reason" in plan_deals else None
        ahead = _paced_ahead(plan_deals) if "pacing" in plan_deals else None
        pacing = None
        if ahead is None and "pacing" in plan_deals:
            pacing = labels_of(plan_deals, "pacing")
        return cls(
            deal_id=text(deals, "deal_id", "deal_id"),
            seller_id=text(deals, "seller_id", "seller_id"),
            deal_type=values_of(deals, "deal_type", np.int64),
            deal_status=values_of(deals, "status", np.int64),
            pacing_status=pacing_status(assessment, texts),
            old_allocation=values_of(plan_deals, "old_allocation", np.int64),
            new_allocation=values_of(plan_deals, "new_allocation", np.int64),
            current_rate=assessment.column(EntityKind.DEAL, "recent_rate"),
            participation_rate=values_of(deals, "participation_rate", np.float64),
            cost_per_unit=cost_per_unit(deals, bt),
            as_of=snapshot.as_of,
            window_end=window_end,
            horizon_end=assessment.horizon_end,
            budget_type=bt,
            currency=snapshot.currency,
            timezone=snapshot.timezone,
            plan_reason=(
                text(plan_deals, "reason", "plan_reason")
                if "reason" in plan_deals and reasons is None
                else None
            ),
            pacing=pacing,
            deal_ids=ids if ids is not None and is_text_array(ids) else None,
            status_codes=assessment.codes(EntityKind.DEAL, "status"),
            reason_codes=None if reasons is None else reasons[0],
            reason_labels=None if reasons is None else reasons[1],
            ahead=ahead,
        )


def _paced_ahead(plan_deals: pd.DataFrame) -> BoolArray | None:
    """Which deals the plan's "pacing" column says are AHEAD, compared by Arrow (a long "str"
    column without missing values), else None (its labels are read as objects)."""
    column = text_column(plan_deals, "pacing")
    if len(column) <= SMALL_IDS or not is_text_array(column):
        return None
    strings = pa.array(column)
    if strings.null_count:
        return None
    ahead = pc.equal(strings, DealPacing.AHEAD.value)
    if isinstance(ahead, pa.ChunkedArray):
        ahead = ahead.combine_chunks()
    out: BoolArray = ahead.to_numpy(zero_copy_only=False)
    return out


SMALL_IDS = 128
"""Up to this many deals the schedules' deal ids go to Arrow as str objects (`deal_ids`)."""


SUPPLY_METHODS = ("rate", "declared", "given")
"""Forecast methods that measure supply (forecast.METHODS): the others are fallbacks."""


def pacing_modes(
    deal_type: IntArray,
    deal_status: IntArray,
    new_allocation: IntArray,
    capacity: IntArray,
    method: ObjArray | pd.Categorical,
    pace_ahead: float,
) -> ObjArray:
    """DealPacing per deal (module docstring): SELLER for guaranteed deals; AHEAD for live
    buyer-paced deals given at least their supply forecast (when pace_ahead > 1); else CURVE.
    `method`: the forecast's methods as text, or as its categorical (read by code)."""
    codes = pacing_codes(deal_type, deal_status, new_allocation, capacity, method, pace_ahead)
    # Picked by code from the labels as str objects: a unicode array cast to objects makes a
    # str per deal (~4 ms at 100k deals, the pick ~0.5 ms).
    out: ObjArray = _PACING_LABELS[codes]
    return out


def pacing_codes(
    deal_type: IntArray,
    deal_status: IntArray,
    new_allocation: IntArray,
    capacity: IntArray,
    method: ObjArray | pd.Categorical,
    pace_ahead: float,
) -> IntArray:
    """`pacing_modes` as each deal's position in DealPacing."""
    guaranteed = np.asarray(deal_type) == DealType.PROGRAMMATIC_GUARANTEED
    x = np.asarray(new_allocation, dtype=np.int64)
    cap = np.asarray(capacity, dtype=np.int64)
    if isinstance(method, pd.Categorical):
        # One lookup by code (-1, missing: the last, False): three compares of 100k str
        # objects cost ~2 ms, and picking them by code ~0.5 ms more.
        measured = _supply_codes(method.dtype)[method.codes]
    else:
        labels = np.asarray(method, dtype=object)
        measured = np.zeros(labels.shape, dtype=bool)  # compared as they are: no str() per deal
        for m in SUPPLY_METHODS:
            measured |= labels == m
    live = np.asarray(deal_status) == DealStatus.ACTIVE
    ahead = (pace_ahead > 1.0) & ~guaranteed & live & measured & (x > 0) & (x >= cap)
    out: IntArray = select([guaranteed, ahead], [_SELLER, _AHEAD], _CURVE)
    return out


def pacing_column(codes: IntArray) -> Any:
    """The DealPacing values of `codes` (`pacing_codes`) as the plan's table takes its "pacing"
    column: a long one as the "str" array Arrow takes from the three labels (~0.4 ms at 100k
    deals, where the table converted the picked str objects in ~2.2 ms), a short one as str
    objects (there Arrow's take costs more than the conversion)."""
    if codes.size <= _SMALL_LABELS:
        return _PACING_LABELS[codes]
    return _PACING_TEXT.take(codes)


_PACING_LABELS = np.array(
    [DealPacing.CURVE.value, DealPacing.AHEAD.value, DealPacing.SELLER.value], dtype=object
)
"""DealPacing values by code (`pacing_modes`, `derive_schedule_table`)."""
_PACING_TEXT = pd.array(_PACING_LABELS, dtype=TEXT_DTYPE)
_SMALL_LABELS = 128
"""Up to this many deals `pacing_column` picks the labels' str objects (as explain.py's)."""
_CURVE, _AHEAD, _SELLER = 0, 1, 2


@functools.lru_cache(maxsize=16)
def _supply_codes(dtype: pd.CategoricalDtype) -> BoolArray:
    """Whether each code of `dtype`'s categories is a SUPPLY_METHODS one, then False for code
    -1 (missing): built once per dtype (~6 us a call within a 50-deal plan)."""
    supply = [c in SUPPLY_METHODS for c in dtype.categories.tolist()]
    out = np.array([*supply, False], dtype=bool)
    out.flags.writeable = False
    return out


def cost_per_unit(deals: pd.DataFrame, budget_type: BudgetType) -> FloatArray:
    """Micros per budget unit: observed (spend / units), else from the price; NaN unknowable."""
    n = len(deals)
    if budget_type is BudgetType.SPEND:
        return np.ones(n)
    units = values_of(deals, UNIT_COLUMN[budget_type], np.float64)
    spend = values_of(deals, "spend_micros", np.float64)
    price = values_of(deals, "price_micros", np.float64)
    kind = values_of(deals, "price_kind")
    priced = np.where(kind == PriceKind.PER_UNIT, price, np.nan)
    if budget_type is BudgetType.IMPRESSIONS:
        priced = np.where(kind == PriceKind.ECPM, price / 1000.0, priced)
    observed = units > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(observed, spend / np.where(observed, units, 1.0), priced)
    return np.asarray(out, dtype=np.float64)


def floor_to_local_hour(at: datetime, tz: str) -> datetime:
    """Start of the local hour holding `at` (UTC), so schedule hours align with dayparts."""
    local = at.astimezone(ZoneInfo(tz))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


@dataclass(frozen=True, eq=False)
class HourlyProfile:
    """The window's hours and the share of the remaining allocation each one carries."""

    window_start: datetime  # start of the first (local) hour
    edges: FloatArray  # n+1 unix s: as_of, hour starts..., window_end (clamped to the horizon)
    share: FloatArray  # n: share of the remaining allocation per hour (sums to <= 1)
    window_opportunity: float  # opportunity hours in the window
    remaining_opportunity: float  # opportunity hours from as_of to the horizon end
    shape: Shape  # the shape actually used


def hourly_profile(
    curve: PacingCurve,
    as_of: datetime,
    window_end: datetime,
    horizon_end: datetime,
    tz: str,
    shape: Shape = "curve",
) -> HourlyProfile:
    """Share of a deal's remaining allocation per hour of the window (see the module docstring)."""
    start = floor_to_local_hour(as_of, tz)
    t0, t1, h1 = as_of.timestamp(), window_end.timestamp(), horizon_end.timestamp()
    if t1 <= t0:
        raise ValueError("window_end must be after as_of")
    n = max(1, math.ceil((t1 - start.timestamp()) / 3600.0 - 1e-9))
    edges = start.timestamp() + 3600.0 * np.arange(n + 1, dtype=np.float64)
    edges = np.clip(edges, t0, t1)
    clamped = np.minimum(edges, max(h1, t0))
    cal = curve.calendar
    # The hours' edges, then the horizon's end and as_of: one read of the calendar (and of the
    # curve) for all of them, elementwise the values of separate reads.
    at = np.append(clamped, [max(h1, t0), t0])
    at_opportunity = cal.opportunity_at(at)
    opportunity = np.diff(at_opportunity[:-2])
    remaining = float(np.maximum(at_opportunity[-2] - at_opportunity[-1], 0.0))
    used: Shape = shape
    share = np.zeros(n)
    if shape == "curve" and not curve.ceiling:
        read = curve.cumulative(at, left=True)
        cum = read[:-2]
        total = float(read[-2] - read[-1])
        if total > _EPS:
            share = np.clip(np.diff(cum), 0.0, None) / total
        else:
            used = "opportunity"
    else:
        used = "opportunity"
    if used == "opportunity" and remaining > 0:
        share = opportunity / remaining
    if share.sum() > 1.0:  # float noise: the window never gets more than the whole remainder
        share = share / share.sum()
    return HourlyProfile(
        window_start=start,
        edges=edges,
        share=np.asarray(share, dtype=np.float64),
        window_opportunity=float(opportunity.sum()),
        remaining_opportunity=remaining,
        shape=used,
    )


def largest_remainder(exact: FloatArray) -> IntArray:
    """Row-wise integers that sum exactly to each row's rounded total (largest remainder).

    Rows are deals, columns hours. Entries of 0 stay 0; ties go to the earlier hour.
    """
    return _largest_remainder(exact)[0]


def _largest_remainder(exact: FloatArray) -> tuple[IntArray, IntArray]:
    """`largest_remainder` and each row's sum of it (the floors' sum plus the hours bumped:
    an integer sum along short rows cost ~1.4 ms at 100k x 7)."""
    x = np.maximum(np.asarray(exact, dtype=np.float64), 0.0)
    base = np.floor(x)
    frac = x - base
    total = np.rint(x.sum(axis=1))  # numpy's own summation order (einsum's differs)
    positive = frac > 0
    # Row sums of whole numbers and of flags by einsum, not ufunc reductions along a short
    # row (100k deals x 7 hours ~0.4-0.6 ms a sum where `sum(axis=1)` cost ~1.5 ms): exact in
    # any order while every partial sum of the floors (at most the row's total) is below 2**52.
    exact_sums = bool(total.size) and bool(np.max(total) < 2.0**52)  # NaN or inf: numpy's own
    floors = np.einsum("ij->i", base) if exact_sums else base.sum(axis=1)
    count = flag_counts(positive)
    deficit = np.clip(total - floors, 0, count).astype(np.int64)
    out: IntArray = base.astype(np.int64)
    if x.shape[1] <= _RANKED_HOURS:
        out += _ranked_bumps(frac, positive, deficit).T
    else:
        out += _sorted_bumps(frac, positive, deficit)
    sums: IntArray = (
        floors.astype(np.int64) + deficit if exact_sums else np.einsum("ij->i", out)
    )  # every bump is of an hour with a remainder: the deficit exactly
    return out, sums


_RANKED_HOURS = 24
"""Up to this many hours a row's largest remainders are found by comparing its hours pairwise
(`_ranked_bumps`), past it by sorting each row (`_sorted_bumps`)."""


def _sorted_bumps(frac: FloatArray, positive: BoolArray, deficit: IntArray) -> BoolArray:
    """Which hours get one more: the first `deficit` of each row in the order of its largest
    remainder first (ties: the earlier hour), hours without one last."""
    key = np.negative(frac)  # the largest remainder first; hours without one last
    key[~positive] = 1.0
    order = np.argsort(key, axis=1, kind="stable")
    # The first `deficit` hours in that order get one more, scattered back to their hours by
    # flat position (~2.2 ms at 100k x 7 where put_along_axis cost ~2.8 ms).
    rows, hours = frac.shape
    bump = np.empty(frac.shape, dtype=bool)
    flat = order + (np.arange(rows, dtype=np.intp) * hours)[:, None]
    bump.reshape(-1)[flat.reshape(-1)] = (np.arange(hours)[None, :] < deficit[:, None]).reshape(-1)
    return bump


def _ranked_bumps(frac: FloatArray, positive: BoolArray, deficit: IntArray) -> BoolArray:
    """`_sorted_bumps` transposed (hours x rows), from each hour's rank in its row's stable
    order: how many hours come before it (a larger remainder, or an equal one earlier), by
    comparing the hours pairwise, a contiguous row of the transposed keys at a time (100k x 7:
    ~5.8 -> ~2.5 ms, no sort)."""
    hours = frac.shape[1]
    key = np.negative(frac.T, order="C")  # (hours, rows): the largest remainder first
    key[~positive.T] = 1.0  # hours without one last
    rank = np.zeros(key.shape, dtype=np.int16)
    before = np.empty(key.shape[1], dtype=bool)
    for j in range(hours):
        ahead_of_later = np.zeros(key.shape[1], dtype=np.int16)
        for k in range(j + 1, hours):
            np.less_equal(key[j], key[k], out=before)  # j is earlier: first on a tie
            rank[k] += before
            ahead_of_later += before
        rank[j] += (hours - 1 - j) - ahead_of_later  # the later hours that come before j
    out: BoolArray = rank < deficit[None, :]
    return out


def throttle(participation: FloatArray, required: FloatArray, observed: FloatArray) -> FloatArray:
    """clip(participation x required / observed, 0, 1); participation NaN = 1; required 0 -> 0;
    observed unknown or 0 -> 1.0 (see the module docstring)."""
    p = nan_to_num(participation, nan=1.0).clip(0.0, 1.0)
    req = nan_to_num(required)
    obs = np.asarray(observed, np.float64)
    seen = np.isfinite(obs) & (obs > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.clip(p * req / np.where(seen, obs, 1.0), 0.0, 1.0)
    return np.asarray(np.where(req <= 0, 0.0, np.where(seen, scaled, 1.0)), dtype=np.float64)


def schedule_candidates(
    inputs: ScheduleInputs, policy: Policy, remaining: float, *, ahead: BoolArray | None = None
) -> BoolArray:
    """Which deals get a schedule (module docstring): buyer-paced, live, and changed enough.
    `ahead`: which deals pace AHEAD, when the caller has read it (`_ahead`)."""
    buyer = inputs.deal_type != DealType.PROGRAMMATIC_GUARANTEED
    old, new = inputs.old_allocation, inputs.new_allocation
    # COMPLETED: delivered on schedule (or the horizon is over: no remaining opportunity) - live
    # again when the plan gives it more.
    live = (inputs.deal_status == DealStatus.ACTIVE) & (
        ~_verdict_is(inputs, PacingStatus.COMPLETED) | (new > 0)
    )
    hours = remaining if remaining > 0 else 1.0
    observed = inputs.current_rate
    required = new / hours
    changed = new != old
    off_pace = beyond_tolerance(required, observed, policy.request_tolerance)
    projected = np.where(np.isfinite(observed), observed * remaining, old)
    size = change_size(new, old, projected)
    worth = worth_changing(size, policy.min_change)
    if ahead is None:
        ahead = _ahead(inputs)
    wanted = ((changed | off_pace) & worth) | ahead
    return np.asarray(buyer & live & (remaining > 0) & wanted, dtype=bool)


def _verdict_is(inputs: ScheduleInputs, verdict: str) -> BoolArray:
    """Which deals' pacing verdict is `verdict`: compared per code where the caller gave the
    codes (~0.2 ms at 100k deals, a compare per deal ~0.9 ms)."""
    codes = inputs.status_codes
    by_code = None if codes is None else labels_by_code(codes, inputs.pacing_status)
    if codes is None or by_code is None:
        return np.asarray(inputs.pacing_status == verdict, dtype=bool)
    out: BoolArray = np.asarray(by_code == verdict, dtype=bool)[codes]
    return out


def _ahead(inputs: ScheduleInputs) -> BoolArray:
    if inputs.ahead is not None:
        return inputs.ahead
    if inputs.pacing is None:
        return np.zeros(inputs.n, dtype=bool)
    return np.asarray(inputs.pacing == DealPacing.AHEAD.value, dtype=bool)


_STATUS_REASONS = {
    PacingStatus.STALLED.value: ReasonCode.STALLED.value,
    PacingStatus.UNDER.value: ReasonCode.UNDER_DELIVERY.value,
    PacingStatus.OVER.value: ReasonCode.OVER_DELIVERY.value,
}


_REASON_LABELS = np.array([c.value for c in ReasonCode], dtype=object)
"""ReasonCode values by position in the enum (ScheduleTable.reason_code)."""
_REASON_POSITION = {c.value: i for i, c in enumerate(ReasonCode)}


def _schedule_reasons(
    status: ObjArray,
    plan_reason: ObjArray | None,
    pick: IntArray,
    *,
    status_codes: IntArray | None = None,
    reason_codes: IntArray | None = None,
    reason_labels: ObjArray | None = None,
) -> tuple[ObjArray, npt.NDArray[np.int8] | None]:
    """Why each schedule changes: the pacing verdict when it is off pace, else the plan's own
    reason for the deal, else PACING_SCHEDULE; plain str (a caller's plan_reason may hold enum
    members or numpy strings). Decided once per distinct value and spread by code: comparing
    100k objects three times, and sweeping them for non-str, cost ~15 ms. The codes are the
    caller's where it has them (`status_codes` of the picked deals' verdicts `status`, any
    numbering; `reason_codes` of every deal's `plan_reason` into its `reason_labels`): 100k
    schedules ~10 -> ~1 ms, no objects hashed. Also each reason's position in ReasonCode
    (`ScheduleTable.reason_code`), None where one is not a ReasonCode value."""
    s_codes, s_values = _status_codes(status, status_codes)
    by_status = [_STATUS_REASONS.get(str(v), "") for v in s_values]
    if plan_reason is None and reason_codes is None:
        r_codes: IntArray = np.zeros(pick.size, dtype=np.intp)
        own = [ReasonCode.PACING_SCHEDULE.value]
    else:
        if reason_codes is not None and reason_labels is not None:
            r_codes, r_values = reason_codes[pick], reason_labels
        else:
            assert plan_reason is not None
            r_codes, r_values = factorize(plan_reason[pick])
        words = [str(v) for v in r_values]
        own = [
            w if w not in (ReasonCode.UNCHANGED.value, "") else ReasonCode.PACING_SCHEDULE.value
            for w in words
        ]
    # One table of labels, the verdicts' then the plan's own, picked per schedule by code.
    speaks = np.array([v != "" for v in by_status], dtype=bool)
    picked = np.where(speaks[s_codes], s_codes, len(by_status) + np.asarray(r_codes))
    labels = [*by_status, *own]
    position = np.array([_REASON_POSITION.get(v, -1) for v in labels], dtype=np.int8)
    position[: len(by_status)][~speaks] = 0  # never picked
    codes = position[picked]
    if codes.size and int(codes.min()) < 0:  # a reason ReasonCode does not name: as it is
        out: ObjArray = np.array(labels, dtype=object)[picked]
        return out, None
    return _REASON_LABELS[codes], codes


def _status_codes(status: ObjArray, codes: IntArray | None) -> tuple[IntArray, list[Any]]:
    """The verdicts as codes and the verdict of each code (`factorize`'s pair): the caller's
    codes where given, each code's verdict read from a row that has it (a few passes over
    the codes, where hashing the objects costs ~4 ms at 100k)."""
    by_code = None if codes is None else labels_by_code(codes, status)
    if codes is None or by_code is None:
        found, values = factorize(status)
        return found, list(values)
    return codes, by_code.tolist()


BLOCK_ROWS = 16_384
"""Schedules whose hourly matrices are made at a time (`_HourlyMatrices`): a block's
temporaries (16k x 7 hours, ~0.9 MB each) are reused from cache where a whole 100k-deal
matrix is fresh memory for each of largest_remainder's dozen passes (page faults)."""


@dataclass(frozen=True, eq=False)
class _HourlyMatrices:
    """The schedules' hours (rows: the schedules, columns: hours): the targets, which sum to
    the rounded share of each allocation, their spend, the most an AHEAD deal may take
    (its target elsewhere) and each row's total target."""

    target: IntArray
    spend: IntArray
    ceiling: IntArray
    total: IntArray

    @classmethod
    def of(
        cls,
        new: FloatArray,
        share: FloatArray,
        ahead: BoolArray,
        ratio: float,
        cost: FloatArray | None,
    ) -> _HourlyMatrices:
        """The matrices of allocations `new` over the hours' `share`, BLOCK_ROWS rows at a time:
        every figure is its row's own (the same numbers in any blocks). `cost`: micros per
        budget unit (None: the budget is spend). derive_schedule_table of 100k schedules x 7
        hours (thread CPU, in a plan): ~43 -> ~38 ms."""
        shape = (new.size, share.size)
        out = cls(
            target=np.empty(shape, np.int64),
            spend=np.empty(shape, np.int64),
            ceiling=np.empty(shape, np.int64),
            total=np.empty(new.size, np.int64),
        )
        for start in range(0, new.size, BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            out.fill(
                rows, new[rows], share, ahead[rows], ratio, None if cost is None else cost[rows]
            )
        return out

    def fill(
        self,
        rows: slice,
        new: FloatArray,
        share: FloatArray,
        ahead: BoolArray,
        ratio: float,
        cost: FloatArray | None,
    ) -> None:
        """The matrices' `rows`, of the allocations `new`."""
        exact = new[:, None] * share[None, :]
        # Sums to the rounded share of the allocation.
        targets, self.total[rows] = _largest_remainder(exact)
        self.target[rows] = targets
        if cost is None:
            self.spend[rows] = targets
        else:
            self.spend[rows] = np.rint(targets * cost[:, None]).astype(np.int64)
        ceiling = np.where(ahead[:, None], np.ceil(exact * ratio - 1e-9), targets).astype(np.int64)
        np.maximum(ceiling, targets, out=self.ceiling[rows])


def derive_schedule_table(
    inputs: ScheduleInputs,
    curve: PacingCurve,
    policy: Policy,
    *,
    shape: Shape = "curve",
) -> ScheduleTable:
    """Delivery schedules for the buyer-paced deals the plan changes, in deal order, as one
    table (the words are rendered from it for the rows asked: `schedule_text.py`)."""
    prof = hourly_profile(
        curve, inputs.as_of, inputs.window_end, inputs.horizon_end, inputs.timezone, shape
    )
    every_ahead = _ahead(inputs)
    pick = np.flatnonzero(
        schedule_candidates(inputs, policy, prof.remaining_opportunity, ahead=every_ahead)
    )
    new = inputs.new_allocation[pick].astype(np.float64)
    ahead = every_ahead[pick]
    ratio = max(policy.pace_ahead, 1.0)
    cost = None
    if inputs.budget_type is not BudgetType.SPEND:
        cost = nan_to_num(inputs.cost_per_unit[pick])
    hourly = _HourlyMatrices.of(new, prof.share, ahead, ratio, cost)
    targets_total = hourly.total

    horizon_required = new / prof.remaining_opportunity if prof.remaining_opportunity > 0 else new
    required = (
        targets_total / prof.window_opportunity if prof.window_opportunity > 0 else horizon_required
    )
    observed = inputs.current_rate[pick]
    participation = inputs.participation_rate[pick]
    thr = np.where(ahead, 1.0, throttle(participation, required, observed))

    reason, reason_code = _schedule_reasons(
        inputs.pacing_status[pick],
        inputs.plan_reason,
        pick,
        status_codes=None if inputs.status_codes is None else inputs.status_codes[pick],
        reason_codes=inputs.reason_codes,
        reason_labels=inputs.reason_labels,
    )
    pacing_code = ahead.astype(np.int8)  # AHEAD (1) or CURVE (0), DealPacing's positions
    return ScheduleTable(
        window_start=prof.window_start,
        deal_index=pick.astype(np.int64),
        deal_id=inputs.deal_id[pick],
        seller_id=inputs.seller_id[pick],
        hourly_target=hourly.target,
        hourly_spend_micros=hourly.spend,
        hourly_ceiling=hourly.ceiling,
        throttle=np.asarray(thr, dtype=np.float64),
        reason=reason,
        pacing=_PACING_LABELS[pacing_code],
        current_rate=np.asarray(observed, dtype=np.float64),
        horizon_rate=np.asarray(horizon_required, dtype=np.float64),
        old_allocation=inputs.old_allocation[pick],
        new_allocation=inputs.new_allocation[pick],
        participation=np.asarray(participation, dtype=np.float64),
        window_hours=float((prof.edges[-1] - prof.edges[0]) / 3600.0),
        deadline=format_deadline(inputs.horizon_end, inputs.timezone),
        pace_ahead=ratio,
        budget_type=inputs.budget_type,
        currency=inputs.currency,
        deal_ids=inputs.deal_ids,
        reason_code=reason_code,
        pacing_code=pacing_code,
    )


def derive_schedules(
    inputs: ScheduleInputs,
    curve: PacingCurve,
    policy: Policy,
    *,
    shape: Shape = "curve",
) -> tuple[DeliverySchedule, ...]:
    """The schedules of `derive_schedule_table` as objects with their words."""
    return derive_schedule_table(inputs, curve, policy, shape=shape).rows()


__all__ = [
    "HourlyProfile",
    "ScheduleInputs",
    "cost_per_unit",
    "derive_schedule_table",
    "derive_schedules",
    "floor_to_local_hour",
    "hourly_profile",
    "largest_remainder",
    "pacing_codes",
    "pacing_column",
    "pacing_modes",
    "schedule_candidates",
    "throttle",
]

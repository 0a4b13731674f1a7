"""From a snapshot's deals table (flight totals) to an `AllocationProblem` (remaining amounts).

Per deal, with s = spent in the horizon (budget units)::

    current = max(0, allocation - s)       min' = max(0, min - s)       max' = max(0, max - s)
    step    = max(step_abs, floor(step_rel * current))        (a deal at 0 can still grow)
    ub      = max(min', min(max', capacity, current + step))
    lb      = min(ub, max(min', current - step))
    locked:   lb = ub = current

Commitments (min') and locks outrank capacity: what they hold beyond capacity is reported as
`held_beyond_capacity` (unspendable), never infeasible. Seller and channel limits are flight
totals (absolute, or shares of the flight budget) and apply to spent + new allocation; a limit
already exceeded allows nothing beyond what that group's commitments and locks hold, and is
reported. A group minimum the group's deals cannot deliver is capped at what they can, and the
shortfall reported.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd

from reallocator.core.engine.problem import (
    NO_MAX,
    AllocationProblem,
    CodeArray,
    FloatArray,
    IntArray,
    capped_group_sum,
    group_sum,
    power_of_two_unit,
)
from reallocator.core.model import (
    DELIVERED_COLUMN,
    UNITS_LIMIT,
    Budget,
    BudgetType,
    CampaignSnapshot,
    PacingSpec,
    Period,
    Policy,
    PriceKind,
    first_seen_of,
    group_codes,
    nan_to_num,
    positions,
    text_array,
    text_column,
    values_of,
)

SPENT_COLUMN = DELIVERED_COLUMN
"""Which deals-table column measures delivery in each budget unit (model.DELIVERED_COLUMN)."""

PRICE_DEN = 1000
"""Money prices are kept as integer micros per 1000 budget units, so a CPM price of an
impression goal is exact and the money cap can be checked in integers."""


@dataclass(frozen=True)
class Horizon:
    """The span budgets are allocated over, and the budgets that apply to it."""

    start: datetime | None
    end: datetime | None
    budgets: tuple[Budget, ...]
    flight_id: str | None = None

    @property
    def lifetime_budget(self) -> int | None:
        """The horizon's LIFETIME amount: what seller and channel shares are shares of."""
        amounts = [b.amount for b in self.budgets if b.period is Period.LIFETIME]
        return min(amounts) if amounts else None


def horizon(pacing: PacingSpec, as_of: datetime) -> Horizon:
    """The current flight when flights carry budgets, else the campaign's lifetime."""
    if any(f.budgets for f in pacing.flights):
        for f in pacing.flights:
            if f.start <= as_of < f.end:
                return Horizon(f.start, f.end, f.budgets, f.flight_id)
        return Horizon(None, None, ())  # between or after flights: nothing to allocate
    return Horizon(pacing.start, pacing.end, pacing.budgets)


def total_to_allocate(
    budgets: Sequence[Budget], spent: int, period_left: Mapping[Period, int] | None = None
) -> int | None:
    """The smallest of what each applicable budget has left within the horizon (None when no
    budget applies).

    A LIFETIME budget has `amount - spent` left. What a periodic budget (DAY, WEEK, ...) has left
    within the horizon depends on the calendar and pacing, so the pacing engine passes it in
    `period_left`; a periodic budget without a figure there does not limit the total.
    """
    left = [b.amount - spent for b in budgets if b.period is Period.LIFETIME]
    left += [v for p, v in (period_left or {}).items() if any(b.period is p for b in budgets)]
    return max(0, min(left)) if left else None


@dataclass(frozen=True, eq=False)
class BoundsReport:
    """What the conversion clipped: reported beside the plan, never an infeasibility."""

    spent: IntArray
    current: IntArray
    min_remaining: IntArray
    max_remaining: IntArray
    step: IntArray
    capacity: IntArray
    held_beyond_capacity: IntArray  # per deal: lb beyond capacity (unspendable commitment/lock)
    seller_over_limit: IntArray  # per seller: spent + commitments beyond its max (0 = within)
    channel_over_limit: IntArray
    seller_min_short: IntArray  # per seller: minimum its deals cannot deliver
    channel_min_short: IntArray
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class BuiltProblem:
    problem: AllocationProblem
    report: BoundsReport
    seller_ids: pd.Index
    channel_ids: pd.Index


def deal_bounds(
    allocation: IntArray,
    min_allocation: IntArray,
    max_allocation: IntArray,
    spent: IntArray,
    capacity: IntArray,
    locked: np.ndarray,
    policy: Policy,
    room: tuple[IntArray, IntArray] | None = None,
    regrow: int = 0,
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray, IntArray]:
    """The per-deal formulas above, vectorised: (current, min', max', step, lb, ub). `room`:
    how far each deal may still grow and shrink within the rolling step windows
    (plan/rolling.py); the step each way is the smaller, and `step` reports the upward one.
    `regrow`: the least a deal that holds nothing may grow by (plan/prepare.py)."""
    zero = np.int64(0)
    current = np.maximum(zero, allocation - spent)
    min_r = np.maximum(zero, min_allocation - spent)
    max_r = np.where(max_allocation == NO_MAX, NO_MAX, np.maximum(zero, max_allocation - spent))
    rel = np.floor(np.minimum(policy.step_rel * current.astype(np.float64), UNITS_LIMIT))
    step = np.maximum(np.int64(policy.step_abs), rel.astype(np.int64))
    if regrow > 0:
        step = np.where(current == 0, np.maximum(step, np.int64(regrow)), step)
    down = step
    if room is not None:
        step, down = np.minimum(step, room[0]), np.minimum(step, room[1])
    grow = np.minimum(current, NO_MAX - step) + step  # current + step without overflow
    ub = np.maximum(min_r, np.minimum(np.minimum(max_r, capacity), grow))
    lb = np.minimum(ub, np.maximum(min_r, current - down))
    lb = np.where(locked, current, lb)
    ub = np.where(locked, current, ub)
    return current, min_r, max_r.astype(np.int64), step, lb, ub


@functools.lru_cache(maxsize=256)
def _id_index(names: tuple[str, ...], name: str) -> pd.Index:
    """A short id list as a named "str" Index, built once per list and name (immutable, so
    plans share it, as the decoder shares its group tables' Index): building it cost ~30 us a
    group kind within a 50-deal plan."""
    index: pd.Index = pd.Index(text_array(list(names)), name=name)
    return index


def _codes(
    deals: pd.DataFrame, name: str, table: pd.DataFrame | None
) -> tuple[CodeArray, pd.Index]:
    """Group codes of the deals' `name` column in order of first appearance (deterministic),
    then groups only in the table; the index is named `name` (the plan's group tables are
    indexed by it: renaming a copy cost ~20 us a table)."""
    small = first_seen_of(deals, name)  # a short column's, else None
    shared = None if small is not None else group_codes(deals, name)  # the assessment's too
    if small is not None:
        codes, names = small
        index = _id_index(tuple(names), name)
    else:
        # The column's own array: factorizing a Series costs ~60 % more at small sizes.
        if shared is not None:
            codes, uniques = shared
        else:
            codes, uniques = pd.factorize(text_column(deals, name), sort=False)
        index = pd.Index(uniques, name=name)
        names = None
    if table is not None and len(table):
        # A set of the (few) group ids: Index.difference cost ~2 % of a 50-deal plan.
        seen = set(index.tolist() if names is None else names)
        extra = [g for g in table.index.tolist() if g not in seen]
        if extra:
            index = index.append(pd.Index(extra, dtype=object, name=name))
    return codes.astype(np.int32), index


def _limits(table: pd.DataFrame | None, index: pd.Index) -> dict[str, FloatArray]:
    """Each limit column aligned on `index`, NaN where a group has none: one indexer for the
    four columns (a reindex per column cost ~5 % of a 50-deal plan)."""
    columns = ("min_total", "max_total", "min_share", "max_share")
    none = np.full(len(index), np.nan)
    if table is None or len(table) == 0:
        return dict.fromkeys(columns, none)
    pos = positions(index, table.index)
    found, at = pos >= 0, np.maximum(pos, 0)
    return {
        c: np.where(found, _float_column(table, c)[at], np.nan) if c in table else none
        for c in columns
    }


def _float_column(table: pd.DataFrame, name: str) -> FloatArray:
    """`table[name].to_numpy(float64, na_value=nan)`, from the column's array when it is plain."""
    values = values_of(table, name)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    return np.asarray(table[name].to_numpy(dtype=np.float64, na_value=np.nan))


_LIMIT_COLUMNS = ("min_total", "max_total", "min_share", "max_share")
_LIMIT_INDEX = pd.Index(_LIMIT_COLUMNS)


def _no_limits(table: pd.DataFrame) -> bool:
    """Whether every limit of every group is unset (NaN): a table of the four limits alone (as
    decoded) as one matrix, where a column at a time cost ~50 us a table within a plan."""
    if table.columns.equals(_LIMIT_INDEX):  # ~3 us, where a tuple of the labels costs ~4.5
        return bool(np.isnan(table.to_numpy(np.float64, na_value=np.nan)).all())
    return all(bool(np.isnan(_float_column(table, c)).all()) for c in _LIMIT_COLUMNS if c in table)


def group_limits(
    table: pd.DataFrame | None,
    index: pd.Index,
    codes: CodeArray,
    spent: IntArray,
    lb: IntArray,
    ub: IntArray,
    flight_budget: int | None,
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Remaining (min', max') per group and what was reported: (min', max', over, short)."""
    n = len(index)
    if table is None or not len(table) or _no_limits(table):
        # No group has a limit (the common case): nothing to sum (what follows gives the same).
        zeros = np.zeros(n, dtype=np.int64)
        return zeros, np.full(n, NO_MAX, dtype=np.int64), zeros.copy(), zeros.copy()
    fb = float(flight_budget) if flight_budget is not None else math.nan
    limits = _limits(table, index)
    max_abs, min_abs = limits["max_total"], limits["min_total"]
    max_share, min_share = limits["max_share"], limits["min_share"]
    limit_max = np.fmin(max_abs, np.floor(max_share * fb))  # fmin ignores NaN (= no limit)
    limit_min = np.fmax(min_abs, np.ceil(min_share * fb))
    spent_g = group_sum(spent, codes, n).astype(np.float64)
    lb_g = group_sum(lb, codes, n).astype(np.float64)
    ub_g = capped_group_sum(ub, codes, n, NO_MAX // 2).astype(np.float64)
    has_max = ~np.isnan(limit_max)
    cap = nan_to_num(limit_max)
    over = np.where(has_max, np.maximum(0.0, spent_g + lb_g - cap), 0.0)
    max_r = np.full(n, NO_MAX, dtype=np.int64)
    room = np.maximum(np.maximum(cap - spent_g, lb_g), 0.0)  # commitments and locks outrank
    max_r[has_max] = np.minimum(room[has_max], UNITS_LIMIT).astype(np.int64)
    want = np.minimum(np.maximum(0.0, nan_to_num(limit_min) - spent_g), UNITS_LIMIT)
    min_r = np.minimum(want, np.minimum(ub_g, max_r.astype(np.float64)))
    short = want - min_r
    return min_r.astype(np.int64), max_r, over.astype(np.int64), short.astype(np.int64)


def unit_prices(deals: pd.DataFrame, budget_type: BudgetType) -> tuple[IntArray, list[str]]:
    """Micros per PRICE_DEN budget units, rounded up (a cap is never overrun by rounding).

    ECPM prices a thousand impressions: exact for an impression goal; for clicks, completes or
    requests it converts through the deal's observed impressions per unit (the campaign's when
    the deal has none; 0, noted, when nobody has delivered)."""
    notes: list[str] = []
    price = values_of(deals, "price_micros", np.float64)
    per_unit = values_of(deals, "price_kind") == int(PriceKind.PER_UNIT)  # not the IntEnum: ~3x
    imps = values_of(deals, "impressions", np.float64)
    units = values_of(deals, SPENT_COLUMN[budget_type], np.float64)
    if budget_type is BudgetType.IMPRESSIONS:
        ratio = np.ones_like(price)
    else:
        overall = imps.sum() / units.sum() if units.sum() > 0 else 0.0
        if units.sum() <= 0:
            notes.append("no delivery observed: ECPM deals priced at 0 against the money cap")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(units > 0, imps / units, overall)
    per_thousand = np.where(per_unit, price * PRICE_DEN, price * ratio)
    return np.ceil(per_thousand).astype(np.int64), notes


def build_problem(
    deals: pd.DataFrame,
    capacity: IntArray,
    policy: Policy,
    *,
    total: int,
    flight_budget: int | None,
    budget_type: BudgetType = BudgetType.SPEND,
    sellers: pd.DataFrame | None = None,
    channels: pd.DataFrame | None = None,
    money_left: int | None = None,
    value_slopes: FloatArray | None = None,
    value_breaks: IntArray | None = None,
    time_limit: float = 10.0,
    room: tuple[IntArray, IntArray] | None = None,
    regrow: int = 0,
) -> BuiltProblem:
    """The problem for one campaign: deal bounds, group limits, value curves, churn weights.

    `capacity` is the forecast (forecast.py) in budget units; `total` what the budgets have
    left (`total_to_allocate`); `money_left` the micros left under a money cap beside a unit
    goal (ignored for a SPEND goal, where the budget is money already). Value defaults to one
    segment at `value_per_unit`; pass `value_slopes`/`value_breaks` for diminishing returns.
    """
    spent = values_of(deals, SPENT_COLUMN[budget_type], np.int64)
    current, min_r, max_r, step, lb, ub = deal_bounds(
        values_of(deals, "allocation", np.int64),
        values_of(deals, "min_allocation", np.int64),
        values_of(deals, "max_allocation", np.int64),
        spent,
        np.asarray(capacity, dtype=np.int64),
        values_of(deals, "locked", bool),
        policy,
        room,
        regrow,
    )
    seller, seller_ids = _codes(deals, "seller_id", sellers)
    channel, channel_ids = _codes(deals, "channel_id", channels)
    smin, smax, s_over, s_short = group_limits(
        sellers, seller_ids, seller, spent, lb, ub, flight_budget
    )
    cmin, cmax, c_over, c_short = group_limits(
        channels, channel_ids, channel, spent, lb, ub, flight_budget
    )
    if value_slopes is None:
        value = values_of(deals, "value_per_unit", np.float64)
        value_slopes = nan_to_num(value, nan=0.0)[:, None]
    # Values and churn weights in one power-of-two unit (problem.py), chosen before the churn
    # weight is: churn_relative x values near the float limit would overflow it.
    unit = objective_unit(value_slopes, policy)
    if unit != 1.0:
        value_slopes = value_slopes / unit
    notes: list[str] = []
    price_num = None
    money_cap = None
    if money_left is not None and budget_type is not BudgetType.SPEND:
        price_num, notes = unit_prices(deals, budget_type)
        money_cap = max(0, int(money_left))
    problem = AllocationProblem(
        current=current,
        lb=lb,
        ub=ub,
        seller=seller,
        channel=channel,
        seller_min=smin,
        seller_max=smax,
        channel_min=cmin,
        channel_max=cmax,
        total=max(0, int(total)),
        value_slopes=value_slopes,
        value_breaks=value_breaks if value_breaks is not None else np.zeros((0, 0), np.int64),
        lam_deal=churn_weight(policy, value_slopes, current, unit),
        lam_channel=policy.churn_channel / unit,
        money_cap=money_cap,
        price_num=price_num,
        price_den=PRICE_DEN,
        time_limit=time_limit,
        value_unit=unit,
    )
    report = BoundsReport(
        spent=spent,
        current=current,
        min_remaining=min_r,
        max_remaining=max_r,
        step=step,
        capacity=np.asarray(capacity, dtype=np.int64),
        held_beyond_capacity=np.maximum(0, lb - np.asarray(capacity, dtype=np.int64)),
        seller_over_limit=s_over,
        channel_over_limit=c_over,
        seller_min_short=s_short,
        channel_min_short=c_short,
        notes=tuple(notes),
    )
    return BuiltProblem(problem, report, seller_ids, channel_ids)


def objective_unit(value_slopes: FloatArray, policy: Policy) -> float:
    """The problem's `value_unit` for these values and the policy's churn weights: 1 within
    COEFFICIENT_RANGE (problem.py), else a power of two bringing the largest into [1, 2)."""
    top = max(float(np.abs(value_slopes).max(initial=0.0)), policy.churn_deal, policy.churn_channel)
    return power_of_two_unit(top)


def churn_weight(
    policy: Policy, value_slopes: FloatArray, current: IntArray, unit: float = 1.0
) -> float:
    """lam_deal: `churn_deal` plus `churn_relative` x the campaign's own value per unit (the
    first value segment's slope, averaged over deals weighted by what they hold, else plainly).
    `value_slopes` and the weight are in multiples of `unit` (the problem's `value_unit`).

    Scaled to the campaign's value, a default means the same at every currency scale: a move
    from one deal to another must gain 2 x churn_relative of the value per unit it moves, so
    equal optima keep the current plan and near-equal deals stop trading budget on noise,
    while moves the forecasts force (a deal that cannot spend) still happen: they cost churn
    on both sides but free budget that would otherwise be unplaced.
    A constant on the currency's scale instead (0.01 per micro) outweighs every value slope
    10,000-fold and makes value irrelevant to the plan."""
    deal = policy.churn_deal / unit
    if policy.churn_relative <= 0 or value_slopes.size == 0:
        return deal
    first = nan_to_num(value_slopes[:, 0], nan=0.0)
    weight = current.astype(np.float64)
    total = float(weight.sum())
    mean = float(np.dot(first, weight / total)) if total > 0 else float(first.mean())
    lam = deal + policy.churn_relative * max(mean, 0.0)
    return float(min(lam, MAX_CHURN))


MAX_CHURN = 1e300
"""The largest churn weight (finite, whatever values a caller sends: it already freezes a plan).
`build_problem` holds the weight in the values' own unit, where it never comes near."""


def build_from_snapshot(
    snapshot: CampaignSnapshot,
    capacity: IntArray,
    *,
    period_left: Mapping[Period, int] | None = None,
    value_slopes: FloatArray | None = None,
    value_breaks: IntArray | None = None,
    time_limit: float = 10.0,
    room: tuple[IntArray, IntArray] | None = None,
    regrow: int = 0,
) -> BuiltProblem:
    """`build_problem` with the horizon, the total, the flight budget and the money left read
    from the snapshot. The deals table's delivery columns are to date within the horizon; with
    no applicable budget the total is what the current plan still holds (a pure reshuffle)."""
    spec, deals = snapshot.pacing, snapshot.deals
    span = horizon(spec, snapshot.as_of)
    spent = int(values_of(deals, SPENT_COLUMN[spec.budget_type]).sum())
    total = total_to_allocate(span.budgets, spent, period_left)
    notes: tuple[str, ...] = ()
    if total is None:
        remaining = values_of(deals, "allocation", np.int64) - deals[SPENT_COLUMN[spec.budget_type]]
        total = int(np.maximum(remaining.to_numpy(np.int64), 0).sum())
        notes = ("no budget applies to the horizon: total is what the current plan holds",)
    money_left = None
    if spec.max_spend_micros is not None:
        money_left = max(0, spec.max_spend_micros - int(values_of(deals, "spend_micros").sum()))
        if spec.budget_type is BudgetType.SPEND:
            # Money is the budget unit: the cap is one more budget, so it bounds the total
            # placed (and the plan stays a network flow, with no money row).
            total, money_left = min(total, money_left), None
    built = build_problem(
        deals,
        capacity,
        snapshot.policy,
        total=total,
        flight_budget=span.lifetime_budget,
        budget_type=spec.budget_type,
        sellers=snapshot.sellers,
        channels=snapshot.channels,
        money_left=money_left,
        value_slopes=value_slopes,
        value_breaks=value_breaks,
        time_limit=time_limit,
        room=room,
        regrow=regrow,
    )
    if not notes:
        return built
    report = replace(built.report, notes=built.report.notes + notes)
    return replace(built, report=report)

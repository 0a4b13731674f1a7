"""Why each deal got what it got: the binding constraint, the reason code, the marginal value
and a one-line rationale with the numbers. Vectorised over deals; strings only for changed deals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.engine import AllocationProblem, AllocationResult, BoundsReport
from reallocator.core.engine.problem import NO_MAX, group_sum
from reallocator.core.model import BudgetType
from reallocator.core.plan.model import BindingKind, ReasonCode
from reallocator.core.plan.text import amounts, rates

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def binding_kinds(
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    locked: npt.NDArray[np.bool_],
) -> npt.NDArray[np.str_]:
    """The constraint that stopped each deal: its own bound if it sits on one (and which term
    of the bound formula set it), else a group limit it belongs to, else the budget."""
    x = result.allocation
    cur, step = report.current, report.step
    at_ub = (x >= problem.ub) & (x > problem.lb)
    at_lb = (x <= problem.lb) & (x < problem.ub)
    fixed = problem.lb == problem.ub
    grow = np.where(cur > NO_MAX - step, NO_MAX, cur + step)
    has_min = report.min_remaining > 0
    ub_term = np.select(
        [
            (problem.ub == report.min_remaining) & has_min,
            problem.ub == report.capacity,
            problem.ub == report.max_remaining,
            problem.ub == grow,
        ],
        [BindingKind.DEAL_MIN, BindingKind.CAPACITY, BindingKind.DEAL_MAX, BindingKind.STEP],
        default=BindingKind.CAPACITY,
    )
    lb_term = np.where(
        (problem.lb == report.min_remaining) & has_min, BindingKind.DEAL_MIN, BindingKind.STEP
    )
    b = result.binding
    seller_bound = (b.seller_at_max | b.seller_at_min)[problem.seller]
    channel_bound = (b.channel_at_max | b.channel_at_min)[problem.channel]
    inside = np.select(
        [seller_bound, channel_bound, np.full(len(x), b.total or b.money)],
        [BindingKind.SELLER, BindingKind.CHANNEL, BindingKind.BUDGET],
        default=BindingKind.NONE,
    )
    out = np.select(
        [locked, fixed & (problem.lb == report.min_remaining) & has_min, fixed, at_ub, at_lb],
        [BindingKind.LOCKED, BindingKind.DEAL_MIN, ub_term, ub_term, lb_term],
        default=inside,
    )
    # Beyond its forecast the forecast no longer stops a deal: a seller or channel limit does,
    # the budget (all placed), or else the room the policy allows beyond forecasts.
    room = np.where(inside == BindingKind.NONE, BindingKind.CAPACITY, inside)
    out = np.where(beyond_forecast(problem, report, x), room, out)
    return np.asarray(out, dtype=str)


def beyond_forecast(
    problem: AllocationProblem, report: BoundsReport, x: IntArray
) -> npt.NDArray[np.bool_]:
    """Deals the plan placed beyond their forecast and their bounds (engine/stretch.py)."""
    out: npt.NDArray[np.bool_] = x > np.maximum(problem.ub, report.capacity)
    return out


def marginal_slopes(problem: AllocationProblem, x: IntArray) -> FloatArray:
    """Value of the next unit on each deal, churn included (slope of its folded curve at x+)."""
    slopes = problem.value_slopes
    if slopes.shape[1] > 1:
        segment = (problem.value_breaks <= x[:, None]).sum(axis=1)
        value = slopes[np.arange(len(x)), np.minimum(segment, slopes.shape[1] - 1)]
    else:
        value = slopes[:, 0]
    churn = np.where(x >= problem.current, -problem.lam_deal, problem.lam_deal)
    out: FloatArray = value + churn
    return out


def budget_price(problem: AllocationProblem, x: IntArray) -> float:
    """What one more unit of total budget is worth: the best next-unit value among deals that
    can still grow (0 when none can, i.e. the extra unit would be unspendable)."""
    room = x < problem.ub_capped
    if not room.any():
        return 0.0
    return float(max(0.0, marginal_slopes(problem, x)[room].max()))


@dataclass(frozen=True, eq=False)
class Explanation:
    binding: npt.NDArray[np.str_]
    reason: npt.NDArray[np.str_]
    marginal_value: FloatArray
    rationale: list[str]


def explain(
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    frame: pd.DataFrame,
    budget_type: BudgetType,
    currency: str,
    seller_ids: pd.Index,
    channel_ids: pd.Index,
) -> Explanation:
    """`frame` carries per deal: deal_id, locked, status (assessment), pacing_ratio,
    recent_rate, required_rate, value_per_unit, capacity_capped_by_response (bool)."""
    x = result.allocation
    old = report.current
    delta = x - old
    binding = binding_kinds(problem, report, result, frame["locked"].to_numpy(bool))
    status = frame["status"].astype(str).to_numpy()
    value = frame["value_per_unit"].to_numpy(np.float64)
    givers = delta < 0
    giver_value = (
        float(np.average(value[givers], weights=-delta[givers])) if givers.any() else -np.inf
    )
    by_response = frame["capped_by_response"].to_numpy(bool)
    beyond = beyond_forecast(problem, report, x)
    reason = np.select(
        [
            delta == 0,
            beyond,
            status == "STALLED",
            by_response,
            (delta < 0) & (report.capacity < old),
            (delta < 0) & (status == "OVER"),
            (delta < 0) & (status == "UNDER"),
            (delta < 0),
            (delta > 0) & (x <= problem.lb) & (problem.lb == report.min_remaining),
            (delta > 0) & (value > giver_value),
        ],
        [
            ReasonCode.UNCHANGED,
            ReasonCode.BEYOND_FORECAST,
            ReasonCode.STALLED,
            ReasonCode.SELLER_RESPONSE,
            ReasonCode.CAPACITY_SHORTFALL,
            ReasonCode.OVER_DELIVERY,
            ReasonCode.UNDER_DELIVERY,
            ReasonCode.MAXIMUM_REACHED,
            ReasonCode.MINIMUM_REQUIRED,
            ReasonCode.HIGHER_VALUE,
        ],
        default=ReasonCode.UNDER_DELIVERY,
    )
    # Marginal value of the binding constraint: for a deal held at its upper bound, what one more
    # unit there would add beyond the budget's price; at a lower bound, what one unit less saves.
    price = budget_price(problem, x)
    slope = marginal_slopes(problem, x)
    marginal = np.where(
        np.isin(binding, [BindingKind.CAPACITY, BindingKind.DEAL_MAX, BindingKind.STEP]),
        np.maximum(slope - price, 0.0),
        np.where(binding == BindingKind.DEAL_MIN, np.maximum(price - slope, 0.0), 0.0),
    )
    if result.duals is not None:
        group_dual = result.duals.seller[problem.seller] * (binding == BindingKind.SELLER)
        group_dual += result.duals.channel[problem.channel] * (binding == BindingKind.CHANNEL)
        marginal = np.where(group_dual != 0, np.abs(group_dual), marginal)

    rationale = _rationales(
        frame, problem, report, x, binding, reason, budget_type, currency, seller_ids, channel_ids
    )
    return Explanation(binding, np.asarray(reason, dtype=str), marginal, rationale)


def explain_unchanged(
    current: IntArray, locked: npt.NDArray[np.bool_], budget_type: BudgetType, currency: str
) -> Explanation:
    """A NO_CHANGE plan's deals: nothing moved, so only a lock binds and no move is explained
    (the gate is decided before any text exists, so no row describes the solver's discarded
    allocation)."""
    n = len(current)
    held = amounts(current, budget_type, currency)
    why = np.where(locked, "locked", "no change worth making").tolist()
    return Explanation(
        binding=np.where(locked, BindingKind.LOCKED.value, BindingKind.NONE.value),
        reason=np.full(n, ReasonCode.UNCHANGED.value),
        marginal_value=np.zeros(n),
        rationale=[f"unchanged at {h} remaining: {w}" for h, w in zip(held, why, strict=True)],
    )


_STOP = {
    BindingKind.CAPACITY: "capped by its capacity forecast of {cap}",
    BindingKind.DEAL_MAX: "capped by its maximum allocation",
    BindingKind.STEP: "moved no further: the step limit of {step} per plan",
    BindingKind.LOCKED: "locked: not moved",
    BindingKind.DEAL_MIN: "held at its minimum allocation (a commitment)",
    BindingKind.BUDGET: "the remaining budget is fully placed",
    BindingKind.NONE: "",
}


def _rationales(
    frame: pd.DataFrame,
    problem: AllocationProblem,
    report: BoundsReport,
    x: IntArray,
    binding: npt.NDArray[np.str_],
    reason: npt.NDArray[np.generic],
    bt: BudgetType,
    currency: str,
    seller_ids: pd.Index,
    channel_ids: pd.Index,
) -> list[str]:
    """One sentence per deal that moved or is held by a constraint ("unchanged" otherwise).
    Figures are formatted column-wise first (one list comprehension per column), then joined:
    at 100k deals the per-value function calls, not the joining, are what costs."""
    old = report.current
    rows = np.flatnonzero((x != old) | (binding != BindingKind.NONE))
    out = ["unchanged"] * len(x)
    if rows.size == 0:
        return out
    b = problem
    seller_total = group_sum(x, b.seller, b.n_sellers)
    channel_total = group_sum(x, b.channel, b.n_channels)
    kinds = binding[rows]
    ratio = frame["pacing_ratio"].to_numpy(np.float64)[rows]
    status = frame["status"].astype(str).to_numpy()[rows]
    old_t = amounts(old[rows], bt, currency)
    new_t = amounts(x[rows], bt, currency)
    delta = x[rows] - old[rows]
    delta_t = amounts(np.abs(delta), bt, currency)
    cap_t = amounts(report.capacity[rows], bt, currency)
    step_t = amounts(report.step[rows], bt, currency)
    recent_t = rates(frame["recent_rate"].to_numpy(np.float64)[rows], bt, currency)
    need_t = rates(frame["required_rate"].to_numpy(np.float64)[rows], bt, currency)
    why = [str(r).lower().replace("_", " ") for r in reason[rows]]
    seller_at_max = (seller_total >= b.seller_max)[b.seller[rows]]
    channel_at_max = (channel_total >= b.channel_max)[b.channel[rows]]
    sellers = seller_ids[b.seller[rows]].astype(str)
    channels = channel_ids[b.channel[rows]].astype(str)
    for j, i in enumerate(rows.tolist()):
        kind = kinds[j]
        if reason[rows[j]] == ReasonCode.BEYOND_FORECAST:
            stop = (
                f"beyond its capacity forecast of {cap_t[j]}, as the forecasts cannot absorb "
                "the budget"
            )
        elif kind == BindingKind.SELLER:
            stop = f"seller {sellers[j]} at its {'maximum' if seller_at_max[j] else 'minimum'}"
        elif kind == BindingKind.CHANNEL:
            stop = f"channel {channels[j]} at its {'maximum' if channel_at_max[j] else 'minimum'}"
        else:
            stop = _STOP.get(BindingKind(kind), "").format(cap=cap_t[j], step=step_t[j])
        pace = ""
        if np.isfinite(ratio[j]) and status[j] not in ("NOT_STARTED", "COMPLETED"):
            pace = (
                f"; pacing {ratio[j]:.0%} ({status[j]}), delivering {recent_t[j]} vs "
                f"{need_t[j]} needed on its old allocation"
            )
        if delta[j]:
            sign = "+" if delta[j] > 0 else "-"
            move = f"{sign}{delta_t[j]} ({old_t[j]} -> {new_t[j]} remaining)"
        else:
            move = f"unchanged at {old_t[j]} remaining"
        text = f"{move}: {why[j]}{pace}"
        out[i] = f"{text}; {stop}" if stop else text
    return out

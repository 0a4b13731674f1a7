"""Post-solve steps, in order, each returning what it changed rather than editing the solve's
result: hold what sellers are asked to give back (`held`), the duals of binding seller/channel
limits (`result.duals`), the budget forecasts leave unplaced placed beyond them (`upper`, the
bounds it opened), and what is still unplaced left with the guaranteed deals it was cut from
(their commitments kept, `held` lowered).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from reallocator.core.engine import (
    AllocationProblem,
    AllocationResult,
    BoundsReport,
    InfeasibleProblem,
    NoFeasiblePlan,
    SolvePath,
    solve,
)
from reallocator.core.engine.diagnosis import marginal_check
from reallocator.core.engine.forecast import method_is
from reallocator.core.engine.problem import NO_MAX
from reallocator.core.engine.stretch import stretch, stretch_room
from reallocator.core.model import UNITS_LIMIT, CampaignSnapshot, DealStatus, values_of
from reallocator.core.plan.capacity import seller_paced
from reallocator.core.plan.conflicts import Solved
from reallocator.core.plan.explain import beyond_forecast
from reallocator.core.plan.prepare import Prepared


@dataclass(frozen=True)
class PostSolved:
    """The plan after the post-solve steps, and what each changed.

    `problem`/`result`: what the final allocation solves (the hold's re-solve when it held, with
    the duals and the beyond-forecast placement). `held`: per deal, what a guaranteed deal asked
    to deliver less still holds for its seller (the hold). `upper`: the upper bound shown per
    deal (beyond-forecast opened some) and `beyond`: the units placed beyond the forecasts (the
    stretch). `shown`: the problem with the held deals' real bounds, which explanations and the
    table show (not the hold's fix). `remaining_budget`: what the budgets have left, before any
    hold."""

    problem: AllocationProblem
    result: AllocationResult
    held: npt.NDArray[np.int64]
    shown: AllocationProblem
    upper: npt.NDArray[np.int64]
    beyond: int
    remaining_budget: int


def post_solve(prepared: Prepared, solved: Solved) -> PostSolved:
    """Hold seller decreases, add duals, place budget beyond forecasts (in that order: the
    duals and the stretch read the held problem): the hedge, the guaranteed deals' kept
    commitments, the rest, then what the buyer-paced deals the plan cut keep."""
    snapshot, report = prepared.snapshot, prepared.built.report
    before = solved.problem
    problem, result, held = _hold_seller_decreases(
        snapshot, before, solved.result, report, prepared.asks
    )
    result = _with_duals(problem, result)
    # A deal forecast at what it holds for want of evidence ("booked") shows no capacity.
    unmeasured = method_is(prepared.forecast["method"], "booked")
    result, upper = _beyond_forecast(
        snapshot, problem, report, result, prepared.capacity, prepared.capped, unmeasured
    )
    problem, result, upper, held = _keep_commitments(
        snapshot, problem, report, result, upper, held, prepared, int(before.total)
    )
    problem, result, upper = _place_the_rest(
        snapshot,
        problem,
        report,
        result,
        upper,
        prepared,
        unmeasured,
        int(before.total) - int(held.sum()),
    )
    problem, result, upper = _keep_the_rest(
        prepared, problem, result, upper, int(before.total) - int(held.sum())
    )
    # The deals a hold fixed (asked to deliver less, or the other guaranteed deals kept at their
    # commitments meanwhile) are explained and shown within their real bounds, not the fix.
    asked = held > 0
    lower = before.lb if prepared.shown_lb is None else prepared.shown_lb
    shown = (
        problem  # nothing held: the problem solved is the one shown (no second validation)
        if problem is before and prepared.shown_lb is None
        else problem.with_bounds(lower, np.where(asked, before.ub, problem.ub))
    )
    x = result.allocation
    over = x - np.maximum(shown.ub, report.capacity)
    return PostSolved(
        problem=problem,
        result=result,
        held=held,
        shown=shown,
        upper=np.where(asked, np.maximum(before.ub, upper), upper),
        beyond=int(over[beyond_forecast(shown, report, x)].sum()),
        remaining_budget=int(before.total),
    )


def _beyond_forecast(
    snapshot: CampaignSnapshot,
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    capacity: np.ndarray,
    capped: np.ndarray,
    unmeasured: np.ndarray,
) -> tuple[AllocationResult, np.ndarray]:
    """What the forecasts leave unplaced goes first to the deals the buyer paces, up to HEDGE x
    forecast beyond them, within every other limit (engine/stretch.py). Not to deals the seller
    paces (asking a seller beyond the inventory it can deliver is not a plan), locked ones, or
    ones a seller's answer capped. The `unmeasured` deals (too little evidence: forecast at what
    they hold) take only what the measured ones cannot: stretched in proportion to what they
    hold, they would grow on their own forecast plan by plan (a deal able to buy 40 USD a day
    grew from 300 to 560 in a daily pool sent totals only, while deals with supply went
    short)."""
    ratio = min(snapshot.policy.beyond_forecast, HEDGE)
    if ratio <= 0 or int(result.allocation.sum()) >= problem.total:
        return result, problem.ub
    open_ub = _open_upper(problem, report)
    eligible = _stretchable(snapshot, capacity, capped)
    upper = problem.ub
    for tier in (eligible & ~unmeasured, eligible & unmeasured):
        if not tier.any() or int(result.allocation.sum()) >= problem.total:
            continue
        out = stretch(
            problem, result, open_ub=open_ub, capacity=capacity, eligible=tier, ratio=ratio
        )
        if out is not None:
            result, reached = out
            upper = np.maximum(upper, reached)
    return result, upper


HEDGE = 1.0
"""How far beyond its forecast a buyer-paced deal is stretched first (x forecast), level by
level leaning toward value (engine/stretch.py), before the guaranteed deals' commitments are
kept; the rest of `beyond_forecast` comes after them (`_place_the_rest`). A guaranteed deal's
commitment outranks budget a buyer-paced deal could take only beyond twice its forecast."""


def _stretchable(
    snapshot: CampaignSnapshot, capacity: np.ndarray, capped: np.ndarray
) -> npt.NDArray[np.bool_]:
    """The deals budget beyond the forecasts may go to: buyer-paced, forecast to deliver
    something, neither locked nor capped by a seller's answer."""
    deals = snapshot.deals
    out: npt.NDArray[np.bool_] = (
        (capacity > 0) & ~seller_paced(deals) & ~values_of(deals, "locked", bool) & ~capped
    )
    return out


def _place_the_rest(
    snapshot: CampaignSnapshot,
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    upper: npt.NDArray[np.int64],
    prepared: Prepared,
    unmeasured: np.ndarray,
    total: int,
) -> tuple[AllocationProblem, AllocationResult, npt.NDArray[np.int64]]:
    """What is still unplaced once the deals hold their forecasts and the hedge beyond them and
    the guaranteed ones their kept commitments: left unplaced it is certain not to spend, and
    the forecasts that leave it are the least sure ones (a one-deal campaign read at night, a
    long stall's outlook). It goes to the same buyer-paced deals, in proportion to their
    forecasts, up to `beyond_forecast` x forecast beyond them in all; the `unmeasured` ones
    again only what the measured ones cannot take. `total`: the budget the plan may place (a
    decrease's hold excluded)."""
    ratio = snapshot.policy.beyond_forecast
    share = ratio - min(ratio, HEDGE)  # how much more x forecast each may take
    placed = int(result.allocation.sum())
    if share <= 0 or placed >= total:
        return problem, result, upper
    capacity = prepared.capacity
    eligible = _stretchable(snapshot, capacity, prepared.capped)
    wider = problem.with_bounds(problem.lb, problem.ub, total=total)
    open_ub = _open_upper(problem, report)
    bound = np.minimum(open_ub, total)
    for tier in (eligible & ~unmeasured, eligible & unmeasured):
        left = total - int(result.allocation.sum())
        if left <= 0 or not tier.any():
            continue
        # The least multiple (doubling, up to `share`) whose room holds what is left: the split
        # stays in proportion to the forecasts rather than to the room.
        step = min(HEDGE, share)
        while (
            step < share
            and int(stretch_room(result.allocation, bound, capacity, tier, step).sum()) < left
        ):
            step = min(2.0 * step, share)
        out = stretch(wider, result, open_ub=open_ub, capacity=capacity, eligible=tier, ratio=step)
        if out is not None:
            result, reached = out
            upper = np.maximum(upper, reached)
    if int(result.allocation.sum()) == placed:
        return problem, result, upper
    return wider, result, upper


def _keep_the_rest(
    prepared: Prepared,
    problem: AllocationProblem,
    result: AllocationResult,
    upper: npt.NDArray[np.int64],
    total: int,
) -> tuple[AllocationProblem, AllocationResult, npt.NDArray[np.int64]]:
    """What no deal takes, even beyond the forecasts, goes back to the buyer-paced deals the plan
    cut, up to what they hold, in proportion to their cuts and within every other limit: a plan
    takes budget off a deal only to place it on another.

    Released, it is certain not to spend; kept, the deal's pacer spends it the moment its
    supply returns, and the forecast that cut it is the least sure kind (a long stall's
    outlook, a night read as the deal's pace). A one-deal campaign whose deal was silent for
    32 of its 48 hours was cut at hour 36 from 983 to 302 USD remaining, the rest placed
    nowhere; supply came back at hour 39 and the campaign spent 31.9 % of its budget, where the
    booking never moved spent 63.5 % (random world, `random_scenarios.py --seed 38`, #14);
    kept, 63.5 %. The guaranteed deals keep theirs earlier (`_keep_commitments`); locked,
    seller-capped and inactive deals release it. `total`: the budget the plan may place (a
    decrease's hold excluded). Only where `beyond_forecast` places the rest (above HEDGE): at
    1 or less the forecasts are trusted and what they leave is reported unspendable."""
    snapshot, report, x = prepared.snapshot, prepared.built.report, result.allocation
    if snapshot.policy.beyond_forecast <= HEDGE or total - int(x.sum()) <= 0:
        return problem, result, upper
    cut = np.maximum(report.current - x, 0)
    live = values_of(snapshot.deals, "status") == DealStatus.ACTIVE
    # The deals the stretch may reach, with their cuts as their room.
    eligible = _stretchable(snapshot, cut, prepared.capped) & live
    if not eligible.any():
        return problem, result, upper
    wider = problem.with_bounds(problem.lb, problem.ub, total=total)
    open_ub = _open_upper(problem, report)
    out = stretch(wider, result, open_ub=open_ub, capacity=cut, eligible=eligible, ratio=1.0)
    if out is None:
        return problem, result, upper
    kept, reached = out
    return wider, kept, np.maximum(upper, reached)


def _open_upper(problem: AllocationProblem, report: BoundsReport) -> npt.NDArray[np.int64]:
    """Each deal's upper bound without its forecast: its maximum and step limit."""
    grow = np.minimum(report.current, NO_MAX - report.step) + report.step
    out: npt.NDArray[np.int64] = np.maximum(
        problem.ub,
        np.maximum(report.min_remaining, np.minimum(report.max_remaining, grow)),
    )
    return out


def _keep_commitments(
    snapshot: CampaignSnapshot,
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    upper: npt.NDArray[np.int64],
    held: npt.NDArray[np.int64],
    prepared: Prepared,
    budget: int,
) -> tuple[AllocationProblem, AllocationResult, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Budget no deal can take goes back to the guaranteed deals the forecasts cut, up to their
    current commitments, within every other limit (in proportion to their cuts): no seller is
    asked to deliver less for budget nobody can place.

    What a decrease would free is held until its seller agrees (`held`). The remaining `budget`
    (before any hold), less what the deals hold and what the buyer-paced deals could still
    take within their forecasts (step limits aside: a later plan places what a decrease
    frees), is what no deal can take. Not their room beyond the forecasts: that is a hedge
    the stretch re-decides at every plan, while a decrease a seller accepted is not undone.
    Counted with it, a guaranteed deal delivering all its supply was cut to its forecast to
    make room the buyer-paced deals could not use (random world, seed 1 #3: 30.9 % of the
    budget spent, the booking never moved 37.1 %, kept 38.1 %).

    Asking for it buys nothing, and the seller then paces its deal to the smaller commitment
    for the rest of the flight: a guaranteed deal's delivery measures its seller's pace, so no
    later plan sees the supply it had and none asks for it back. A stall of every deal of a
    campaign (5 days, 8 deals, 2 guaranteed, all silent for 40 h, hourly replans) cut the
    guaranteed deals to a third of their bookings; kept, the campaign spends 70.7-81.4 % of
    its budget (3 seeds, both pacers; the booking never moved 66.6-81.5 %), against
    67.0-80.3 % (70.6-80.1 % with the room beyond the forecasts counted). What a kept deal's
    request would have freed is no longer held; the problem returned has the total the plan
    places. Off with `beyond_forecast` 0, like the stretch."""
    ratio = snapshot.policy.beyond_forecast
    x = result.allocation
    if ratio <= 0:
        return problem, result, upper, held
    deals, capacity, capped = snapshot.deals, prepared.capacity, prepared.capped
    paced, locked = seller_paced(deals), values_of(deals, "locked", bool)
    cut = np.maximum(report.current - x, 0)
    # Only live deals forecast to deliver something: not an ended or paused one, nor one a
    # stall cut to its spend (stall_outlook off).
    live = values_of(deals, "status") == DealStatus.ACTIVE
    eligible = paced & ~locked & ~capped & (cut > 0) & (capacity > 0) & live
    if not eligible.any():
        return problem, result, upper, held
    open_ub = _open_upper(problem, report)
    # What the buyer-paced deals may take: up to their forecasts within their maximums. Not
    # their step limits: what a decrease frees is placed by a later plan, when they may step
    # again.
    buyers = _stretchable(snapshot, capacity, capped)
    most = np.floor(np.maximum(capacity, 0).astype(np.float64))
    most = np.minimum(np.minimum(most, UNITS_LIMIT).astype(np.int64), report.max_remaining)
    room = np.where(buyers, np.maximum(np.minimum(most, budget) - x, 0), 0)
    # Summed as floats: deals' rooms of up to the whole budget each overflow an int64 sum.
    spare = budget - int(x.sum()) - int(min(float(room.sum(dtype=np.float64)), float(budget)))
    if spare <= 0:
        return problem, result, upper, held
    wider = problem.with_bounds(problem.lb, problem.ub, total=int(x.sum()) + spare)
    out = stretch(wider, result, open_ub=open_ub, capacity=cut, eligible=eligible, ratio=1.0)
    if out is None:
        return problem, result, upper, held
    kept, reached = out
    back = kept.allocation - x  # what each deal got back, out of what its request would free
    held = np.maximum(held - back, 0).astype(np.int64)
    return wider, kept, np.maximum(upper, reached), held


DUALS_UP_TO = 200_000
"""Deals up to which a plan whose group limits bind also runs the LP path for its duals (what
one more unit of a binding limit is worth); above it the marginal values come from the slopes."""


def _hold_seller_decreases(
    snapshot: CampaignSnapshot,
    problem: AllocationProblem,
    result: AllocationResult,
    report: BoundsReport,
    asks: npt.NDArray[np.int64],
) -> tuple[AllocationProblem, AllocationResult, npt.NDArray[np.int64]]:
    """Budget a plan frees by asking a seller to deliver less is not the buyer's until the
    seller agrees: the seller keeps pacing its deal to the old commitment meanwhile. So the
    whole commitment a guaranteed deal still holds beyond its new allocation stays held, and
    the rest of the plan is re-solved without it (the guaranteed deals asked for less fixed
    where the first solve put them, the other guaranteed deals kept at their commitments). The
    next plan, once the seller has answered, places it. Without this, deals that spend all
    they are given (AHEAD) overspend the budget whenever a seller is slow or says no.

    The commitment, not the forecast: a forecast that a deal falls short of its commitment can
    be wrong, and the seller then catches up (holding only min(current, capacity) overspent
    the evaluation set's marathon by 0.04 % on 1 seed in 30; holding all of it costs ~0.1
    point of utilisation on the tuning set, 30 seeds, and overspent in none of 720 runs).
    An unanswered request (`asks`: what it asks beyond the spend, -1 none) counts as a
    commitment too: its seller may still accept it, and it answers in the order asked. A
    request for less counted from the ask alone let a plan give away budget the seller then
    committed (asked down from 17,703 to 9,845 USD while an earlier request for 1,873 was
    pending, the deal at 3,222 once that one was accepted: the next plan placed the 6,623 USD
    between, the seller accepted 9,845, and the campaign overspent by 1.5 %; random worlds).
    Returns the problem and result to use and the amount held per deal (none when the
    minimums need it: the re-solve is infeasible)."""
    x = result.allocation
    paced = seller_paced(snapshot.deals)
    committed = np.maximum(report.current, asks)
    held = np.where(paced, np.maximum(committed - x, 0), 0)
    total = int(held.sum())
    if total <= 0:
        return problem, result, np.zeros_like(x)
    asked = held > 0
    # The others the seller paces keep their commitments: lowering one would need a hold.
    keep = np.where(paced & ~asked, np.minimum(committed, problem.ub), 0)
    fixed = problem.with_bounds(
        lb=np.where(asked, x, np.maximum(problem.lb, keep)),
        ub=np.where(asked, x, problem.ub),
        total=max(0, int(problem.total) - total),
    )
    try:
        second = solve(fixed)
    except (InfeasibleProblem, NoFeasiblePlan):
        return problem, result, np.zeros_like(x)  # the minimums need it: nothing to hold back
    return fixed, second, held.astype(np.int64)


def _with_duals(problem: AllocationProblem, result: AllocationResult) -> AllocationResult:
    """The flow path has no duals: when a seller/channel limit binds, the LP path on the same
    problem gives them (its allocation is not used: the flow's is exact). A binding budget alone
    needs no LP: its worth is the best next-unit slope (explain.budget_price)."""
    b = result.binding
    groups = (b.seller_at_min | b.seller_at_max).any() or (
        b.channel_at_min | b.channel_at_max
    ).any()
    if result.duals is not None or not groups or problem.n_deals > DUALS_UP_TO:
        return result
    try:
        lp = solve(problem, path=SolvePath.LP)
    except (InfeasibleProblem, NoFeasiblePlan):
        return result
    duals = lp.duals
    if duals is not None and problem.n_deals <= RESOLVE_UP_TO:
        duals = replace(
            duals,
            seller=_resolved(problem, result, "seller", b.seller_at_min, b.seller_at_max,
                             duals.seller),
            channel=_resolved(problem, result, "channel", b.channel_at_min, b.channel_at_max,
                              duals.channel),
        )  # fmt: skip
    return replace(result, duals=duals)


RESOLVE_UP_TO = 20_000
"""Deals up to which a binding group's marginal value is measured by re-solving with its limit
relaxed by one unit (exact even where the LP dual is degenerate); above, the LP dual."""


def _resolved(
    problem: AllocationProblem,
    result: AllocationResult,
    kind: str,
    at_min: np.ndarray,
    at_max: np.ndarray,
    dual: np.ndarray,
    most: int = 10,
) -> np.ndarray:
    """What one more unit of each binding limit is worth: value re-solved with that limit
    relaxed by one unit, delivery held (at most `most` limits; the others keep the LP dual)."""
    out = np.abs(np.asarray(dual, dtype=np.float64))
    binding = np.flatnonzero(at_min | at_max)[:most]
    # One micro is below GLOP's feasibility tolerance on budgets of billions of micros: step by
    # a millionth of the budget (at least one unit) and report the value per unit.
    step = max(1, problem.total // 1_000_000)
    for code in binding.tolist():
        side = "max_total" if at_max[code] else "min_total"
        gain = marginal_check(problem, result, f"{kind}/{code}/{side}", step)
        out[code] = abs(gain) / step
    return out


__all__ = ["DUALS_UP_TO", "RESOLVE_UP_TO", "PostSolved", "post_solve"]

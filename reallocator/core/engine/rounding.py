"""From a fractional LP solution to an integer plan in budget units.

LP vertices on this model are integral except for the few basic variables tied to non-network
rows (a money cap) and solver noise; so the plan is floored, and the units floored away are
handed back by largest remainder (ties to the lower deal index, for identical plans from
identical inputs) up to the target total, never breaking a bound, a group limit or the money
cap. Group minimums that flooring broke are restored first. Everything is then verified in
integers by verify.py.

The vectorised path covers the usual case; only when the largest remainders would break a limit
does a greedy pass walk the fractional deals one unit at a time (at most the LP's basic
variables, i.e. about one per row, so no per-deal loop over the whole problem).

When even the greedy pass leaves a limit broken (a money cap that binds together with group
minimums: restoring a minimum needs a unit that the cap has no room for, unless a dearer unit
of the same group goes), the plan is repaired exactly: the least-money integer plan with every
deal within [floor, ceil] of its LP value and the target total (a min-cost flow over the
fractional deals only, flow.min_money_plan). The LP point lies in that window, the window is a
network, so some integer point of it costs no more money than the LP point; if GLOP's
tolerance put the LP point just outside the cap, the total comes down one unit at a time, then
the window widens by one unit on each fractional deal (a few tries in all). Last, when the
problem is so tight that no plan near the LP point fits (a relaxed problem whose group
minimums were lowered exactly to what the money cap allows: GLOP's point can overrun the cap
by a rounding error of 1e-13), the least-money plan over the deals' full bounds is taken: it
meets every limit, but its value may be below the LP optimum, and the caller says so.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from reallocator.core.engine.errors import InfeasibleProblem
from reallocator.core.engine.flow import min_money_plan
from reallocator.core.engine.problem import AllocationProblem, FloatArray, IntArray, group_sum
from reallocator.core.engine.verify import money_exceeds

_REPAIR_TRIES = 8
"""Totals tried by the exact repair at each window, from the target down."""

SNAP = 1e-6
"""Values within this of an integer are solver noise around an integral vertex: snapped."""


def _money(problem: AllocationProblem, x: IntArray) -> int:
    if problem.price_num is None:
        return 0
    return int(np.dot(problem.price_num.astype(object), x.astype(object)))


def _feasible_sums(problem: AllocationProblem, x: IntArray) -> bool:
    s = group_sum(x, problem.seller, problem.n_sellers)
    c = group_sum(x, problem.channel, problem.n_channels)
    ok = bool(
        (s <= problem.seller_max).all()
        and (s >= problem.seller_min).all()
        and (c <= problem.channel_max).all()
        and (c >= problem.channel_min).all()
        and int(x.sum()) <= problem.total
    )
    if ok and problem.money_cap is not None and problem.price_num is not None:
        budget = problem.money_cap * problem.price_den
        ok = not money_exceeds(problem.price_num, budget, x)[0]
    return ok


def largest_remainder(
    order_key: FloatArray, eligible: npt.NDArray[np.bool_], count: int
) -> npt.NDArray[np.int64]:
    """Indices of the `count` eligible entries with the largest key; ties go to the lower index
    (stable sort on the negated key)."""
    idx = np.flatnonzero(eligible)
    if count <= 0 or idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-order_key[idx], kind="stable")
    return idx[order[:count]].astype(np.int64)


def round_plan(problem: AllocationProblem, values: FloatArray, target: int) -> IntArray:
    """Integer plan near `values` that reaches `target` total units where the limits allow."""
    return round_plan_noted(problem, values, target)[0]


def round_plan_noted(
    problem: AllocationProblem, values: FloatArray, target: int
) -> tuple[IntArray, str | None]:
    """`round_plan`, with a note when the exact repair (module docstring) was needed."""
    lb, ub = problem.lb, problem.ub_capped
    xf = np.clip(values, lb.astype(np.float64), ub.astype(np.float64))
    near = np.rint(xf)
    x = np.where(np.abs(xf - near) <= SNAP, near, np.floor(xf)).astype(np.int64)
    x = np.clip(x, lb, ub)
    x = _shave(problem, x, x - xf)
    frac = np.clip(xf - x, 0.0, None)
    need = min(target, problem.total) - int(x.sum())

    picked = largest_remainder(frac, (frac > 0) & (x < ub), need)
    trial = x.copy()
    trial[picked] += 1
    if _feasible_sums(problem, trial):
        return trial, None
    greedy = _greedy(problem, x, frac, need)
    if _feasible_sums(problem, greedy):
        return greedy, None
    repaired = _repair(problem, xf, min(target, problem.total))
    return repaired if repaired is not None else (greedy, None)


def _repair(problem: AllocationProblem, xf: FloatArray, target: int) -> tuple[IntArray, str] | None:
    """The exact repair of the module docstring; None if it finds nothing (the caller's plan
    then fails verification, as before)."""
    lb, ub = problem.lb, problem.ub_capped
    floor = np.floor(xf + SNAP)
    ceil = np.ceil(xf - SNAP)
    fractional = ceil > floor
    windows = [
        (
            np.clip(floor - widen * fractional, lb, ub).astype(np.int64),
            np.clip(ceil + widen * fractional, lb, ub).astype(np.int64),
            "rounding repaired by a least-money flow over the fractional deals",
        )
        for widen in (0, 1)
    ]
    windows.append(
        (lb, ub, "rounding fell back to the least-money plan: value may be below the LP's")
    )
    for lo, hi, note in windows:
        top = min(target, int(hi.astype(np.float64).sum()))
        for delivered in range(top, max(top - _REPAIR_TRIES, 0) - 1, -1):
            try:
                x = min_money_plan(problem, lo, np.maximum(hi, lo), delivered)
            except InfeasibleProblem:
                continue
            if x is None:
                return None
            if _feasible_sums(problem, x):
                return x, note
    return None


def _take(x: IntArray, lb: IntArray, idx: npt.NDArray[np.int64], excess: int) -> None:
    """Remove `excess` units from x[idx] in the given order, never below lb (vectorised)."""
    room = x[idx] - lb[idx]
    before = np.cumsum(room) - room
    x[idx] -= np.minimum(room, np.maximum(0, excess - before))


def _shave(problem: AllocationProblem, x: IntArray, up: FloatArray) -> IntArray:
    """Undo snapping that overshot an upper limit (solver noise on values near 2**53, or a
    group or the total at its limit): take units back, most rounded-up deals first. The sort
    that orders them is only paid for when a limit is actually overshot."""
    x = x.copy()
    lb = problem.lb
    cache: list[npt.NDArray[np.int64]] = []

    def order() -> npt.NDArray[np.int64]:
        if not cache:
            cache.append(np.argsort(-up, kind="stable").astype(np.int64))
        return cache[0]

    for codes, n, hi in (
        (problem.seller, problem.n_sellers, problem.seller_max),
        (problem.channel, problem.n_channels, problem.channel_max),
    ):
        sums = group_sum(x, codes, n)
        for g in np.flatnonzero(sums > hi):  # violated groups only, usually none
            _take(x, lb, order()[codes[order()] == g], int(sums[g] - hi[g]))
    over = int(x.sum()) - problem.total
    if over > 0:
        _take(x, lb, order(), over)
    price = problem.price_num
    if problem.money_cap is not None and price is not None:
        budget = problem.money_cap * problem.price_den
        if not money_exceeds(price, budget, x)[0]:
            return x
        excess = _money(problem, x) - budget
        dearest = order()[np.argsort(-price[order()], kind="stable")]
        for d in dearest[: np.searchsorted(-price[dearest], 0)]:  # priced deals only
            if excess <= 0:
                break
            cut = min(int(x[d] - lb[d]), -(-excess // int(price[d])))
            x[d] -= cut
            excess -= cut * int(price[d])
    return x


def _greedy(problem: AllocationProblem, x: IntArray, frac: FloatArray, need: int) -> IntArray:
    """Unit-by-unit repair over the fractional deals: first the group minimums, then the
    remaining units by largest remainder, each only where every limit still holds."""
    x = x.copy()
    ub = problem.ub_capped
    s_sum = group_sum(x, problem.seller, problem.n_sellers)
    c_sum = group_sum(x, problem.channel, problem.n_channels)
    money = _money(problem, x)
    money_cap = None if problem.money_cap is None else problem.money_cap * problem.price_den
    price = problem.price_num

    def room(d: int) -> bool:
        q, c = problem.seller[d], problem.channel[d]
        if x[d] >= ub[d] or s_sum[q] >= problem.seller_max[q] or c_sum[c] >= problem.channel_max[c]:
            return False
        return money_cap is None or price is None or money + int(price[d]) <= money_cap

    def add(d: int) -> None:
        nonlocal money, need
        x[d] += 1
        s_sum[problem.seller[d]] += 1
        c_sum[problem.channel[d]] += 1
        money += 0 if price is None else int(price[d])
        need -= 1

    candidates = [int(d) for d in largest_remainder(frac, frac > 0, frac.shape[0])]
    bumped: set[int] = set()
    for d in candidates:  # restore group minimums broken by flooring
        q, c = problem.seller[d], problem.channel[d]
        short = s_sum[q] < problem.seller_min[q] or c_sum[c] < problem.channel_min[c]
        if short and room(d):
            add(d)
            bumped.add(d)
    for d in candidates:  # then the largest remainders, up to the target
        if need <= 0:
            break
        if d not in bumped and room(d):
            add(d)
    return x

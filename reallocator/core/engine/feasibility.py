"""Cheap necessary conditions for feasibility, checked in numpy before any solver runs.

They catch most conflicts in about a millisecond and say *which* limit fails, which the solvers
cannot (OR-Tools has no IIS for LPs). Passing them does not prove feasibility: interactions
between sellers and channels are left to the flow's feasibility step.
"""

from __future__ import annotations

import numpy as np

from reallocator.core.engine.errors import Conflict, InfeasibleProblem
from reallocator.core.engine.problem import (
    AllocationProblem,
    IntArray,
    capped_group_sum,
    capped_total,
)
from reallocator.core.engine.verify import money_exceeds

_HALF_INT64 = int(np.iinfo(np.int64).max) // 2  # the sums' cap, made once (np.iinfo: ~1 us a call)


def _group_conflicts(
    name: str, lo: IntArray, hi: IntArray, lb_sum: IntArray, ub_sum: IntArray
) -> list[Conflict]:
    out: list[Conflict] = []
    for kind, need, have in (
        (f"{name}_min_above_max", lo, hi),
        (f"{name}_min_above_deal_maximums", lo, ub_sum),
        (f"{name}_deal_minimums_above_max", lb_sum, hi),
    ):
        for g in np.flatnonzero(need > have):  # only the failing groups are visited
            out.append(Conflict(kind, int(g), int(need[g]), int(have[g])))
    return out


def necessary_conflicts(problem: AllocationProblem) -> tuple[Conflict, ...]:
    """Every violated necessary condition (empty when none)."""
    total = problem.total
    cap = _HALF_INT64
    lb_total = capped_total(problem.lb, cap)
    out: list[Conflict] = []
    if lb_total > total:
        out.append(Conflict("deal_minimums_above_total", -1, lb_total, total))
    for name, codes, n, lo, hi in (
        ("seller", problem.seller, problem.n_sellers, problem.seller_min, problem.seller_max),
        ("channel", problem.channel, problem.n_channels, problem.channel_min, problem.channel_max),
    ):
        if not lo.any() and bool((hi >= cap).all()):
            # No minimum and no maximum below the cap (the usual case): no condition of this
            # kind can fail, so its sums are not made (~40 us of a 50-deal plan).
            continue
        lb_sum = capped_group_sum(problem.lb, codes, n, cap)
        ub_sum = capped_group_sum(problem.ub_capped, codes, n, cap)
        out += _group_conflicts(name, lo, np.minimum(hi, cap), lb_sum, ub_sum)
        mins = int(np.minimum(lo, cap).sum(dtype=np.float64))
        if mins > total:
            out.append(Conflict(f"{name}_minimums_above_total", -1, mins, total))
    if problem.money_cap is not None and problem.price_num is not None:
        budget = problem.money_cap * problem.price_den
        over, _ = money_exceeds(problem.price_num, budget, problem.lb)
        if over:
            committed = int(np.dot(problem.price_num.astype(object), problem.lb.astype(object)))
            needed = -(-committed // problem.price_den)
            out.append(Conflict("deal_minimums_above_money_cap", -1, needed, problem.money_cap))
    return tuple(out)


def check_necessary(problem: AllocationProblem) -> None:
    conflicts = necessary_conflicts(problem)
    if conflicts:
        raise InfeasibleProblem("the constraints contradict each other", conflicts)

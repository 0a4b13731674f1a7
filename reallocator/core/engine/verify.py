"""Every plan is checked here, in integers, before it leaves the core.

The solvers are trusted for optimality, never for feasibility: min-cost flow works on a
transformed network, GLOP within tolerances, rounding by repair. This module re-derives every
bound and sum from the problem arrays alone and raises `PlanVerificationError` on any breach.
"""

from __future__ import annotations

import numpy as np

from reallocator.core.engine.errors import PlanVerificationError
from reallocator.core.engine.problem import AllocationProblem, IntArray, group_sum
from reallocator.core.engine.result import Binding


def money_exceeds(price: IntArray, budget: int, x: IntArray) -> tuple[bool, float]:
    """sum(price * x) > budget, exactly: a float64 screen settles all but near-ties, which are
    recomputed in Python integers (no int64 overflow possible). Also returns the float sum."""
    rough = float(np.dot(price.astype(np.float64), x.astype(np.float64)))
    if rough < budget * (1 - 1e-9):
        return False, rough
    if rough > budget * (1 + 1e-9) + 1:
        return True, rough
    return int(np.dot(price.astype(object), x.astype(object))) > budget, rough


def verify_allocation(problem: AllocationProblem, x: IntArray) -> Binding:
    """Raise PlanVerificationError unless `x` meets every constraint; else say what binds."""
    n = problem.n_deals
    if x.shape != (n,) or x.dtype != np.int64:
        raise PlanVerificationError((f"allocation must be int64 of shape ({n},)",))
    errors: list[str] = []
    capped = problem.ub_capped  # min(ub, total): above it is above ub or above the total
    low = np.flatnonzero(x < problem.lb)
    high = np.flatnonzero(x > capped)
    if low.size:
        errors.append(f"{low.size} deals below lb (first {int(low[0])})")
    if high.size:
        errors.append(f"{high.size} deals above ub or total (first {int(high[0])})")
    if errors:  # sums below could overflow int64 on such a plan
        raise PlanVerificationError(tuple(errors))
    if float(x.astype(np.float64).sum()) > problem.total * (1 + 1e-12) + 1:
        raise PlanVerificationError(("allocation exceeds the total",))
    delivered = int(x.sum())  # exact: the float screen rules out overflow
    if delivered > problem.total:
        errors.append(f"allocation {delivered} exceeds the total {problem.total}")
    s = group_sum(x, problem.seller, problem.n_sellers)
    c = group_sum(x, problem.channel, problem.n_channels)
    for name, sums, lo, hi in (
        ("seller", s, problem.seller_min, problem.seller_max),
        ("channel", c, problem.channel_min, problem.channel_max),
    ):
        for g in np.flatnonzero(sums < lo):
            errors.append(f"{name} {int(g)} total {int(sums[g])} below min {int(lo[g])}")
        for g in np.flatnonzero(sums > hi):
            errors.append(f"{name} {int(g)} total {int(sums[g])} above max {int(hi[g])}")
    money_bind = False
    if problem.money_cap is not None and problem.price_num is not None:
        budget = problem.money_cap * problem.price_den
        exceeds, rough = money_exceeds(problem.price_num, budget, x)
        if exceeds:
            errors.append(f"money above the cap {problem.money_cap}")
        # Binding: not even the dearest deal could take one more unit.
        money_bind = rough + float(problem.price_num.max(initial=0)) > budget * (1 - 1e-12)
    if errors:
        raise PlanVerificationError(tuple(errors))
    return Binding(
        seller_at_min=(s == problem.seller_min) & (problem.seller_min > 0),
        seller_at_max=s == problem.seller_max,
        channel_at_min=(c == problem.channel_min) & (problem.channel_min > 0),
        channel_at_max=c == problem.channel_max,
        deals_at_lb=int((x == problem.lb).sum()),
        deals_at_ub=int((x == capped).sum()),
        total=delivered == problem.total,
        money=money_bind,
    )

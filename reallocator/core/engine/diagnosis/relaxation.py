"""Relaxation amounts per bound, as arrays: applied to a problem, turned into named
violations, priced; and the exact integer check that a (relaxed) problem is feasible."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from reallocator.core.engine.diagnosis.names import ViolationKind
from reallocator.core.engine.diagnosis.outcome import RelaxationWeights, Violation
from reallocator.core.engine.errors import InfeasibleProblem
from reallocator.core.engine.feasibility import necessary_conflicts
from reallocator.core.engine.flow import fits_network, max_deliverable, min_money
from reallocator.core.engine.lp import deliverable_lp
from reallocator.core.engine.problem import NO_MAX, AllocationProblem, IntArray


@dataclass(eq=False)
class Relaxation:
    """Relaxation amounts per bound (all >= 0): minimums come down, maximums go up."""

    seller_min: IntArray
    seller_max: IntArray
    channel_min: IntArray
    channel_max: IntArray
    deal_min: IntArray
    deal_max: IntArray
    money: int = 0

    @classmethod
    def zeros(cls, p: AllocationProblem) -> Relaxation:
        def z(k: int) -> IntArray:
            return np.zeros(k, np.int64)

        s, c, n = p.n_sellers, p.n_channels, p.n_deals
        return cls(z(s), z(s), z(c), z(c), z(n), z(n))

    def arrays(self) -> tuple[tuple[ViolationKind, IntArray], ...]:
        return (
            (ViolationKind.SELLER_MIN, self.seller_min),
            (ViolationKind.SELLER_MAX, self.seller_max),
            (ViolationKind.CHANNEL_MIN, self.channel_min),
            (ViolationKind.CHANNEL_MAX, self.channel_max),
            (ViolationKind.DEAL_MIN, self.deal_min),
            (ViolationKind.DEAL_MAX, self.deal_max),
        )

    def bumped(self, extra: int) -> Relaxation:
        """Every positive amount raised by `extra` (within what each bound allows)."""

        def up(a: IntArray) -> IntArray:
            return np.where(a > 0, a + extra, a)

        money = self.money + extra if self.money > 0 else 0
        return Relaxation(
            up(self.seller_min),
            up(self.seller_max),
            up(self.channel_min),
            up(self.channel_max),
            up(self.deal_min),
            up(self.deal_max),
            money,
        )


def _raise(bound: IntArray, amount: IntArray) -> IntArray:
    out: IntArray = np.where((amount > 0) & (bound != NO_MAX), bound + amount, bound)
    return out


def clipped(p: AllocationProblem, r: Relaxation) -> Relaxation:
    """`r` within what each bound of `p` allows: a minimum never below 0, a missing maximum
    (or money cap) stays missing. What `apply_relaxation` moves and `violations_of` names."""
    return Relaxation(
        seller_min=np.minimum(r.seller_min, p.seller_min),
        seller_max=np.where(p.seller_max == NO_MAX, 0, r.seller_max),
        channel_min=np.minimum(r.channel_min, p.channel_min),
        channel_max=np.where(p.channel_max == NO_MAX, 0, r.channel_max),
        deal_min=np.minimum(r.deal_min, p.lb),
        deal_max=np.where(p.ub == NO_MAX, 0, r.deal_max),
        money=0 if p.money_cap is None else r.money,
    )


def apply_relaxation(p: AllocationProblem, r: Relaxation) -> AllocationProblem:
    """The problem with the bounds moved by `r`, clipped (`clipped`)."""
    r = clipped(p, r)
    money_cap = p.money_cap
    if money_cap is not None and r.money:
        money_cap += r.money
    return replace(
        p,
        seller_min=p.seller_min - r.seller_min,
        seller_max=_raise(p.seller_max, r.seller_max),
        channel_min=p.channel_min - r.channel_min,
        channel_max=_raise(p.channel_max, r.channel_max),
        lb=p.lb - r.deal_min,
        ub=_raise(p.ub, r.deal_max),
        money_cap=money_cap,
    )


def violations_of(p: AllocationProblem, r: Relaxation) -> tuple[Violation, ...]:
    bounds = {
        ViolationKind.SELLER_MIN: p.seller_min,
        ViolationKind.SELLER_MAX: p.seller_max,
        ViolationKind.CHANNEL_MIN: p.channel_min,
        ViolationKind.CHANNEL_MAX: p.channel_max,
        ViolationKind.DEAL_MIN: p.lb,
        ViolationKind.DEAL_MAX: p.ub,
    }
    out: list[Violation] = []
    for kind, amounts in r.arrays():
        idx = np.flatnonzero(amounts > 0)  # only the bounds that move
        out += [
            Violation(kind, i, b, a)
            for i, b, a in zip(
                idx.tolist(), bounds[kind][idx].tolist(), amounts[idx].tolist(), strict=True
            )
        ]
    if r.money > 0 and p.money_cap is not None:
        out.append(Violation(ViolationKind.MONEY_CAP, -1, p.money_cap, r.money))
    return tuple(out)


def weighted_cost(violations: tuple[Violation, ...], weights: RelaxationWeights) -> float:
    return float(sum(weights.of(v.kind) * v.relaxation for v in violations))


def is_feasible(problem: AllocationProblem) -> bool:
    """Whether some integer plan meets every bound. Exact in integers by min-cost flow: the max
    deliverable flow without a money cap, the least-money flow with one. Only when totals or
    prices are too large for int64 flow costs does the LP decide (within GLOP's tolerances; a
    point of the LP is enough there, since the network polytope is integral and one side
    constraint keeps an integer point)."""
    if necessary_conflicts(problem):
        return False
    try:
        if problem.money_cap is None and fits_network(problem):
            max_deliverable(problem)
            return True
        if problem.money_cap is not None:
            money = min_money(problem)
            if money is not None:
                return money <= problem.money_cap * problem.price_den
        deliverable_lp(problem)
    except InfeasibleProblem:
        return False
    return True

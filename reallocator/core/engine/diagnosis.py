"""When the constraints cannot all hold: which ones give way, and by how little.

`diagnose(problem, weights)` finds the smallest relaxation of the problem's bounds that makes it
feasible, names every bound it moves and builds the relaxed problem, so a caller can reject the
request with an explanation or `solve` the relaxed problem for the closest plan
(`solve_or_relax` does either).

What may move, and what it costs per budget unit (`RelaxationWeights`, from the policy):

    seller / channel minimum  (lowered)     group            default   1
    seller / channel maximum  (raised)      group * 1.0001             1.0001
    deal minimum, lb_d        (lowered)     commitment                10
    deal maximum, ub_d        (raised)      limit                    100
    money cap                 (raised)      money_cap       default: never
    the budget (total)                                               never

"Smallest" means minimal in this weighted sum: a relaxation that costs less under the weights
does not exist, but several relaxations may tie (e.g. which of two sellers' minimums gives way
when their sum is above the budget) and the one returned is one of them, chosen
deterministically. Maximums cost 1.0001x their class weight so that at equal weight a minimum
(a goal) gives way before a maximum (a cap); the weighted sum minimised is the one with that
premium. Deal minimums lb_d come from commitments, locks and step limits and deal maximums from
caps, capacity and step limits (bounds.py): the names say which bound moves, the caller's
BoundsReport says why it was there.

Two steps, cheapest first:

1. Sum checks (the necessary conditions of feasibility.py, per group and against the budget),
   each turned into the relaxation it forces: a group's interval [min, max] must meet
   [sum of its deals' lb, min(sum of its deals' ub, total)], and the minimums of one grouping
   must sum to at most the total (the largest minimums give way first, ties to the lower code).
   When these relaxations alone make the problem feasible (checked exactly, see below), they
   are minimal whenever deal bounds cost at least twice a group bound (the default
   1/10/100): a deal bound sits in one seller's and one channel's sums, so moving it can
   replace at most two units of group relaxation, and each side's forced relaxation is
   1-Lipschitz in every deal bound. Otherwise, or when the
   conflict involves deal commitments against the budget or the money cap, step 2 decides.
2. Elastic model: every relaxable bound gets a non-negative slack priced by the weights; the
   budget and (unless weighted) the money cap stay hard; the weighted slack is minimised.
   Deals of one (channel, seller) pair are interchangeable here (same rows, same weights), so
   the model runs on pairs (a few thousand columns whatever the deal count), and without a
   money cap it is a network: a min-cost flow (`_elastic_flow`) solves it exactly in integers
   (weights scaled to integer costs at 2**30 resolution). A pair's lowered commitment is then
   taken from its deals with the largest lb first (fewest deals named, ties to the lower
   index); a raised maximum goes to its deal with the largest ub.
   With a money cap the flow's answer is a relaxation of the priced problem: if it meets the
   cap it is optimal (and it does whenever the cap is not part of the conflict); otherwise an
   elastic LP over deals with the money row decides (ModelBuilder from sparse arrays, GLOP
   dual simplex, `_elastic`). Its slacks are rounded up to integers (values within 1e-6 of an
   integer are noise and snapped) and the relaxed problem is re-checked; if rounding left it
   infeasible, the slacks are rounded up plainly, then widened by one unit, then by 1e-6 of
   the total (GLOP's feasibility tolerance is relative), each attempt noted. The LP also
   serves pairs when the total is too large for int64 flow sums.
   Why not the LP everywhere: GLOP's primal tolerance (1e-8, on the scaled model) lets a hard
   row such as the budget be overrun by a few units on large amounts: with a total of 2**31
   units (about $2,000 in micros) a needed relaxation of 7 units came back as 0. The flow is
   exact.

Feasibility is always re-checked in integers (`is_feasible`): the max deliverable flow, and
with a money cap the least-money flow against the cap.

Amounts are int64 budget units (micros of money for the money cap), like the problem's.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from ortools.graph.python import min_cost_flow

from reallocator.core.engine.errors import Conflict, InfeasibleProblem, NoFeasiblePlan
from reallocator.core.engine.feasibility import necessary_conflicts
from reallocator.core.engine.flow import cost_resolution, fits_network, max_deliverable, min_money
from reallocator.core.engine.lp import deliverable_lp, run_glop, sparse_model, value_stage
from reallocator.core.engine.problem import (
    NO_MAX,
    AllocationProblem,
    CodeArray,
    FloatArray,
    IntArray,
    capped_group_sum,
)
from reallocator.core.engine.result import AllocationResult
from reallocator.core.model import Policy

MAX_PREMIUM = 1e-4
"""Relative extra weight of a maximum over a minimum of the same class (see module docstring).
Far above GLOP's optimality tolerances and the flow's cost resolution, so the tie is broken
reliably."""

_SMCF = min_cost_flow.SimpleMinCostFlow

_SNAP = 1e-6


class ViolationKind(StrEnum):
    SELLER_MIN = "seller_min"
    SELLER_MAX = "seller_max"
    CHANNEL_MIN = "channel_min"
    CHANNEL_MAX = "channel_max"
    DEAL_MIN = "deal_min"
    DEAL_MAX = "deal_max"
    MONEY_CAP = "money_cap"
    TOTAL = "total"  # never relaxed by diagnose; marginal_check can move it


_TEMPLATE: dict[ViolationKind, str] = {
    ViolationKind.SELLER_MIN: "seller/{}/min_total",
    ViolationKind.SELLER_MAX: "seller/{}/max_total",
    ViolationKind.CHANNEL_MIN: "channel/{}/min_total",
    ViolationKind.CHANNEL_MAX: "channel/{}/max_total",
    ViolationKind.DEAL_MIN: "deal/{}/min_allocation",
    ViolationKind.DEAL_MAX: "deal/{}/max_allocation",
    ViolationKind.MONEY_CAP: "money_cap",
    ViolationKind.TOTAL: "total",
}
_LOWERED = frozenset({ViolationKind.SELLER_MIN, ViolationKind.CHANNEL_MIN, ViolationKind.DEAL_MIN})
_WORDS: dict[ViolationKind, tuple[str, str]] = {
    ViolationKind.SELLER_MIN: ("seller", "minimum"),
    ViolationKind.SELLER_MAX: ("seller", "maximum"),
    ViolationKind.CHANNEL_MIN: ("channel", "minimum"),
    ViolationKind.CHANNEL_MAX: ("channel", "maximum"),
    ViolationKind.DEAL_MIN: ("deal", "minimum allocation"),
    ViolationKind.DEAL_MAX: ("deal", "maximum allocation"),
}
_NAME = re.compile(
    r"^(seller|channel|deal)/(\d+)/(min_total|max_total|min_allocation|max_allocation)$"
)
_PARSE: dict[tuple[str, str], ViolationKind] = {
    ("seller", "min_total"): ViolationKind.SELLER_MIN,
    ("seller", "max_total"): ViolationKind.SELLER_MAX,
    ("channel", "min_total"): ViolationKind.CHANNEL_MIN,
    ("channel", "max_total"): ViolationKind.CHANNEL_MAX,
    ("deal", "min_allocation"): ViolationKind.DEAL_MIN,
    ("deal", "max_allocation"): ViolationKind.DEAL_MAX,
}


@dataclass(frozen=True)
class RelaxationWeights:
    """Cost per budget unit of moving each class of bound (all > 0). `money_cap` None keeps the
    money cap hard, like the budget; a weight makes it elastic (cost per micro)."""

    group: float = 1.0
    commitment: float = 10.0
    limit: float = 100.0
    money_cap: float | None = None

    def __post_init__(self) -> None:
        weights = [self.group, self.commitment, self.limit]
        if self.money_cap is not None:
            weights.append(self.money_cap)
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError("relaxation weights must be finite and > 0")

    @classmethod
    def from_policy(cls, policy: Policy) -> RelaxationWeights:
        return cls(policy.relax_group, policy.relax_commitment, policy.relax_limit)

    def of(self, kind: ViolationKind) -> float:
        if kind in (ViolationKind.SELLER_MIN, ViolationKind.CHANNEL_MIN):
            return self.group
        if kind in (ViolationKind.SELLER_MAX, ViolationKind.CHANNEL_MAX):
            return self.group * (1 + MAX_PREMIUM)
        if kind is ViolationKind.DEAL_MIN:
            return self.commitment
        if kind is ViolationKind.DEAL_MAX:
            return self.limit
        if kind is ViolationKind.MONEY_CAP and self.money_cap is not None:
            return self.money_cap
        return math.inf

    @property
    def cheap_is_minimal(self) -> bool:
        """The sum-check relaxations are minimal (module docstring, step 1)."""
        return min(self.commitment, self.limit) >= 2 * self.group * (1 + MAX_PREMIUM)


@dataclass(frozen=True)
class Violation:
    """One bound that gives way: `bound` as given, `relaxation` (> 0) the integer amount it
    moves (minimums down, maximums up), rounded up so that moving it that far is enough."""

    kind: ViolationKind
    index: int  # seller code, channel code or deal index; -1 for the money cap
    bound: int
    relaxation: int

    @property
    def name(self) -> str:
        """Stable name with the engine's codes, e.g. ``seller/7/min_total``."""
        return self.named(str(self.index))

    def named(self, entity_id: str) -> str:
        """The same name with the caller's id for the entity (``seller/S7/min_total``)."""
        return _TEMPLATE[self.kind].format(entity_id)

    @property
    def relaxed_bound(self) -> int:
        if self.kind in _LOWERED:
            return self.bound - self.relaxation
        return self.bound + self.relaxation

    def describe(self, entity: str, amount: str) -> str:
        """In words, from the caller's label and formatted amount:
        ``describe("S7", "$976,266.61")`` -> "relax seller S7's minimum by $976,266.61"."""
        if self.kind is ViolationKind.MONEY_CAP:
            return f"raise the money cap by {amount}"
        if self.kind is ViolationKind.TOTAL:
            return f"raise the budget by {amount}"
        what, bound = _WORDS[self.kind]
        return f"relax {what} {entity}'s {bound} by {amount}"

    def __str__(self) -> str:
        return f"{self.name}: {self.bound} -> {self.relaxed_bound} (by {self.relaxation})"


@dataclass(frozen=True, eq=False)
class Diagnosis:
    violations: tuple[Violation, ...]  # every bound moved, in a stable order; empty if feasible
    relaxed_problem: AllocationProblem  # the problem with exactly those bounds moved
    cheap: bool  # found by the sum checks alone (no elastic model)
    conflicts: tuple[Conflict, ...] = ()  # what the sum checks reported on the original problem
    cost: float = 0.0  # sum of weight * relaxation (the quantity minimised)
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        """The original problem needed no relaxation."""
        return not self.violations

    def summary(self, limit: int = 10) -> str:
        parts = [str(v) for v in self.violations[:limit]]
        more = len(self.violations) - limit
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


@dataclass(eq=False)
class _Relax:
    """Relaxation amounts per bound (all >= 0): minimums come down, maximums go up."""

    seller_min: IntArray
    seller_max: IntArray
    channel_min: IntArray
    channel_max: IntArray
    deal_min: IntArray
    deal_max: IntArray
    money: int = 0

    @classmethod
    def zeros(cls, p: AllocationProblem) -> _Relax:
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

    def bumped(self, extra: int) -> _Relax:
        """Every positive amount raised by `extra` (within what each bound allows)."""

        def up(a: IntArray) -> IntArray:
            return np.where(a > 0, a + extra, a)

        money = self.money + extra if self.money > 0 else 0
        return _Relax(
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


def _apply(p: AllocationProblem, r: _Relax) -> AllocationProblem:
    """The problem with the bounds moved; amounts are clipped to what each bound allows (a
    minimum never below 0, a missing maximum stays missing)."""
    r.seller_min = np.minimum(r.seller_min, p.seller_min)
    r.channel_min = np.minimum(r.channel_min, p.channel_min)
    r.deal_min = np.minimum(r.deal_min, p.lb)
    r.seller_max = np.where(p.seller_max == NO_MAX, 0, r.seller_max)
    r.channel_max = np.where(p.channel_max == NO_MAX, 0, r.channel_max)
    r.deal_max = np.where(p.ub == NO_MAX, 0, r.deal_max)
    money_cap = p.money_cap
    if money_cap is None:
        r.money = 0
    elif r.money:
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


def _violations(p: AllocationProblem, r: _Relax) -> tuple[Violation, ...]:
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


def _cost(violations: tuple[Violation, ...], weights: RelaxationWeights) -> float:
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


# --- step 1: the sum checks ---------------------------------------------------------------


def _side(
    codes: CodeArray,
    n: int,
    lo: IntArray,
    hi: IntArray,
    p: AllocationProblem,
) -> tuple[IntArray, IntArray]:
    """Forced relaxation of one grouping's (min, max): the interval must meet
    [sum lb, min(sum ub, total)], then the minimums must fit the total together."""
    total = p.total
    lb_sum = capped_group_sum(p.lb, codes, n, NO_MAX // 2)
    ub_sum = capped_group_sum(p.ub_capped, codes, n, total)
    new_max = np.where(hi == NO_MAX, hi, np.maximum(hi, lb_sum))
    new_min = np.minimum(np.minimum(lo, new_max), ub_sum)  # <= total
    excess = int(new_min.astype(object).sum()) - total
    if excess > 0:  # the largest minimums give way first, ties to the lower code
        order = np.lexsort((np.arange(n), -new_min))
        mins = new_min[order].astype(object)
        before = np.cumsum(mins) - mins
        cut = np.minimum(mins, np.maximum(excess - before, 0)).astype(np.int64)
        new_min[order] -= cut
    return lo - new_min, new_max - hi


def _cheap(
    p: AllocationProblem, conflicts: tuple[Conflict, ...], w: RelaxationWeights
) -> _Relax | None:
    if not conflicts or not w.cheap_is_minimal:
        return None
    if any(c.kind.startswith("deal_minimums_above") for c in conflicts):
        return None  # commitments against the budget / money cap: which deals is the LP's call
    r = _Relax.zeros(p)
    r.seller_min, r.seller_max = _side(p.seller, p.n_sellers, p.seller_min, p.seller_max, p)
    r.channel_min, r.channel_max = _side(p.channel, p.n_channels, p.channel_min, p.channel_max, p)
    return r


# --- step 2: the elastic model ------------------------------------------------------------


def _flow_fits(p: AllocationProblem) -> bool:
    """Every node's arcs (three per neighbour, each up to the total) stay within int64."""
    return p.total * 3 * (max(p.n_channels, p.n_sellers) + 2) < 2**63


def _penalty_arcs(
    lo: IntArray, hi: IntArray, total: int, cost_min: int, cost_max: int
) -> tuple[IntArray, IntArray]:
    """A group total's elastic penalty as three parallel arcs (capacities, costs), convex:
    up to min(lo, hi) each unit lowers the minimum's slack (-cost_min); between lo and hi
    nothing moves (0), or, when lo > hi, one slack trades for the other; above both the
    maximum's slack grows (+cost_max, nothing when the maximum cannot bind)."""
    hi_e = np.minimum(hi, total)
    a, b = np.minimum(lo, hi_e), np.maximum(lo, hi_e)
    n = lo.shape[0]
    middle = np.where(lo > hi_e, cost_max - cost_min, 0)
    top = np.where(hi < total, cost_max, 0)
    caps = np.concatenate([a, b - a, total - b])
    costs = np.concatenate([np.full(n, -cost_min), middle, top])
    return caps.astype(np.int64), costs.astype(np.int64)


def _elastic_flow(p: AllocationProblem, w: RelaxationWeights) -> _Relax:
    """The elastic problem on (channel, seller) pairs as a min-cost flow, exact in integers:

        source --3 penalty arcs--> channel --3 arcs per pair--> seller --3 penalty arcs--> sink
        source ------------------------- unspent (cost 0) --------------------------> sink

    with supply `total`; a pair's arcs are its commitments (-commitment per unit kept), the
    rest up to its deals' maxima (0) and beyond them (+limit). Weights become integer costs
    at a resolution of 2**30 for the largest (relative error below 1e-9 of it)."""
    total = p.total
    c, s = p.n_channels, p.n_sellers
    r = _Relax.zeros(p)
    lb = np.minimum(p.lb, total)  # forced parts first, as in the LP
    cmin, smin = np.minimum(p.channel_min, total), np.minimum(p.seller_min, total)
    r.deal_min = p.lb - lb
    r.channel_min, r.seller_min = p.channel_min - cmin, p.seller_min - smin
    u = _pair_units(p, lb)
    m = u.lb.shape[0]
    sink = 1 + c + s
    wmax = w.group * (1 + MAX_PREMIUM)
    scale = cost_resolution(sink + 1) / max(w.group, wmax, w.commitment, w.limit)

    def cost(weight: float) -> int:
        return round(weight * scale)

    ch_caps, ch_costs = _penalty_arcs(cmin, p.channel_max, total, cost(w.group), cost(wmax))
    se_caps, se_costs = _penalty_arcs(smin, p.seller_max, total, cost(w.group), cost(wmax))
    i32 = np.int32
    tail = np.concatenate(
        [np.zeros(3 * c, i32), np.tile(1 + u.channel, 3), np.tile(1 + c + np.arange(s), 3), [0]]
    ).astype(i32)
    head = np.concatenate(
        [np.tile(1 + np.arange(c), 3), np.tile(1 + c + u.seller, 3), np.full(3 * s + 1, sink)]
    ).astype(i32)
    caps = np.concatenate([ch_caps, u.lb, u.ub - u.lb, u.room, se_caps, [total]])
    costs = np.concatenate(
        [
            ch_costs,
            np.full(m, -cost(w.commitment)),
            np.zeros(m),
            np.full(m, cost(w.limit)),
            se_costs,
            [0],
        ]
    )
    smcf = _SMCF()
    index = smcf.add_arcs_with_capacity_and_unit_cost(
        tail, head, caps.astype(np.int64), costs.astype(np.int64)
    )
    supply = np.zeros(sink + 1, np.int64)
    supply[0], supply[sink] = total, -total
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=i32), supply)
    status = smcf.solve()
    if status != _SMCF.OPTIMAL:
        raise NoFeasiblePlan(f"elastic flow ended with status {status.name}")
    flow = smcf.flows(np.asarray(index))
    x_channel = flow[:c] + flow[c : 2 * c] + flow[2 * c : 3 * c]
    k = 3 * c
    x_pair = flow[k : k + m] + flow[k + m : k + 2 * m] + flow[k + 2 * m : k + 3 * m]
    k += 3 * m
    x_seller = flow[k : k + s] + flow[k + s : k + 2 * s] + flow[k + 2 * s : k + 3 * s]
    r.channel_min += np.maximum(cmin - x_channel, 0)
    r.channel_max = np.where(p.channel_max < total, np.maximum(x_channel - p.channel_max, 0), 0)
    r.seller_min += np.maximum(smin - x_seller, 0)
    r.seller_max = np.where(p.seller_max < total, np.maximum(x_seller - p.seller_max, 0), 0)
    assert u.pair is not None
    r.deal_min += _spread(lb, u.pair, np.maximum(u.lb_full - x_pair, 0))
    r.deal_max = _first_of_pair(p.ub_capped, u.pair, np.maximum(x_pair - u.ub, 0))
    return r


@dataclass(frozen=True, eq=False)
class _Units:
    """What the elastic model allocates to: deals, or (channel, seller) pairs of deals."""

    channel: IntArray
    seller: IntArray
    lb_full: IntArray  # commitments in full
    lb: IntArray  # min(commitments, total): the part the LP can keep
    ub: IntArray  # min(sum of ub, total) >= lb
    room: IntArray  # how far ub may be raised (up to the total)
    price: FloatArray | None  # money per unit (per-deal units only)
    pair: IntArray | None  # pair code of each deal (pair units only)


def _pair_units(p: AllocationProblem, lb: IntArray) -> _Units:
    s, total = p.n_sellers, p.total
    keys, code = np.unique(p.channel.astype(np.int64) * s + p.seller, return_inverse=True)
    n_pairs = keys.shape[0]
    lb_sum = capped_group_sum(lb, code.astype(np.int32), n_pairs, NO_MAX // 2)
    ub_sum = capped_group_sum(p.ub_capped, code.astype(np.int32), n_pairs, total)
    kept = np.minimum(lb_sum, total)
    return _Units(
        channel=keys // s,
        seller=keys % s,
        lb_full=lb_sum,
        lb=kept,
        ub=np.maximum(ub_sum, kept),
        room=total - ub_sum,
        price=None,
        pair=code.astype(np.int64),
    )


def _deal_units(p: AllocationProblem, lb: IntArray) -> _Units:
    ub = p.ub_capped
    price = None if p.price_num is None else p.price_num / p.price_den
    ch, se = p.channel.astype(np.int64), p.seller.astype(np.int64)
    return _Units(ch, se, lb, lb, ub, p.total - ub, price, None)


def _tolerance(v: FloatArray) -> FloatArray:
    out: FloatArray = _SNAP * np.maximum(1.0, 1e-8 * np.abs(v))
    return out


def _snap_up(v: FloatArray) -> IntArray:
    """Round up, except values within solver noise of an integer, which snap to it."""
    near = np.rint(v)
    out = np.where(np.abs(v - near) <= _tolerance(v), near, np.ceil(v))
    return np.maximum(out, 0).astype(np.int64)


def _snap_down(v: FloatArray) -> IntArray:
    near = np.rint(v)
    out = np.where(np.abs(v - near) <= _tolerance(v), near, np.floor(v))
    return np.maximum(out, 0).astype(np.int64)


def _plain_up(v: FloatArray) -> IntArray:
    return np.maximum(np.ceil(v), 0).astype(np.int64)


def _plain_down(v: FloatArray) -> IntArray:
    return np.maximum(np.floor(v), 0).astype(np.int64)


def _no_max(bound: IntArray, total: int) -> FloatArray:
    out = bound.astype(np.float64)
    out[bound >= total] = math.inf  # never binding: the units sum to at most the total
    return out


def _elastic(p: AllocationProblem, w: RelaxationWeights, per_deal: bool, plain: bool) -> _Relax:
    """Minimise weighted slack (module docstring, step 2); `plain` rounds every slack up
    without snapping.

    Columns: per unit its committed part k in [0, lb] (cost -commitment: each unit of lb not
    kept costs `commitment`), its free part in [0, ub - lb] (cost 0) and its part above ub in
    [0, room] (cost `limit`); per group the slack of its minimum (cost group) and of its
    maximum (cost group * 1.0001); the money slack when the money cap is weighted.
    Rows: per channel "X + slack >= min" and "X - slack <= max", the same per seller, the
    total "sum <= total" (hard), and the money cap (hard unless weighted) on per-deal units."""
    total = p.total
    c, s = p.n_channels, p.n_sellers
    r = _Relax.zeros(p)
    # Forced parts first, so the LP sees numbers <= total only: no deal keeps a minimum above
    # the budget, nor a group.
    lb = np.minimum(p.lb, total)
    cmin = np.minimum(p.channel_min, total)
    smin = np.minimum(p.seller_min, total)
    r.deal_min = p.lb - lb
    r.channel_min = p.channel_min - cmin
    r.seller_min = p.seller_min - smin
    u = _deal_units(p, lb) if per_deal else _pair_units(p, lb)
    m = u.lb.shape[0]
    priced = p.money_cap is not None and u.price is not None
    money_slack = priced and w.money_cap is not None

    g = 2 * (c + s)  # group rows: channel min, channel max, seller min, seller max
    col_ub = np.concatenate(
        [
            u.lb,
            u.ub - u.lb,
            u.room,
            cmin,
            np.where(p.channel_max < total, total - p.channel_max, 0),
            smin,
            np.where(p.seller_max < total, total - p.seller_max, 0),
            [math.inf if money_slack else 0.0],
        ]
    ).astype(np.float64)
    wmax = w.group * (1 + MAX_PREMIUM)
    cost = np.concatenate(
        [
            np.full(m, -w.commitment),
            np.zeros(m),
            np.full(m, w.limit),
            np.full(c, w.group),
            np.full(c, wmax),
            np.full(s, w.group),
            np.full(s, wmax),
            [w.money_cap or 0.0],
        ]
    )
    unit_col = np.arange(3 * m, dtype=np.int64)
    ch, se = np.tile(u.channel, 3), np.tile(u.seller, 3)
    slack_col = 3 * m + np.arange(g, dtype=np.int64)
    rows: list[IntArray] = [ch, c + ch, 2 * c + se, 2 * c + s + se, np.full(3 * m, g)]
    cols: list[IntArray] = [unit_col] * 5 + [slack_col]
    coefs: list[FloatArray] = [np.ones(3 * m)] * 5
    rows.append(np.arange(g, dtype=np.int64))  # each group slack sits in its own row
    coefs.append(np.repeat([1.0, -1.0, 1.0, -1.0], [c, c, s, s]))
    inf = np.full(c + s, math.inf)
    row_lb = np.concatenate([cmin, -inf[:c], smin, -inf[:s], [-math.inf]])
    row_ub = np.concatenate(
        [inf[:c], _no_max(p.channel_max, total), inf[:s], _no_max(p.seller_max, total), [total]]
    )
    if priced and u.price is not None and p.money_cap is not None:
        rows += [np.full(3 * m, g + 1), np.array([g + 1])]
        cols += [unit_col, np.array([3 * m + g])]
        coefs += [np.tile(u.price, 3), np.array([-1.0])]
        row_lb = np.append(row_lb, -math.inf)
        row_ub = np.append(row_ub, float(p.money_cap))
    row_i, col_i, coef = np.concatenate(rows), np.concatenate(cols), np.concatenate(coefs)
    keep = col_ub > 0  # empty columns never reach the solver: the kept ones are renumbered
    renumber = np.cumsum(keep) - 1
    entry = keep[col_i]
    model = sparse_model(
        np.zeros(int(keep.sum())),
        col_ub[keep],
        cost[keep],
        row_lb.astype(np.float64),
        row_ub.astype(np.float64),
        (row_i[entry], renumber[col_i[entry]], coef[entry]),
        maximize=False,
    )
    run = run_glop(model, p.time_limit)
    if run.values is None or not run.optimal:
        raise NoFeasiblePlan(f"elastic LP ended with status {run.status.name}")
    v = np.zeros(col_ub.shape[0])
    v[keep] = run.values

    up, down = (_plain_up, _plain_down) if plain else (_snap_up, _snap_down)
    short = u.lb_full - np.minimum(down(v[:m]), u.lb)  # commitment not kept, rounded up
    above = np.minimum(up(v[2 * m : 3 * m]), u.room)
    k = 3 * m
    r.channel_min += up(v[k : k + c])
    r.channel_max = up(v[k + c : k + 2 * c])
    r.seller_min += up(v[k + 2 * c : k + 2 * c + s])
    r.seller_max = up(v[k + 2 * c + s : k + g])
    r.money = int(up(v[-1:])[0]) if money_slack else 0
    if u.pair is None:
        r.deal_min += short
        r.deal_max = above
    else:
        r.deal_min += _spread(lb, u.pair, short)
        r.deal_max = _first_of_pair(p.ub_capped, u.pair, above)
    return r


def _spread(lb: IntArray, pair: IntArray, short: IntArray) -> IntArray:
    """Each pair's lowered commitment taken from its deals, largest lb first (ties to the lower
    index), vectorised: a grouped running sum over deals sorted by (pair, -lb, index)."""
    n = lb.shape[0]
    order = np.lexsort((np.arange(n), -lb, pair))
    sorted_lb = lb[order]
    running = np.cumsum(sorted_lb) - sorted_lb  # before each deal, over all pairs
    first = np.searchsorted(pair[order], pair[order], side="left")
    before = running - running[first]  # before each deal, within its pair
    take = np.clip(short[pair[order]] - before, 0, sorted_lb)
    out = np.zeros(n, np.int64)
    out[order] = take
    return out


def _first_of_pair(ub: IntArray, pair: IntArray, above: IntArray) -> IntArray:
    """Each pair's raised maximum given to its deal with the largest ub (ties: lower index)."""
    n = ub.shape[0]
    out = np.zeros(n, np.int64)
    if not (above > 0).any():
        return out
    order = np.lexsort((np.arange(n), -ub, pair))
    lead = order[np.searchsorted(pair[order], np.arange(above.shape[0]), side="left")]
    out[lead] = above
    return out


# --- the entry points ---------------------------------------------------------------------


def _finish(
    p: AllocationProblem,
    r: _Relax,
    w: RelaxationWeights,
    cheap: bool,
    conflicts: tuple[Conflict, ...],
    t0: float,
    notes: tuple[str, ...] = (),
) -> Diagnosis:
    relaxed = _apply(p, r)
    violations = _violations(p, r)
    return Diagnosis(
        violations,
        relaxed,
        cheap,
        conflicts,
        _cost(violations, w),
        time.perf_counter() - t0,
        notes,
    )


def diagnose(
    problem: AllocationProblem, weights: RelaxationWeights, *, try_cheap: bool = True
) -> Diagnosis:
    """The smallest weighted relaxation that makes `problem` feasible (module docstring).

    A feasible problem comes back unchanged with no violations. `try_cheap=False` skips the
    sum checks (tests compare both steps). Raises NoFeasiblePlan only if a solver cannot
    finish (GLOP's time limit is the problem's, per solve)."""
    t0 = time.perf_counter()
    conflicts = necessary_conflicts(problem)
    if not conflicts and is_feasible(problem):
        return Diagnosis((), problem, True, (), 0.0, time.perf_counter() - t0)
    if try_cheap:
        r = _cheap(problem, conflicts, weights)
        if r is not None and is_feasible(_apply(problem, r)):
            return _finish(problem, r, weights, True, conflicts, t0)

    if _flow_fits(problem):
        # Exact on pairs; with a money cap a relaxation of the priced problem (optimal if its
        # answer meets the cap anyway, as it does when the cap is not what conflicts).
        r = _elastic_flow(problem, weights)
        if is_feasible(_apply(problem, r)):
            return _finish(problem, r, weights, False, conflicts, t0)
        attempts = []
    else:
        attempts = [(False, bump) for bump in _BUMPS]  # totals too large for the flow: LP
    priced = problem.money_cap is not None
    attempts += [(True, bump) for bump in _BUMPS] if priced else []
    for per_deal, bump in attempts:
        plain = bump is not None
        r = _elastic(problem, weights, per_deal, plain)
        extra = 0 if bump is None else max(bump, math.ceil(bump * 1e-7 * problem.total))
        r = r.bumped(extra) if extra else r
        if is_feasible(_apply(problem, r)):
            notes = []
            if per_deal:
                notes.append("per-deal elastic LP: the money cap is part of the conflict")
            if plain:
                notes.append(f"LP slacks rounded up plainly, plus {extra} units")
            return _finish(problem, r, weights, False, conflicts, t0, tuple(notes))
    raise NoFeasiblePlan("no relaxation found feasible: " + "; ".join(map(str, conflicts)))


_BUMPS: tuple[int | None, ...] = (None, 0, 1, 10)
"""LP rounding attempts: snap noise then round up; round up plainly; plus one unit; plus
max(10, 1e-6 of the total) (GLOP's feasibility tolerance is relative, after scaling)."""


def solve_or_relax(
    problem: AllocationProblem, weights: RelaxationWeights, relax: bool
) -> tuple[AllocationResult, Diagnosis | None]:
    """`solve(problem)`; when its constraints contradict each other, diagnose and either raise
    InfeasibleProblem carrying the diagnosis (`relax` False: the caller rejects, e.g. gRPC
    FAILED_PRECONDITION with the violations in the error details) or return the plan of the
    relaxed problem with the diagnosis (`relax` True: the closest plan, to be flagged RELAXED).

    The result's status stays the solver's (OPTIMAL / TIME_LIMITED for the relaxed problem): a
    relaxed plan is recognised by its Diagnosis, and its notes list the violations."""
    from reallocator.core.engine.solve import solve

    try:
        return solve(problem), None
    except InfeasibleProblem as exc:
        diagnosis = diagnose(problem, weights)
        if not relax:
            raise InfeasibleProblem(
                "the constraints contradict each other", exc.conflicts, diagnosis=diagnosis
            ) from exc
    result = solve(diagnosis.relaxed_problem)
    notes = tuple(f"relaxed {v}" for v in diagnosis.violations)
    return replace(result, notes=result.notes + notes), diagnosis


# --- re-solve checks of duals -------------------------------------------------------------


def parse_constraint(name: str) -> tuple[ViolationKind, int]:
    """`seller/3/max_total` -> (SELLER_MAX, 3); also `money_cap` and `total`."""
    if name == "money_cap":
        return ViolationKind.MONEY_CAP, -1
    if name == "total":
        return ViolationKind.TOTAL, -1
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a constraint name: {name!r}")
    entity, index, bound = match.groups()
    return _PARSE[(entity, bound)], int(index)


def relax_one(problem: AllocationProblem, constraint: str, delta: int) -> AllocationProblem:
    """The problem with one bound relaxed by `delta` units (negative: tightened). Minimums go
    down by delta, maximums, the money cap and the total go up."""
    kind, i = parse_constraint(constraint)
    if kind is ViolationKind.TOTAL:
        return replace(problem, total=problem.total + delta)
    if kind is ViolationKind.MONEY_CAP:
        if problem.money_cap is None:
            raise ValueError("the problem has no money cap")
        return replace(problem, money_cap=problem.money_cap + delta)
    field_name = {
        ViolationKind.SELLER_MIN: "seller_min",
        ViolationKind.SELLER_MAX: "seller_max",
        ViolationKind.CHANNEL_MIN: "channel_min",
        ViolationKind.CHANNEL_MAX: "channel_max",
        ViolationKind.DEAL_MIN: "lb",
        ViolationKind.DEAL_MAX: "ub",
    }[kind]
    values = getattr(problem, field_name).copy()
    if values[i] == NO_MAX:
        raise ValueError(f"{constraint} has no bound to move")
    values[i] += -delta if kind in _LOWERED else delta
    return replace(problem, **{field_name: values})


def marginal_check(
    problem: AllocationProblem, result: AllocationResult, constraint: str, delta: int = 1
) -> float:
    """Change of the value-stage LP objective (value minus churn, delivered held at the plan's
    total) when `constraint` is relaxed by `delta` units: a re-solve check of an LP dual.

    For a maximisation, with V(b) the value as a function of the bound, delta=+1 gives
    V(b+1) - V(b) (the right slope) and -marginal_check(..., delta=-1) gives the left slope;
    the dual of a binding bound lies between the two (they differ only at degenerate bounds).
    Duals are per unit of the bound: the dual of a minimum is d value / d min, so relaxing a
    minimum by one unit changes the value by about -dual."""
    delivered = result.objective.delivered
    base = value_stage(problem, delivered).objective
    moved = value_stage(relax_one(problem, constraint, delta), delivered).objective
    return moved - base


__all__ = [
    "Diagnosis",
    "RelaxationWeights",
    "Violation",
    "ViolationKind",
    "diagnose",
    "is_feasible",
    "marginal_check",
    "parse_constraint",
    "relax_one",
    "solve_or_relax",
]

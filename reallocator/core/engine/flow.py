"""The exact path: the reallocation as a min-cost flow, solved by OR-Tools `SimpleMinCostFlow`.

Network (nodes: source s, one node per channel, one per seller, sink t)::

    s --[cmin_c, cmax_c]--> channel c --deal pieces--> seller q --[smin_q, smax_q]--> t
    s ------------------------- unspendable ---------------------------------------> t

A deal is not a node: each of its concave pieces (see segments.py) is one arc from its channel
to its seller, so a seller selling in several channels still has one total (on its arc to t) and
a channel one total (on its arc from s). Channel churn lam_channel * |X_c - C_c| folds into two
parallel s->c arcs: capacity C_c at value +lam_channel, the rest at -lam_channel.

Lower bounds l on an arc (u, v) use the standard transformation: capacity u - l, supply of u
decreased by l, supply of v increased by l. Since lower bounds (deal lb, group minimums) may
make the plain maximum flow unreachable, `solve_max_flow_with_min_cost` (which adjusts supplies
by an unconstrained max flow) cannot honour them; priority (1) is therefore exact in two steps:

1. D* = max deliverable: the same network with each (channel, seller) pair's deals merged into
   one arc [sum lb, sum ub], cost 0, and the unspendable arc at cost 1; `solve()` minimises the
   unspendable flow. At most C*S + C + S + 1 arcs: microseconds, and it proves feasibility.
2. Value: the full network with supply D* at s and demand D* at t (no unspendable arc), costs
   -round(slope * scale); `solve()` gives the min-cost flow of exactly D*.

Costs are integers: scale = R / max|slope| with R = 2**30 (less if the node count could
overflow OR-Tools' internal cost scaling by (nodes + 1)). The flow found is optimal for the
rounded costs, so its true objective is within D* * max|slope| / R of the true optimum: a
relative gap of about 1e-9 of the largest slope per unit, well inside the 1e-6 tested against CBC.
Flows are integers, so no rounding of the plan is ever needed on this path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from ortools.graph.python import min_cost_flow

from reallocator.core.engine.errors import InfeasibleProblem, NoFeasiblePlan
from reallocator.core.engine.problem import (
    AllocationProblem,
    CodeArray,
    IntArray,
    capped_group_sum,
    capped_total,
    group_sum,
)
from reallocator.core.engine.segments import fold_pieces

COST_RESOLUTION = 2**30
"""Integer cost of the steepest slope; see the module docstring for the error it implies."""

_SMCF = min_cost_flow.SimpleMinCostFlow


@dataclass(frozen=True, eq=False)
class FlowSolution:
    allocation: IntArray
    delivered_max: int
    cost_scale: float
    n_arcs: int
    build_seconds: float
    solve_seconds: float


@dataclass(frozen=True, eq=False)
class _Arcs:
    """Arc arrays of one network, lower bounds already transformed into node supplies."""

    tail: CodeArray
    head: CodeArray
    capacity: IntArray
    cost: IntArray
    supply: IntArray


def _transform(
    tail: CodeArray,
    head: CodeArray,
    lower: IntArray,
    upper: IntArray,
    cost: IntArray,
    supply: IntArray,
) -> _Arcs:
    # Forced flow l on (u, v): u must send l more than it receives, v receive l more.
    supply = supply.copy()
    np.add.at(supply, tail, -lower)
    np.add.at(supply, head, lower)
    return _Arcs(tail, head, upper - lower, cost, supply)


def _group_bounds(problem: AllocationProblem) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    total = problem.total
    return (
        np.minimum(problem.channel_min, total),
        np.minimum(problem.channel_max, total),
        np.minimum(problem.seller_min, total),
        np.minimum(problem.seller_max, total),
    )


def _solve_with_supplies(smcf: min_cost_flow.SimpleMinCostFlow, supply: IntArray) -> None:
    smcf.set_nodes_supplies(np.arange(supply.shape[0], dtype=np.int32), supply)
    status = smcf.solve()
    if status == _SMCF.INFEASIBLE:
        raise InfeasibleProblem("the flow network has no feasible flow")
    if status != _SMCF.OPTIMAL:
        raise NoFeasiblePlan(f"min-cost flow ended with status {status.name}")


def _solve_network(arcs: _Arcs) -> tuple[min_cost_flow.SimpleMinCostFlow, npt.NDArray[np.int32]]:
    smcf = _SMCF()
    index = smcf.add_arcs_with_capacity_and_unit_cost(
        arcs.tail, arcs.head, arcs.capacity, arcs.cost
    )
    _solve_with_supplies(smcf, arcs.supply)
    return smcf, np.asarray(index, dtype=np.int32)


def max_deliverable(problem: AllocationProblem) -> int:
    """Priority (1): the largest total any feasible plan can allocate (step 1 above).

    Raises InfeasibleProblem when no plan meets every lower bound within the total."""
    total = problem.total
    cmin, cmax, smin, smax = _group_bounds(problem)
    if not (cmin.any() or smin.any()) and bool((cmax >= total).all() and (smax >= total).all()):
        # No seller or channel limit: the network is its deals alone, and its answer is a sum
        # (the lower bounds fit the total or nothing does; then all that fits, up to the total).
        if capped_total(problem.lb, total + 1) > total:
            raise InfeasibleProblem("the flow network has no feasible flow")
        return capped_total(problem.ub_capped, total)
    return network_max_deliverable(problem)


def network_max_deliverable(problem: AllocationProblem) -> int:
    """`max_deliverable` as a flow through channels, (channel, seller) pairs and sellers."""
    s, c = problem.n_sellers, problem.n_channels
    total = problem.total
    cmin, cmax, smin, smax = _group_bounds(problem)
    sink = 1 + c + s
    # Pair code of each deal; dense when the C x S grid is small, else compressed by np.unique.
    pair = problem.channel.astype(np.int64) * s + problem.seller
    if c * s <= 4 * problem.n_deals + 4096:
        n_pairs, code = c * s, pair
        used = np.zeros(n_pairs, dtype=bool)
        used[pair] = True
        keys = np.arange(n_pairs, dtype=np.int64)
    else:
        keys, inverse = np.unique(pair, return_inverse=True)
        n_pairs, code, used = keys.shape[0], inverse, np.ones(keys.shape[0], dtype=bool)
    code32 = code.astype(np.int32)
    pair_lb = group_sum(problem.lb, code32, n_pairs)[used]
    pair_ub = capped_group_sum(problem.ub_capped, code32, n_pairs, total)[used]
    keys = keys[used]
    i32 = np.int32
    tail = np.concatenate(
        [np.zeros(c, i32), (1 + keys // s).astype(i32), np.arange(1 + c, sink, dtype=i32), [0]]
    ).astype(i32)
    head = np.concatenate(
        [np.arange(1, 1 + c, dtype=i32), (1 + c + keys % s).astype(i32), np.full(s + 1, sink, i32)]
    ).astype(i32)
    lower = np.concatenate([cmin, pair_lb, smin, [0]]).astype(np.int64)
    upper = np.concatenate([cmax, pair_ub, smax, [total]]).astype(np.int64)
    if (lower > upper).any():
        raise InfeasibleProblem("a group or pair minimum exceeds its maximum")
    cost = np.zeros(tail.shape[0], dtype=np.int64)
    cost[-1] = 1
    supply = np.zeros(sink + 1, dtype=np.int64)
    supply[0], supply[sink] = total, -total
    arcs = _transform(tail, head, lower, upper, cost, supply)
    smcf, index = _solve_network(arcs)
    unspendable = int(smcf.flow(int(index[-1])))
    return total - unspendable


def min_money_plan(
    problem: AllocationProblem,
    lo: IntArray | None = None,
    hi: IntArray | None = None,
    delivered: int | None = None,
) -> IntArray | None:
    """The integer plan of least money (sum price_num_d * x_d) meeting every bound except the
    money cap, each deal within [lo_d, hi_d] (default [lb_d, ub_d]) and, when given, exactly
    `delivered` in total: a min-cost flow with one arc per deal priced at price_num_d (plus an
    unspent arc when the total is free). Deals with a closed window (lo_d == hi_d) get no arc,
    only their forced amount, so a window around an LP point is a network of its fractional
    deals. Raises InfeasibleProblem when no such plan exists; None when the prices or totals
    are too large for exact int64 costs (callers fall back to the LP)."""
    s, c, n = problem.n_sellers, problem.n_channels, problem.n_deals
    total = problem.total
    sink = 1 + c + s
    price = problem.price_num if problem.price_num is not None else np.zeros(n, np.int64)
    top = int(price.max(initial=0))
    if not fits_network(problem) or top > cost_resolution(sink + 1) or top * total >= 2**62:
        return None
    lo = problem.lb if lo is None else lo
    hi = problem.ub_capped if hi is None else hi
    cmin, cmax, smin, smax = _group_bounds(problem)
    i32 = np.int32
    channel_node = np.arange(1, 1 + c, dtype=i32)
    seller_node = np.arange(1 + c, sink, dtype=i32)
    free = delivered is None
    tail = np.concatenate([np.zeros(c, i32), 1 + problem.channel, seller_node, [0] * free])
    head = np.concatenate([channel_node, 1 + c + problem.seller, np.full(s + free, sink, i32)])
    lower = np.concatenate([cmin, lo, smin, [0] * free]).astype(np.int64)
    upper = np.concatenate([cmax, hi, smax, [total] * free]).astype(np.int64)
    if (lower > upper).any():
        raise InfeasibleProblem("a bound's minimum exceeds its maximum")
    cost = np.zeros(tail.shape[0], dtype=np.int64)
    cost[c : c + n] = price
    supply = np.zeros(sink + 1, dtype=np.int64)
    supply[0] = total if delivered is None else delivered
    supply[sink] = -supply[0]
    arcs = _transform(tail.astype(i32), head.astype(i32), lower, upper, cost, supply)
    deal_arc = np.zeros(tail.shape[0], dtype=bool)
    deal_arc[c : c + n] = True
    keep = ~deal_arc | (arcs.capacity > 0)  # closed deals: their forced amount only
    smcf = _SMCF()
    index = smcf.add_arcs_with_capacity_and_unit_cost(
        arcs.tail[keep], arcs.head[keep], arcs.capacity[keep], arcs.cost[keep]
    )
    _solve_with_supplies(smcf, arcs.supply)
    x = lo.copy()
    open_deals = np.flatnonzero(keep[c : c + n])
    x[open_deals] += smcf.flows(np.asarray(index)[c : c + open_deals.shape[0]])
    return x


def min_money(problem: AllocationProblem) -> int | None:
    """The least money of any plan meeting every bound except the money cap (exact, in
    price_num units: compare with money_cap * price_den); None as for `min_money_plan`."""
    if problem.price_num is None:
        return 0
    x = min_money_plan(problem)
    return None if x is None else int(np.dot(problem.price_num.astype(object), x.astype(object)))


def fits_network(problem: AllocationProblem) -> bool:
    """OR-Tools rejects a node whose possible in- or outflow (arc capacities, each up to the
    total) could overflow int64; the source has 2C+1 arcs out, the sink S+1 in."""
    arcs = max(2 * problem.n_channels, problem.n_sellers) + 4
    return problem.total * arcs < 2**63


def cost_resolution(n_nodes: int) -> int:
    """Largest integer cost used: 2**30, or less when OR-Tools' internal scaling of costs by
    (nodes + 1), and the node potentials it derives, could come near int64 overflow."""
    return int(min(COST_RESOLUTION, 2**62 // (4 * (n_nodes + 1) ** 2)))


def solve_flow(problem: AllocationProblem) -> FlowSolution:
    """Lexicographic optimum of the network problem (no money cap) in integers."""
    if not fits_network(problem):
        raise ValueError("total too large for the flow's int64 node sums: use the LP path")
    t0 = time.perf_counter()
    delivered = max_deliverable(problem)
    s, c = problem.n_sellers, problem.n_channels
    sink = 1 + c + s
    pieces = fold_pieces(problem)
    # Room above each piece's lower part; the lower parts leave as forced flow (below).
    residual = pieces.width
    residual -= pieces.lower
    mask = residual > 0
    lam_c = problem.lam_channel
    deal_cost = pieces.slope[mask]  # the open pieces' slopes (a copy): their arcs' costs below
    max_slope = max(float(np.abs(deal_cost).max(initial=0.0)), lam_c)
    scale = cost_resolution(sink + 1) / max_slope if max_slope > 0 else 0.0
    if not np.isfinite(scale):  # subnormal slopes (< 1e-300): value is nil, costs are 0
        scale = 0.0

    # Group arcs: channel arc A carries up to the current channel total at +lam_channel, B the
    # rest at -lam_channel (the channel minimum goes to A first: A is never dearer than B);
    # one arc per seller to the sink. Deal lower bounds leave their channel node and reach
    # their seller node as forced flow.
    cmin, cmax, smin, smax = _group_bounds(problem)
    cap_a = np.minimum(problem.current_channel_totals(), cmax)
    low_a = np.minimum(cmin, cap_a)
    channel_node = np.arange(1, 1 + c, dtype=np.int32)
    seller_node = np.arange(1 + c, sink, dtype=np.int32)
    supply = np.zeros(sink + 1, dtype=np.int64)
    supply[0], supply[sink] = delivered, -delivered
    supply[1 : 1 + c] -= group_sum(problem.lb, problem.channel, c)
    supply[1 + c : sink] += group_sum(problem.lb, problem.seller, s)
    groups = _transform(
        tail=np.concatenate([np.zeros(2 * c, np.int32), seller_node]),
        head=np.concatenate([channel_node, channel_node, np.full(s, sink, np.int32)]),
        lower=np.concatenate([low_a, cmin - low_a, smin]),
        upper=np.concatenate([cap_a, cmax - cap_a, smax]),
        cost=np.concatenate(
            [np.full(c, -round(lam_c * scale)), np.full(c, round(lam_c * scale)), np.zeros(s)]
        ).astype(np.int64),
        supply=supply,
    )

    # Deal arcs, one per piece with room, laid out deal-major: channel node -> seller node.
    # Each deal's nodes repeated once per piece with room: what its row of `mask` picks.
    per_deal = mask.sum(axis=1)
    deal_tail = np.repeat(1 + problem.channel, per_deal)
    deal_head = np.repeat(1 + c + problem.seller, per_deal)
    deal_cost *= -scale
    np.rint(deal_cost, out=deal_cost)

    smcf = _SMCF()
    smcf.add_arcs_with_capacity_and_unit_cost(
        groups.tail, groups.head, groups.capacity, groups.cost
    )
    first_deal_arc = smcf.num_arcs()
    smcf.add_arcs_with_capacity_and_unit_cost(
        deal_tail, deal_head, residual[mask], deal_cost.astype(np.int64)
    )
    n_arcs = smcf.num_arcs()
    del deal_cost, deal_tail, deal_head, per_deal  # OR-Tools holds its own copies now
    t1 = time.perf_counter()

    _solve_with_supplies(smcf, groups.supply)
    flows = smcf.flows(np.arange(first_deal_arc, n_arcs, dtype=np.int32))
    t2 = time.perf_counter()
    residual[:] = 0  # reused as the per-piece flow table
    residual[mask] = flows
    allocation = problem.lb + residual.sum(axis=1)
    return FlowSolution(
        allocation=allocation,
        delivered_max=delivered,
        cost_scale=scale,
        n_arcs=n_arcs,
        build_seconds=t1 - t0,
        solve_seconds=t2 - t1,
    )

"""The hindsight optimum: the reallocation LP solved once, at the start, with the true
capacity of every deal over the whole flight - the limit no online strategy can beat.

    lex-max ( sum_d x_d ,  sum_d v_d x_d )
    s.t.    min(min_d, cap_d) <= x_d <= min(max_d, cap_d)        cap_d = true flight capacity
            seller and channel min/max (shares of the budget)
            sum_d x_d <= budget

with v_d the deal's value per unit of spend (the simulator's value is linear in spend per deal,
so this LP over per-deal totals is an exact upper bound on any strategy that keeps within the
budget, the limits and the real supply). No step limits, churn, pacing or seller delays: the
oracle has none of an online strategy's frictions.

When the limits contradict each other (a scenario may make them), the oracle is the optimum of
the least relaxed problem in this order: group minimums dropped; then deal minimums too; then
group maximums too. `OracleResult.relaxed` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from reallocator.core.engine import AllocationProblem, InfeasibleProblem, solve
from reallocator.core.engine.problem import NO_MAX
from reallocator.sim.world import FloatArray, IntArray, World


@dataclass(frozen=True, eq=False)
class OracleResult:
    allocation: IntArray  # x_d, budget units
    value: float  # sum_d value_per_dollar_d * x_d / 1e6
    utilisation: float  # sum x / budget
    relaxed: str  # "" or what had to give way
    seconds: float


def _group_bounds(
    table: pd.DataFrame, index: tuple[str, ...], budget: int
) -> tuple[IntArray, IntArray]:
    """Absolute (min, max) per group: shares of the budget resolved, the tighter one kept."""
    frame = table.reindex(list(index))
    min_share = frame["min_share"].to_numpy(np.float64)
    max_share = frame["max_share"].to_numpy(np.float64)
    min_abs = frame["min_total"].to_numpy(np.float64)
    max_abs = frame["max_total"].to_numpy(np.float64)
    lo = np.fmax(min_abs, np.ceil(min_share * budget))
    hi = np.fmin(max_abs, np.floor(max_share * budget))
    mins = np.where(np.isnan(lo), 0, np.nan_to_num(lo)).astype(np.int64)
    maxs = np.full(hi.shape, NO_MAX, dtype=np.int64)
    maxs[~np.isnan(hi)] = hi[~np.isnan(hi)].astype(np.int64)
    return mins, maxs


def oracle_problem(world: World) -> AllocationProblem:
    cap = np.floor(world.true_capacity).astype(np.int64)
    lb = np.minimum(world.min_allocation, cap)
    ub = np.minimum(world.max_allocation, cap)
    lb = np.minimum(lb, ub)
    smin, smax = _group_bounds(world.seller_limits, world.seller_ids, world.budget)
    cmin, cmax = _group_bounds(world.channel_limits, world.channel_ids, world.budget)
    return AllocationProblem(
        current=world.booked,
        lb=lb,
        ub=ub,
        seller=world.seller.astype(np.int32),
        channel=world.channel.astype(np.int32),
        seller_min=smin,
        seller_max=smax,
        channel_min=cmin,
        channel_max=cmax,
        total=world.budget,
        value_slopes=world.value_per_unit[:, None],
        time_limit=60.0,
    )


def deal_values(world: World, spend: FloatArray) -> float:
    """Value of a spend vector (budget units per deal)."""
    return float(np.dot(world.value_per_unit, spend))


def solve_oracle(world: World) -> OracleResult:
    problem = oracle_problem(world)
    zeros_s = np.zeros_like(problem.seller_min)
    zeros_c = np.zeros_like(problem.channel_min)
    attempts = [
        ("", problem),
        ("group minimums", replace(problem, seller_min=zeros_s, channel_min=zeros_c)),
        (
            "group and deal minimums",
            replace(problem, seller_min=zeros_s, channel_min=zeros_c, lb=np.zeros_like(problem.lb)),
        ),
        (
            "group limits and deal minimums",
            replace(
                problem,
                seller_min=zeros_s,
                channel_min=zeros_c,
                lb=np.zeros_like(problem.lb),
                seller_max=np.full_like(problem.seller_max, NO_MAX),
                channel_max=np.full_like(problem.channel_max, NO_MAX),
            ),
        ),
    ]
    for relaxed, p in attempts:
        try:
            result = solve(p)
        except InfeasibleProblem:
            continue
        x = result.allocation
        return OracleResult(
            allocation=x,
            value=deal_values(world, x.astype(np.float64)),
            utilisation=float(x.sum()) / world.budget,
            relaxed=relaxed,
            seconds=result.timings.total,
        )
    raise RuntimeError("the oracle is infeasible even with every limit relaxed")  # pragma: no cover

"""`solve`: the dispatcher. Checks, picks the path, rounds, verifies, reports.

Path choice: without a money cap the problem is a network and the min-cost flow is exact. With
one, the flow is still solved first, as a relaxation: if its plan happens to respect the cap it
is optimal for the capped problem too (an optimum of a relaxation that is feasible is optimal);
only otherwise does the LP run. `path=` forces a path (tests, duals).

Time limits: `problem.time_limit` bounds the GLOP solves (whatever the flow relaxation used is
deducted). The min-cost flow has no time limit to give: it is exact and strongly polynomial,
and measured at about 2.5 s for a million deals, so it always runs to its optimum.
"""

from __future__ import annotations

import time

import numpy as np

from reallocator.core.engine.feasibility import check_necessary
from reallocator.core.engine.flow import fits_network, solve_flow
from reallocator.core.engine.lp import solve_lp
from reallocator.core.engine.problem import AllocationProblem, IntArray, from_unit, group_sum
from reallocator.core.engine.result import (
    AllocationResult,
    LpDuals,
    ObjectiveParts,
    SolvePath,
    SolveStatus,
    Timings,
)
from reallocator.core.engine.rounding import round_plan_noted
from reallocator.core.engine.segments import churn_cost, deal_value
from reallocator.core.engine.verify import money_exceeds, verify_allocation


def objective_parts(problem: AllocationProblem, x: IntArray) -> ObjectiveParts:
    """The objective of any plan, computed from the problem's own definition (not the solver's):
    summed in the problem's `value_unit` (where no sum can overflow), then in plain values."""
    delivered = int(x.sum())
    value = float(deal_value(problem, x).sum())
    churn_deal = churn_cost(problem, x)
    churn_channel = 0.0  # what a zero weight times the (finite) moves gives, without them
    if problem.lam_channel:
        moved_channel = group_sum(x, problem.channel, problem.n_channels) - (
            problem.current_channel_totals()
        )
        churn_channel = problem.lam_channel * float(np.abs(moved_channel).sum(dtype=np.float64))
    unit = problem.value_unit
    return ObjectiveParts(
        delivered=delivered,
        unspendable=problem.total - delivered,
        value=from_unit(value, unit),
        churn_deal=from_unit(churn_deal, unit),
        churn_channel=from_unit(churn_channel, unit),
        objective=from_unit(value - churn_deal - churn_channel, unit),
    )


def _money_ok(problem: AllocationProblem, x: IntArray) -> bool:
    if problem.money_cap is None or problem.price_num is None:
        return True
    return not money_exceeds(problem.price_num, problem.money_cap * problem.price_den, x)[0]


def solve(problem: AllocationProblem, *, path: SolvePath | None = None) -> AllocationResult:
    """The verified lexicographic optimum: most budget placed, then most value net of churn.

    Raises InfeasibleProblem (with the conflicts found) when no plan meets the hard limits,
    NoFeasiblePlan when the LP stopped before any feasible point.
    """
    t0 = time.perf_counter()
    check_necessary(problem)
    notes: list[str] = []
    duals: LpDuals | None = None
    status = SolveStatus.OPTIMAL
    build = solve_s = 0.0

    if path is None and not fits_network(problem):
        notes.append("total too large for int64 flow sums with this many groups: LP path")
        path = SolvePath.LP
    flow_plan: IntArray | None = None
    if path in (None, SolvePath.FLOW):
        flow = solve_flow(problem)
        build, solve_s = flow.build_seconds, flow.solve_seconds
        if _money_ok(problem, flow.allocation):
            flow_plan = flow.allocation
            if problem.money_cap is not None:
                notes.append("money cap not binding at the flow optimum")
        elif path is SolvePath.FLOW:
            raise ValueError("the flow path cannot honour a binding money cap; use the LP path")
        else:
            notes.append("money cap binds: LP path")
    if flow_plan is not None:
        x, used = flow_plan, SolvePath.FLOW
    else:
        lp = solve_lp(problem, problem.time_limit - (time.perf_counter() - t0))
        build += lp.build_seconds
        solve_s += lp.solve_seconds
        t = time.perf_counter()
        x, repaired = round_plan_noted(problem, lp.values, lp.delivered_floor)
        build += time.perf_counter() - t
        if repaired:
            notes.append(repaired)
        used, duals = SolvePath.LP, lp.duals
        if lp.time_limited:
            status = SolveStatus.TIME_LIMITED
            notes.append("LP stopped at its time limit: best feasible plan, not proven optimal")
        short = lp.delivered_floor - int(x.sum())
        if short > 0:
            notes.append(f"rounding left {short} units of the LP total unplaced")

    t = time.perf_counter()
    binding = verify_allocation(problem, x)
    verify_s = time.perf_counter() - t
    parts = objective_parts(problem, x)
    return AllocationResult(
        allocation=x,
        status=status,
        path=used,
        objective=parts,
        binding=binding,
        timings=Timings(build, solve_s, verify_s, time.perf_counter() - t0),
        duals=duals,
        notes=tuple(notes),
    )

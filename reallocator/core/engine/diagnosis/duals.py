"""Re-solve checks of the value LP's duals: one bound moved by a few units, the value
stage solved again (tests hold the reported duals to these slopes)."""

from __future__ import annotations

from dataclasses import replace

from reallocator.core.engine.diagnosis.names import LOWERED, ViolationKind, parse_constraint
from reallocator.core.engine.lp import value_stage
from reallocator.core.engine.problem import NO_MAX, AllocationProblem, from_unit
from reallocator.core.engine.result import AllocationResult


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
    values[i] += -delta if kind in LOWERED else delta
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
    return from_unit(moved - base, problem.value_unit)  # both in it: relax_one keeps the unit

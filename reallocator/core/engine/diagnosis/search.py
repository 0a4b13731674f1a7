"""The entry points: `diagnose` (the smallest weighted relaxation, sum checks first, then the
elastic model, every answer re-checked in integers) and `solve_or_relax`."""

from __future__ import annotations

import math
import time
from dataclasses import replace

from reallocator.core.engine.diagnosis.elastic import elastic_flow, elastic_lp, flow_fits
from reallocator.core.engine.diagnosis.outcome import Diagnosis, RelaxationWeights
from reallocator.core.engine.diagnosis.relaxation import (
    Relaxation,
    apply_relaxation,
    clipped,
    is_feasible,
    violations_of,
    weighted_cost,
)
from reallocator.core.engine.diagnosis.sums import sum_checks
from reallocator.core.engine.errors import Conflict, InfeasibleProblem, NoFeasiblePlan
from reallocator.core.engine.feasibility import necessary_conflicts
from reallocator.core.engine.problem import AllocationProblem
from reallocator.core.engine.result import AllocationResult


def _finish(
    p: AllocationProblem,
    r: Relaxation,
    w: RelaxationWeights,
    cheap: bool,
    conflicts: tuple[Conflict, ...],
    t0: float,
    notes: tuple[str, ...] = (),
) -> Diagnosis:
    r = clipped(p, r)
    relaxed = apply_relaxation(p, r)
    violations = violations_of(p, r)
    return Diagnosis(
        violations,
        relaxed,
        cheap,
        conflicts,
        weighted_cost(violations, w),
        time.perf_counter() - t0,
        notes,
    )


def diagnose(
    problem: AllocationProblem, weights: RelaxationWeights, *, try_cheap: bool = True
) -> Diagnosis:
    """The smallest weighted relaxation that makes `problem` feasible (package docstring).

    A feasible problem comes back unchanged with no violations. `try_cheap=False` skips the
    sum checks (tests compare both steps). Raises NoFeasiblePlan only if a solver cannot
    finish (GLOP's time limit is the problem's, per solve)."""
    t0 = time.perf_counter()
    conflicts = necessary_conflicts(problem)
    if not conflicts and is_feasible(problem):
        return Diagnosis((), problem, True, (), 0.0, time.perf_counter() - t0)
    if try_cheap:
        r = sum_checks(problem, conflicts, weights)
        if r is not None and is_feasible(apply_relaxation(problem, r)):
            return _finish(problem, r, weights, True, conflicts, t0)

    if flow_fits(problem):
        # Exact on pairs; with a money cap a relaxation of the priced problem (optimal if its
        # answer meets the cap anyway, as it does when the cap is not what conflicts).
        r = elastic_flow(problem, weights)
        if is_feasible(apply_relaxation(problem, r)):
            return _finish(problem, r, weights, False, conflicts, t0)
        attempts = []
    else:
        attempts = [(False, bump) for bump in _BUMPS]  # totals too large for the flow: LP
    priced = problem.money_cap is not None
    attempts += [(True, bump) for bump in _BUMPS] if priced else []
    for per_deal, bump in attempts:
        plain = bump is not None
        r = elastic_lp(problem, weights, per_deal, plain)
        extra = 0 if bump is None else max(bump, math.ceil(bump * 1e-7 * problem.total))
        r = r.bumped(extra) if extra else r
        if is_feasible(apply_relaxation(problem, r)):
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

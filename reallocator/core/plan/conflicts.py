"""Solve the prepared problem, or name what conflicts: when no plan meets every constraint, the
closest plan (relax) with the constraints that gave way and by how much, or `PlanRejected` naming
them. Violations are codes in the engine (engine/diagnosis); here they get the caller's ids and
words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reallocator.core.engine import (
    AllocationProblem,
    AllocationResult,
    BuiltProblem,
    InfeasibleProblem,
)
from reallocator.core.engine.diagnosis import (
    Diagnosis,
    RelaxationWeights,
    ViolationKind,
    solve_or_relax,
)
from reallocator.core.interrupt import Checkpoint
from reallocator.core.model import BudgetType, text_column
from reallocator.core.plan.model import ConstraintViolation
from reallocator.core.plan.prepare import Prepared
from reallocator.core.plan.text import amount


class PlanRejected(Exception):
    """Constraints conflict and the caller asked to reject rather than relax."""

    def __init__(self, message: str, violations: tuple[ConstraintViolation, ...]) -> None:
        super().__init__(message)
        self.violations = violations


@dataclass(frozen=True)
class Solved:
    """The solver's plan and the problem it solves (the relaxed one when constraints conflicted).
    `violations`: every constraint that gave way, named (none when nothing conflicted)."""

    result: AllocationResult
    problem: AllocationProblem
    violations: tuple[ConstraintViolation, ...]


def solve_prepared(prepared: Prepared, *, relax: bool, checkpoint: Checkpoint) -> Solved:
    """Solve, relaxing conflicting constraints when `relax`; minimums the deals cannot deliver
    are violations too when the policy does not cap them. Raises PlanRejected otherwise."""
    built, policy = prepared.built, prepared.policy
    bt, currency = prepared.budget_type, prepared.currency
    weights = RelaxationWeights.from_policy(policy)
    unmet = () if policy.cap_unmeetable_minimums else _unmeetable_minimums(built, bt, currency)
    if unmet and not relax:
        summary = "; ".join(v.message for v in unmet[:5])
        raise PlanRejected(f"constraints conflict: {summary}", unmet)
    checkpoint("solve")
    result, violations, problem = _solve(
        built, relax, weights, prepared.snapshot.deals, bt, currency
    )
    return Solved(result=result, problem=problem, violations=(*violations, *unmet))


def _violations(
    diagnosis: Diagnosis, built: BuiltProblem, deal_ids: Any, bt: BudgetType, currency: str
) -> tuple[ConstraintViolation, ...]:
    """Engine violations (codes) -> the caller's names, ids and words."""
    out = []
    for v in diagnosis.violations:
        if v.kind in (ViolationKind.SELLER_MIN, ViolationKind.SELLER_MAX):
            kind, entity = "SELLER", str(built.seller_ids[v.index])
        elif v.kind in (ViolationKind.CHANNEL_MIN, ViolationKind.CHANNEL_MAX):
            kind, entity = "CHANNEL", str(built.channel_ids[v.index])
        elif v.kind in (ViolationKind.DEAL_MIN, ViolationKind.DEAL_MAX):
            kind, entity = "DEAL", str(deal_ids[v.index])
        else:
            kind, entity = "CAMPAIGN", ""
        unit = BudgetType.SPEND if v.kind is ViolationKind.MONEY_CAP else bt
        # Shown to the cent, rounded up, so relaxing by the figure shown is still enough.
        shown = -(-v.relaxation // 10_000) * 10_000 if unit is BudgetType.SPEND else v.relaxation
        out.append(
            ConstraintViolation(
                constraint=v.named(entity),
                entity_kind=kind,
                entity_id=entity,
                bound=v.bound,
                relaxation=v.relaxation,
                message=v.describe(entity, amount(shown, unit, currency)),
            )
        )
    return tuple(out)


def _unmeetable_minimums(
    built: BuiltProblem, bt: BudgetType, currency: str
) -> tuple[ConstraintViolation, ...]:
    """Seller and channel minimums their deals cannot deliver, as violations (for
    Policy.cap_unmeetable_minimums = False): the bounds capped them at what the deals can
    deliver; relaxing each by its shortfall is what the capped plan does."""
    problem, report = built.problem, built.report
    out = []
    for kind, names, mins, short in (
        ("seller", built.seller_ids, problem.seller_min, report.seller_min_short),
        ("channel", built.channel_ids, problem.channel_min, report.channel_min_short),
    ):
        for q in np.flatnonzero(short > 0).tolist():
            name = str(names[q])
            shown = -(-int(short[q]) // 10_000) * 10_000 if bt is BudgetType.SPEND else short[q]
            out.append(
                ConstraintViolation(
                    constraint=f"{kind}/{name}/min_total",
                    entity_kind=kind.upper(),
                    entity_id=name,
                    bound=int(mins[q] + short[q]),
                    relaxation=int(short[q]),
                    message=f"relax {kind} {name}'s minimum by {amount(shown, bt, currency)}: "
                    "its deals cannot deliver more",
                )
            )
    return tuple(out)


def _solve(
    built: BuiltProblem,
    relax: bool,
    weights: RelaxationWeights,
    deals: pd.DataFrame,
    bt: BudgetType,
    currency: str,
) -> tuple[AllocationResult, tuple[ConstraintViolation, ...], AllocationProblem]:
    """Solve; when constraints conflict, the closest plan (relax) or PlanRejected naming every
    constraint that must give way and by how much (the deals' ids read only to name one)."""
    try:
        result, diagnosis = solve_or_relax(built.problem, weights, relax)
    except InfeasibleProblem as exc:
        if exc.diagnosis is None:
            raise
        named = _violations(exc.diagnosis, built, text_column(deals, "deal_id"), bt, currency)
        summary = "; ".join(v.message for v in named[:5])
        raise PlanRejected(f"constraints conflict: {summary}", named) from exc
    if diagnosis is None:
        return result, (), built.problem
    named = _violations(diagnosis, built, text_column(deals, "deal_id"), bt, currency)
    return result, named, diagnosis.relaxed_problem


__all__ = ["PlanRejected", "Solved", "solve_prepared"]

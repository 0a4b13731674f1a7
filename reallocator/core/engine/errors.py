"""Typed failures of the engine, so callers (the gRPC adapter, the elastic diagnosis)
can tell "the constraints contradict each other" from "the solver could not finish" from "a plan
failed its own verification" (a bug) without parsing messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reallocator.core.engine.diagnosis import Diagnosis


@dataclass(frozen=True)
class Conflict:
    """One necessary condition that the constraints violate.

    `kind` names the check (e.g. ``"seller_min_above_capacity"``), `index` the seller, channel or
    deal it concerns (-1 for campaign-wide), `needed` and `available` the two sides that do not
    meet, in budget units (or micros for the money cap).
    """

    kind: str
    index: int
    needed: int
    available: int

    def __str__(self) -> str:
        where = "" if self.index < 0 else f"[{self.index}]"
        return f"{self.kind}{where}: needs {self.needed}, only {self.available} available"


class InfeasibleProblem(Exception):
    """No allocation satisfies every hard constraint.

    `conflicts` holds what the cheap numpy checks found (possibly empty when only the solver
    proved infeasibility). `diagnosis` (engine/diagnosis), when set, names every bound that must
    give way and by how much, and holds the relaxed problem (`solve_or_relax` with relax=False).
    """

    def __init__(
        self,
        message: str,
        conflicts: tuple[Conflict, ...] = (),
        *,
        diagnosis: Diagnosis | None = None,
    ) -> None:
        detail = "; ".join(str(c) for c in conflicts[:10])
        more = f" (+{len(conflicts) - 10} more)" if len(conflicts) > 10 else ""
        text = f"{message}: {detail}{more}" if conflicts else message
        if diagnosis is not None and diagnosis.violations:
            text += f"; smallest relaxation: {diagnosis.summary()}"
        super().__init__(text)
        self.conflicts = conflicts
        self.diagnosis = diagnosis


class NoFeasiblePlan(Exception):
    """The solver stopped (time limit, numerical trouble) before it had any feasible plan."""


class PlanVerificationError(Exception):
    """A plan broke a bound or constraint when checked in integers: a defect, never shipped.

    `violations` lists each broken constraint in words, for the log and the bug report.
    """

    def __init__(self, violations: tuple[str, ...]) -> None:
        super().__init__("plan failed verification: " + "; ".join(violations[:10]))
        self.violations = violations

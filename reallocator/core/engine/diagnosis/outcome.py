"""What a diagnosis returns (`Diagnosis`, its `Violation`s) and what it minimises
(`RelaxationWeights`: the price per budget unit of each class of bound)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reallocator.core.engine.diagnosis.names import LOWERED, TEMPLATE, WORDS, ViolationKind
from reallocator.core.engine.errors import Conflict
from reallocator.core.engine.problem import AllocationProblem
from reallocator.core.model import Policy

MAX_PREMIUM = 1e-4
"""Relative extra weight of a maximum over a minimum of the same class (see the package
docstring). Far above GLOP's optimality tolerances and the flow's cost resolution, so the tie is
broken reliably."""


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
        """The sum-check relaxations are minimal (package docstring, step 1)."""
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
        return TEMPLATE[self.kind].format(entity_id)

    @property
    def relaxed_bound(self) -> int:
        if self.kind in LOWERED:
            return self.bound - self.relaxation
        return self.bound + self.relaxation

    def describe(self, entity: str, amount: str) -> str:
        """In words, from the caller's label and formatted amount:
        ``describe("S7", "$976,266.61")`` -> "relax seller S7's minimum by $976,266.61"."""
        if self.kind is ViolationKind.MONEY_CAP:
            return f"raise the money cap by {amount}"
        if self.kind is ViolationKind.TOTAL:
            return f"raise the budget by {amount}"
        what, bound = WORDS[self.kind]
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

"""A stored plan's life cycle: its states, the moves between them, and auto-approval by severity.

Pure rules (no I/O): the store asks `transition` before it writes, so every adapter (gRPC, CLI,
simulator) enforces the same moves.

    PROPOSED -> APPROVED -> APPLIED -> ROLLED_BACK
    PROPOSED -> REJECTED;  PROPOSED | APPROVED -> SUPERSEDED (a newer plan for the campaign)
"""

from __future__ import annotations

from enum import StrEnum

from reallocator.core.model import Severity


class PlanState(StrEnum):
    PROPOSED = "PROPOSED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    APPLIED = "APPLIED"
    ROLLED_BACK = "ROLLED_BACK"
    SUPERSEDED = "SUPERSEDED"


class Action(StrEnum):
    """What a plan event records."""

    CREATE = "CREATE"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    APPLY = "APPLY"
    SUPERSEDE = "SUPERSEDE"
    ROLL_BACK = "ROLL_BACK"


class InvalidTransition(ValueError):
    """The plan's state does not allow the action (FAILED_PRECONDITION at the API)."""

    def __init__(self, state: PlanState, action: Action) -> None:
        allowed = sorted(a.value for (s, a) in _MOVES if s == state) or ["none"]
        super().__init__(
            f"a {state.value} plan cannot take {action.value} (allowed: {', '.join(allowed)})"
        )
        self.state = state
        self.action = action


_MOVES: dict[tuple[PlanState, Action], PlanState] = {
    (PlanState.PROPOSED, Action.APPROVE): PlanState.APPROVED,
    (PlanState.PROPOSED, Action.REJECT): PlanState.REJECTED,
    (PlanState.APPROVED, Action.REJECT): PlanState.REJECTED,
    (PlanState.APPROVED, Action.APPLY): PlanState.APPLIED,
    (PlanState.PROPOSED, Action.SUPERSEDE): PlanState.SUPERSEDED,
    (PlanState.APPROVED, Action.SUPERSEDE): PlanState.SUPERSEDED,
    (PlanState.APPLIED, Action.ROLL_BACK): PlanState.ROLLED_BACK,
}

SUPERSEDABLE = frozenset(s for (s, a) in _MOVES if a == Action.SUPERSEDE)
"""States a newer plan for the same campaign replaces (nothing was applied yet)."""

_RANK = {None: 0, Severity.MINOR: 1, Severity.MATERIAL: 2, Severity.CRITICAL: 3}


def transition(state: PlanState, action: Action) -> PlanState:
    """The state after `action`, or InvalidTransition."""
    try:
        return _MOVES[(state, action)]
    except KeyError:
        raise InvalidTransition(state, action) from None


def initial_state(max_severity: Severity | None, auto_apply_up_to: str) -> PlanState:
    """APPROVED at once when the policy auto-applies plans up to the plan's severity (a plan with
    no change has no severity and counts as minor); otherwise PROPOSED, waiting for a person."""
    if not auto_apply_up_to:
        return PlanState.PROPOSED
    limit = _RANK[Severity(auto_apply_up_to)]
    return PlanState.APPROVED if max(_RANK[max_severity], 1) <= limit else PlanState.PROPOSED


__all__ = [
    "SUPERSEDABLE",
    "Action",
    "InvalidTransition",
    "PlanState",
    "initial_state",
    "transition",
]

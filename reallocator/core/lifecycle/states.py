"""Plan states and the calls that move between them.

PROPOSED -> APPROVED -> APPLIED -> ROLLED_BACK; PROPOSED/APPROVED -> REJECTED by review;
PROPOSED/APPROVED -> SUPERSEDED when a newer plan of the campaign is recorded. A state never
goes back: the store writes the new state with a conditional UPDATE on the old one.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from reallocator.core.model import Policy, Severity
from reallocator.core.plan.severity import auto_applicable


class PlanState(StrEnum):
    PROPOSED = "PROPOSED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    APPLIED = "APPLIED"
    ROLLED_BACK = "ROLLED_BACK"
    SUPERSEDED = "SUPERSEDED"


class Action(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    CONFIRM_APPLIED = "CONFIRM_APPLIED"
    SUPERSEDE = "SUPERSEDE"
    ROLL_BACK = "ROLL_BACK"


class TransitionError(ValueError):
    """The plan's state does not allow the action (e.g. confirming a rejected plan)."""


_NEXT: dict[tuple[PlanState, Action], PlanState] = {
    (PlanState.PROPOSED, Action.APPROVE): PlanState.APPROVED,
    (PlanState.PROPOSED, Action.REJECT): PlanState.REJECTED,
    (PlanState.APPROVED, Action.REJECT): PlanState.REJECTED,
    (PlanState.APPROVED, Action.CONFIRM_APPLIED): PlanState.APPLIED,
    (PlanState.PROPOSED, Action.SUPERSEDE): PlanState.SUPERSEDED,
    (PlanState.APPROVED, Action.SUPERSEDE): PlanState.SUPERSEDED,
    (PlanState.APPLIED, Action.ROLL_BACK): PlanState.ROLLED_BACK,
}

UNAPPLIED = (PlanState.PROPOSED, PlanState.APPROVED)
"""States a newer plan of the same campaign supersedes."""


def next_state(state: PlanState, action: Action) -> PlanState:
    """The state after `action`; TransitionError names both when it is not allowed."""
    try:
        return _NEXT[(state, action)]
    except KeyError:
        allowed = sorted(str(s) for (s, a) in _NEXT if a == action)
        raise TransitionError(
            f"cannot {action.lower().replace('_', ' ')} a plan in state {state} "
            f"(allowed from: {', '.join(allowed)})"
        ) from None


def initial_state(max_severity: Severity | None, policy: Policy) -> PlanState:
    """APPROVED when `policy.auto_apply_up_to` covers the plan's most severe change (a plan
    with no change counts as MINOR), else PROPOSED: a person reviews it."""
    severity = str(max_severity or Severity.MINOR)
    approved = bool(auto_applicable(np.array([severity]), policy)[0])
    return PlanState.APPROVED if approved else PlanState.PROPOSED

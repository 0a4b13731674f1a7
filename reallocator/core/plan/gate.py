"""The decisions a plan makes on its numbers and codes, before any text exists: a rollback
tells the deals it moves ROLLBACK, and the NO_CHANGE gate keeps every allocation where it is
when no alert passed the confidence threshold, no constraint gave way and every move is too
small to be worth making. Its words are render.py's (`no_change_reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reallocator.core.plan.explain import Explanation
from reallocator.core.plan.model import ConstraintViolation, PlanStatus, ReasonCode
from reallocator.core.plan.post_solve import PostSolved
from reallocator.core.plan.prepare import Prepared
from reallocator.core.plan.severity import worth_changing


@dataclass(frozen=True)
class Decision:
    """What the plan does per deal (snapshot order), and its status. `reason` and `marginal` are
    one value for every deal when the gate held them (NO_CHANGE)."""

    status: PlanStatus
    allocation: npt.NDArray[np.int64]  # the new allocation: the current one when NO_CHANGE
    delta: npt.NDArray[np.int64]
    binding: npt.NDArray[Any]  # BindingKind values
    reason: npt.NDArray[Any] | str  # ReasonCode values
    marginal: npt.NDArray[np.float64] | float


def decide(
    prepared: Prepared,
    post: PostSolved,
    violations: tuple[ConstraintViolation, ...],
    why: Explanation,
    *,
    rollback: bool,
) -> Decision:
    """Rollback labels, then the status and the NO_CHANGE gate (see the module docstring)."""
    policy, result = prepared.policy, post.result
    current = prepared.built.report.current
    x = result.allocation
    new_allocation, delta = x, x - current
    binding: npt.NDArray[Any] = why.binding
    reason: npt.NDArray[Any] | str = why.reason
    marginal: npt.NDArray[np.float64] | float = why.marginal_value
    if rollback:
        moved = delta != 0
        reason = np.where(moved, ReasonCode.ROLLBACK.value, "UNCHANGED")
        binding = np.where(moved, "NONE", np.asarray(binding, dtype=object))
    alerts = prepared.assessment.n_alerts > 0 and not rollback
    small = not worth_changing(delta, policy.min_change).any()
    status = PlanStatus.TIME_LIMITED if result.status == "TIME_LIMITED" else PlanStatus.OPTIMAL
    if violations:
        status = PlanStatus.RELAXED
    if not alerts and small and not violations:
        status = PlanStatus.NO_CHANGE
        new_allocation, delta = current, np.zeros_like(delta)
        reason = "UNCHANGED"
        # Nothing moved because the gate held it, not because a limit stopped it.
        binding = np.where(np.asarray(binding, dtype=object) == "LOCKED", "LOCKED", "NONE")
        marginal = 0.0
    return Decision(
        status=status,
        allocation=new_allocation,
        delta=delta,
        binding=binding,
        reason=reason,
        marginal=marginal,
    )


__all__ = ["Decision", "decide"]

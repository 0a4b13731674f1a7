"""A plan's life cycle, pure: which state follows which call (no I/O; the store applies it)."""

from reallocator.core.lifecycle.states import (
    PlanState,
    TransitionError,
    initial_state,
    next_state,
)

__all__ = ["PlanState", "TransitionError", "initial_state", "next_state"]

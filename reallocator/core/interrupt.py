"""Stopping work nobody waits for any more.

Long computations (assessment, forecast, solve, explanations) call a `Checkpoint` between their
phases. The adapter that runs them decides what it checks: the gRPC servicer raises `Interrupted`
once the caller's deadline has passed or the call was cancelled, so the server stops at the next
phase boundary instead of finishing an answer nobody reads. The core itself does no I/O and reads
no clock for this: it only calls the checkpoint it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Checkpoint = Callable[[str], None]
"""Called with the name of the phase about to start; raises `Interrupted` to stop the work."""


class Interrupted(Exception):
    """The caller gave up: its deadline passed ("DEADLINE") or it cancelled ("CANCELLED")."""

    def __init__(self, why: Literal["DEADLINE", "CANCELLED"], phase: str) -> None:
        super().__init__(f"{why.lower()} before {phase}")
        self.why = why
        self.phase = phase


def never(_phase: str) -> None:
    """The checkpoint that never stops (in-process callers: batch jobs, the simulator)."""


__all__ = ["Checkpoint", "Interrupted", "never"]

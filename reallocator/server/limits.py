"""Bounded concurrency: calls in progress per process and per caller, refused at once beyond.

A call that cannot start gets RESOURCE_EXHAUSTED immediately (with a retry hint) instead of
waiting: a queue that grows under overload only turns load into latency and then timeouts.
"""

from __future__ import annotations

import threading
from collections import Counter


class CallLimiter:
    """Counts calls in progress, in total and per caller name."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total = total
        self.per_caller = per_caller
        self._lock = threading.Lock()
        self._running = 0
        self._by_caller: Counter[str] = Counter()

    def try_acquire(self, caller: str) -> str | None:
        """None when the call may start (then `release` it), else why it may not."""
        with self._lock:
            if self._running >= self.total:
                return f"server busy: {self.total} calls in progress"
            if self._by_caller[caller] >= self.per_caller:
                return f"{caller} has {self.per_caller} calls in progress (the per-caller limit)"
            self._running += 1
            self._by_caller[caller] += 1
            return None

    def release(self, caller: str) -> None:
        with self._lock:
            self._running -= 1
            self._by_caller[caller] -= 1
            if self._by_caller[caller] <= 0:
                del self._by_caller[caller]

    @property
    def running(self) -> int:
        return self._running


__all__ = ["CallLimiter"]

"""A ServicerContext for servicer methods called in process (no server, no channel): the
warm-up's (a caller with no deadline that stays, and no metadata), whose abort fails the test."""

from __future__ import annotations

from typing import Any

from reallocator.server.warm_up import InProcessContext


class CallContext(InProcessContext):
    """The few ServicerContext calls the methods make; an abort is the test's failure."""

    def abort(self, *args: Any) -> None:
        raise AssertionError(args)

    def abort_with_status(self, *args: Any) -> None:
        raise AssertionError(args)

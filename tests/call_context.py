"""A ServicerContext for servicer methods called in process (no server, no channel): a caller
with no deadline that stays, and no metadata; an abort fails the test."""

from __future__ import annotations

from typing import Any


class CallContext:
    """The few ServicerContext calls the methods make."""

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, *args: Any) -> None:
        raise AssertionError(args)

    def abort_with_status(self, *args: Any) -> None:
        raise AssertionError(args)

    def set_trailing_metadata(self, *args: Any) -> None:
        pass

"""Work begun on a thread of its own while the caller goes on: for steps of a long call whose
time is mostly outside the GIL (Arrow's compute and compression, SQLite's writes), which a
second core then overlaps with the caller's own."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def begun(call: Callable[..., T], *args: object, name: str = "begun") -> Callable[[], T]:
    """`call(*args)` on a thread of its own, started now in the caller's context (its log
    fields and trace span), its result (or its exception) taken by the function returned. The
    two must share nothing either edits meanwhile."""
    future: Future[T] = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(call, *args))
        except BaseException as exc:  # raised again in the caller, by future.result
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future.result


def at_once(call: Callable[..., T], *args: object) -> Callable[[], T]:
    """`call(*args)` now, its result taken by the function returned (as `begun`'s): the same
    shape for a step too short to be worth a thread."""
    result = call(*args)
    return lambda: result


__all__ = ["at_once", "begun"]

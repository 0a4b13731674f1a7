"""Work begun on a thread: its result, its exception and the caller's context reach the
caller."""

from __future__ import annotations

import contextvars
import threading

import pytest

from reallocator.background import at_once, begun

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")


def _where(tag: str) -> tuple[str, str, int]:
    return tag, SEEN.get(), threading.get_ident()


def test_begun_runs_on_its_own_thread_in_the_callers_context() -> None:
    token = SEEN.set("caller")
    try:
        tag, value, thread = begun(_where, "x")()
    finally:
        SEEN.reset(token)
    assert (tag, value) == ("x", "caller") and thread != threading.get_ident()
    assert at_once(_where, "y")() == ("y", "", threading.get_ident())


def test_an_exception_on_the_thread_is_raised_in_the_caller() -> None:
    def fails(message: str) -> None:
        raise ValueError(message)

    result = begun(fails, "in the thread")
    with pytest.raises(ValueError, match="in the thread"):
        result()

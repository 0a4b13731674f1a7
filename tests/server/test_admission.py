"""The admission line: at most `running` calls at once, first come first served, a caller that
gives up leaves the line (or passes on the slot it was handed), the rest refused at once."""

from __future__ import annotations

import threading
import time

import pytest

from reallocator.core.interrupt import Interrupted
from reallocator.server.dispatch import Admission, Busy


class Caller:
    def __init__(self) -> None:
        self.active = True

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return self.active


def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_waiters_are_served_in_arrival_order() -> None:
    line = Admission(running=1, waiting=10)
    order: list[int] = []
    release = threading.Event()
    lock = threading.Lock()

    def call(i: int) -> None:
        with line.slot(Caller()):  # type: ignore[arg-type]
            with lock:
                order.append(i)
            if i == 0:
                release.wait(5)

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    _until(lambda: order == [0])
    for i in range(1, 8):  # queued one after the other, each seen in the line before the next
        t = threading.Thread(target=call, args=(i,))
        t.start()
        threads.append(t)
        _until(lambda i=i: len(line._line) == i)
    release.set()
    for t in threads:
        t.join(5)
    assert order == list(range(8))


def test_a_caller_that_leaves_the_line_does_not_hold_a_slot() -> None:
    line = Admission(running=1, waiting=2)
    holding, release = threading.Event(), threading.Event()
    gone = Caller()
    outcome: list[str] = []

    def holder() -> None:
        with line.slot(Caller()):  # type: ignore[arg-type]
            holding.set()
            release.wait(5)

    def leaver() -> None:
        try:
            with line.slot(gone):  # type: ignore[arg-type]
                outcome.append("ran")
        except Interrupted:
            outcome.append("left")

    h = threading.Thread(target=holder)
    h.start()
    holding.wait(5)
    w = threading.Thread(target=leaver)
    w.start()
    _until(lambda: len(line._line) == 1)
    gone.active = False  # the caller cancels while it waits
    w.join(5)
    assert outcome == ["left"] and not line._line

    def waiter() -> None:
        with line.slot(Caller()):  # type: ignore[arg-type]
            outcome.append("waited")

    waiters = [threading.Thread(target=waiter) for _ in range(2)]
    for t in waiters:
        t.start()
    _until(lambda: len(line._line) == 2)
    # 1 running + 2 waiting: a fourth caller is refused at once
    with pytest.raises(Busy), line.slot(Caller()):  # type: ignore[arg-type]
        pass
    release.set()
    h.join(5)
    for t in waiters:
        t.join(5)
    with line.slot(Caller()):  # type: ignore[arg-type]  # every slot came back
        assert line._free == 0
    assert outcome == ["left", "waited", "waited"]
    assert line._free == 1 and line._admitted == 0

"""The admission line: at most `running` calls at once, first come first served, a caller that
gives up leaves the line (or passes on the slot it was handed), the rest refused at once."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from reallocator.config import load_config
from reallocator.core.interrupt import Interrupted
from reallocator.server import servicer
from reallocator.server.app import start_server
from reallocator.server.dispatch import Admission, Busy
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc


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


class _Timed:
    """Calls through `line` in threads: when each got its slot, held until its event is set."""

    def __init__(self, line: Admission) -> None:
        self.line, self.started = line, time.monotonic()
        self.granted: dict[str, float] = {}
        self.release: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def call(self, name: str, caller: Caller | None = None) -> None:
        self.release[name] = threading.Event()

        def run() -> None:
            try:
                with self.line.slot(caller or Caller()):  # type: ignore[arg-type]
                    with self._lock:
                        self.granted[name] = time.monotonic() - self.started
                    self.release[name].wait(10)
            except Interrupted:
                with self._lock:
                    self.granted[name] = -1.0

        t = threading.Thread(target=run)
        t.start()
        self.threads.append(t)

    def join(self) -> None:
        for event in self.release.values():
            event.set()
        for t in self.threads:
            t.join(10)


def test_a_second_call_joins_a_running_one_only_after_interleave_after() -> None:
    calls = _Timed(Admission(running=2, waiting=4, interleave_after=0.4))
    calls.call("long")
    _until(lambda: "long" in calls.granted)
    calls.call("short")  # a free slot, but the long call has run < 0.4 s
    try:
        time.sleep(0.2)
        assert "short" not in calls.granted
        _until(lambda: "short" in calls.granted)
        assert calls.granted["short"] - calls.granted["long"] >= 0.39
        assert not calls.release["long"].is_set()  # beside the long call, still running
    finally:
        calls.join()


def test_a_call_that_ends_first_hands_its_slot_on_at_once() -> None:
    calls = _Timed(Admission(running=2, waiting=4, interleave_after=30.0))
    calls.call("first")
    _until(lambda: "first" in calls.granted)
    calls.call("second")
    _until(lambda: len(calls.line._line) == 1)
    ended = time.monotonic() - calls.started
    calls.release["first"].set()
    try:
        _until(lambda: "second" in calls.granted)
        assert calls.granted["second"] - ended < 1.0  # not the 30 s
    finally:
        calls.join()


def test_without_interleave_after_calls_start_together() -> None:
    calls = _Timed(Admission(running=2, waiting=4))
    calls.call("a")
    _until(lambda: "a" in calls.granted)
    calls.call("b")
    try:
        _until(lambda: "b" in calls.granted, timeout=1.0)
    finally:
        calls.join()


def test_the_line_keeps_its_order_and_its_leavers_with_interleave_after() -> None:
    """The head of the line takes the free slot once due; a waiter whose caller leaves passes
    its place on; a call ending hands its slot to the next in line only when the call still
    running has run `interleave_after` too."""
    calls = _Timed(Admission(running=2, waiting=8, interleave_after=0.6))
    gone = Caller()
    calls.call("a")
    _until(lambda: "a" in calls.granted)
    calls.call("b", gone)
    _until(lambda: len(calls.line._line) == 1)
    gone.active = False  # b leaves the line before its turn (callers are checked every 0.25 s)
    _until(lambda: calls.granted.get("b") == -1.0)
    calls.call("c")
    _until(lambda: len(calls.line._line) == 1)
    calls.call("d")
    _until(lambda: len(calls.line._line) == 2)
    try:
        _until(lambda: "c" in calls.granted)
        assert "d" not in calls.granted
        assert calls.granted["c"] - calls.granted["a"] >= 0.59
        calls.release["a"].set()  # c has run < 0.6 s: d waits for that, not for c's end
        _until(lambda: "d" in calls.granted)
        assert calls.granted["d"] - calls.granted["c"] >= 0.59
        assert not calls.release["c"].is_set()
    finally:
        calls.join()
    assert calls.line._free == 2 and calls.line._admitted == 0 and not calls.line._started


@pytest.mark.parametrize("interleave", [0.0, 0.4])
def test_a_started_server_holds_the_second_call_for_interleave_after(
    monkeypatch: pytest.MonkeyPatch, interleave: float
) -> None:
    """Two calls at once on a server of one process (max_workers 2): the second starts at once
    without `interleave_after`, and after it (beside the first, still running) with it."""
    started: list[float] = []

    def slow(self: object, request: object, context: object) -> pb.AssessPacingResponse:
        started.append(time.monotonic())
        time.sleep(1.0)
        return pb.AssessPacingResponse()

    monkeypatch.setattr(servicer.ReallocatorServicer, "assess_pacing", slow)
    config = load_config(
        env={}, host="127.0.0.1", port=0, workers=1, interleave_after_seconds=interleave
    )
    running = start_server(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)
            calls = [stub.AssessPacing.future(pb.AssessPacingRequest(), timeout=30) for _ in "ab"]
            for call in calls:
                call.result()
    finally:
        running.stop(0)
    gap = started[1] - started[0]
    if interleave:
        assert interleave - 0.01 <= gap < 1.0  # held, then beside the first
    else:
        assert gap < 0.3

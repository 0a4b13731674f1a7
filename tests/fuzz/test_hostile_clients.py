"""Hostile clients rather than hostile requests, against `reallocator serve` in a child process
as the quick start runs it (embedded SQLite store): compression bombs below grpcio (raw
HTTP/2), lying length prefixes, slowloris connections, a flood of WatchCampaign streams,
calls cancelled mid-solve, and concurrent clients racing to review, apply and roll back one
plan through two server processes (no transition lost or made twice).

Property, as in test_fuzz_server: a clean status for every call, the server alive and answering
health within a second throughout, memory bounded, and nothing acknowledged lost.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from fuzz_cases import SERVICE, ServerProcess
from google.protobuf import json_format
from raw_h2 import RawChannel, call, grpc_frame, gzip_of_zeros

from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
GIB = 1 << 30
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    running = ServerProcess()
    yield running
    log = running.stop()
    assert "Segmentation fault" not in log and "Traceback" not in log, log


def _healthy(server: ServerProcess) -> None:
    started = time.monotonic()
    assert server.alive(), server.stop()
    assert server.health(timeout=2.0) == "SERVING"
    assert time.monotonic() - started < 1.0


class _Peak:
    """The server's highest RSS while the `with` block runs (sampled every 20 ms)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server, self.peak, self._stop = server, server.rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.server.rss())

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- compression bombs and lying frames, below grpcio ----------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_1mb_message_inflating_to_a_gib_is_refused_within_the_receive_limit(
    server: ServerProcess, encoding: str
) -> None:
    """grpc-encoding gzip/deflate, 1 MB on the wire, 1 GiB inflated (a snapshot field whose
    bytes are zeros): refused RESOURCE_EXHAUSTED, and the server never holds more than the
    receive limit (128 MiB) of it."""
    head = b"\x0a\xff\xff\xff\x03"  # field 1 (snapshot), a declared length of ~1 GiB
    bomb = gzip_of_zeros(GIB, head, encoding)
    before = server.rss()
    with _Peak(server) as peak:
        answer = call(server.port, SERVICE + "AssessPacing", grpc_frame(bomb, compressed=True),
                      encoding)  # fmt: skip
    assert answer.status == RESOURCE_EXHAUSTED, answer
    assert "larger than max" in answer.message
    assert peak.peak - before < 200e6, (before, peak.peak)
    _healthy(server)


@pytest.mark.parametrize(
    "body, status",
    [
        (grpc_frame(b"abc", declared=2**32 - 1), RESOURCE_EXHAUSTED),  # a 4 GiB prefix
        (grpc_frame(b"\x0a\x05\x0a\x03\xff\xfe\xfd"), INVALID_ARGUMENT),  # invalid UTF-8 id
        (grpc_frame(bytes(1000)), INVALID_ARGUMENT),  # tag 0
        (grpc_frame(b"\x0a" + b"\xff" * 10), INVALID_ARGUMENT),  # a varint past 64 bits
        (grpc_frame(b"\x0a\x80\x80\x80\x80\x08"), INVALID_ARGUMENT),  # a length of 2**31
        (grpc_frame(b"\x0a\x02" * 200_000 + b"\x0a\x00"), INVALID_ARGUMENT),  # nested 200k deep
    ],
    ids=["prefix-4gib", "invalid-utf8", "tag-zero", "long-varint", "length-2^31", "deep-nest"],
)
def test_lying_frames_get_clean_statuses(server: ServerProcess, body: bytes, status: int) -> None:
    answer = call(server.port, SERVICE + "AssessPacing", body)
    assert answer.status == status, answer
    _healthy(server)


def _stall(server: ServerProcess, calls: int, idle: int) -> list[object]:
    """`idle` connections that send the HTTP/2 preface and nothing more, and `calls` calls (one
    connection each, no deadline) that declare a 100 MB message and send 1 byte of it."""
    held: list[object] = []
    for _ in range(idle):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        held.append(s)
    for _ in range(calls):
        channel = RawChannel(server.port)
        stream = channel.open(SERVICE + "Replan", timeout=None)
        channel.send(stream, grpc_frame(b"\x0a", declared=100_000_000), end=False)
        held.append(channel)
    return held


def _release(held: list[object]) -> None:
    for thing in held:
        thing.close()  # type: ignore[attr-defined]


def _real_call_answers(server: ServerProcess) -> None:
    stub = rpc.ReallocatorServiceStub(server.channel)
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = True
    assert stub.Replan(request, timeout=30).plan.deals


def test_idle_connections_and_a_few_stalled_calls_do_not_starve_real_callers(
    server: ServerProcess,
) -> None:
    """200 connections that never send a call, and 30 calls stalled mid-message (fewer than the
    serving threads): health and a real Replan are still answered."""
    held = _stall(server, calls=30, idle=200)
    try:
        for _ in range(5):
            _healthy(server)
            time.sleep(0.2)
        _real_call_answers(server)
    finally:
        _release(held)
    _healthy(server)


def test_slowloris_calls_do_not_starve_health(server: ServerProcess) -> None:
    """100 calls stalled mid-message (no grpc-timeout, one connection each): each holds one of
    the threads kept for arriving requests, and health and a real Replan are still answered."""
    held = _stall(server, calls=100, idle=0)
    try:
        time.sleep(0.5)
        _healthy(server)
        _real_call_answers(server)
    finally:
        _release(held)
        time.sleep(1.0)  # the server sees the connections go and frees their calls


def test_health_checks_have_threads_of_their_own() -> None:
    """No threads kept for arriving requests (max_arriving_calls 0): 100 stalled calls take
    every thread of the service's pool (50), yet health checks are answered, on their own."""
    small = ServerProcess(REALLOCATOR_MAX_ARRIVING_CALLS="0")
    held: list[object] = []
    try:
        held = _stall(small, calls=100, idle=0)
        time.sleep(0.5)
        for _ in range(3):
            _healthy(small)
    finally:
        _release(held)
        log = small.stop()
    assert "Traceback" not in log, log


def test_an_aged_connection_frees_the_threads_its_stalled_calls_hold() -> None:
    """max_connection_age 5 s + grace 1 s, no threads kept for arriving requests: 60 stalled
    calls take every thread of the service's pool (50) and a real Replan waits; once their
    connections age out the server closes them, the threads return and a Replan is answered
    while the stalling clients still hold their sockets open."""
    small = ServerProcess(
        REALLOCATOR_MAX_ARRIVING_CALLS="0",
        REALLOCATOR_MAX_CONNECTION_AGE_SECONDS="5",
        REALLOCATOR_MAX_CONNECTION_AGE_GRACE_SECONDS="1",
    )
    held: list[object] = []
    try:
        started = time.monotonic()
        held = _stall(small, calls=60, idle=0)
        stub = rpc.ReallocatorServiceStub(small.channel)
        request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
        request.dry_run = True
        if time.monotonic() - started < 3.0:  # the stalled connections have not aged yet
            with pytest.raises(grpc.RpcError) as waited:
                stub.Replan(request, timeout=1.0)
            assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        answered = None
        while answered is None and time.monotonic() - started < 30.0:
            try:  # the client's own channel ages too: a call may meet a GOAWAY
                answered = stub.Replan(request, timeout=5.0)
            except grpc.RpcError as exc:
                assert exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ), exc
                time.sleep(0.5)
        assert answered is not None and answered.plan.deals
        assert time.monotonic() - started >= 5.0  # not before the stalled connections aged
        _healthy(small)
    finally:
        _release(held)
        log = small.stop()
    assert "Traceback" not in log, log


# --- streams, cancellation -------------------------------------------------------------------


def test_thousands_of_watch_streams_are_refused_past_the_limit_and_slots_return(
    server: ServerProcess,
) -> None:
    """2,000 WatchCampaign streams at once, over 20 connections: those past max_watch_streams
    are refused RESOURCE_EXHAUSTED at once, the rest watch until their deadline; health is
    answered throughout, and afterwards a new watch is admitted (every slot returned)."""
    channels = [grpc.insecure_channel(f"127.0.0.1:{server.port}") for _ in range(20)]
    calls = []
    try:
        opened = time.monotonic()
        for i in range(2000):
            watch = channels[i % 20].unary_stream(SERVICE + "WatchCampaign")
            request = pb.WatchCampaignRequest(campaign_id=f"c{i % 7}").SerializeToString()
            calls.append(watch(request, timeout=4.0))
        _healthy(server)
        codes: Counter[str] = Counter()
        for stream in calls:
            try:
                for _ in stream:
                    pass
                codes["OK"] += 1
            except grpc.RpcError as error:
                codes[error.code().name] += 1  # type: ignore[attr-defined]
        # Every stream ends by its deadline. Open (reported): under this flood some streams
        # (0-100 of 2,000) are neither served nor refused and end CANCELLED, with no trailers,
        # when their deadline passes: queued below the service's code.
        assert time.monotonic() - opened < 4.0 + 3.0
        assert set(codes) <= {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "OK", "CANCELLED"}, codes
        assert codes["RESOURCE_EXHAUSTED"] >= 1800, codes
        _healthy(server)
    finally:
        for c in channels:
            c.close()
    time.sleep(1.0)
    watch = server.channel.unary_stream(SERVICE + "WatchCampaign")
    with pytest.raises(grpc.RpcError) as caught:
        for _ in watch(pb.WatchCampaignRequest(campaign_id="c").SerializeToString(), timeout=1.5):
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # admitted: it watched


def _big_replan(deals: int = 4000) -> bytes:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from builders import build_snapshot, random_snapshot_spec

    spec = random_snapshot_spec(deals, seed=5, n_buckets=24)
    request = pb.ReplanRequest(snapshot=build_snapshot(spec, "arrow"), dry_run=True)
    request.on_infeasible = pb.INFEASIBILITY_HANDLING_RELAX
    return request.SerializeToString()


def test_calls_cancelled_mid_solve_free_their_slots(server: ServerProcess) -> None:
    """60 large Replans cancelled 0.05-0.6 s in (more than max_workers + max_pending_calls
    would admit at once if a cancelled call kept its slot): afterwards the server answers a
    full batch of real calls, none refused."""
    payload = _big_replan()
    replan = server.channel.unary_unary(SERVICE + "Replan")
    for round_ in range(6):
        pending = [replan.future(payload, timeout=60) for _ in range(10)]
        time.sleep(0.05 + 0.1 * round_)
        for f in pending:
            f.cancel()
        _healthy(server)
    time.sleep(2.0)
    small = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    small.dry_run = True
    with futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _status(replan, small.SerializeToString()), range(8)))
    assert answers == ["OK"] * 8, answers
    _healthy(server)


def _status(method: grpc.UnaryUnaryMultiCallable, payload: bytes) -> str:
    try:
        method(payload, timeout=60)
    except grpc.RpcError as error:
        return str(error.code().name)  # type: ignore[attr-defined]
    return "OK"


# --- races on one plan, through two server processes ----------------------------------------


@pytest.fixture(scope="module")
def two_workers() -> Iterator[ServerProcess]:
    running = ServerProcess(workers=2)
    yield running
    log = running.stop()
    assert "Traceback" not in log, log


def _stubs(server: ServerProcess, n: int) -> list[tuple[grpc.Channel, rpc.ReallocatorServiceStub]]:
    """`n` separate connections: SO_REUSEPORT spreads them over both processes."""
    out = []
    for _ in range(n):
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        out.append((channel, rpc.ReallocatorServiceStub(channel)))
    return out


def _race(calls: list[Callable[[], object]]) -> list[tuple[str, object]]:
    """Runs every call at once (released together); each gives (status, reply)."""
    start = threading.Barrier(len(calls))

    def run(fn: Callable[[], object]) -> tuple[str, object]:
        start.wait()
        try:
            return "OK", fn()
        except grpc.RpcError as error:
            return error.code().name, error.details()  # type: ignore[attr-defined]

    with futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_review_apply_rollback_races_make_each_transition_once(
    two_workers: ServerProcess,
) -> None:
    """Per round: 12 clients review one PROPOSED plan at once (approve or reject, half with the
    etag they read, half without): exactly one wins, the others are told ABORTED or
    FAILED_PRECONDITION, and the stored state is the winner's. Then 12 confirm it applied at
    once (idempotent: no error but a lost race) and 12 roll it back at once: one rollback."""
    conns = _stubs(two_workers, 12)
    try:
        for round_ in range(4):
            _race_one_plan([s for _, s in conns], f"race-{round_}")
    finally:
        for channel, _ in conns:
            channel.close()
    assert two_workers.alive()


def _race_one_plan(stubs: list[rpc.ReallocatorServiceStub], campaign: str) -> None:
    stub = stubs[0]
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    request.snapshot.campaign_id = campaign
    plan = stub.Replan(request, timeout=120).plan
    assert plan.state == plan_pb2.PLAN_STATE_PROPOSED

    def review(i: int, s: rpc.ReallocatorServiceStub) -> Callable[[], object]:
        asked = pb.ReviewPlanRequest(
            name=plan.name,
            decision=pb.REVIEW_DECISION_APPROVE if i % 3 else pb.REVIEW_DECISION_REJECT,
            etag=plan.etag if i % 2 else "",
            request_id=f"review-{i}",
        )
        return lambda: s.ReviewPlan(asked, timeout=60).plan

    results = _race([review(i, s) for i, s in enumerate(stubs)])
    won = [(i, r) for i, (code, r) in enumerate(results) if code == "OK"]
    assert len(won) == 1, results
    assert {code for code, _ in results} <= {"OK", "ABORTED", "FAILED_PRECONDITION"}, results
    winner, reviewed = won[0]
    stored = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=30).plan
    assert (stored.state, stored.etag) == (reviewed.state, reviewed.etag)  # type: ignore[attr-defined]
    if stored.state != plan_pb2.PLAN_STATE_APPROVED:
        assert winner % 3 == 0
        return

    def confirm(i: int, s: rpc.ReallocatorServiceStub) -> Callable[[], object]:
        asked = pb.ConfirmAppliedRequest(name=plan.name, request_id=f"apply-{i}")
        return lambda: s.ConfirmApplied(asked, timeout=60).plan

    results = _race([confirm(i, s) for i, s in enumerate(stubs)])
    assert {code for code, _ in results} <= {"OK", "ABORTED"}, results
    assert any(code == "OK" for code, _ in results), results
    stored = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=30).plan
    assert stored.state == plan_pb2.PLAN_STATE_APPLIED
    applied = [e for e in stored.history if e.state == plan_pb2.PLAN_STATE_APPLIED]
    assert len(applied) == 1, stored.history

    def roll_back(i: int, s: rpc.ReallocatorServiceStub) -> Callable[[], object]:
        asked = pb.RollbackPlanRequest(name=plan.name, reason="race", request_id=f"back-{i}")
        return lambda: s.RollbackPlan(asked, timeout=120)

    results = _race([roll_back(i, s) for i, s in enumerate(stubs)])
    assert [code for code, _ in results].count("OK") == 1, results
    assert {c for c, _ in results} <= {"OK", "ABORTED", "FAILED_PRECONDITION"}, results
    stored = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=30).plan
    assert stored.state == plan_pb2.PLAN_STATE_ROLLED_BACK
    listed = stub.ListPlans(
        pb.ListPlansRequest(parent=f"campaigns/{campaign}", page_size=100), timeout=30
    ).plans
    assert len(listed) == 2, [(p.name, p.state) for p in listed]  # the plan and one rollback

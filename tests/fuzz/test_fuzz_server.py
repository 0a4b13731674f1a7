"""Fuzzing over a real gRPC channel against `reallocator serve` in a child process (a crash is a
failure here, not a dead test run). Bounded for CI (about a minute); `benchmarks/fuzz.py
--minutes N` runs the long form.

Property: every answer is OK (and keeps its own rules) or INVALID_ARGUMENT, FAILED_PRECONDITION,
RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED; the server stays alive and answers health within 1 s
throughout; its memory returns within 20 % of where it started.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Iterator

import grpc
import pytest
from fuzz_cases import (
    MUTATIONS,
    Case,
    ServerProcess,
    allowed,
    check_response,
    random_case,
    valid_request,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def target() -> Iterator[ServerProcess]:
    server = ServerProcess()
    # Warm up: the first calls import and allocate what every later call reuses.
    rng = random.Random(0)
    server.seed_plans(5)  # life-cycle cases act on real plans too
    for _ in range(10):
        method, request = valid_request(rng)
        server.call(Case("warm-up", method, request.SerializeToString()))
    for _ in range(40):
        server.call(random_case(rng))
    server.baseline = server.rss()  # type: ignore[attr-defined]
    yield server
    log = server.stop()
    assert "Segmentation fault" not in log and "Traceback" not in log, log


def _exercise(target: ServerProcess, case: Case) -> None:
    code, reply, details = target.call(case)
    assert target.alive(), f"server died on a {case.kind} case: {target.stop()}"
    assert code in allowed(case), (case.kind, case.method, code, details[:300])
    if code == grpc.StatusCode.OK:
        assert reply is not None
        assert not check_response(case.method, reply), (
            case.kind,
            check_response(case.method, reply),
        )
    started = time.monotonic()
    assert target.health() == "SERVING"
    assert time.monotonic() - started < 1.0


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(kind=st.sampled_from(list(MUTATIONS)), seed=st.integers(0, 2**32 - 1))
def test_hostile_requests_get_clean_statuses(target: ServerProcess, kind: str, seed: int) -> None:
    _exercise(target, MUTATIONS[kind](random.Random(seed)))


def test_decompression_bombs_are_refused_and_memory_returns(target: ServerProcess) -> None:
    rng = random.Random(7)
    for _ in range(4):
        case = MUTATIONS["bomb"](rng)
        code, _, details = target.call(case)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details[:300])
        assert "max_arrow_bytes" in details or "and" in details
        assert target.alive()


def test_memory_returns_within_20_percent(target: ServerProcess) -> None:
    """Runs last in this module (pytest keeps file order): after every case above."""
    gc.collect()
    deadline = time.monotonic() + 10
    while target.rss() > 1.2 * target.baseline and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.5)
    assert target.rss() <= 1.2 * target.baseline, (target.rss(), target.baseline)  # type: ignore[attr-defined]

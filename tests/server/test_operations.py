"""Overload (RESOURCE_EXHAUSTED at once with a retry hint while health keeps answering),
Prometheus metrics and the /healthz probe, the UNAVAILABLE hook, and the call log (one JSON
line per call, never a credential or a request body)."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import build_snapshot, random_snapshot_spec, replan_request
from conftest import bad_request, free_port, rpc_error
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from ops_helpers import Recorder, bearer, ops_server, stub
from prometheus_client.parser import text_string_to_metric_families

from reallocator.config import load_config
from reallocator.server.app import RunningServer
from reallocator.server.auth import hash_token
from reallocator.server.logs import JsonFormatter, TextFormatter
from reallocator.server.metrics import store_timer
from reallocator.server.operations import Operations
from reallocator.server.serving import Unavailable
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TOKEN_A = "caller-a-token-0000000000000000"
TOKEN_B = "caller-b-token-1111111111111111"
TWO_CALLERS = f"""
[overload]
max_concurrent_calls = 2
max_calls_per_caller = 1
retry_after_seconds = 2.5

[[security.tokens]]
name = "a"
sha256 = "{hash_token(TOKEN_A)}"
roles = ["read", "plan"]

[[security.tokens]]
name = "b"
sha256 = "{hash_token(TOKEN_B)}"
roles = ["read"]
"""


def _retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin"
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return float(info.retry_delay.ToTimedelta().total_seconds())


def _health(channel: grpc.Channel, timeout: float = 5) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=timeout
    )
    return int(reply.status)


def _hold(channel: grpc.Channel, n: int, token: str | None = None) -> list[Future[Any]]:
    """Starts `n` AssessPacing calls the Recorder holds open; returns when all are inside."""
    metadata = bearer(token) if token else ()
    calls = [
        stub(channel).AssessPacing.future(pb.AssessPacingRequest(), metadata=metadata, timeout=30)
        for _ in range(n)
    ]
    for _ in range(n):
        assert Recorder.entered.acquire(timeout=10), "held call never reached the servicer"
    return calls  # type: ignore[return-value]


# --- overload --------------------------------------------------------------------------------


def test_beyond_the_process_limit_calls_are_refused_at_once_and_health_answers(
    tmp_path: Path,
) -> None:
    toml = """
[overload]
max_concurrent_calls = 2
max_calls_per_caller = 50
retry_after_seconds = 1.5
"""
    with (
        ops_server(tmp_path, toml, recorder=True, max_workers=4) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        Recorder.gate = threading.Event()
        held = _hold(channel, 2)
        start = time.perf_counter()
        flood = [
            stub(channel).AssessPacing.future(pb.AssessPacingRequest(), timeout=10)
            for _ in range(20)
        ]
        for _ in range(3):
            assert _health(channel, timeout=2) == SERVING  # answered under overload
        codes = [rpc_error(call.result).code() for call in flood]
        assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert time.perf_counter() - start < 5  # refused at once, not after the held calls
        error = rpc_error(lambda: stub(channel).AssessPacing(pb.AssessPacingRequest(), timeout=5))
        assert error.details() == "server busy: 2 calls in progress"
        assert _retry_delay(error) == pytest.approx(1.5)
        Recorder.gate.set()
        for call in held:
            call.result(timeout=10)
        stub(channel).AssessPacing(pb.AssessPacingRequest(), timeout=5)  # room again
        assert running.ops is not None and running.ops.limiter.running == 0


def test_the_per_caller_limit_leaves_room_for_other_callers(tmp_path: Path) -> None:
    with (
        ops_server(tmp_path, TWO_CALLERS, recorder=True, max_workers=4) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        Recorder.gate = threading.Event()
        held = _hold(channel, 1, TOKEN_A)
        error = rpc_error(
            lambda: stub(channel).AssessPacing(
                pb.AssessPacingRequest(), metadata=bearer(TOKEN_A), timeout=5
            )
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per-caller" in error.details() and _retry_delay(error) == pytest.approx(2.5)
        held += _hold(channel, 1, TOKEN_B)  # b still gets in
        Recorder.gate.set()
        for call in held:
            call.result(timeout=10)
    assert [actor for _, actor in Recorder.seen] == ["a", "b"]


# --- metrics and /healthz --------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = _get(port, "/metrics")
    assert code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def metered(tmp_path: Path) -> Any:
    with ops_server(tmp_path, "[metrics]\nport = 0\n") as running:
        yield running


def test_metrics_count_calls_latency_solves_and_plan_size(metered: RunningServer) -> None:
    assert metered.ops is not None and metered.ops.metrics_server is not None
    port = metered.ops.metrics_server.port
    snapshot = build_snapshot(random_snapshot_spec(50, seed=4, n_buckets=6), "deals")
    with grpc.insecure_channel(f"127.0.0.1:{metered.port}") as channel:
        plan = stub(channel).Replan(replan_request(snapshot), timeout=60).plan
        for _ in range(2):
            rpc_error(lambda: stub(channel).AssessPacing(pb.AssessPacingRequest(), timeout=5))
        _health(channel)
    samples = _samples(port)
    assert samples[("reallocator_calls_total", (("code", "OK"), ("method", "Replan")))] == 1
    invalid = (("code", "INVALID_ARGUMENT"), ("method", "AssessPacing"))
    assert samples[("reallocator_calls_total", invalid)] == 2
    assert samples[("reallocator_call_seconds_count", (("method", "Replan"),))] == 1
    path = plan_pb2.SolverPath.Name(plan.solver.path)
    solves = {k: v for k, v in samples.items() if k[0] == "reallocator_solve_seconds_count"}
    assert solves == {("reallocator_solve_seconds_count", (("path", path),)): 1}
    assert samples[("reallocator_plan_deals_count", ())] == 1
    assert samples[("reallocator_plan_deals_sum", ())] == len(plan.deals)
    assert samples[("reallocator_calls_in_flight", ())] == 0
    health_calls = [k for k in samples if k[0] == "reallocator_calls_total" and "Check" in str(k)]
    assert health_calls == []  # health is outside the interceptor


def test_store_timer_records_into_the_running_server(metered: RunningServer) -> None:
    assert metered.ops is not None and metered.ops.metrics_server is not None
    with store_timer("append_event"):
        time.sleep(0.01)
    samples = _samples(metered.ops.metrics_server.port)
    key = ("reallocator_store_seconds_count", (("operation", "append_event"),))
    assert samples[key] == 1
    assert samples[("reallocator_store_seconds_sum", (("operation", "append_event"),))] >= 0.01


def test_healthz_follows_the_grpc_health_status(metered: RunningServer) -> None:
    assert metered.ops is not None and metered.ops.metrics_server is not None
    assert metered.ops.serving is not None
    port = metered.ops.metrics_server.port
    assert _get(port, "/healthz") == (200, "SERVING\n")
    with grpc.insecure_channel(f"127.0.0.1:{metered.port}") as channel:
        metered.ops.serving.set_serving(False, "database unreachable")
        assert _get(port, "/healthz") == (503, "NOT_SERVING\n")
        assert _health(channel) == NOT_SERVING
        metered.ops.serving.set_serving(True)
        assert _get(port, "/healthz") == (200, "SERVING\n")
        assert _health(channel) == SERVING
        metered.health.enter_graceful_shutdown()
        assert _get(port, "/healthz")[0] == 503
    assert _get(port, "/nothing")[0] == 404


def test_unavailable_from_a_dependency_answers_unavailable_with_a_hint(tmp_path: Path) -> None:
    with (
        ops_server(tmp_path, recorder=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        Recorder.fail_with = Unavailable("audit store unreachable")
        error = rpc_error(lambda: stub(channel).ReviewPlan(pb.ReviewPlanRequest(), timeout=5))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "audit store unreachable" in error.details()
        assert _retry_delay(error) == pytest.approx(1.0)


# --- the call log ----------------------------------------------------------------------------

SECRET = "s3cret-token-never-in-logs-8d1f2a"
BODY = "BODY-MARKER-never-in-logs-5c9e"


def test_one_json_line_per_call_without_secrets_or_bodies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    toml = f"""
[[security.tokens]]
name = "planner-service"
sha256 = "{hash_token(SECRET)}"
roles = ["read", "plan"]
"""
    snapshot = build_snapshot(random_snapshot_spec(20, seed=5, n_buckets=6), "deals")
    snapshot.sellers[0].display_name = BODY
    snapshot.campaign_id = "camp-42"
    request = replan_request(snapshot)
    assert BODY in str(request)
    caplog.set_level(logging.DEBUG)
    with (
        ops_server(tmp_path, toml) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        metadata = [*bearer(SECRET), ("x-request-id", "req-1")]
        _, call = stub(channel).Replan.with_call(request, metadata=metadata)
        assert ("x-request-id", "req-1") in call.trailing_metadata()
        refused = rpc_error(lambda: stub(channel).Replan(request, metadata=bearer(SECRET + "x")))
        assert any(k == "x-request-id" for k, _ in refused.trailing_metadata())
        rpc_error(lambda: stub(channel).Replan(request, metadata=bearer(BODY)))
    lines = [JsonFormatter().format(r) for r in caplog.records]
    lines += [TextFormatter("%(message)s").format(r) for r in caplog.records]
    for line in lines:
        assert SECRET not in line and BODY not in line, line
    calls = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "reallocator.calls"
    ]
    assert len(calls) == 3
    ok, *refused = calls
    assert ok["event"] == "call" and ok["request_id"] == "req-1"
    assert (ok["method"], ok["caller"], ok["campaign"], ok["status"]) == (
        "Replan", "planner-service", "camp-42", "OK",
    )  # fmt: skip
    assert ok["plan_status"].startswith("PLAN_STATUS_") and ok["deals"] == 20
    assert ok["duration_ms"] > 0
    assert [c["status"] for c in refused] == ["UNAUTHENTICATED"] * 2
    assert all(len(c["request_id"]) == 32 for c in refused)  # generated when none is given


def test_an_error_with_details_keeps_them_beside_the_request_id(tmp_path: Path) -> None:
    with (
        ops_server(tmp_path) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        metadata = (("x-request-id", "req-7"),)
        error = rpc_error(
            lambda: stub(channel).AssessPacing(pb.AssessPacingRequest(), metadata=metadata)
        )
    assert ("x-request-id", "req-7") in error.trailing_metadata()
    assert bad_request(error)  # google.rpc.BadRequest still there


def test_a_call_the_client_abandoned_is_logged_cancelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reallocator.calls")
    with (
        ops_server(tmp_path, recorder=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        Recorder.gate = threading.Event()
        error = rpc_error(lambda: stub(channel).AssessPacing(pb.AssessPacingRequest(), timeout=0.5))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert Recorder.ended.wait(10)  # the server has seen the call end
        Recorder.gate.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not caplog.records:
            time.sleep(0.05)
    (record,) = [r for r in caplog.records if r.name == "reallocator.calls"]
    assert record.fields["status"] == "CANCELLED"  # type: ignore[attr-defined]


def test_each_server_process_gets_its_own_metrics_port(tmp_path: Path) -> None:
    base = free_port()
    config = load_config(env={}, host="127.0.0.1", port=0, metrics_port=base)
    with ops_server(tmp_path, f"[metrics]\nport = {base}\n") as running:
        assert running.ops is not None and running.ops.metrics_server is not None
        assert running.ops.metrics_server.port == base
    second = Operations(config, process_index=1)
    second.start(running.health, ("",))
    try:
        assert second.metrics_server is not None and second.metrics_server.port == base + 1
    finally:
        second.stop()

"""`reallocator serve` as a real process: one server per worker sharing the port, and the
documented drain on SIGTERM (NOT_SERVING while still accepting, then the grace period, then
exit), observed from outside as a load balancer would."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

CLI = [sys.executable, "-m", "reallocator.cli"]
SERVING = health_pb2.HealthCheckResponse.SERVING


def _health(port: int, timeout: float = 1.0) -> str:
    """One health check on a new connection (as a load balancer's probe)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@contextmanager
def _serve(*flags: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REALLOCATOR_")}
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean | env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_serving(proc: subprocess.Popen[str], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if _health(port) == "SERVING":
            return
        time.sleep(0.1)
    pytest.fail("no SERVING in time")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_shows_not_serving_while_accepting_then_exits_within_the_grace_period(
    workers: str,
) -> None:
    port = free_port()
    env = {"REALLOCATOR_DRAIN_DELAY_SECONDS": "1.5", "REALLOCATOR_GRACE_PERIOD_SECONDS": "3"}
    with _serve("--port", str(port), "--workers", workers, **env) as proc:
        _wait_serving(proc, port)
        if workers == "2":  # give the second worker time to start before the signal
            time.sleep(3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        seen: list[str] = []
        while proc.poll() is None and time.monotonic() - started < 15:
            seen.append(_health(port, timeout=0.5))
            time.sleep(0.05)
        _, err = proc.communicate(timeout=15)
        took = time.monotonic() - started
    assert proc.returncode == 0, err
    assert "NOT_SERVING" in seen, seen  # the listener still accepted during the delay
    assert took < 3 + 2.5, took  # grace period (whole drain) plus process exit
    assert "Traceback" not in err


def test_port_0_with_several_workers_serves_on_the_picked_port() -> None:
    with _serve("--port", "0", "--workers", "2") as proc:
        assert proc.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
        port = 0
        deadline = time.monotonic() + 60
        while not port and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=1)
                found = re.search(r"supervising 2 workers on 127\.0\.0\.1:(\d+)", line)
                port = int(found.group(1)) if found else 0
        assert port > 0
        _wait_serving(proc, port)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        assert proc.returncode == 0


def test_busy_calls_cannot_starve_health_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service thread stuck in a call, more calls waiting: health still answers at once,
    and calls past the waiting line are refused (RESOURCE_EXHAUSTED) instead of queueing."""
    from reallocator.config import load_config
    from reallocator.server import servicer
    from reallocator.server.app import start_server
    from reallocator.v1 import reallocator_service_pb2 as pb
    from reallocator.v1 import reallocator_service_pb2_grpc

    release = threading.Event()

    def stuck(self: object, request: object, context: object) -> pb.AssessPacingResponse:
        release.wait(20)
        return pb.AssessPacingResponse()

    monkeypatch.setattr(servicer.ReallocatorServicer, "assess_pacing", stuck)
    config = load_config(env={}, host="127.0.0.1", port=0, max_workers=2, max_pending_calls=2)
    running = start_server(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)
            calls = [
                stub.AssessPacing.future(pb.AssessPacingRequest(), timeout=30) for _ in range(8)
            ]
            deadline = time.monotonic() + 15  # the four past the line are refused at once
            while sum(c.done() for c in calls) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            started = time.monotonic()
            assert _health(running.port, timeout=1.0) == "SERVING"
            assert time.monotonic() - started < 1.0
            refused = [c for c in calls if c.done()]
            assert len(refused) == 4
            assert {c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            release.set()
            assert {c.code() for c in calls if c not in refused} == {grpc.StatusCode.OK}
    finally:
        release.set()
        running.stop(grace=0)


def test_workers_die_with_their_supervisor_even_when_it_is_killed() -> None:
    """SIGKILL of the supervising process leaves no orphaned worker holding the port."""
    port = free_port()
    with _serve("--port", str(port), "--workers", "2") as proc:
        _wait_serving(proc, port)
        children: list[int] = []
        deadline = time.monotonic() + 30
        while len(children) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            path = f"/proc/{proc.pid}/task/{proc.pid}/children"
            found = open(path).read().split()  # noqa: SIM115 - one read of a proc file
            children = [int(c) for c in found if _is_worker(int(c))]
        assert len(children) == 2, children
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(c) for c in children), "a worker outlived its supervisor"


def _is_worker(pid: int) -> bool:
    try:
        return "spawn_main" in open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]  # noqa: SIM115
    except OSError:
        return False
    return state != "Z"


def test_a_server_process_runs_blas_on_one_thread() -> None:
    """One process per core already uses the cores: BLAS threads on top only contend."""
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    from reallocator.server.app import one_blas_thread

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    with threadpool_limits():  # restored afterwards, for the other tests in this process
        one_blas_thread()
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


def test_a_second_server_on_a_taken_port_refuses_to_start() -> None:
    """Two `serve` processes on one port (SO_REUSEPORT lets the same user's sockets share it):
    the second stops at once, saying which address is taken, and the first keeps serving."""
    port = free_port()
    with _serve("--port", str(port), "--workers", "2") as first:
        _wait_serving(first, port)
        with _serve("--port", str(port), "--workers", "2") as second:
            _, err = second.communicate(timeout=60)
        assert second.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in err, err
        assert "Traceback" not in err
        assert _health(port) == "SERVING"
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=15)
        assert first.returncode == 0

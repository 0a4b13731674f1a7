"""Calls shared between server processes (server/peers.py): a busy worker forwards a CPU-bound
call to a less busy sibling over its private socket and relays the answer, so a client whose
calls all ride one connection still gets every core. Two servers in this process stand for two
workers (their shared loads set by hand to decide where a call goes), then `reallocator serve
--workers 2` as a real process, reached over a single channel."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from conftest import bad_request, free_port, rpc_error
from google.protobuf import json_format
from test_drain import _serve, _wait_serving

from reallocator.config import load_config
from reallocator.server.app import RunningServer, start_server
from reallocator.server.identity import ACTOR_HEADER
from reallocator.server.peers import CLOSED, WORKER_HEADER, PeerSpec, peer_spec
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def _request(campaign: str = "peers", dry_run: bool = True) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.snapshot.campaign_id = campaign
    request.dry_run = dry_run
    return request


def _worker(call: grpc.Call) -> str:
    return str(dict(call.trailing_metadata() or ()).get(WORKER_HEADER, "?"))


@dataclasses.dataclass
class Pair:
    spec: PeerSpec
    servers: list[RunningServer]
    stub: rpc.ReallocatorServiceStub  # reaches worker 0 only

    def send_to(self, worker: int | None) -> None:
        """Worker 0 looks busy and `worker` idle (None: every sibling closed): calls that reach
        worker 0 go there, until worker 0 admits a call of its own."""
        self.spec.loads[0] = 5
        self.spec.loads[1] = CLOSED if worker is None else 0


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    config = load_config(
        env={}, host="127.0.0.1", port=0, database_url=f"sqlite:///{tmp_path / 'store.db'}"
    )
    with peer_spec(2) as spec:
        servers = [start_server(config, process_index=i, peers=spec) for i in range(2)]
        try:
            with grpc.insecure_channel(f"127.0.0.1:{servers[0].port}") as channel:
                yield Pair(spec, servers, rpc.ReallocatorServiceStub(channel))
        finally:
            for server in servers:
                server.stop(grace=0)


def test_a_busy_worker_forwards_and_the_answer_is_the_same(pair: Pair) -> None:
    here, call = pair.stub.Replan.with_call(_request(), timeout=60)
    assert _worker(call) == "0"
    pair.send_to(1)
    there, call = pair.stub.Replan.with_call(_request(), timeout=60)
    assert _worker(call) == "1"
    for plan in (here.plan, there.plan):  # all but the clock: when, and how long it took
        plan.ClearField("create_time")
        plan.solver.ClearField("build_duration")
        plan.solver.ClearField("solve_duration")
        plan.solver.ClearField("verify_duration")
        plan.solver.ClearField("total_duration")
    assert there.plan == here.plan
    assessed, call = pair.stub.AssessPacing.with_call(
        pb.AssessPacingRequest(snapshot=_request().snapshot), timeout=60
    )
    assert _worker(call) == "1" and assessed.assessment.deals


def test_a_forwarded_call_is_recorded_once_with_its_actor(pair: Pair) -> None:
    pair.send_to(1)
    answer, call = pair.stub.Replan.with_call(
        _request("peers-recorded", dry_run=False),
        timeout=60,
        metadata=((ACTOR_HEADER, "trader-7"),),
    )
    assert _worker(call) == "1"
    plan = answer.plan
    assert plan.state == plan_pb2.PLAN_STATE_PROPOSED
    listed = pair.stub.ListPlans(pb.ListPlansRequest(parent="campaigns/peers-recorded"), timeout=10)
    assert [p.name for p in listed.plans] == [plan.name]
    stored = pair.stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan
    assert stored.history[0].actor == "trader-7"


def test_a_forwarded_error_keeps_its_status_and_field_violations(pair: Pair) -> None:
    bad = _request()
    bad.snapshot.deals[1].allocation = -5
    local = bad_request(rpc_error(lambda: pair.stub.Replan(bad, timeout=60)))
    pair.send_to(1)
    error = rpc_error(lambda: pair.stub.Replan(bad, timeout=60))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error) == local
    assert [v.field for v in local] == ["snapshot.deals[1].allocation"]


def test_the_deadline_travels_with_the_forwarded_call(pair: Pair) -> None:
    pair.send_to(1)
    error = rpc_error(lambda: pair.stub.Replan(_request(), timeout=0.001))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_no_open_sibling_or_an_unreachable_one_runs_the_call_here(pair: Pair) -> None:
    pair.send_to(None)
    _, call = pair.stub.Replan.with_call(_request(), timeout=60)
    assert _worker(call) == "0"
    assert pair.servers[1].private is not None
    pair.servers[1].private[0].stop(grace=0).wait(5)  # its socket gone, its load still open
    pair.send_to(1)
    _, call = pair.stub.Replan.with_call(_request(), timeout=60)
    assert _worker(call) == "0"


def test_a_draining_worker_takes_no_forwarded_calls(pair: Pair) -> None:
    pair.send_to(1)
    pair.servers[1].stop(grace=0)  # shut: its load is CLOSED
    assert pair.spec.loads[1] == CLOSED
    _, call = pair.stub.Replan.with_call(_request(), timeout=60)
    assert _worker(call) == "0"


def test_serve_shares_one_connections_calls_between_its_workers() -> None:
    """The reason for it all: one channel, calls in flight at once, both processes compute."""
    port = free_port()
    with _serve("--port", str(port), "--workers", "2") as proc:
        _wait_serving(proc, port)
        assert _sockets_directories(proc.pid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rpc.ReallocatorServiceStub(channel)
            request = _request()
            stub.Replan(request, timeout=60)  # warm the first worker
            seen: set[str] = set()
            for _ in range(20):  # both workers started and took calls, or fail below
                with ThreadPoolExecutor(8) as pool:
                    calls = [
                        pool.submit(stub.Replan.with_call, request, timeout=60) for _ in range(16)
                    ]
                    seen |= {_worker(c.result()[1]) for c in calls}
                if seen == {"0", "1"}:
                    break
    assert seen == {"0", "1"}


def _sockets_directories(supervisor: int) -> list[str]:
    """The private sockets' directories a supervisor made (named after its pid)."""
    prefix = f"reallocator-peers-{supervisor}-"
    return [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefix)]


def test_serve_with_share_calls_off_keeps_each_connections_calls(tmp_path: Path) -> None:
    """`--no-share-calls`: no private sockets are made (no directory for this supervisor) and
    no call is forwarded: the answers carry no worker trailer, as with one worker."""
    port = free_port()
    with _serve("--port", str(port), "--workers", "2", "--no-share-calls") as proc:
        _wait_serving(proc, port)
        made = _sockets_directories(proc.pid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rpc.ReallocatorServiceStub(channel)
            with ThreadPoolExecutor(8) as pool:
                calls = [
                    pool.submit(stub.Replan.with_call, _request(), timeout=60) for _ in range(16)
                ]
                answers = [c.result() for c in calls]
    assert not made
    assert all(response.plan.deals for response, _ in answers)
    assert {_worker(call) for _, call in answers} == {"?"}


def test_a_worker_without_a_sockets_directory_shares_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`peer_spec(share=False)` makes no directory; a worker given such a spec publishes no
    load, opens no socket, says nothing of it, and serves its calls."""
    config = load_config(
        env={}, host="127.0.0.1", port=0, database_url=f"sqlite:///{tmp_path / 'store.db'}"
    )
    with peer_spec(2, share=False) as spec:
        assert spec.directory is None
        running = start_server(config, process_index=0, peers=spec)
        try:
            assert running.private is None and running.peers is None
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = rpc.ReallocatorServiceStub(channel)
                response, call = stub.Replan.with_call(_request(), timeout=60)
            assert response.plan.deals and _worker(call) == "?"
            assert list(spec.loads) == [CLOSED, CLOSED]
            assert "not shared" not in caplog.text
        finally:
            running.stop(grace=0)


def test_a_worker_that_cannot_open_its_socket_serves_its_own_calls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket path past the OS's limit (a long TMPDIR), or no temporary directory at all:
    the worker says so, never opens to its siblings, and serves every call itself."""
    config = load_config(
        env={}, host="127.0.0.1", port=0, database_url=f"sqlite:///{tmp_path / 'store.db'}"
    )
    with peer_spec(2) as spec:
        spec = dataclasses.replace(spec, directory=str(tmp_path / ("d" * 200)))
        running = start_server(config, process_index=0, peers=spec)
        try:
            assert running.private is None and spec.loads[0] == CLOSED
            assert "not shared with this worker" in caplog.text
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = rpc.ReallocatorServiceStub(channel)
                assert stub.Replan(_request(), timeout=60).plan.deals
            assert spec.loads[0] == CLOSED  # a call admitted did not open it
        finally:
            running.stop(grace=0)


def test_sockets_left_by_a_killed_supervisor_are_removed(tmp_path: Path) -> None:
    """A supervisor killed outright cannot remove its sockets' directory; the next one does,
    and leaves the directories of supervisors still alive."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = Path(tempfile.gettempdir())
    stale = root / f"reallocator-peers-{dead.pid}-test"
    alive = root / f"reallocator-peers-{os.getpid()}-test"
    for path in (stale, alive):
        path.mkdir(exist_ok=True)
        (path / "worker-0.sock").write_text("")
    try:
        with peer_spec(2) as spec:
            assert spec.directory is not None and Path(spec.directory).is_dir()
            assert not stale.exists() and alive.exists()
        assert not Path(spec.directory).exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


def test_serve_workers_record_concurrent_replans_of_one_campaign_as_one_chain(
    tmp_path: Path,
) -> None:
    """Both processes of `serve --workers 2` record Replans of one campaign into one SQLite
    file at once (the same snapshot, as a caller retrying without a request_id): each newer
    plan supersedes the one before, so the campaign keeps one open plan and one chain."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    request = _request("one-chain", dry_run=False)
    with _serve("--port", str(port), "--workers", "2", REALLOCATOR_DATABASE_URL=url) as proc:
        _wait_serving(proc, port)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rpc.ReallocatorServiceStub(channel)
            stub.Replan(request, timeout=60)
            seen: set[str] = set()
            rounds = 0
            with ThreadPoolExecutor(4) as pool:
                while rounds < 8 or (seen != {"0", "1"} and rounds < 30):
                    calls = [pool.submit(stub.Replan.with_call, request, timeout=60)
                             for _ in range(4)]  # fmt: skip
                    seen |= {_worker(c.result()[1]) for c in calls}
                    rounds += 1
    assert seen == {"0", "1"}
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT name, state, previous_plan FROM plans ORDER BY seq, name")
        ).all()
    engine.dispose()
    assert len(rows) == 1 + 4 * rounds
    assert [r.name for r in rows if r.state in ("PROPOSED", "APPROVED")] == [rows[-1].name]
    assert [r.previous_plan for r in rows] == ["", *(r.name for r in rows[:-1])]

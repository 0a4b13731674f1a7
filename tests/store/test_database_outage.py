"""The audit store's database going away under load and coming back: calls that need it answer
UNAVAILABLE with a retry hint (never INTERNAL), health turns NOT_SERVING, and everything
recovers by itself when the database returns. On a real PostgreSQL server stopped and started
with pg_ctl; the error classification on real SQLite errors."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from builders import assess_request, build_snapshot, random_snapshot_spec, replan_request
from conftest import free_port, rpc_error
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from throwaway_postgres import ThrowawayPostgres

from reallocator.config import load_config
from reallocator.server.app import RunningServer, start_server
from reallocator.store.availability import IDLE_PROBE, unreachable
from reallocator.store.errors import StoreUnavailable
from reallocator.store.sql import SqlStore
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc


@pytest.fixture()
def postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.remove()


def _health(channel: grpc.Channel) -> str:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _until(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Waits for `condition`; returns how long it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - start


def _retry_delay(error: grpc.RpcError) -> float | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


class Load:
    """Client threads sending Replan (each a new recorded plan) and GetPlan back to back,
    counting the status codes seen in each phase."""

    def __init__(self, stub: rpc.ReallocatorServiceStub, threads: int = 3) -> None:
        self.stub = stub
        self.phase = "up"
        self.codes: dict[str, Counter[str]] = {}
        self.hints: list[float | None] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _note(self, code: grpc.StatusCode, error: grpc.RpcError | None = None) -> None:
        with self._lock:
            self.codes.setdefault(self.phase, Counter())[code.name] += 1
            if error is not None and code == grpc.StatusCode.UNAVAILABLE:
                self.hints.append(_retry_delay(error))

    def _run(self, index: int) -> None:
        snapshot = build_snapshot(random_snapshot_spec(8, seed=100 + index))
        while not self.stopping.is_set():
            request = replan_request(snapshot, request_id=uuid.uuid4().hex)
            try:
                plan = self.stub.Replan(request, timeout=20).plan
                self._note(grpc.StatusCode.OK)
                self.stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=20)
                self._note(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                self._note(error.code(), error)  # type: ignore[attr-defined]
                time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)


@pytest.fixture()
def server(postgres: ThrowawayPostgres) -> Iterator[RunningServer]:
    config = load_config(env={}, port=0, host="127.0.0.1", database_url=postgres.url)
    running = start_server(config)
    yield running
    running.stop(grace=0)


def test_postgres_stopped_under_load_unavailable_not_serving_then_recovers(
    postgres: ThrowawayPostgres, server: RunningServer
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpc.ReallocatorServiceStub(channel)
        kept = stub.Replan(
            replan_request(build_snapshot(random_snapshot_spec(6, seed=7)), request_id="kept"),
            timeout=20,
        ).plan
        assert _health(channel) == "SERVING"
        load = Load(stub)
        try:
            time.sleep(1.5)
            load.phase = "down"
            stopping = time.monotonic()
            postgres.stop()
            _until(lambda: _health(channel) == "NOT_SERVING", 10, "NOT_SERVING")
            noticed = time.monotonic() - stopping
            time.sleep(1.0)
            error = rpc_error(lambda: stub.GetPlan(pb.GetPlanRequest(name=kept.name), timeout=10))
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            assert "database" in error.details() and _retry_delay(error) == 1.0
            # AssessPacing records its snapshot and verdicts (the pacing history): it waits too.
            unrecorded = rpc_error(lambda: stub.AssessPacing(
                assess_request(build_snapshot(random_snapshot_spec(6, seed=7))), timeout=20
            ))  # fmt: skip
            assert unrecorded.code() == grpc.StatusCode.UNAVAILABLE
            assert _health(channel) == "NOT_SERVING"  # still away: the probe keeps it so
            load.phase = "restarting"
            starting = time.monotonic()
            postgres.start()
            _until(lambda: _health(channel) == "SERVING", 15, "SERVING again")
            back = time.monotonic() - starting
            load.phase = "back"
            time.sleep(1.5)
        finally:
            load.stop()
        again = stub.GetPlan(pb.GetPlanRequest(name=kept.name), timeout=10).plan
        assert again.name == kept.name and again.etag == kept.etag
        retried = stub.Replan(
            replan_request(build_snapshot(random_snapshot_spec(6, seed=7)), request_id="kept"),
            timeout=20,
        ).plan
        assert retried.name == kept.name
        # Idle: no call needs the database, and health still follows it (the idle probe).
        postgres.stop()
        idle_noticed = _until(lambda: _health(channel) == "NOT_SERVING", IDLE_PROBE + 5, "idle")
        postgres.start()
        _until(lambda: _health(channel) == "SERVING", 15, "SERVING again, idle")
    print(f"\noutage: NOT_SERVING {noticed:.2f}s after pg_ctl stop began, SERVING "
          f"{back:.2f}s after pg_ctl start began; idle: NOT_SERVING {idle_noticed:.2f}s after "
          f"pg_ctl stop returned; "
          f"codes {dict(load.codes)}")  # fmt: skip
    assert set(load.codes["up"]) == {"OK"}, load.codes
    assert set(load.codes["down"]) <= {"OK", "UNAVAILABLE"}, load.codes  # never INTERNAL
    assert load.codes["down"]["UNAVAILABLE"] > 0
    assert load.hints and all(h == 1.0 for h in load.hints), load.hints
    assert load.codes["back"]["OK"] > 0 and set(load.codes["back"]) == {"OK"}, load.codes


def test_only_errors_that_mean_not_now_count_as_unreachable(tmp_path: Path) -> None:
    """Real SQLite errors: "database is locked" (a writer holds it past the busy timeout) is
    unreachable; "no such table" is a bug and stays one."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with pytest.raises(sa.exc.OperationalError) as locked, engine.begin() as connection:
        connection.execute(sa.text("SELECT * FROM t"))
    assert "locked" in str(locked.value) and unreachable(locked.value)
    holder.execute("ROLLBACK")
    with pytest.raises(sa.exc.OperationalError) as missing, engine.begin() as connection:
        connection.execute(sa.text("SELECT * FROM no_such_table"))
    assert not unreachable(missing.value)
    engine.dispose()
    holder.close()


def test_a_store_that_cannot_reach_its_database_says_so(tmp_path: Path) -> None:
    """At start: StoreUnavailable naming the database (the password hidden), not a traceback
    from the driver; `reallocator serve` prints it and exits."""
    port = free_port()  # nothing listens there
    with pytest.raises(StoreUnavailable) as info:
        SqlStore.open(f"postgresql+psycopg://ana:secret@127.0.0.1:{port}/db")
    assert f"127.0.0.1:{port}" in str(info.value) and "secret" not in str(info.value)
    assert isinstance(info.value, ConnectionError)  # the CLI's OSError branch prints it


def test_the_watch_tells_listeners_when_the_database_goes_and_comes_back(tmp_path: Path) -> None:
    """Lost on a failed call, back when the probe answers (here after three failed probes); a
    listener subscribing while the database is away hears so at once."""
    store = SqlStore.open(f"sqlite:///{tmp_path / 'watch.db'}", probe_interval=0.05)
    watch = store.watch
    assert watch is not None
    seen: list[tuple[bool, str]] = []
    watch.subscribe(lambda ok, why: seen.append((ok, why)))
    real_probe, probes = watch.probe, []

    def probe() -> BaseException | None:  # the database "answers" from the fourth probe on
        probes.append(time.monotonic())
        return real_probe() if len(probes) > 3 else ConnectionRefusedError("refused")

    watch.probe = probe  # type: ignore[method-assign]
    cause = sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
    error = watch.lost(cause)
    assert isinstance(error, StoreUnavailable) and error.retry_after == 0.05
    late: list[tuple[bool, str]] = []
    watch.subscribe(lambda ok, why: late.append((ok, why)))
    assert late and late[0][0] is False and "ConnectionRefusedError" in late[0][1]
    _until(lambda: watch.reachable, 5, "the probe finding the database")
    assert [ok for ok, _ in seen] == [False, True] and [ok for ok, _ in late] == [False, True]
    assert len(probes) == 4 and probes[-1] - probes[0] >= 3 * 0.05 * 0.9
    store.close()


def test_an_error_while_getting_a_connection_is_unavailable_not_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any database error before a statement of ours runs (the pool's ping cut off by a
    PostgreSQL shutting down left psycopg mid-transaction: ProgrammingError "can't change
    'autocommit' now") means the database cannot be reached, not that a statement is wrong:
    StoreUnavailable, the watch told. A wrong statement stays a bug."""
    store = SqlStore.open(f"sqlite:///{tmp_path / 'ping.db'}", probe_interval=0.05)
    watch = store.watch
    assert watch is not None
    cut = sa.exc.ProgrammingError(
        "select pg_catalog.version()",
        {},
        Exception("can't change 'autocommit' now: connection in transaction status ACTIVE"),
    )
    assert not unreachable(cut)  # by its class alone it reads as a bug

    def cut_off() -> sa.Connection:
        raise cut

    for engine in {store.engine, store._writer}:
        monkeypatch.setattr(engine, "connect", cut_off)
    with pytest.raises(StoreUnavailable):
        store.latest_snapshot("campaign-1")
    assert not watch.reachable
    monkeypatch.undo()
    _until(lambda: watch.reachable, 5, "the probe finding the database")
    assert store.latest_snapshot("campaign-1") is None
    store.close()

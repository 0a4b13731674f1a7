"""A worker's warm-up (server/warm_up.py) and the store's rehearsal under it: the example's
calls run through the real servicer and store, and nothing they write is kept."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from call_context import CallContext
from google.protobuf import json_format

from reallocator.config import ServerConfig, load_config
from reallocator.server.app import start_server
from reallocator.server.servicer import ReallocatorServicer
from reallocator.server.warm_up import REQUEST, requests, warm_up
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def _rows(database: Path) -> dict[str, int]:
    """Rows per table of the store's SQLite file, its migrations' own table left out."""
    with sqlite3.connect(database) as con:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            n: con.execute(f"SELECT count(*) FROM {n}").fetchone()[0]
            for n in names
            if n != "alembic_version"
        }


@pytest.fixture
def servicer(tmp_path: Path) -> Iterator[ReallocatorServicer]:
    served = ReallocatorServicer(ServerConfig(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    yield served
    served.store.close()


def test_the_warm_up_request_is_the_readme_example() -> None:
    assert json.loads(REQUEST.read_text()) == json.loads(EXAMPLE.read_text())


def test_the_warm_up_runs_every_call_and_stores_nothing(
    servicer: ReallocatorServicer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reallocator.server.warm_up"):
        assert warm_up(servicer) > 0
    assert caplog.records == []  # every call ran to its answer
    stored = _rows(tmp_path / "r.db")
    assert stored and not any(stored.values()), stored
    # The rehearsal is over: the same recorded call now stores its plan and snapshot.
    _, recorded, _ = requests()
    answer = servicer.replan(recorded, CallContext())  # type: ignore[arg-type]
    assert answer.plan.name.startswith("campaigns/acme-holiday-2026/plans/")
    after = _rows(tmp_path / "r.db")
    assert after["plans"] == 1 and after["snapshots"] == 1


def test_the_recorded_warm_up_calls_take_the_forms_a_caller_sends() -> None:
    dry, recorded, assess = requests()
    example = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    assert dry.dry_run and dry.snapshot == example.snapshot  # the deals as messages
    assert not recorded.dry_run and not recorded.snapshot.deals
    assert recorded.snapshot.deals_table.arrow_ipc  # ... and as an Arrow table
    assert assess.snapshot == recorded.snapshot


def test_a_rehearsal_rolls_back_every_thread_s_writes_and_ends(
    servicer: ReallocatorServicer, tmp_path: Path
) -> None:
    store = servicer.store

    def record(campaign: str) -> None:
        store.record_assessment(
            campaign, 1, snapshot=b"s-" + campaign.encode(), assessment=b"a", severity=0,
            actor="test",
        )  # fmt: skip

    with store.rehearsal():
        record("here")
        elsewhere = threading.Thread(target=record, args=("there",))
        elsewhere.start()
        elsewhere.join()
    assert _rows(tmp_path / "r.db")["assessments"] == 0
    record("after")
    assert _rows(tmp_path / "r.db")["assessments"] == 1
    with pytest.raises(RuntimeError), store.rehearsal():
        raise RuntimeError("a call failed")
    record("after a failure")
    assert _rows(tmp_path / "r.db")["assessments"] == 2


class _Unreachable:
    """A store whose database is not there: every call fails."""

    @contextmanager
    def rehearsal(self) -> Iterator[None]:
        yield


class _Failing:
    store = _Unreachable()

    def replan(self, request: object, context: object) -> None:
        raise ConnectionError("database not reachable")

    assess_pacing = replan


def test_a_failing_call_is_logged_and_the_warm_up_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="reallocator.server.warm_up"):
        warm_up(_Failing())  # type: ignore[arg-type]
    failed = [r.getMessage() for r in caplog.records]
    assert len(failed) == 3 and all("database not reachable" in m for m in failed)


def test_a_started_server_warms_before_it_listens_and_serves_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(
        env={}, host="127.0.0.1", port=0, workers=1,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="reallocator.server.app"):
        running = start_server(config, warm=True)
    try:
        messages = [r.getMessage() for r in caplog.records]
        warmed = next(i for i, m in enumerate(messages) if m.startswith("warmed up in"))
        listening = next(i for i, m in enumerate(messages) if "listening on" in m)
        assert warmed < listening
        assert not any(_rows(tmp_path / "r.db").values())
        _, recorded, _ = requests()
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)
            plan = stub.Replan(recorded, timeout=60).plan
        assert plan.name.startswith("campaigns/acme-holiday-2026/plans/")
        assert _rows(tmp_path / "r.db")["plans"] == 1
    finally:
        running.stop(0)

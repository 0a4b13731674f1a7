"""A worker's warm-up (server/warm_up.py): README's example calls, in both deal forms, through
the worker's own servicer before it listens; a call that fails does not stop the server. (That
they store nothing: tests/store/test_rehearsal.py.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from reallocator.config import load_config
from reallocator.server.app import start_server
from reallocator.server.warm_up import REQUEST, requests, warm_up
from reallocator.store.sql import SqlStore
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def _plans(store: SqlStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM plans")).scalar_one())


def test_the_warm_up_request_is_the_readme_example() -> None:
    assert json.loads(REQUEST.read_text()) == json.loads(EXAMPLE.read_text())


def test_the_recorded_warm_up_calls_take_the_forms_a_caller_sends() -> None:
    dry, recorded, assess = requests()
    example = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    assert dry.dry_run and dry.snapshot == example.snapshot  # the deals as messages
    assert not recorded.dry_run and not recorded.snapshot.deals
    assert recorded.snapshot.deals_table.arrow_ipc  # ... and as an Arrow table
    assert assess.snapshot == recorded.snapshot


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
        store = SqlStore.open(config.database_url)
        assert _plans(store) == 0
        _, recorded, _ = requests()
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)
            plan = stub.Replan(recorded, timeout=60).plan
        assert plan.name.startswith("campaigns/acme-holiday-2026/plans/")
        assert _plans(store) == 1
        store.close()
    finally:
        running.stop(0)

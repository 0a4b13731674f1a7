"""The store's rehearsal (`SqlStore.rehearsal`), on both databases: every transaction begun
meanwhile, on any thread, is rolled back; a worker's warm-up (server/warm_up.py) runs its
recorded calls under it and leaves the store as it found it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from both_databases import database_url
from call_context import CallContext
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.config import ServerConfig
from reallocator.server.servicer import ReallocatorServicer
from reallocator.server.warm_up import requests, warm_up
from reallocator.store.schema import metadata
from reallocator.store.sql import SqlStore


def _rows(store: SqlStore) -> dict[str, int]:
    """Rows per table of the store (its migrations' own table left out)."""
    with store.engine.connect() as connection:
        return {
            table.name: connection.execute(
                sa.select(sa.func.count()).select_from(table)
            ).scalar_one()
            for table in metadata.sorted_tables
        }


@pytest.fixture(params=["sqlite", "postgresql"])
def servicer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReallocatorServicer]:
    served = ReallocatorServicer(ServerConfig(database_url=database_url(request, tmp_path)))
    yield served
    served.store.close()


def test_the_warm_up_runs_every_call_and_stores_nothing(
    servicer: ReallocatorServicer, caplog: pytest.LogCaptureFixture
) -> None:
    before = _rows(servicer.store)
    with caplog.at_level(logging.WARNING, logger="reallocator.server.warm_up"):
        assert warm_up(servicer) > 0
    assert caplog.records == []  # every call ran to its answer
    assert _rows(servicer.store) == before
    # The rehearsal is over: the same recorded call now stores its plan and its assessment.
    _, recorded, _ = requests()
    answer = servicer.replan(recorded, CallContext())  # type: ignore[arg-type]
    assert answer.plan.name.startswith("campaigns/acme-holiday-2026/plans/")
    after = _rows(servicer.store)
    assert after["plans"] == before["plans"] + 1
    assert after["assessments"] == before["assessments"] + 1


def test_a_rehearsal_rolls_back_every_thread_s_writes_and_ends(
    servicer: ReallocatorServicer,
) -> None:
    store = servicer.store
    before = _rows(store)["assessments"]

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
    assert _rows(store)["assessments"] == before
    record("after")
    assert _rows(store)["assessments"] == before + 1
    with pytest.raises(RuntimeError), store.rehearsal():
        raise RuntimeError("a call failed")
    record("after a failure")
    assert _rows(store)["assessments"] == before + 2

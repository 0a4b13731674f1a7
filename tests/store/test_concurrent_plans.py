"""Concurrent writes to one campaign's plans: `serve --workers 2` runs two processes on one
database, each with a pool of threads, so two calls for one campaign can record at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from plans import new_plan
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.store.schema import plans
from reallocator.store.sql import SqlStore

ROUNDS = 12
CALLERS = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = SqlStore.open(url)
    yield opened
    opened.close()


def _together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs the calls in threads released at once by a barrier; their results (or errors)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [f.result() for f in futures]


def assert_one_chain(engine: sa.Engine, campaign: str) -> None:
    """The campaign's plans in `seq` order: strictly increasing, each one's previous_plan the
    one before it, and only the newest open (PROPOSED or APPROVED)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(plans.c.name, plans.c.seq, plans.c.state, plans.c.previous_plan)
            .where(plans.c.campaign_id == campaign)
            .order_by(plans.c.seq, plans.c.name)
        ).all()
    assert rows
    seqs = [r.seq for r in rows]
    assert len(set(seqs)) == len(seqs), "two plans of the campaign share a seq"
    open_plans = [r.name for r in rows if r.state in ("PROPOSED", "APPROVED")]
    assert open_plans == [rows[-1].name], f"{len(open_plans)} open plans of {len(rows)}"
    assert [r.previous_plan for r in rows] == ["", *(r.name for r in rows[:-1])]


def test_one_request_id_sent_at_once_records_one_plan(store: SqlStore) -> None:
    """A Replan retried under the same request_id while the first is still recording: one plan,
    every call answers it."""
    campaign = f"key-{store.engine.dialect.name}"
    new = new_plan(campaign)
    for round_ in range(ROUNDS):
        key = f"Replan:{campaign}:{round_}"
        record = partial(store.record_plan, new, actor="svc", key=key, request_hash="h")
        done = _together([record] * CALLERS)
        assert len({lc.name for lc in done}) == 1
        assert sorted(lc.replayed for lc in done) == [False] + [True] * (CALLERS - 1)
    assert_one_chain(store.engine, campaign)

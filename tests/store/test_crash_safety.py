"""The audit store survives SIGKILL at any moment: `reallocator serve` runs as a child process on
a database (SQLite, then a real PostgreSQL server), a client sends a stream of recorded Replan,
ReviewPlan and ConfirmApplied calls, and the server is killed at seeded random moments and
started again on the same database, the client carrying on as a real one would (a Replan that
got no answer is retried with its request id until one arrives; a plan touched by a call that
got no answer is read again).

Checked at the end, for every call that was acknowledged (answered OK):
- GetPlan returns its plan, the same plan Replan returned (life cycle aside), in a state at
  least as far along as acknowledged (the same etag when the state is the same), with a history
  entry for every acknowledged change;
- a Replan retried with the same request id returns the same plan name;
- no plan exists that no acknowledged Replan returned (no phantom from a half-done retry);
and in the database itself nothing is half-written: every plan has its creation event and its
latest state event matches its state; every event, seller request and request-id record belongs
to an existing plan, every plan's snapshot is stored; SQLite's integrity check passes.

Bounded: KILLS kills per database, a few hundred calls, about a minute each under load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from crash_run import check_database, crash_run
from plans import new_plan
from throwaway_postgres import ThrowawayPostgres

from reallocator.store.sql import SqlStore


@pytest.fixture()
def postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.remove()


def _report(database: str, figures: dict[str, object]) -> None:
    print(f"\ncrash safety on {database}: {figures}")
    acked = figures["acknowledged"]
    assert isinstance(acked, dict) and acked.get("Replan", 0) >= 10, figures
    assert acked.get("ReviewPlan", 0) + acked.get("ConfirmApplied", 0) >= 5, figures


def test_sigkill_at_random_moments_loses_no_acknowledged_call_on_sqlite(tmp_path: Path) -> None:
    figures = crash_run(f"sqlite:///{tmp_path / 'crash.db'}", seed=14)
    _report("SQLite", figures)


def test_sigkill_at_random_moments_loses_no_acknowledged_call_on_postgres(
    postgres: ThrowawayPostgres,
) -> None:
    figures = crash_run(postgres.url, seed=15)
    _report("PostgreSQL", figures)


def test_the_database_check_finds_half_written_rows(tmp_path: Path) -> None:
    """The end check has teeth: a plan whose events are gone is reported."""
    url = f"sqlite:///{tmp_path / 'half.db'}"
    store = SqlStore.open(url)
    store.record_plan(new_plan("half"), actor="t", key="Replan:half:r", request_hash="h")
    assert check_database(url)["plans"] == 1
    with store.engine.begin() as db:
        db.execute(sa.text("DELETE FROM plan_events"))
    store.close()
    with pytest.raises(AssertionError, match="plans without events"):
        check_database(url)

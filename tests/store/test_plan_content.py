"""A plan's content (summary, options, tables) is a `plan_tables` row written once, apart from
its life-cycle row in `plans` (migration 0009): a state change (ReviewPlan, ConfirmApplied, a
newer plan superseding it) rewrites the small row only, on both databases. Before, SQLite
rewrote the whole row, tables and all, on every state change (a 100k-deal plan's ~12 MB)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from both_databases import opened_store
from plans import new_plan
from test_migrations import _CONTENT
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.store.schema import plan_tables
from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    yield from opened_store(request, tmp_path, "content")


def test_the_plans_table_holds_no_content(store: SqlStore) -> None:
    with store.engine.connect() as connection:
        inspector = sa.inspect(connection)
        kept = {c["name"] for c in inspector.get_columns("plans")}
        moved = {c["name"] for c in inspector.get_columns("plan_tables")}
    assert not kept & set(_CONTENT), kept & set(_CONTENT)
    assert moved == {"name", *_CONTENT}


def test_a_state_change_leaves_the_plan_content_alone(store: SqlStore) -> None:
    """Review, confirm and supersede a plan whose content is ~0.6 MB: on SQLite each writes
    (WAL bytes) a fraction of it; on both its plan_tables row keeps its version (PostgreSQL's
    xmin: an UPDATE makes a new row version)."""
    campaign = f"content-{os.getpid()}-{id(store)}"
    big = new_plan(campaign, n=3000)
    content = len(big.parts.deals) + len(big.parts.schedules) + len(big.parts.summary)
    assert content > 500_000  # else the bounds below would tell nothing
    written = _Writes(store)

    written.start()
    lc = store.record_plan(big, actor="svc")
    written.between(content, None)  # the plan itself was written, content and all
    version = written.content_version(lc.name)

    written.start()
    reviewed = store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
    written.between(0, content / 3)  # its requests marked sent, its small row rewritten
    assert written.content_version(lc.name) == version

    written.start()
    store.confirm_applied(lc.name, actor="svc", apply_time=None, etag=reviewed.etag)
    written.between(0, content / 16)
    assert written.content_version(lc.name) == version

    other = store.record_plan(big, actor="svc")  # proposed, then superseded by a small plan
    version = written.content_version(other.name)
    written.start()
    store.record_plan(new_plan(campaign, n=12, seed=3), actor="svc")
    assert store.life_cycle(other.name).state == "SUPERSEDED"
    written.between(0, content / 3)
    assert written.content_version(other.name) == version

    shown = store.get_plan(lc.name, "all")  # and the content still reads as it was written
    assert shown.state == plan_pb2.PLAN_STATE_APPLIED
    assert len(shown.deals) == 3000


class _Writes:
    """What the store writes: on SQLite the WAL's bytes since `start` (which checkpoints and
    truncates it), and a content row's version (PostgreSQL's xmin; SQLite's rowid)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.sqlite = store.engine.dialect.name == "sqlite"
        self.wal = f"{store.engine.url.database}-wal"

    def start(self) -> None:
        if self.sqlite:
            with self.store.engine.connect() as connection:
                busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            assert busy == 0 and os.path.getsize(self.wal) == 0

    def between(self, low: float, high: float | None) -> None:
        """SQLite: the WAL grew by `low` bytes or more, less than `high` (None: no bound)."""
        if self.sqlite:
            wrote = os.path.getsize(self.wal)
            assert wrote >= low and (high is None or wrote < high), (wrote, low, high)

    def content_version(self, name: str) -> str:
        column = "rowid" if self.sqlite else "xmin"
        with self.store.engine.connect() as connection:
            return str(
                connection.execute(
                    sa.select(sa.literal_column(column)).where(plan_tables.c.name == name)
                ).scalar_one()
            )


def test_the_last_application_is_the_newest_applied_plan_by_apply_time(store: SqlStore) -> None:
    """Found by name first (its tables then read for that plan alone): the plan applied last,
    whatever order the plans were made in; the newest of equal apply times."""
    names = []
    for seed in range(4):
        lc = store.record_plan(new_plan("last-applied", seed=seed, approve=True), actor="a")
        names.append(lc.name)
    times = [3_000_000, 9_000_000, 5_000_000, 9_000_000]
    for name, at in zip(names[:3], times[:3], strict=True):
        store.confirm_applied(name, actor="a", apply_time=at)
    found = store.last_application("last-applied")
    assert found is not None and found[0] == names[1] and found[1] == 9.0
    assert set(found[2].column_names) == {"deal_id", "delta", "pacing", "delivered"}
    assert found[2].num_rows
    store.confirm_applied(names[3], actor="a", apply_time=times[3])  # same time, made later
    found = store.last_application("last-applied")
    assert found is not None and found[0] == names[3]
    assert store.last_application("no-such-campaign") is None

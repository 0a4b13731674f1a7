"""Several server processes opening one new SQLite audit store at once (`reallocator serve
--workers 2`, the default on a 2-core machine, on a fresh reallocator.db): each applies the
migrations; found by the fuzz run (tests/fuzz), where worker 0 died at start with "table
snapshots already exists" and was restarted by the supervisor."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from both_databases import run_together


def _open(url: str, barrier: object, errors: object) -> None:
    from reallocator.store.sql import SqlStore

    try:
        barrier.wait()  # type: ignore[attr-defined]
        SqlStore.open(url).close()
    except Exception as exc:  # reported to the parent: a traceback here is the failure
        errors.put(f"{type(exc).__name__}: {str(exc)[:300]}")  # type: ignore[attr-defined]


def test_processes_opening_a_new_store_at_once_all_start(tmp_path: Path) -> None:
    for attempt in range(4):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        run_together(_open, (url,), 6)
        with sa.create_engine(url).connect() as connection:  # migrated once, to the newest
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert len(versions.all()) == 1

"""SQLite's log is copied into the database file by the store's own thread a moment after a
write (store/checkpoints.py), not by the commit of the call that happens to fill it."""

from __future__ import annotations

import gc
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from reallocator.store.checkpoints import SAFETY_NET_PAGES, WalCheckpointer
from reallocator.store.sql import SqlStore


def _assessments_in_file_alone(db: Path, copy: Path) -> int:
    """The assessments the database file holds without its log (a copy of the file only)."""
    shutil.copyfile(db, copy)
    connection = sqlite3.connect(copy)
    try:
        return int(connection.execute("SELECT count(*) FROM assessments").fetchone()[0])
    except sqlite3.OperationalError:  # not even the tables yet
        return 0
    finally:
        connection.close()


def _record(store: SqlStore, i: int) -> None:
    store.record_assessment(
        "c", i, snapshot=f"snapshot {i}".encode(), assessment=b"x", severity=0, actor="t"
    )


def test_a_write_reaches_the_database_file_without_filling_the_log(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = SqlStore.open(f"sqlite:///{db}")
    try:
        with store.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == SAFETY_NET_PAGES  # a commit copies the log only past the safety net
        _record(store, 1)  # a few pages: SQLite's own checkpoint waits for 1,000
        deadline = time.monotonic() + 10
        while _assessments_in_file_alone(db, tmp_path / "copy.db") < 1:
            assert time.monotonic() < deadline, "the write never reached the database file"
            time.sleep(0.05)
        for i in range(2, 5):
            _record(store, i)
        deadline = time.monotonic() + 10
        while _assessments_in_file_alone(db, tmp_path / "copy.db") < 4:
            assert time.monotonic() < deadline, "later writes never reached the database file"
            time.sleep(0.05)
    finally:
        store.close()


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]


def test_the_thread_ends_with_the_store_or_with_its_checkpointer(tmp_path: Path) -> None:
    before = set(_checkpoint_threads())
    store = SqlStore.open(f"sqlite:///{tmp_path / 'r.db'}")
    (mine,) = set(_checkpoint_threads()) - before
    _record(store, 1)
    store.close()
    mine.join(5)
    assert not mine.is_alive()

    forgotten = WalCheckpointer(str(tmp_path / "r.db"))  # never closed
    (thread,) = set(_checkpoint_threads()) - before
    forgotten.wrote()
    del forgotten
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_a_failing_checkpoint_leaves_the_thread_running(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(str(tmp_path / "missing" / "r.db"), gather=0.0)
    try:
        checkpointer.wrote()  # the directory does not exist: sqlite3 cannot open the file
        time.sleep(0.3)
        assert checkpointer._thread.is_alive()
        (tmp_path / "missing").mkdir()
        sqlite3.connect(tmp_path / "missing" / "r.db").execute("PRAGMA journal_mode=WAL")
        checkpointer.wrote()
        deadline = time.monotonic() + 5
        while checkpointer.checkpoints < 1:
            assert time.monotonic() < deadline, "no checkpoint after the file appeared"
            time.sleep(0.05)
    finally:
        checkpointer.close()

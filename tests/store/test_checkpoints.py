"""SQLite's log is copied into the database file by the store's own thread a moment after a
write (store/checkpoints.py), not by the commit of the call that happens to fill it."""

from __future__ import annotations

import gc
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reallocator.store import checkpoints
from reallocator.store.checkpoints import (
    JOURNAL_SIZE_LIMIT,
    RESTART_FROM_PAGES,
    SAFETY_NET_PAGES,
    WalCheckpointer,
)
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


def _long_log(path: Path, pages: int) -> sqlite3.Connection:
    """A WAL database whose log holds about `pages` pages, none copied yet."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (b BLOB)")
    writer.execute("BEGIN")
    for _ in range(pages):
        writer.execute("INSERT INTO t VALUES (randomblob(4000))")
    writer.execute("COMMIT")
    return writer


def test_a_long_log_copied_whole_is_restarted_and_a_short_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(issued.append)
        return connection

    monkeypatch.setattr(checkpoints.sqlite3, "connect", traced)
    for pages, restarted in ((RESTART_FROM_PAGES + 100, True), (100, False)):
        path = tmp_path / f"{pages}.db"
        writer = _long_log(path, pages)
        checkpointer = WalCheckpointer(str(path))
        try:
            issued.clear()
            busy, log_pages, copied = checkpointer.checkpoint()
            assert busy == 0 and copied == log_pages >= pages
            first = next(s for s in issued if "wal_checkpoint" in s)
            assert first == "PRAGMA wal_checkpoint(PASSIVE)"
            assert ("PRAGMA wal_checkpoint(RESTART)" in issued) is restarted
            if restarted:  # the next write starts the log again
                writer.execute("INSERT INTO t VALUES (1)")
                reader = connect(path)
                assert reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] < 10
                reader.close()
        finally:
            checkpointer.close()
            writer.close()


def test_a_large_write_leaves_no_large_log_behind(tmp_path: Path) -> None:
    """A 100k-deal plan's snapshot grows the log past 40 MB; once it is copied and the log
    starts again, the -wal file is cut back to JOURNAL_SIZE_LIMIT (SQLite would otherwise
    keep its high-water size on disk for good)."""
    db = tmp_path / "r.db"
    store = SqlStore.open(f"sqlite:///{db}")
    wal = Path(f"{db}-wal")
    try:
        large = np.random.default_rng(0).bytes(48 << 20)  # incompressible, as a snapshot
        store.record_assessment("c", 1, snapshot=large, assessment=b"x", severity=0, actor="t")
        assert wal.stat().st_size > 48 << 20
        deadline = time.monotonic() + 20
        i = 2
        while wal.stat().st_size > JOURNAL_SIZE_LIMIT:  # the thread copies, a write restarts
            assert time.monotonic() < deadline, f"-wal still {wal.stat().st_size} bytes"
            time.sleep(0.1)
            _record(store, i)
            i += 1
        assert _assessments_in_file_alone(db, tmp_path / "copy.db") >= 1
    finally:
        store.close()

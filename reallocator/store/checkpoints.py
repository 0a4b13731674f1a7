"""SQLite's WAL copied into the database file on a thread of its own, not in the commit of a call.

In WAL mode a commit appends its pages to the write-ahead log (synced: the write is durable
there) and, once the log holds `wal_autocheckpoint` pages, that commit also copies the log into
the database file and syncs it: a recorded 50-deal Replan writes ~30 pages, so one call in
~30 paid for the copy of the others' (p99 of the call in process ~10 ms against ~7 ms). Here a
write only marks the log due; a daemon thread runs a PASSIVE checkpoint (it waits for no reader
or writer, and needs no lock a call holds) a moment later, outside the GIL, while the calls go
on. The commit-time checkpoint stays as a safety net at `SAFETY_NET_PAGES`, for a process
whose thread is gone (a fork) or a log that grew faster than the thread copies it. Durability
does not change: a commit is synced to the log either way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref

log = logging.getLogger(__name__)

SAFETY_NET_PAGES = 16_384
"""`PRAGMA wal_autocheckpoint` of the store's connections: 64 MiB of log at 4 KiB pages."""
RESTART_FROM_PAGES = 2_048
"""A log this long and wholly copied is restarted by the thread (a RESTART checkpoint that waits
for no one; a write that begins while it runs waits for it, a moment once per ~70 recorded
50-deal calls): under back-to-back writes a write seldom begins just when the log is wholly
copied, which is when SQLite restarts it on its own, and the -wal file grew to 17-50 MB in
430 recorded 50-deal calls in a row (11.5-13.4 MB with this rule; 4 MB when each commit
checkpointed)."""
JOURNAL_SIZE_LIMIT = 16 << 20
"""`PRAGMA journal_size_limit` of the store's connections and the thread's: when the log starts
again, a -wal file longer than this is cut back to it. SQLite otherwise keeps the file at its
longest on disk for good (a 100k-deal plan's transaction, ~80 MB), and reuses it from the
start. Above the 11.5-13.4 MB that back-to-back small writes reach, so they never cut and grow
it again."""
GATHER_SECONDS = 0.2
"""How long after a write the thread waits, so that one checkpoint copies a burst of writes."""


class WalCheckpointer:
    """Checkpoints the database file `path` a moment after each `wrote()`, on its own thread,
    until `close()` (or until the object is collected)."""

    def __init__(self, path: str, gather: float = GATHER_SECONDS) -> None:
        self.path, self.gather = path, gather
        self._due, self._closing = threading.Event(), threading.Event()
        self.checkpoints = 0  # checkpoints run (the tests read it)
        self._thread = threading.Thread(
            target=_run,
            args=(weakref.ref(self), self._due, self._closing, gather),
            daemon=True,
            name="sqlite-checkpoint",
        )
        weakref.finalize(self, _stop, self._closing, self._due)
        self._thread.start()

    def wrote(self) -> None:
        """A write transaction committed: the log has pages to copy."""
        self._due.set()

    def close(self) -> None:
        """Stops the thread (a checkpoint under way finishes first)."""
        _stop(self._closing, self._due)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint on a connection of its own, opened for it (no file held
        open between checkpoints), then a RESTART of a long log it copied whole (with no busy
        timeout: it gives up at once where a call holds a lock): (busy, pages in the log,
        pages copied)."""
        connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if row[1] >= RESTART_FROM_PAGES and row[1] == row[2]:
                row = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            connection.close()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])


def _stop(closing: threading.Event, due: threading.Event) -> None:
    """Tells the thread to end, and wakes it to see so."""
    closing.set()
    due.set()


def _run(
    owner: weakref.ref[WalCheckpointer],
    due: threading.Event,
    closing: threading.Event,
    gather: float,
) -> None:
    """The thread: holds its checkpointer only while it checkpoints, so an unclosed store's
    checkpointer is still collected (and its finalizers end this loop)."""
    while True:
        due.wait()
        if closing.is_set():
            return
        closing.wait(gather)
        due.clear()
        checkpointer = owner()
        if checkpointer is None or closing.is_set():
            return
        try:
            checkpointer.checkpoint()
        except sqlite3.Error as exc:  # the next write tries again; the safety net holds
            log.debug("checkpoint of %s: %s", checkpointer.path, exc)
        del checkpointer


__all__ = [
    "GATHER_SECONDS",
    "JOURNAL_SIZE_LIMIT",
    "RESTART_FROM_PAGES",
    "SAFETY_NET_PAGES",
    "WalCheckpointer",
]

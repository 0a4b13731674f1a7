"""Whether the audit store's database can be reached, learned from the calls themselves.

A call whose transaction fails because the database is unreachable (connection refused or lost,
the server shutting down or starting up, SQLite locked past its busy timeout) raises
`StoreUnavailable` (UNAVAILABLE with a retry hint) instead of an internal error, and the store's
`DatabaseWatch` tells its listeners (the server's health) that the database is gone. A probe
thread then runs `SELECT 1` every `interval` seconds until it answers, and tells them it is back.
A server also has the watch probe every `IDLE_PROBE` seconds while the database answers
(`keep_watching`), so an outage while no call needs the database shows in health too.

Calls are not refused while the database is known to be down: each still tries (a refused
connection fails in a millisecond; an unroutable host after `CONNECT_TIMEOUT`), so calls recover
the moment the database does and health follows within one probe interval. An error that says
the statement is wrong (SQLite's "no such table", PostgreSQL's ProgrammingError) is a bug, not
an outage, and stays INTERNAL.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from reallocator.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

Listener = Callable[[bool, str], None]
"""Called with (reachable, reason) when the database goes away or comes back."""

IDLE_PROBE = 5.0
"""Seconds between probes while the database answers (`keep_watching`)."""

CONNECT_TIMEOUT = 5
"""Seconds PostgreSQL connection attempts wait (libpq's default is to wait for the OS, minutes
for an unroutable host), unless the URL sets `connect_timeout`."""

_SQLITE_TRANSIENT = frozenset(
    {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL",
     "SQLITE_READONLY", "SQLITE_PROTOCOL"}
)  # fmt: skip
"""SQLite result codes that mean "not now" (extended codes such as SQLITE_IOERR_WRITE fold into
their primary code); SQLITE_ERROR ("no such table", syntax) means a bug."""


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (retry later), rather than that a
    statement is wrong."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection within the pool timeout
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:  # SQLAlchemy recognised a disconnect
        return True
    name = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return "_".join(name.split("_")[:2]) in _SQLITE_TRANSIENT
    # PostgreSQL (psycopg): OperationalError is connection failures, shutdowns, resource limits,
    # cancelled statements and lock/serialisation conflicts, all worth a retry; a wrong
    # statement is a ProgrammingError.
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def _cause(exc: BaseException) -> str:
    """The driver's first line (psycopg's name host and port, never the password)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0][:300] if text else ''}"


def engine_options(url: str) -> dict[str, Any]:
    """`create_engine` keywords beyond the URL: a bounded connect timeout for PostgreSQL."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    return {}


class DatabaseWatch:
    """The database's reachability as the store's calls find it, and the probe that notices
    its return. Listeners are called under a lock, in the order the changes happened."""

    def __init__(self, engine: Engine, *, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self._lock = threading.Lock()
        self._reason = ""  # why the database is unreachable; "" while it answers
        self._listeners: list[Listener] = []
        self._prober: threading.Thread | None = None

    @property
    def reachable(self) -> bool:
        return not self._reason

    def subscribe(self, listener: Listener) -> None:
        """Adds a listener; told at once if the database is unreachable now."""
        with self._lock:
            self._listeners.append(listener)
            if self._reason:
                listener(False, self._reason)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Runs one transaction: an unreachable database becomes StoreUnavailable."""
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            if not unreachable(exc):
                raise
            raise self.lost(exc) from exc

    @contextmanager
    def connection(self, engine: Engine) -> Iterator[Connection]:
        """A connection from `engine`'s pool. Any database error while getting one means the
        database cannot be reached: no statement of ours has run, so none can be wrong. The
        pool's ping, cut off by a server shutting down, left psycopg mid-transaction and
        raised ProgrammingError ("can't change 'autocommit' now"), which read as a bug: one
        Replan answered INTERNAL during an outage (tests/store/test_database_outage.py)."""
        try:
            connection = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise self.lost(exc) from exc
        with connection:
            yield connection

    def lost(self, exc: BaseException) -> StoreUnavailable:
        """Records that a call found the database unreachable (listeners told, probe started)
        and returns the error the call raises."""
        with self._lock:
            if not self._reason:
                self._reason = f"the audit store's database is unreachable ({_cause(exc)})"
                log.warning("%s; probing it every %.1fs", self._reason, self.interval)
                for listener in self._listeners:
                    listener(False, self._reason)
            if self._prober is None:
                self._prober = threading.Thread(
                    target=_probe_until_back, args=(weakref.ref(self), self.interval),
                    name="store-probe", daemon=True,
                )  # fmt: skip
                self._prober.start()
        return StoreUnavailable(
            f"the audit store's database cannot be reached right now; retry in {self.interval:g} s",
            retry_after=self.interval,
        )

    def probe(self) -> BaseException | None:
        """One round trip to the database (SQLite: a read of its schema page, so the file
        itself must answer): None when it answered, else the error."""
        sql = "SELECT count(*) FROM sqlite_master" if self.engine.dialect.name == "sqlite" else (
            "SELECT 1")  # fmt: skip
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text(sql))
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            return exc
        return None

    def keep_watching(self, every: float = IDLE_PROBE) -> None:
        """Probes every `every` s while the database answers too (a server calls this), so
        health turns NOT_SERVING when it goes away while no call needs it. The thread ends
        with the watch."""
        threading.Thread(target=_probe_while_up, args=(weakref.ref(self), every),
                         name="store-watch", daemon=True).start()  # fmt: skip

    def _back(self) -> None:
        with self._lock:
            self._prober = None
            if self._reason:
                log.warning("the audit store's database answers again")
                self._reason = ""
                for listener in self._listeners:
                    listener(True, "")


def _probe_until_back(ref: weakref.ref[DatabaseWatch], interval: float) -> None:
    """The probe thread: at once, then every `interval` s until the database answers (or the
    store is gone)."""
    delay = 0.0
    while True:
        time.sleep(delay)
        delay = interval
        watch = ref()
        if watch is None:
            return
        if watch.probe() is None:
            watch._back()
            return
        del watch


def _probe_while_up(ref: weakref.ref[DatabaseWatch], every: float) -> None:
    """The idle probe thread: a failed probe counts as a failed call (NOT_SERVING, and the
    fast probe until the database is back)."""
    while True:
        time.sleep(every)
        watch = ref()
        if watch is None:
            return
        if watch.reachable:
            error = watch.probe()
            if error is not None:
                watch.lost(error)
        del watch


@contextmanager
def starting(url: str) -> Iterator[None]:
    """Opening the store: an unreachable database is StoreUnavailable naming it (the server
    exits with that message rather than a traceback)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        if not unreachable(exc):
            raise
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        message = f"cannot reach the audit store's database {shown}: {_cause(exc)}"
        raise StoreUnavailable(message) from exc


__all__ = [
    "CONNECT_TIMEOUT",
    "IDLE_PROBE",
    "DatabaseWatch",
    "engine_options",
    "starting",
    "unreachable",
]

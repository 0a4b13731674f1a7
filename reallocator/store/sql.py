"""The audit store on SQLAlchemy Core: SQLite (WAL, the embedded default) or PostgreSQL
(psycopg 3). Every call is one transaction, so nothing half-written is ever visible; optimistic
concurrency and idempotency are enforced by the database (conditional UPDATEs, unique keys,
and the locks a write transaction takes before its reads: `SqlStore._tx`), never in process
memory, so several server processes may share one database.

A plan is stored as numbers (plan_codec.py): its summary message and its deals and schedule
tables, in a `plan_tables` row of their own beside its life-cycle row in `plans` (a state change
rewrites the small row only); GetPlan renders the view asked from them, life cycle filled in
again.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.engine import Connection, Engine, Row

from reallocator.background import begun
from reallocator.core.model import table_of
from reallocator.core.plan.model import (
    RequestHistory,
    ScheduleTable,
    SellerResponse,
    last_of_each,
)
from reallocator.store.availability import DatabaseWatch, engine_options, starting
from reallocator.store.checkpoints import JOURNAL_SIZE_LIMIT, SAFETY_NET_PAGES, WalCheckpointer
from reallocator.store.errors import AlreadyExists, NotFound, StaleEtag, WrongState
from reallocator.store.plan_codec import (
    STORE_COMPRESS_FROM_BYTES,
    PlanParts,
    StoredInputs,
    deals_frame,
    inputs_frames,
    inputs_parts,
    render,
    schedule_table,
)
from reallocator.store.read_tables import ReadTables
from reallocator.store.schema import (
    assessments,
    idempotency,
    plan_events,
    plan_tables,
    plans,
    seller_requests,
    snapshots,
)
from reallocator.v1 import plan_pb2
from reallocator.wire.assessment import stored_message
from reallocator.wire.plan import Rows

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_STATE = {name: plan_pb2.PlanState.Value(f"PLAN_STATE_{name}") for name in (
    "PROPOSED", "APPROVED", "REJECTED", "APPLIED", "ROLLED_BACK", "SUPERSEDED")}  # fmt: skip
_RESPONSE: dict[int, str] = {
    plan_pb2.SELLER_RESPONSE_KIND_PENDING: "PENDING",
    plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED: "ACCEPTED",
    plan_pb2.SELLER_RESPONSE_KIND_PARTIAL: "PARTIAL",
    plan_pb2.SELLER_RESPONSE_KIND_REJECTED: "REJECTED",
    plan_pb2.SELLER_RESPONSE_KIND_APPLIED: "APPLIED",
    plan_pb2.SELLER_RESPONSE_KIND_FAILED: "FAILED",
}
_AS_PLANS_READ = {"APPLIED": "ACCEPTED", "FAILED": "REJECTED"}
"""IAB statuses the plan builder reads as one of its own (core SellerResponse)."""


@dataclass(frozen=True)
class NewPlan:
    """A plan for the store to record: its message in any view (the summary and the seller
    requests are read from it), its tables, and what it was made from."""

    msg: plan_pb2.Plan
    parts: PlanParts
    snapshot: bytes  # the serialised CampaignSnapshot message (deduplicated by content)
    assessment: bytes = b""  # the serialised PacingAssessment (BASIC view); "" none
    max_alert_severity: int = 0  # common.Severity of its most severe alert, 0 none
    options: bytes = b""  # the ReplanRequest without its snapshot, for a re-solve
    kind: str = "REPLAN"  # REPLAN, REVISION (a partial approval) or ROLLBACK
    approve: bool = False  # APPROVED at once (auto-apply, or a reviewer's revision)
    comment: str = "created by Replan"
    inputs: StoredInputs | None = None  # what the store supplied beyond the snapshot (replay)
    snapshot_hash: str = ""  # content_hash(snapshot) when the caller has it; "" computed here


@dataclass(frozen=True)
class Replaces:
    """The plan a new one revises or rolls back: moved from `state` to `to`."""

    name: str
    etag: str
    state: str
    to: str
    comment: str


@dataclass(frozen=True)
class PlanInputs:
    snapshot: bytes
    options: bytes
    deals: pd.DataFrame


@dataclass(frozen=True)
class LifeCycle:
    """What the store owns of a plan: name, state, etag, lineage and events."""

    name: str
    state: str
    etag: str
    previous_plan: str
    create_time: int
    events: tuple[tuple[int, str, str, str], ...] = ()  # (time, actor, state, comment)
    answers: dict[str, str] = field(default_factory=dict)  # seller request id -> response
    replayed: bool = False  # returned for a retry: the first call's plan, nothing recorded

    def fill(self, msg: plan_pb2.Plan) -> plan_pb2.Plan:
        """Sets the life-cycle fields of a plan message (in place) and returns it."""
        msg.name = self.name
        msg.state = _STATE[self.state]
        msg.etag = self.etag
        msg.previous_plan = self.previous_plan
        msg.create_time.CopyFrom(_timestamp(self.create_time))
        del msg.history[:]
        for when, actor, state, comment in self.events:
            msg.history.add(
                event_time=_timestamp(when),
                actor=actor,
                state=_STATE.get(state, plan_pb2.PLAN_STATE_UNSPECIFIED),
                comment=comment,
            )
        for r in msg.seller_requests:
            answer = self.answers.get(r.request_id)
            if answer:
                r.response = plan_pb2.SellerResponseKind.Value(f"SELLER_RESPONSE_KIND_{answer}")
        return msg


class _Raced(Exception):
    """Another call claimed the same request id first."""


def _now() -> int:
    return time.time_ns() // 1000


_PACK_FROM_BYTES = 4096
"""Payloads shorter are stored as they are: zstd's set-up alone costs ~20 us a call, and a
50-deal plan's 2.7 KB summary came out 0.8 KB shorter for ~26 us (~60 us in a Replan)."""


_ASSESSMENT_PACK_FROM_BYTES = STORE_COMPRESS_FROM_BYTES
"""A stored assessment is compressed from the length the plan's tables are (64 KiB): a 50-deal
one is 14 KB, 7 KB as zstd, which cost ~0.1 ms of a recorded Replan's ~1 ms in the store."""


def _pack(data: bytes, from_bytes: int = _PACK_FROM_BYTES) -> bytes:
    """zstd, unless the data is short (`from_bytes`) or compressed already (a snapshot's
    Arrow body usually is: a 100k-deal one is 43 MB that zstd gains nothing on and spends
    0.1 s): then as it is. A zstd frame of incompressible data is longer than the data, so
    `unpack` tells them apart by length."""
    if len(data) < from_bytes:
        return data
    sample = data[: 1 << 18]
    if len(data) > 1 << 20 and len(pa.compress(sample, codec="zstd")) > 0.9 * len(sample):
        return data
    out: bytes = pa.compress(data, codec="zstd", asbytes=True)
    return data if len(out) >= len(data) else out


def unpack(data: bytes, size: int) -> bytes:
    """A payload `_pack` wrote (zstd, or as it was when that gained nothing)."""
    if len(data) == size:
        return bytes(data)
    out: bytes = pa.decompress(data, decompressed_size=size, codec="zstd", asbytes=True)
    return out


def _assessment(payload: bytes, size: int, alerts: bool = True) -> bytes:
    """A stored assessment's PacingAssessment message (serialised): the store's form
    (`wire.assessment.stored_assessment`, a recorded Replan's) worded (without its alerts
    where `alerts` is False), or the message as older rows and AssessPacing's BASIC view hold
    it."""
    return stored_message(unpack(payload, size), alerts)


def _timestamp(micros: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(micros)
    return ts


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    """SQLite: WAL so readers never block the writer and several processes can share the file;
    synchronous FULL so an acknowledged write survives a power cut, not only a crash (NORMAL
    loses the last transactions then); a busy timeout instead of "database is locked". The
    driver begins no transaction itself (SQLAlchemy's pysqlite recipe): it would BEGIN only at
    the first INSERT or UPDATE, after the reads that decide them; `_begin` does instead."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # The log is copied into the file by the store's checkpoint thread (store/checkpoints.py);
    # a commit copies it only past this safety net.
    cursor.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")  # no -wal left at its longest
    cursor.close()
    dbapi_connection.isolation_level = None


_WRITE = "reallocator_write"
"""The execution option of a write transaction (`SqlStore._tx(write=True)`, the migrations)."""


def _begin(connection: Connection) -> None:
    """SQLite: every transaction begins at once, so its reads are one view. A write
    transaction begins IMMEDIATE: it holds the database's write lock (waiting for it up
    to the busy timeout) before its first read, so what it reads to decide its writes (a
    campaign's last and open plans, a plan's state, an idempotency key) is still so when it
    commits, across threads and processes. A read transaction stays deferred: in WAL it
    never waits for a writer."""
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def default_database_url() -> str:
    """SQLite in the working directory (the Docker image's is /var/lib/reallocator)."""
    return f"sqlite:///{Path.cwd() / 'reallocator.db'}"


_LOCK = 0x7265616C6C6F63  # "realloc": the PostgreSQL advisory lock key of the migrations
_LOCK_CAMPAIGN = sa.text("SELECT pg_advisory_xact_lock(:key)")


def _campaign_key(campaign: str) -> int:
    """A campaign's PostgreSQL advisory lock key: a signed 64-bit hash that every process
    computes alike (Python's hash() of a str is salted per process)."""
    digest = hashlib.blake2b(campaign.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _campaign_of(name: str) -> str:
    """The campaign of a plan name the store gave (`campaigns/{campaign}/plans/{id}`)."""
    return name.removeprefix("campaigns/").rpartition("/plans/")[0]


@contextmanager
def _one_migrator(engine: Engine) -> Iterator[None]:
    """One process at a time applies the migrations to a SQLite file: `serve --workers N` opens
    the store in every worker at once, and on a new file each would create the tables (the
    others failed "table snapshots already exists" and their workers died at start). An
    exclusive flock on `<file>-migrations.lock`; PostgreSQL takes an advisory lock instead."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        fcntl = None  # type: ignore[assignment]
    if not database or database == ":memory:" or database.startswith("file:") or fcntl is None:
        yield
        return
    with open(f"{database}-migrations.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _engine(url: str) -> Engine:
    """The store's engine for `url`: SQLite with its pragmas on every connection (`_on_connect`);
    a pooled PostgreSQL connection, which may have died with its server, pinged at checkout (an
    SQLite file has no connection to lose, and the ping would cost every transaction a query)."""
    sqlite = sa.engine.make_url(url).get_backend_name() == "sqlite"
    engine = sa.create_engine(url, pool_pre_ping=not sqlite, **engine_options(url))
    if sqlite:
        sa.event.listen(engine, "connect", _on_connect)
        sa.event.listen(engine, "begin", _begin)
    return engine


def _migrate(engine: Engine, revision: str, *, up: bool) -> None:
    """Alembic's upgrade or downgrade to `revision`, one migrator at a time."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _one_migrator(engine), engine.execution_options(**{_WRITE: True}).begin() as connection:
        if connection.dialect.name == "postgresql":  # held to this transaction's end
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
        config.attributes["connection"] = connection
        (command.upgrade if up else command.downgrade)(config, revision)


class SqlStore:
    """The audit store. Open it with `SqlStore.open(url)`, which applies the migrations."""

    watch: DatabaseWatch | None = None
    """Whether the database answers (store/availability.py); set by `open`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._checkpoints = (
            WalCheckpointer(database)
            if database and database != ":memory:" and not database.startswith("file:")
            else None
        )  # an SQLite file's log copied into it off the calls' path
        self._writer = engine.execution_options(**{_WRITE: True})  # same pool, its own option
        self._postgres = engine.dialect.name == "postgresql"
        self._read = ReadTables()  # plans' tables as read before: their content never changes
        self._rehearsing = False  # `rehearsal`: every transaction rolled back
        # The INSERT ... ON CONFLICT DO NOTHING of every recorded Replan (its snapshot, when
        # new, and its idempotency key), built once, values as parameters: one built per call
        # with its values cost the recorded 50-deal Replan ~0.14 ms of thread CPU for the
        # snapshot (43 KB) and ~0.09 ms for the key (SQLAlchemy caches the compiled form, but
        # builds the statement and its cache key first).
        self._insert_snapshot = self._insert(snapshots).on_conflict_do_nothing(
            index_elements=["content_hash"]
        )
        self._claim_key = (
            self._insert(idempotency)
            .on_conflict_do_nothing(index_elements=["key"])
            .execution_options(preserve_rowcount=True)
        )

    @classmethod
    def open(cls, url: str, *, probe_interval: float = 1.0) -> SqlStore:
        """An unreachable database is StoreUnavailable, here and in every call after; then
        `watch` probes it every `probe_interval` s and tells its listeners when it is back."""
        engine = _engine(url)
        store = cls(engine)
        with starting(url):
            store.upgrade()
        if store._checkpoints is not None:
            store._checkpoints.wrote()  # the migrations' pages, if any
        store.watch = DatabaseWatch(engine, interval=probe_interval)
        return store

    def upgrade(self) -> None:
        """Applies the migrations (alembic) up to the newest."""
        _migrate(self.engine, "head", up=True)

    @classmethod
    def downgrade(cls, url: str, revision: str) -> None:
        """Undoes the migrations after `revision` (e.g. "0004"), so an older release of the
        service, which refuses a store migrated past what it knows, can open it again. Not
        `open`: that would first upgrade it."""
        engine = _engine(url)
        try:
            _migrate(engine, revision, up=False)
        finally:
            engine.dispose()

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        self.engine.dispose()

    @contextmanager
    def rehearsal(self) -> Iterator[None]:
        """Every transaction meanwhile, on any thread, is rolled back instead of committed:
        a worker's warm-up (server/warm_up.py) runs recorded calls on this engine before it
        listens, so their statements are compiled and their code paths loaded before the first
        caller's, and nothing is stored. Never while the server serves: a caller's writes in
        the meantime would be rolled back too."""
        self._rehearsing = True
        try:
            yield
        finally:
            self._rehearsing = False

    @contextmanager
    def _tx(self, write: bool = False, *, campaign: str = "") -> Iterator[Connection]:
        """One transaction, committed as a whole or not at all; a database that cannot be
        reached (now or mid-way) is StoreUnavailable, whose outcome the caller retries.

        One that writes (`write`) holds SQLite's write lock from its start (`_begin`); one that
        changes a `campaign`'s plans (implies `write`) takes, on PostgreSQL, that campaign's
        advisory lock first, held to its end (READ COMMITTED: each later statement sees what
        the lock's last holder committed). So the reads that decide its writes (the last and
        open plans, a plan's state, an idempotency key) see every earlier such write, and no
        other comes between them and the commit: concurrent Replans of one campaign, in
        threads or server processes, each supersede the one before."""
        engine = self._writer if write or campaign else self.engine
        watch = self.watch
        with (
            watch.guard() if watch else nullcontext(),
            watch.connection(engine) if watch else engine.connect() as tx,
            tx.begin(),
        ):
            if campaign and self._postgres:
                tx.execute(_LOCK_CAMPAIGN, {"key": _campaign_key(campaign)})
            yield tx
            if self._rehearsing:
                tx.rollback()  # the transaction ends here: `begin()` then has nothing to commit
                return
        if self._checkpoints is not None and (write or campaign):
            self._checkpoints.wrote()  # committed: its pages are in the log

    # --- idempotency --------------------------------------------------------------------------

    def _seen(self, tx: Connection, key: str, request_hash: str, what: str) -> str | None:
        """The result recorded under an idempotency key, or None; AlreadyExists for a key
        reused with another body."""
        seen = tx.execute(_SEEN, {"key": key}).first()
        if seen is None:
            return None
        if seen.request_hash != request_hash:
            raise AlreadyExists(
                f"request_id was used for another request on {what}: use a new id for a new request"
            )
        return str(seen.result)

    def _claim(self, tx: Connection, key: str, request_hash: str, result: str) -> None:
        """Claims an idempotency key in this transaction: a concurrent call with the same key
        waits for it (the database's unique key), then finds it taken (_Raced). The INSERT's
        rowcount is kept (`preserve_rowcount`): SQLAlchemy keeps only UPDATE's and DELETE's
        by default, and psycopg's is -1 once the cursor is closed, so on PostgreSQL every
        racing call "claimed" the key and recorded a plan of its own."""
        claimed = tx.execute(
            self._claim_key,
            dict(key=key, request_hash=request_hash, result=result, create_time=_now()),
        )
        if claimed.rowcount == 0:
            raise _Raced

    def _idempotent(
        self, key: str, request_hash: str, what: str, call: Any, *, campaign: str
    ) -> LifeCycle:
        """Runs `call(tx)` (returning the plan name it leaves, or that plan's life cycle when
        it knows it without reading) once per key, in a write transaction on `campaign`'s
        plans: a retry returns the life cycle of the plan the first call left, recording
        nothing."""
        if not key:
            with self._tx(write=True, campaign=campaign) as tx:
                done = call(tx)
                return done if isinstance(done, LifeCycle) else self._life_cycle(tx, done)
        for _ in range(2):
            try:
                with self._tx(write=True, campaign=campaign) as tx:
                    earlier = self._seen(tx, key, request_hash, what)
                    if earlier is not None:
                        return replace(self._life_cycle(tx, earlier), replayed=True)
                    done = call(tx)
                    name = done.name if isinstance(done, LifeCycle) else done
                    self._claim(tx, key, request_hash, name)
                    return done if isinstance(done, LifeCycle) else self._life_cycle(tx, name)
            except _Raced:
                continue
        raise _Raced

    def _insert(self, table: sa.Table) -> Any:
        """INSERT with ON CONFLICT support in this database's dialect."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # --- writing ------------------------------------------------------------------------------

    def record_plan(
        self,
        new: NewPlan,
        *,
        actor: str,
        key: str = "",
        request_hash: str = "",
        replaces: Replaces | None = None,
    ) -> LifeCycle:
        """Stores a plan (one transaction): its snapshot (once per content), its assessment,
        the plan's summary and tables, its seller requests and its first event. A newer plan
        supersedes the campaign's unapplied older ones; `replaces` moves the plan it revises
        or rolls back (conditional on its etag). With an idempotency `key`, a retry with the
        same body returns the first plan (`replayed`) and records nothing; another body is
        AlreadyExists."""
        campaign = new.msg.campaign_id
        return self._idempotent(
            key,
            request_hash,
            f"campaign {campaign!r}",
            lambda tx: self._record(tx, new, actor, replaces),
            campaign=campaign,
        )

    def _record(
        self, tx: Connection, new: NewPlan, actor: str, replaces: Replaces | None
    ) -> LifeCycle:
        msg, parts = new.msg, new.parts
        campaign = msg.campaign_id
        now = _now()
        as_of = msg.as_of.ToMicroseconds()
        content_hash = new.snapshot_hash or hashlib.sha256(new.snapshot).hexdigest()
        name = f"campaigns/{campaign}/plans/{uuid.uuid4().hex[:20]}"
        previous = ""
        if replaces is not None:
            row = self._row(tx, replaces.name)
            if row.state != replaces.state:
                raise WrongState(f"{replaces.name} is {row.state}, not {replaces.state}")
            self._set_state(
                tx, replaces.name, replaces.to, actor, f"{replaces.comment} (by {name})", now,
                etag=replaces.etag or row.etag,
            )  # fmt: skip
            previous = replaces.name
        # One query: whether the snapshot is stored already, the campaign's last plan and its
        # open plans (read after `replaces` moved the plan it replaces out of them).
        read = tx.execute(_BEFORE_RECORD, {"content_hash": content_hash, "campaign": campaign})
        before = read.all()
        seen = before[0]
        self._store_snapshot(tx, content_hash, campaign, as_of, now, new.snapshot, seen.known)
        previous = previous or (seen.last_name or "")
        # creation order within a campaign, strictly increasing even when two plans share a
        # microsecond (a rollback right after a plan)
        seq = max(now, int(seen.last_seq) + 1 if seen.last_seq is not None else 0)
        # The campaign's open plans superseded by name, one executemany whatever their number
        # (an UPDATE ... RETURNING that found them itself took SQLite ~1.4x as long on a large
        # row, which it rewrites whole: 19 -> 27 ms on 10 MB)
        superseded = [row.open_name for row in before if row.open_name is not None]
        if superseded:
            tx.execute(
                _SET_STATE,
                [
                    dict(plan=plan, to="SUPERSEDED", new_etag=uuid.uuid4().hex, at=now)
                    for plan in superseded
                ],
            )
        state = "APPROVED" if new.approve else "PROPOSED"
        etag = uuid.uuid4().hex
        # Statements built once, values as parameters: building an INSERT per call cost more
        # than running it (SQLAlchemy caches the compiled form per set of columns).
        # The life-cycle row and the content row, in this transaction (never one without the
        # other): a state change later rewrites the small one only.
        tx.execute(
            _INSERT_PLAN,
            dict(
                name=name,
                campaign_id=campaign,
                seq=seq,
                state=state,
                status=plan_pb2.PlanStatus.Name(msg.status),
                etag=etag,
                create_time=now,
                update_time=now,
                as_of=as_of,
                actor=actor,
                previous_plan=previous,
                snapshot_hash=content_hash,
                size=len(parts.summary),
                deal_count=parts.deal_count,
                kind=new.kind,
                approve_time=now if new.approve else None,
            ),
        )
        tx.execute(
            _INSERT_CONTENT,
            dict(
                name=name,
                payload=_pack(parts.summary),
                options=new.options,
                moved_table=parts.moved,
                deals_table=parts.deals,
                schedules_table=parts.schedules,
                **dict(
                    zip(
                        ("history_table", "inputs_table", "moves_table"),
                        inputs_parts(new.inputs),
                        strict=True,
                    )
                    if new.inputs is not None
                    else {}
                ),
            ),
        )
        tx.execute(  # the superseded plans' events and this one's, one executemany
            _INSERT_EVENT,
            [
                *(
                    dict(plan_name=plan, event_time=now, actor=actor, state="SUPERSEDED",
                         comment=f"replaced by {name}")
                    for plan in superseded
                ),
                dict(plan_name=name, event_time=now, actor=actor, state=state, comment=new.comment),
            ],
        )  # fmt: skip
        rows = [
            {
                "plan_name": name,
                "request_id": r.request_id,
                "campaign_id": campaign,
                "deal_id": r.deal_id,
                "kind": plan_pb2.RequestKind.Name(r.kind).removeprefix("REQUEST_KIND_"),
                "target_total": r.target_total,
                "requested_at": as_of,
                "response": "PENDING",
                "accepted_total": 0,
                "response_time": 0,
                "message": "",
                "actor": "",
                "sent": new.approve,
            }
            for r in msg.seller_requests
        ]
        if rows:
            tx.execute(_INSERT_REQUESTS, rows)
        if new.assessment:
            tx.execute(
                _INSERT_ASSESSMENT,
                dict(
                    campaign_id=campaign,
                    as_of=as_of,
                    create_time=now,
                    snapshot_hash=content_hash,
                    plan_name=name,
                    actor=actor,
                    max_severity=new.max_alert_severity,
                    size=len(new.assessment),
                    payload=_pack(new.assessment, _ASSESSMENT_PACK_FROM_BYTES),
                ),
            )
        return LifeCycle(  # as _life_cycle would read it back: one event, no answers yet
            name=name,
            state=state,
            etag=etag,
            previous_plan=previous,
            create_time=now,
            events=((now, actor, state, new.comment),),
            answers={str(row["request_id"]): "PENDING" for row in rows},
        )

    def _store_snapshot(
        self, tx: Connection, content_hash: str, campaign: str, as_of: int, now: int, data: bytes,
        known: bool | None = None,
    ) -> None:  # fmt: skip
        """Stored once per content (plans and assessments from one snapshot share it); a
        snapshot already stored is not sent to the database again (at 100k deals it is 43 MB).
        `known`: whether it is, when the caller read that in this transaction."""
        if known is None:
            known = tx.execute(_KNOWN_SNAPSHOT, {"content_hash": content_hash}).first() is not None
        if known:
            return
        tx.execute(
            self._insert_snapshot,
            dict(
                content_hash=content_hash,
                campaign_id=campaign,
                as_of=as_of,
                create_time=now,
                size=len(data),
                payload=_pack(data),
            ),
        )

    def snapshot_ahead(
        self, campaign: str, as_of: int, data: bytes, digest: Callable[[], str] | None = None
    ) -> Callable[[], str]:
        """A snapshot (serialised, validated) stored now in a transaction of its own, on a
        thread when it is large, while the caller makes its plan or assessment: the function
        returned waits for that and gives its content hash (`digest`'s, when the caller began
        hashing it: `content_hash`), or raises what storing raised. The record made from it
        then finds it stored. A snapshot whose plan or assessment then fails stays, as any does
        until retention (`purge`)."""
        digest = digest or content_hash(data)
        if len(data) < _STORED_AHEAD_FROM_BYTES:
            return digest

        def keep() -> str:
            found = digest()
            with self._tx(write=True) as tx:
                self._store_snapshot(tx, found, campaign, as_of, _now(), data)
            return found

        return begun(keep, name="store-snapshot")

    def record_assessment(
        self, campaign: str, as_of: int, *, snapshot: bytes, assessment: bytes, severity: int,
        actor: str, snapshot_hash: str = "",
    ) -> None:  # fmt: skip
        """Stores an AssessPacing call's snapshot and verdicts (pacing history, alerts);
        `snapshot_hash`: the snapshot's content hash when the caller has it (`snapshot_ahead`)."""
        content_hash = snapshot_hash or hashlib.sha256(snapshot).hexdigest()
        now = _now()
        with self._tx(write=True) as tx:
            self._store_snapshot(tx, content_hash, campaign, as_of, now, snapshot)
            # Built once, values as parameters (as `_record`'s): built per call with its values
            # it cost ~0.17 ms of thread CPU (record_assessment 0.88 -> 0.71 ms, 50 deals).
            tx.execute(
                _INSERT_ASSESSMENT,
                dict(
                    campaign_id=campaign,
                    as_of=as_of,
                    create_time=now,
                    snapshot_hash=content_hash,
                    plan_name="",
                    actor=actor,
                    max_severity=severity,
                    size=len(assessment),
                    payload=_pack(assessment, _ASSESSMENT_PACK_FROM_BYTES),
                ),
            )

    def _set_state(
        self,
        tx: Connection,
        name: str,
        state: str,
        actor: str,
        comment: str,
        now: int,
        etag: str | None = None,
        **values: Any,
    ) -> None:
        """Moves a plan to `state` (conditional on `etag` when given) and records the event."""
        done = tx.execute(
            _set_state_statement(bool(etag), tuple(values)),
            dict(
                plan=name,
                to=state,
                new_etag=uuid.uuid4().hex,
                at=now,
                **({"if_etag": etag} if etag else {}),
                **{f"set_{column}": value for column, value in values.items()},
            ),
        )
        if done.rowcount != 1:
            raise StaleEtag(f"{name} changed since it was read (etag {etag!r}): read it again")
        tx.execute(
            _INSERT_EVENT,
            dict(plan_name=name, event_time=now, actor=actor, state=state, comment=comment),
        )

    def review(
        self,
        name: str,
        approve: bool,
        *,
        etag: str,
        actor: str,
        comment: str,
        request_id: str = "",
        request_hash: str = "",
    ) -> LifeCycle:
        """Approves or rejects a PROPOSED plan; a stale etag is StaleEtag (ABORTED)."""

        def call(tx: Connection) -> str:
            row = self._row(tx, name)
            if row.state != "PROPOSED":
                raise WrongState(f"{name} is {row.state}: only a PROPOSED plan can be reviewed")
            now = _now()
            self._set_state(
                tx, name, "APPROVED" if approve else "REJECTED", actor, comment, now,
                etag=etag or row.etag, **({"approve_time": now} if approve else {}),
            )  # fmt: skip
            if approve:  # its requests go out now
                tx.execute(_MARK_SENT, {"plan": name})
            return name

        key = f"ReviewPlan:{name}:{request_id}" if request_id else ""
        return self._idempotent(key, request_hash, name, call, campaign=_campaign_of(name))

    def check_state(self, name: str, states: tuple[str, ...], etag: str) -> Any:
        """The plan's row when it is in one of `states` (and at `etag` when given), before a
        call computes something for it (the write checks again, in its transaction)."""
        with self._tx() as tx:
            row = self._row(tx, name)
        if etag and row.etag != etag:
            raise StaleEtag(f"{name} changed since it was read (etag {etag!r}): read it again")
        if row.state not in states:
            raise WrongState(f"{name} is {row.state}: this call needs it {' or '.join(states)}")
        return row

    def confirm_applied(
        self,
        name: str,
        *,
        actor: str,
        apply_time: int | None,
        etag: str = "",
        request_id: str = "",
        request_hash: str = "",
    ) -> LifeCycle:
        """Marks an APPROVED plan APPLIED (confirming an APPLIED one again changes nothing).
        A plan approved and then superseded by a newer Replan may still be confirmed: the
        caller applied what was approved, and the moves it made count (rolling steps,
        hysteresis, the last application) however the plans raced."""

        def call(tx: Connection) -> str:
            row = self._row(tx, name)
            if row.state == "APPLIED":
                return name
            approved_then_superseded = row.state == "SUPERSEDED" and row.approve_time is not None
            if row.state != "APPROVED" and not approved_then_superseded:
                raise WrongState(
                    f"{name} is {row.state}: only an APPROVED plan (or one approved, then "
                    "superseded) can be applied"
                )
            when = apply_time or _now()
            note = f"applied at {datetime.fromtimestamp(when / 1e6, UTC).isoformat()}"
            self._set_state(
                tx, name, "APPLIED", actor, note, _now(), etag=etag or row.etag, apply_time=when
            )
            return name

        key = f"ConfirmApplied:{name}:{request_id}" if request_id else ""
        return self._idempotent(key, request_hash, name, call, campaign=_campaign_of(name))

    def record_response(
        self,
        plan: str,
        request_id: str,
        *,
        response: int,
        accepted_total: int,
        message: str,
        response_time: int | None,
        actor: str,
        available_inventory: int | None = None,
    ) -> None:
        """Records a seller's answer to one request of `plan` (the latest answer counts: a
        seller may answer PENDING first, then ACCEPTED). A request of a plan never approved was
        never sent: answering it is WrongState, as no plan would read the answer."""
        with self._tx(write=True) as tx:
            state = self._row(tx, plan).state
            row = tx.execute(_REQUEST, {"plan": plan, "request": request_id}).first()
            if row is None:
                raise NotFound(f"{plan} has no seller request {request_id!r}")
            if not row.sent:  # no plan reads it: an OK here would be an answer ignored
                then = (
                    "approve it (ReviewPlan) first"
                    if state == "PROPOSED"
                    else "only a PROPOSED plan can be, so its requests will never go out"
                )
                raise WrongState(
                    f"{plan} request {request_id!r} was never sent to its seller: the plan is "
                    f"{state} and was never approved; {then}"
                )
            when = response_time or _now()
            tx.execute(
                _ANSWER,
                dict(
                    plan=plan,
                    request=request_id,
                    set_response=_RESPONSE[response],
                    set_accepted_total=accepted_total,
                    set_response_time=when,
                    set_message=message,
                    set_actor=actor,
                    set_available_inventory=available_inventory,
                ),
            )
            note = f"seller answered {request_id}: {_RESPONSE[response]}"
            tx.execute(
                _INSERT_EVENT,
                dict(plan_name=plan, event_time=_now(), actor=actor, state="", comment=note),
            )

    def purge(self, before: int) -> tuple[int, int]:
        """Removes snapshots and assessments recorded before `before` (unix micros), keeping
        the decision record (plans, their events, reviews and seller answers). Returns how
        many snapshots and assessments went. A plan whose snapshot went can no longer be
        revised or rolled back from it."""
        with self._tx(write=True) as tx:
            gone_a = tx.execute(assessments.delete().where(assessments.c.create_time < before))
            gone_s = tx.execute(snapshots.delete().where(snapshots.c.create_time < before))
            return int(gone_s.rowcount), int(gone_a.rowcount)

    # --- reading ------------------------------------------------------------------------------

    def find_key(self, key: str, request_hash: str, what: str) -> str | None:
        """The plan a call under this idempotency key left, if any (before computing it
        again); AlreadyExists when the key was used for another body."""
        with self._tx() as tx:
            return self._seen(tx, key, request_hash, what)

    def _row(self, tx: Connection, name: str, read: sa.Select[Any] | None = None) -> Any:
        """The plan's row: `_ROW`'s columns (its `plans` row), or `read`'s (a select of one
        plan by `name`)."""
        row = tx.execute(_ROW if read is None else read, {"name": name}).first()
        if row is None:
            raise NotFound(f"no plan {name!r}")
        return row

    def _life_cycle(self, tx: Connection, name: str, row: Any = None) -> LifeCycle:
        """The plan's life cycle; `row`: its row (`_ROW`'s columns) when the caller read it."""
        row = self._row(tx, name) if row is None else row
        events = tx.execute(_EVENTS, {"name": name}).all()
        answers = tx.execute(_ANSWERS, {"name": name}).all()
        return LifeCycle(
            name=name,
            state=str(row.state),
            etag=str(row.etag),
            previous_plan=str(row.previous_plan),
            create_time=int(row.create_time),
            events=tuple(
                (int(e.event_time), str(e.actor), str(e.state), str(e.comment)) for e in events
            ),
            answers={str(a.request_id): str(a.response) for a in answers},
        )

    def life_cycle(self, name: str) -> LifeCycle:
        with self._tx() as tx:
            return self._life_cycle(tx, name)

    def get_plan(self, name: str, view: str = "all", rows: Rows | None = None) -> plan_pb2.Plan:
        """The stored plan in `view` (plan_codec.render), life cycle filled in; a long plan's
        rows kept in `rows` when given."""
        with self._tx() as tx:  # the row with its content (a join): one statement, not two
            row = self._row(tx, name, _ROW_AND_SUMMARY if view == "none" else _ROW_AND_TABLES)
            lc = self._life_cycle(tx, name, row)
        summary = unpack(row.payload, row.size)
        if view == "none":  # a summary, whether stored as one or whole
            return lc.fill(render(summary, None, None, view))
        return lc.fill(render(summary, row.deals_table, row.schedules_table, view, rows))

    def plan_tables(self, name: str) -> tuple[pd.DataFrame, ScheduleTable | None] | None:
        """The stored plan's deals and schedules as the tables the plan held (words rendered
        from them for the rows a reader shows, `wire.plan.deal_rationales`); None for a plan
        stored whole, before the tables existed (its rows are in `get_plan`)."""
        with self._tx() as tx:
            row = tx.execute(_TABLES, {"name": name}).first()
        if row is None:
            raise NotFound(f"no plan {name!r}")
        if row.deals_table is None:
            return None
        return deals_frame(row.deals_table), schedule_table(row.schedules_table or b"")

    def plan_inputs(self, name: str) -> PlanInputs:
        """What a re-solve of a stored plan needs: its snapshot, its options and its deals."""
        with self._tx() as tx:
            row = tx.execute(_INPUTS, {"name": name}).first()
            if row is None:
                raise NotFound(f"no plan {name!r}")
            snap = tx.execute(_SNAPSHOT, {"content_hash": row.snapshot_hash}).first()
        if snap is None or row.deals_table is None:
            raise WrongState(f"{name}: its snapshot is no longer stored (purged)")
        return PlanInputs(
            snapshot=unpack(snap.payload, snap.size),
            options=bytes(row.options or b""),
            deals=deals_frame(row.deals_table),
        )

    def last_application(self, campaign: str) -> tuple[str, float, pa.Table] | None:
        """The campaign's newest APPLIED plan as the snapshot's last_plan_application reads
        it: (name, apply time in unix seconds, its deals' deal_id, delta, pacing and
        delivered as Arrow), or None."""
        with self._tx() as tx:
            return self._last_application(tx, campaign)

    def _last_application(
        self, tx: Connection, campaign: str
    ) -> tuple[str, float, pa.Table] | None:
        row = tx.execute(_LAST_APPLICATION, {"campaign": campaign}).first()
        if row is None:
            return None
        name = str(row.name)
        table = self._read.columns(name, _MOVED, row.deals, _APPLICATION_COLUMNS)
        return name, row.apply_time / 1e6, table

    def latest_applied(
        self, campaign: str
    ) -> tuple[str, float, pd.DataFrame, ScheduleTable | None] | None:
        """The campaign's newest APPLIED plan: (name, as_of in unix seconds, deals table,
        schedule table), or None."""
        with self._tx() as tx:
            row = tx.execute(_LATEST_APPLIED, {"campaign": campaign}).first()
        if row is None:
            return None
        return (
            str(row.name),
            row.as_of / 1e6,
            deals_frame(row.deals_table),
            schedule_table(row.schedules_table or b""),
        )

    def recorded_replans(
        self, campaign: str, start: int | None = None, end: int | None = None
    ) -> list[tuple[bytes, bytes, StoredInputs | None, str]]:
        """The campaign's Replan plans with as_of in [start, end) (unix micros), oldest first:
        (snapshot, options, what the store supplied, plan name) each, for a replay. Plans whose
        snapshot was purged are left out."""
        condition = (plans.c.campaign_id == campaign) & (plans.c.kind == "REPLAN")
        if start is not None:
            condition = condition & (plans.c.as_of >= start)
        if end is not None:
            condition = condition & (plans.c.as_of < end)
        with self._tx() as tx:
            rows = tx.execute(
                sa.select(
                    plans.c.name,
                    plan_tables.c.options,
                    plan_tables.c.history_table,
                    plan_tables.c.inputs_table,
                    plan_tables.c.moves_table,
                    snapshots.c.payload,
                    snapshots.c.size,
                )
                .select_from(
                    _WITH_CONTENT.join(snapshots, snapshots.c.content_hash == plans.c.snapshot_hash)
                )
                .where(condition)
                .order_by(plans.c.as_of, plans.c.seq)
            ).all()
        return [
            (
                unpack(r.payload, r.size),
                bytes(r.options or b""),
                inputs_frames(r.history_table, r.inputs_table, r.moves_table)
                if r.history_table is not None and r.inputs_table is not None
                else None,
                str(r.name),
            )
            for r in rows
        ]

    def latest_snapshot(self, campaign: str) -> tuple[bytes, int] | None:
        """The campaign's newest stored snapshot (by as_of, then recording order) and its
        as_of (unix micros)."""
        with self._tx() as tx:
            row = tx.execute(_LATEST_SNAPSHOT, {"campaign": campaign}).first()
        return None if row is None else (unpack(row.payload, row.size), int(row.as_of))

    def list_plans(
        self,
        campaign: str,
        *,
        state: str = "",
        start: int | None = None,
        end: int | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[plan_pb2.Plan], str]:
        """A campaign's plans, newest first, as summaries, `page_size` at a time (AIP-158)."""
        seq, last = "0", ""
        if page_token:
            seq, _, last = _decode_token(page_token).partition(":")
        page = _list_page(bool(state), start is not None, end is not None, bool(page_token))
        with self._tx() as tx:  # one consistent page: three queries, whatever its size
            rows = tx.execute(
                page,
                dict(campaign=campaign, state=state, start=start, end=end, seq=int(seq),
                     last=last, limit=page_size + 1),
            ).all()  # fmt: skip
            names = [r.name for r in rows[:page_size]]
            events = tx.execute(_PAGE_EVENTS, {"names": names}).all()
            answers = tx.execute(_PAGE_ANSWERS, {"names": names}).all()
        by_plan: dict[str, list[tuple[int, str, str, str]]] = {name: [] for name in names}
        for e in events:
            by_plan[e.plan_name].append(
                (int(e.event_time), str(e.actor), str(e.state), str(e.comment))
            )
        answered: dict[str, dict[str, str]] = {name: {} for name in names}
        for a in answers:
            answered[a.plan_name][str(a.request_id)] = str(a.response)
        out = [
            LifeCycle(
                name=r.name,
                state=str(r.state),
                etag=str(r.etag),
                previous_plan=str(r.previous_plan),
                create_time=int(r.create_time),
                events=tuple(by_plan[r.name]),
                answers=answered[r.name],
            ).fill(render(unpack(r.payload, r.size), None, None, "none"))
            for r in rows[:page_size]
        ]
        token = ""
        if len(rows) > page_size:
            last_row = rows[page_size - 1]
            token = _encode_token(f"{last_row.seq}:{last_row.name}")
        return out, token

    def pacing_history(
        self,
        campaign: str,
        *,
        start: int | None = None,
        end: int | None = None,
        page_size: int = 500,
        page_token: str = "",
        alerts: bool = True,
    ) -> tuple[list[tuple[int, bytes, str, str]], str]:
        """The campaign's stored assessments, oldest first: (id, PacingAssessment bytes, plan
        name, plan state) per assessment, `page_size` at a time. `alerts` False: a reader of
        the verdicts alone may get them without their alerts (stored unworded, they are
        worded on reading; older rows come as they are)."""
        as_of, last = "0", ""
        if page_token:
            as_of, _, last = _decode_token(page_token).partition(":")
            if last and not _int64(last):
                raise ValueError("page_token: not a token this server issued")
        page = _history_page(start is not None, end is not None, bool(page_token))
        with self._tx() as tx:
            rows = tx.execute(
                page,
                dict(campaign=campaign, start=start, end=end, as_of=int(as_of),
                     last=int(last or 0), limit=page_size + 1),
            ).all()  # fmt: skip
        out = [
            (
                int(r.id),
                _assessment(r.payload, r.size, alerts),
                str(r.plan_name),
                str(r.state or ""),
            )
            for r in rows[:page_size]
        ]
        token = ""
        if len(rows) > page_size:
            last_row = rows[page_size - 1]
            token = _encode_token(f"{last_row.as_of}:{last_row.id}")
        return out, token

    def cursor(self, campaign: str) -> tuple[int, int]:
        """Where a watch starts: the newest plan event and assessment ids of the campaign."""
        with self._tx() as tx:
            event = tx.execute(_LAST_EVENT, {"campaign": campaign}).scalar()
            assessed = tx.execute(_LAST_ASSESSED, {"campaign": campaign}).scalar()
        return int(event or 0), int(assessed or 0)

    def events_after(
        self, campaign: str, after: tuple[int, int], min_severity: int = 0
    ) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, bytes]]]:
        """New plan events (id, time, plan name) and new assessments with alerts at least
        `min_severity` (id, time, PacingAssessment bytes) since the cursor `after`, oldest
        first. Polled by WatchCampaign: it sees what any server process sharing the database
        wrote."""
        with self._tx() as tx:
            events = tx.execute(_EVENTS_AFTER, {"campaign": campaign, "after": after[0]}).all()
            assessed = tx.execute(_ASSESSED_AFTER, {"campaign": campaign, "after": after[1]}).all()
        return (
            [(int(e.id), int(e.event_time), str(e.plan_name)) for e in events],
            [
                (int(a.id), int(a.create_time), _assessment(a.payload, a.size))
                if a.max_severity and a.max_severity >= min_severity
                else (int(a.id), int(a.create_time), b"")
                for a in assessed
            ],
        )

    def applied_plans(self, campaign: str, since: int) -> list[tuple[float, pd.DataFrame]]:
        """The campaign's plans applied (or applied, then rolled back) whose snapshot is from
        `since` (unix micros) on, oldest first, with their deals tables: what the rolling step
        limits count moves over. Times are the plans' as_of (the campaign's clock)."""
        with self._tx() as tx:
            return _frames(self._applied_plans(tx, campaign, since))

    def _applied_plans(
        self, tx: Connection, campaign: str, since: int, *, whole: bool = True
    ) -> list[tuple[float, pa.Table]]:
        """The plans applied (or rolled back) from `since` (unix micros) on, oldest first: per
        plan its as_of (unix seconds) and `_APPLIED_COLUMNS` of every deal (`whole`, the rolling
        windows need them), else deal_id and delta of the deals it changed (the moves; from
        `moved_table`, for a plan stored before it from its deals table). As Arrow: an hourly
        campaign has ~24 plans in a day, and a frame each cost more than reading them."""
        read = _APPLIED_WHOLE if whole else _APPLIED_MOVES
        rows = tx.execute(read, {"campaign": campaign, "since": since}).all()
        part, names = ("deals", _APPLIED_COLUMNS) if whole else (_MOVED, _MOVE_COLUMNS)
        return [(r.as_of / 1e6, self._read.columns(r.name, part, r.deals, names)) for r in rows]

    def declared_inventory(self, campaign: str) -> pd.Series:
        """Per deal, the newest inventory a seller declared with an answer (budget units)."""
        with self._tx() as tx:
            return self._declared_inventory(tx, campaign)

    def _declared_inventory(self, tx: Connection, campaign: str) -> pd.Series:
        return _declared_series(tx.execute(_DECLARED, {"campaign": campaign}).all())

    def request_history(
        self, campaign: str, moves_since: int | None = None, before: int | None = None
    ) -> RequestHistory:
        """The campaign's seller requests sent (by plans ever approved) and their answers,
        as the plan builder reads them; with `before` (unix micros: the plan's as_of) only the
        ones a plan then reads (`_requests`); with `moves_since` (unix micros), also the moves
        of the plans applied from then on (their deals' changes, at their as_of)."""
        return self.campaign_past(campaign, moves_since=moves_since, before=before).history

    def campaign_past(
        self,
        campaign: str,
        *,
        moves_since: int | None = None,
        applied_since: int | None = None,
        application: bool = False,
        declared: bool = False,
        before: int | None = None,
    ) -> CampaignPast:
        """Everything a Replan reads of the campaign's past, in one transaction (one consistent
        view, one connection checkout): the seller requests and answers, the moves of the plans
        applied since `moves_since`, the plans applied since `applied_since` (the rolling step
        windows), the last application (`application`) and the inventory sellers declared
        (`declared`). With `before` (the plan's as_of, unix micros) only the requests and moves
        a plan then reads (`_requests`, `RequestHistory.deciding`), else all. A campaign none
        of whose plans was ever approved has no requests sent, moves or applications: one query
        tells, and the others are not made."""
        with self._tx() as tx:
            if declared:  # both in one round trip: the first query of every Replan
                rows = tx.execute(_DECLARED_AND_ACTED, {"campaign": campaign}).all()
                acted = bool(rows[0].acted)
                found = _declared_series([r for r in rows if r.deal_id is not None])
            else:
                acted = tx.execute(_ACTED, {"campaign": campaign}).first() is not None
                found = _NO_DECLARED
            history = self._requests(tx, campaign, before) if acted else _NO_HISTORY
            starts = [t for t in (moves_since, applied_since) if t is not None]
            applied = (
                self._applied_plans(tx, campaign, min(starts), whole=applied_since is not None)
                if acted and starts
                else []
            )
            if moves_since is not None and applied:
                at = None if before is None else before / 1e6
                history = replace(history, moves=_moves(applied, moves_since / 1e6, at))
            return CampaignPast(
                history=history,
                applied=(
                    _frames([(at, deals) for at, deals in applied if at >= applied_since / 1e6])
                    if applied_since is not None
                    else []
                ),
                application=self._last_application(tx, campaign) if acted and application else None,
                declared=found,
            )

    def _requests(self, tx: Connection, campaign: str, before: int | None) -> RequestHistory:
        """The requests sent that a plan at `before` (unix micros) reads: per deal the last
        one, per deal and kind the last rejection (`RequestHistory.deciding`), so
        the read and the stored history grow with the deals, not with the campaign's age.
        A request sent at or after `before` (a plan made from an older snapshot) changes what
        came last before it: then every request is read, and the plan filters them."""
        rows = [] if before is None else tx.execute(_DECIDING, {"campaign": campaign}).all()
        if before is None or any(r.requested_at >= before for r in rows):
            rows = tx.execute(_ALL_SENT, {"campaign": campaign}).all()
        if not rows:
            return _NO_HISTORY
        _, _, deal_id, requested_at, kind, target_total, response, accepted_total, answered = zip(
            *rows, strict=True
        )
        read = [_AS_PLANS_READ.get(r, r) for r in response]
        # 0: not answered; a PENDING answer is an acknowledgement, not the seller's answer.
        answered_at = np.array(answered, dtype=np.float64) / 1e6
        done = (answered_at > 0) & (np.array(read, dtype=object) != SellerResponse.PENDING)
        frame = pd.DataFrame(
            {
                "deal_id": deal_id,
                "requested_at": np.array(requested_at, dtype=np.float64) / 1e6,
                "kind": kind,
                "target_total": np.array(target_total, dtype=np.int64),
                "response": read,
                "accepted_total": np.array(accepted_total, dtype=np.int64),
                "answered_at": np.where(done, answered_at, np.nan),
            }
        )
        return RequestHistory(requests=frame)


def _declared_series(rows: Sequence[Row[Any]]) -> pd.Series:
    """Per deal the inventory its seller declared, from `_DECLARED`'s rows (newest last)."""
    if not rows:
        return _NO_DECLARED
    latest = {str(r.deal_id): int(r.available_inventory) for r in rows}
    return pd.Series(latest, dtype="int64")


_NO_HISTORY = RequestHistory()
_NO_DECLARED = pd.Series({}, dtype="int64")
"""Shared empty answers (never mutated): most campaigns have no past, and building empty
frames costs more than the queries that find nothing."""


@dataclass(frozen=True)
class CampaignPast:
    """What the store knows of a campaign's past that a Replan uses (`SqlStore.campaign_past`)."""

    history: RequestHistory
    applied: list[tuple[float, pd.DataFrame]]
    """Plans applied since `applied_since`: (as_of in unix seconds, deals table), oldest first."""
    application: tuple[str, float, pa.Table] | None
    """The newest APPLIED plan: (name, apply time in unix seconds, `_APPLICATION_COLUMNS`)."""
    declared: pd.Series
    """Per deal id, the newest inventory its seller declared (budget units)."""


def _frames(applied: list[tuple[float, pa.Table]]) -> list[tuple[float, pd.DataFrame]]:
    """`_applied_plans`' tables as frames (the rolling windows read them so)."""
    out: list[tuple[float, pd.DataFrame]] = []
    ids: tuple[pa.ChunkedArray, pd.Series] | None = None
    for when, read in applied:
        column = read.column("deal_id")
        # A campaign's plans mostly list the same deals in the same order: their ids are
        # converted once (at 100k deals the conversion is most of reading a plan).
        if ids is None or not ids[0].equals(column):
            ids = (column, column.to_pandas())
        frame = {name: read.column(name).to_numpy() for name in read.column_names[1:]}
        out.append((when, pd.DataFrame({"deal_id": ids[1], **frame})))
    return out


def _moves(
    applied: list[tuple[float, pa.Table]], since: float, before: float | None = None
) -> pd.DataFrame:
    """The deals' changes of the applied plans from `since` (unix seconds) on, at their as_of:
    the plans' tables joined in Arrow and made one frame (a frame per plan cost ~0.3 ms: 24
    hourly plans were ~7 of a 30-deal Replan's ~25 ms). When every change precedes `before`
    (the plan's as_of), per deal the last (`RequestHistory.deciding`'s moves, found on the
    arrays before the frame is made)."""
    kept = [(when, deals.select(list(_MOVE_COLUMNS))) for when, deals in applied if when >= since]
    if not kept:
        return _NO_HISTORY.moves
    table = pa.concat_tables([deals for _, deals in kept], promote_options="permissive")
    at = np.repeat([when for when, _ in kept], [deals.num_rows for _, deals in kept])
    delta = table.column("delta").to_numpy().astype(np.int64, copy=False)
    moved = np.flatnonzero(delta)
    ids = table.column("deal_id").take(pa.array(moved)).to_numpy()
    at, delta = at[moved], delta[moved]
    if before is not None and (at <= before).all():
        last = last_of_each(ids, at)  # as `RequestHistory.deciding` finds them
        ids, at, delta = ids[last], at[last], delta[last]
    # From its blocks: the dict constructor cost ~0.2 ms of an hourly campaign's Replan.
    return table_of({"deal_id": ids, "planned_at": at, "delta": delta}, _MOVES)


_MOVE_COLUMNS = ("deal_id", "delta")
_MOVES = {"deal_id": "str", "planned_at": "float64", "delta": "int64"}
"""RequestHistory.moves' columns and dtypes."""
_APPLIED_COLUMNS = ("deal_id", "delta", "delivered", "old_allocation")
"""What a Replan reads of the plans applied in its windows: their moves (`_moves`) and what
each deal held before them (`core.plan.rolling.window_starts`)."""

_APPLICATION_COLUMNS = ("deal_id", "delta", "pacing", "delivered")
"""What a Replan reads of the last plan applied (`lifecycle._with_application`)."""

_WITH_CONTENT = plans.join(plan_tables, plan_tables.c.name == plans.c.name)
"""A plan's life-cycle row with its content (every plan has both, written together): what
the reads of a plan's summary or tables select from, one statement as before 0009."""

_MOVED_OR_DEALS = sa.func.coalesce(plan_tables.c.moved_table, plan_tables.c.deals_table)
"""What later Replans read of an applied plan: its moved rows, or its whole deals table when
it was stored before 0007 (the rows it did not change are dropped by the readers)."""
_MOVED = "moved or deals"
"""`_MOVED_OR_DEALS` as the read tables name it (`ReadTables.columns`' part)."""


def _encode_token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("page_token: not a token this server issued") from exc
    first, sep, _ = text.partition(":")
    if not sep or not _int64(first):
        raise ValueError("page_token: not a token this server issued")
    return text


def _int64(text: str) -> bool:
    """A non-negative decimal a database integer holds (a forged token's 10**30 must be a bad
    token, not a driver's overflow)."""
    return text.isascii() and text.isdigit() and int(text) < 2**63


def request_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_STORED_AHEAD_FROM_BYTES = 16 << 20
"""From this length `snapshot_ahead` stores a snapshot in a transaction of its own while the
plan is made: a new 100k-deal snapshot is ~62 MB of SQLite writes, their sync and checkpoint,
outside the GIL, that a recorded Replan made after its plan (in process, SQLite, a new snapshot
each call, alternated: 100k deals SUMMARY 788-831 -> 688-704 ms, 30k 294-306 -> 260-271 ms).
Below, the second transaction's sync and checkpoint cost more than the overlap saves (10k
deals, 9.7 MB: 107 -> 113 ms)."""

_HASH_APART_FROM_BYTES = 1 << 20
"""From this length `content_hash` hashes on a thread of its own: below, the hand-over costs
more than the hash (a 50-deal snapshot, 43 KB, hashes in ~30 us)."""


@cache
def _hashing() -> ThreadPoolExecutor:
    """The threads that hash large snapshots (hashlib releases the GIL while it hashes)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="snapshot-hash")


def content_hash(data: bytes) -> Callable[[], str]:
    """The sha256 (hex) a snapshot is stored under (`NewPlan.snapshot_hash`), begun now and
    waited for when called: a 100k-deal snapshot is 62 MB, ~55 ms of hashing that a recorded
    Replan did in its transaction and now overlaps with building the plan."""
    if len(data) < _HASH_APART_FROM_BYTES:
        digest = hashlib.sha256(data).hexdigest()
        return lambda: digest
    return _hashing().submit(request_hash, data).result


def recorded_bytes(
    request: Message, *, whole: bool
) -> tuple[bytes, Callable[[], str], Callable[[], str]]:
    """What recording a call needs of its request (a message whose field 1 is its snapshot):
    the snapshot as stored (serialised deterministically), its `content_hash`, and, when
    `whole` (an idempotency key), the hash of the whole request ("" when not), both begun now.
    With both, the request is serialised once and the snapshot read out of it (its field 1,
    which a serialisation writes first): at 100k deals one 62 MB serialisation (~20 ms) fewer,
    and the two hashes (~55 ms each) run on other cores while the caller decodes."""
    if not whole:
        snapshot = _serialised(request.snapshot)  # type: ignore[attr-defined]
        return snapshot, content_hash(snapshot), lambda: ""
    data = _serialised(request)
    digest = content_hash(data)
    inner = _field_one(data)
    snapshot = _serialised(request.snapshot) if inner is None else inner  # type: ignore[attr-defined]
    return snapshot, content_hash(snapshot), digest


def _serialised(message: Message) -> bytes:
    data: bytes = message.SerializeToString(deterministic=True)
    return data


def _field_one(data: bytes) -> bytes | None:
    """The bytes of field 1 (length-delimited) when `data` begins with it, else None."""
    if not data or data[0] != 0x0A:
        return None
    size, shift, at = 0, 0, 1
    while at < min(len(data), 11):
        byte = data[at]
        size |= (byte & 0x7F) << shift
        shift += 7
        at += 1
        if not byte & 0x80:
            return data[at : at + size] if at + size <= len(data) else None
    return None


# Statements every Replan runs, built once (building them cost about as much as running them).
_SEEN = sa.select(idempotency.c.request_hash, idempotency.c.result).where(
    idempotency.c.key == sa.bindparam("key")
)
"""What an idempotency key recorded (`SqlStore._seen`: twice a Replan with a request_id), built
once: a select built per call with the key inlined cost ~0.11 ms of thread CPU each time."""
_KNOWN_SNAPSHOT = sa.select(snapshots.c.content_hash).where(
    snapshots.c.content_hash == sa.bindparam("content_hash")
)
_LAST_PLAN = (
    sa.select(plans.c.name, plans.c.seq)
    .where(plans.c.campaign_id == sa.bindparam("campaign"))
    .order_by(plans.c.seq.desc(), plans.c.name.desc())
    .limit(1)
)
_OPEN_PLANS = sa.select(plans.c.name).where(
    (plans.c.campaign_id == sa.bindparam("campaign"))
    & sa.or_(plans.c.state == "PROPOSED", plans.c.state == "APPROVED")
)
"""The campaign's open plans, which a new Replan's plan supersedes. `or_`, not `in_`: an IN of
literals is an expanding parameter, rendered into the statement at every execution (~15 us)."""


def _before_record() -> sa.Select[Any]:
    """What recording a plan reads before it writes, in one round trip: whether its snapshot is
    stored (`_KNOWN_SNAPSHOT`), the campaign's last plan (`_LAST_PLAN`: name and seq, NULL for
    none), and per open plan (`_OPEN_PLANS`) a row with its name (one row, `open_name` NULL,
    for none). The first three repeat on every row. One statement, not two: a statement
    through SQLAlchemy and the driver cost ~40 us of thread CPU (as `_declared_and_acted`)."""
    head = sa.select(
        sa.exists(_KNOWN_SNAPSHOT).label("known"),
        _LAST_PLAN.with_only_columns(plans.c.name).scalar_subquery().label("last_name"),
        _LAST_PLAN.with_only_columns(plans.c.seq).scalar_subquery().label("last_seq"),
    ).subquery("head")
    open_plans = _OPEN_PLANS.with_only_columns(plans.c.name.label("open_name")).subquery("open")
    return sa.select(
        head.c.known, head.c.last_name, head.c.last_seq, open_plans.c.open_name
    ).select_from(head.outerjoin(open_plans, sa.true()))


_BEFORE_RECORD = _before_record()
_SET_STATE = (
    plans.update()
    .where(plans.c.name == sa.bindparam("plan"))
    .values(state=sa.bindparam("to"), etag=sa.bindparam("new_etag"), update_time=sa.bindparam("at"))
)
_INSERT_PLAN = plans.insert()
_INSERT_CONTENT = plan_tables.insert()
_INSERT_EVENT = plan_events.insert()
_INSERT_ASSESSMENT = assessments.insert()

# The life-cycle reads and writes (GetPlan, ListPlans, ReviewPlan, ConfirmApplied, seller
# answers), built once, values as parameters: SQLAlchemy builds a statement and its cache key
# on every call even when the compiled form is cached (a plan's row of ~25 columns most). Thread
# CPU in process at 50 deals: store.get_plan 4.26 -> 3.87 ms (also one statement fewer),
# store.list_plans of 10 plans 0.74 -> 0.41 ms.
_ROW = sa.select(plans).where(plans.c.name == sa.bindparam("name"))
"""A plan's row without its content (`SqlStore._row`)."""
_ROW_AND_SUMMARY = _ROW.add_columns(plan_tables.c.payload).select_from(_WITH_CONTENT)
_ROW_AND_TABLES = _ROW_AND_SUMMARY.add_columns(
    plan_tables.c.deals_table, plan_tables.c.schedules_table
)
"""A plan's row with its summary (and its tables): what GetPlan reads, in one statement."""
_EVENTS = (
    sa.select(plan_events)
    .where(plan_events.c.plan_name == sa.bindparam("name"))
    .order_by(plan_events.c.id)
)
_ANSWERS = sa.select(seller_requests.c.request_id, seller_requests.c.response).where(
    seller_requests.c.plan_name == sa.bindparam("name")
)
_PAGE_EVENTS = (
    sa.select(plan_events)
    .where(plan_events.c.plan_name.in_(sa.bindparam("names", expanding=True)))
    .order_by(plan_events.c.id)
)
_PAGE_ANSWERS = sa.select(
    seller_requests.c.plan_name, seller_requests.c.request_id, seller_requests.c.response
).where(seller_requests.c.plan_name.in_(sa.bindparam("names", expanding=True)))
"""The events and answers of a page of plans (`SqlStore.list_plans`)."""
_EVENTS_AFTER = (
    sa.select(plan_events.c.id, plan_events.c.event_time, plan_events.c.plan_name)
    .select_from(plan_events.join(plans, plans.c.name == plan_events.c.plan_name))
    .where(
        (plans.c.campaign_id == sa.bindparam("campaign"))
        & (plan_events.c.id > sa.bindparam("after"))
    )
    .order_by(plan_events.c.id)
    .limit(500)
)
_ASSESSED_AFTER = (
    sa.select(
        assessments.c.id,
        assessments.c.create_time,
        assessments.c.payload,
        assessments.c.size,
        assessments.c.max_severity,
    )
    .where(
        (assessments.c.campaign_id == sa.bindparam("campaign"))
        & (assessments.c.id > sa.bindparam("after"))
    )
    .order_by(assessments.c.id)
    .limit(500)
)
"""What WatchCampaign polls (`SqlStore.events_after`), every `watch_poll` per watch: built
once, a poll that finds nothing took 0.10 ms of thread CPU instead of 0.33 (SQLite, in process)."""
_ONE_REQUEST = (seller_requests.c.plan_name == sa.bindparam("plan")) & (
    seller_requests.c.request_id == sa.bindparam("request")
)
_REQUEST = sa.select(seller_requests.c.deal_id, seller_requests.c.sent).where(_ONE_REQUEST)
_ANSWER = (
    seller_requests.update()
    .where(_ONE_REQUEST)
    .values(
        {
            name: sa.bindparam(f"set_{name}")
            for name in (
                "response",
                "accepted_total",
                "response_time",
                "message",
                "actor",
                "available_inventory",
            )
        }
    )
)
"""A seller's answer to one request (`SqlStore.record_response`): parameters `set_` and the
column, not the column's name (an UPDATE's parameter named after a column sets it)."""


def _within(
    condition: sa.ColumnElement[bool], column: sa.ColumnElement[Any], start: bool, end: bool
) -> sa.ColumnElement[bool]:
    """`condition` and, where asked, `column` from the "start" parameter and before "end"."""
    if start:
        condition = condition & (column >= sa.bindparam("start"))
    if end:
        condition = condition & (column < sa.bindparam("end"))
    return condition


@cache
def _list_page(state: bool, start: bool, end: bool, after: bool) -> sa.Select[Any]:
    """A page of a campaign's plans, newest first, with the filters asked for (16 statements
    at most, each built once): `state`, create time from `start` and before `end`, and `after`
    a page token's (seq, name)."""
    condition = plans.c.campaign_id == sa.bindparam("campaign")
    if state:
        condition = condition & (plans.c.state == sa.bindparam("state"))
    condition = _within(condition, plans.c.create_time, start, end)
    if after:
        seq: sa.BindParameter[Any] = sa.bindparam("seq")
        last: sa.BindParameter[Any] = sa.bindparam("last")
        condition = condition & (
            (plans.c.seq < seq) | ((plans.c.seq == seq) & (plans.c.name < last))
        )
    return (
        sa.select(
            plans.c.name,
            plans.c.seq,
            plans.c.state,
            plans.c.etag,
            plans.c.previous_plan,
            plans.c.create_time,
            plan_tables.c.payload,
            plans.c.size,
        )
        .select_from(_WITH_CONTENT)
        .where(condition)
        .order_by(plans.c.seq.desc(), plans.c.name.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


_TABLES = sa.select(plan_tables.c.deals_table, plan_tables.c.schedules_table).where(
    plan_tables.c.name == sa.bindparam("name")
)
"""A plan's tables (`SqlStore.plan_tables`)."""
_INPUTS = (
    sa.select(plans.c.snapshot_hash, plan_tables.c.options, plan_tables.c.deals_table)
    .select_from(_WITH_CONTENT)
    .where(plans.c.name == sa.bindparam("name"))
)
_SNAPSHOT = sa.select(snapshots.c.payload, snapshots.c.size).where(
    snapshots.c.content_hash == sa.bindparam("content_hash")
)
"""What a re-solve reads of a plan and its snapshot (`SqlStore.plan_inputs`)."""
_LATEST_APPLIED = (
    sa.select(plans.c.name, plans.c.as_of, plan_tables.c.deals_table, plan_tables.c.schedules_table)
    .select_from(_WITH_CONTENT)
    .where(
        (plans.c.campaign_id == sa.bindparam("campaign"))
        & (plans.c.state == "APPLIED")
        & plan_tables.c.deals_table.is_not(None)
    )
    .order_by(plans.c.seq.desc())
    .limit(1)
)
"""The campaign's newest APPLIED plan with its tables (`SqlStore.latest_applied`: every
Replan under protection mode reads it)."""
_LATEST_SNAPSHOT = (
    sa.select(snapshots.c.payload, snapshots.c.size, snapshots.c.as_of)
    .where(snapshots.c.campaign_id == sa.bindparam("campaign"))
    .order_by(snapshots.c.as_of.desc(), snapshots.c.create_time.desc())
    .limit(1)
)
_LAST_EVENT = (
    sa.select(sa.func.max(plan_events.c.id))
    .select_from(plan_events.join(plans, plans.c.name == plan_events.c.plan_name))
    .where(plans.c.campaign_id == sa.bindparam("campaign"))
)
_LAST_ASSESSED = sa.select(sa.func.max(assessments.c.id)).where(
    assessments.c.campaign_id == sa.bindparam("campaign")
)
"""Where a watch starts (`SqlStore.cursor`)."""


@cache
def _history_page(start: bool, end: bool, after: bool) -> sa.Select[Any]:
    """A page of a campaign's stored assessments, oldest first, with their plans' states (8
    statements at most, each built once, as `_list_page`): as_of from `start` and before
    `end`, and `after` a page token's (as_of, id)."""
    condition = assessments.c.campaign_id == sa.bindparam("campaign")
    condition = _within(condition, assessments.c.as_of, start, end)
    if after:
        as_of: sa.BindParameter[Any] = sa.bindparam("as_of")
        condition = condition & (
            (assessments.c.as_of > as_of)
            | ((assessments.c.as_of == as_of) & (assessments.c.id > sa.bindparam("last")))
        )
    return (
        sa.select(
            assessments.c.id,
            assessments.c.as_of,
            assessments.c.payload,
            assessments.c.size,
            assessments.c.plan_name,
            plans.c.state,
        )
        .select_from(assessments.outerjoin(plans, plans.c.name == assessments.c.plan_name))
        .where(condition)
        .order_by(assessments.c.as_of, assessments.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


@cache
def _set_state_statement(etag: bool, extra: tuple[str, ...]) -> sa.Update:
    """Moves a plan (`plan`) to a state (`to`, a new etag `new_etag`, at `at`), only at its
    etag (`if_etag`) when asked, setting the `extra` columns too (`set_approve_time`,
    `set_apply_time`): one statement per such shape, built once. Parameters are not named after
    columns: an UPDATE's parameter named after a column sets that column."""
    condition = plans.c.name == sa.bindparam("plan")
    if etag:
        condition = condition & (plans.c.etag == sa.bindparam("if_etag"))
    return (
        plans.update()
        .where(condition)
        .values(
            state=sa.bindparam("to"),
            etag=sa.bindparam("new_etag"),
            update_time=sa.bindparam("at"),
            **{column: sa.bindparam(f"set_{column}") for column in extra},
        )
    )


_INSERT_REQUESTS = seller_requests.insert()
_SENT = plans.c.approve_time.is_not(None)
"""Plans whose seller requests went out: every plan ever approved, also one a newer plan then
superseded before anyone confirmed it applied (the sellers were asked all the same: their
answers and the cooldown still count)."""
_NEWEST_APPLIED = (
    sa.select(plans.c.name)
    .select_from(_WITH_CONTENT)
    .where(
        (plans.c.campaign_id == sa.bindparam("campaign"))
        & (plans.c.state == "APPLIED")
        & plan_tables.c.deals_table.is_not(None)
        & plans.c.apply_time.is_not(None)
    )
    .order_by(plans.c.apply_time.desc(), plans.c.seq.desc())
    .limit(1)
    .scalar_subquery()
)
_LAST_APPLICATION = (
    sa.select(plans.c.name, plans.c.apply_time, _MOVED_OR_DEALS.label("deals"))
    .select_from(_WITH_CONTENT)
    .where(plans.c.name == _NEWEST_APPLIED)
)
"""The campaign's newest APPLIED plan (`SqlStore._last_application`): found by name first, so
the sort of the campaign's applied plans carries their names, not their tables (it read every
applied plan's moves, a cost that grew with the campaign's age)."""


def _applied(blob: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """The campaign's plans applied or rolled back from `since` on, oldest first, with `blob`
    as their deals (`SqlStore._applied_plans`). `or_`, not `in_`, as `_OPEN_PLANS`. Built once
    with `_LAST_APPLICATION`: campaign_past of a campaign with 3 applied plans (moves, windows,
    last application; 50 deals) took 5.2 ms of thread CPU instead of 5.9 (in process)."""
    return (
        sa.select(plans.c.name, plans.c.as_of, blob.label("deals"))
        .select_from(_WITH_CONTENT)
        .where(
            (plans.c.campaign_id == sa.bindparam("campaign"))
            & sa.or_(plans.c.state == "APPLIED", plans.c.state == "ROLLED_BACK")
            & (plans.c.as_of >= sa.bindparam("since"))
            & plan_tables.c.deals_table.is_not(None)
        )
        .order_by(plans.c.as_of)
    )


_APPLIED_WHOLE = _applied(plan_tables.c.deals_table)
_APPLIED_MOVES = _applied(_MOVED_OR_DEALS)
_ACTED = (
    sa.select(plans.c.name)
    .where((plans.c.campaign_id == sa.bindparam("campaign")) & _SENT)
    .limit(1)
)
_MARK_SENT = (
    seller_requests.update()
    .where(seller_requests.c.plan_name == sa.bindparam("plan"))
    .values(sent=True)
)


def _deciding() -> sa.CompoundSelect[Any]:
    """Per deal the last request sent, and per deal and kind the last one rejected (FAILED
    reads as REJECTED): grouped in ix_seller_requests_sent, then each row fetched by its key.
    The group is the outer side of a LEFT JOIN (every group has its row) so that SQLite looks
    the rows up by the index rather than scanning the campaign's requests."""
    sr = seller_requests
    sent = (sr.c.campaign_id == sa.bindparam("campaign")) & (sr.c.sent == sa.true())
    rejected = sr.c.response.in_(_REJECTIONS)
    last = (
        sa.select(sr.c.deal_id, sa.func.max(sr.c.requested_at).label("at"))
        .where(sent)
        .group_by(sr.c.deal_id)
        .subquery("last")
    )
    last_rejected = (
        sa.select(sr.c.deal_id, sr.c.kind, sa.func.max(sr.c.requested_at).label("at"))
        .where(sent & rejected)
        .group_by(sr.c.deal_id, sr.c.kind)
        .subquery("last_rejected")
    )
    read = _READ_COLUMNS
    heads = sa.select(*read).select_from(
        last.outerjoin(
            sr, sent & (sr.c.deal_id == last.c.deal_id) & (sr.c.requested_at == last.c.at)
        )
    )
    rejections = sa.select(*read).select_from(
        last_rejected.outerjoin(
            sr,
            sent
            & rejected
            & (sr.c.deal_id == last_rejected.c.deal_id)
            & (sr.c.kind == last_rejected.c.kind)
            & (sr.c.requested_at == last_rejected.c.at),
        )
    )
    both = sa.union(heads, rejections)
    c = both.selected_columns
    return both.order_by(c.requested_at, c.plan_name, c.request_id)


_READ_COLUMNS = tuple(
    seller_requests.c[name]
    for name in (
        "plan_name",
        "request_id",
        "deal_id",
        "requested_at",
        "kind",
        "target_total",
        "response",
        "accepted_total",
        "response_time",
    )
)
"""What a plan reads of a request, after its key (plan_name, request_id: a row's identity in
the union and the order of ties)."""
_REJECTIONS = ("REJECTED", *(k for k, v in _AS_PLANS_READ.items() if v == "REJECTED"))
_DECIDING = _deciding()
_ALL_SENT = (
    sa.select(*_READ_COLUMNS)
    .where((seller_requests.c.campaign_id == sa.bindparam("campaign")) & seller_requests.c.sent)
    .order_by(
        seller_requests.c.requested_at, seller_requests.c.plan_name, seller_requests.c.request_id
    )
)


def _declared() -> sa.Select[Any]:
    """Per deal the newest answer that declared an inventory: grouped in the partial index
    ix_seller_requests_declared, then each row fetched by its key (the group is the outer side
    of a LEFT JOIN, as in `_deciding`), instead of every such answer the campaign ever had.
    Unordered, with the columns that order it (`_DECLARED_ORDER`)."""
    sr = seller_requests
    declared = (sr.c.campaign_id == sa.bindparam("campaign")) & sr.c.available_inventory.is_not(
        None
    )
    newest = (
        sa.select(sr.c.deal_id, sa.func.max(sr.c.response_time).label("at"))
        .where(declared)
        .group_by(sr.c.deal_id)
        .subquery("newest")
    )
    return sa.select(
        sr.c.deal_id,
        sr.c.available_inventory,
        *(sr.c[name] for name in _DECLARED_ORDER),
    ).select_from(
        newest.outerjoin(
            sr,
            declared & (sr.c.deal_id == newest.c.deal_id) & (sr.c.response_time == newest.c.at),
        )
    )


_DECLARED_ORDER = ("response_time", "plan_name", "request_id")
"""The order of the declared answers: a deal's answers at the same instant, the last wins."""


def _declared_and_acted() -> sa.Select[Any]:
    """`_DECLARED`'s rows, each with whether the campaign ever acted (`_ACTED`), and a row of
    NULLs with that flag when there are none: what `campaign_past` reads first, one statement
    instead of two (a round trip through the driver and SQLAlchemy is ~40 us a Replan)."""
    flag = sa.select(_ACTED.exists().label("acted")).subquery("flag")
    rows = _declared().subquery("declared")
    return (
        sa.select(flag.c.acted, rows.c.deal_id, rows.c.available_inventory)
        .select_from(flag.outerjoin(rows, sa.true()))
        .order_by(*(rows.c[name] for name in _DECLARED_ORDER))
    )


_DECLARED = _declared().order_by(*(seller_requests.c[name] for name in _DECLARED_ORDER))
_DECLARED_AND_ACTED = _declared_and_acted()


__all__ = [
    "CampaignPast",
    "LifeCycle",
    "NewPlan",
    "PlanInputs",
    "Replaces",
    "SqlStore",
    "content_hash",
    "default_database_url",
    "recorded_bytes",
    "request_hash",
    "unpack",
]

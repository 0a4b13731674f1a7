"""The audit store on SQLAlchemy 2 Core: SQLite (embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode with synchronous=FULL: a call is acknowledged only after its transaction
is on disk (NORMAL could lose the last acknowledged calls on power loss, and "nothing acknowledged
is lost" is the store's promise); busy_timeout makes a writer wait for another process's write
instead of failing. Write transactions begin IMMEDIATE so two processes never deadlock upgrading a
read lock. Optimistic concurrency (etags) and idempotency are enforced by conditional UPDATEs and
unique keys in the database, so several server processes can share one database.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from reallocator.core.lifecycle.states import (
    UNAPPLIED,
    Action,
    PlanState,
    TransitionError,
    next_state,
)
from reallocator.store import schema as t
from reallocator.store.base import (
    IdempotencyKey,
    NewPlan,
    PlanEvent,
    PlanRecord,
    SellerAnswer,
)
from reallocator.store.errors import (
    AlreadyExists,
    InvalidTransition,
    NotFound,
    StaleEtag,
    Unavailable,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
SENT = (PlanState.APPLIED, PlanState.ROLLED_BACK)
"""States of plans whose seller requests went out: their answers shape the next plan."""
_ZSTD = pa.Codec("zstd")


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _pack(data: bytes) -> bytes:
    """zstd with the decompressed size in front (pyarrow's codec needs it to decompress)."""
    return struct.pack("<Q", len(data)) + bytes(_ZSTD.compress(data, asbytes=True))


def _unpack(data: bytes) -> bytes:
    (size,) = struct.unpack_from("<Q", data)
    return bytes(_ZSTD.decompress(data[8:], decompressed_size=size, asbytes=True))


def _etag() -> str:
    return secrets.token_hex(8)


def snapshot_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SqlStore:
    """AuditStore on one SQLAlchemy engine. Domain errors from reallocator.store.errors."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.engine = _engine(url)
        if upgrade:
            self.upgrade()

    def close(self) -> None:
        self.engine.dispose()

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise Unavailable(f"database unavailable: {exc.orig}") from exc

    def upgrade(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._tx() as conn:
            if conn.dialect.name == "postgresql":  # one migrator at a time across processes
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7243011)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def _insert_ignore(self, conn: sa.Connection, table: sa.Table, **values: Any) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
        else:
            conn.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())

    # --- idempotency ------------------------------------------------------------------------

    def _replay(self, conn: sa.Connection, key: IdempotencyKey) -> str | None:
        row = conn.execute(
            sa.select(t.idempotency_keys.c.body_hash, t.idempotency_keys.c.result).where(
                t.idempotency_keys.c.method == key.method,
                t.idempotency_keys.c.request_id == key.request_id,
            )
        ).first()
        if row is None:
            return None
        if row.body_hash != key.body_hash:
            raise AlreadyExists(
                f"request_id {key.request_id!r} was already used for {key.method} with a "
                f"different request; use a new request_id"
            )
        return str(row.result)

    def replay(self, key: IdempotencyKey) -> str | None:
        with self._tx() as conn:
            return self._replay(conn, key)

    # --- plans ------------------------------------------------------------------------------

    def record_plan(
        self, plan: NewPlan, actor: str, now: datetime, key: IdempotencyKey | None = None
    ) -> PlanRecord:
        name = f"campaigns/{plan.campaign_id}/plans/{uuid.uuid4().hex}"
        try:
            with self._tx() as conn:
                if key is not None:
                    done = self._replay(conn, key)
                    if done is not None:
                        return self._get(conn, done, body=True)
                    conn.execute(
                        t.idempotency_keys.insert().values(
                            method=key.method,
                            request_id=key.request_id,
                            body_hash=key.body_hash,
                            result=name,
                            create_time=now,
                            actor=actor,
                        )
                    )
                digest = None
                if plan.snapshot is not None:
                    digest = snapshot_hash(plan.snapshot)
                    self._insert_ignore(
                        conn,
                        t.snapshots,
                        content_hash=digest,
                        campaign_id=plan.campaign_id,
                        as_of=plan.as_of,
                        body=_pack(plan.snapshot),
                        create_time=now,
                        actor=actor,
                    )
                previous = conn.execute(
                    sa.select(t.plans.c.name)
                    .where(t.plans.c.campaign_id == plan.campaign_id)
                    .order_by(t.plans.c.seq.desc())
                    .limit(1)
                ).scalar()
                older = conn.execute(
                    sa.select(t.plans.c.name, t.plans.c.state).where(
                        t.plans.c.campaign_id == plan.campaign_id,
                        t.plans.c.state.in_([str(s) for s in UNAPPLIED]),
                    )
                ).all()
                conn.execute(
                    t.plans.insert().values(
                        name=name,
                        campaign_id=plan.campaign_id,
                        state=str(plan.state),
                        etag=_etag(),
                        previous_plan=previous or "",
                        snapshot_hash=digest,
                        policy=plan.policy,
                        max_severity=plan.max_severity,
                        as_of=plan.as_of,
                        body=plan.body,
                        summary_body=plan.summary or plan.body,
                        create_time=now,
                        update_time=now,
                        actor=actor,
                    )
                )
                self._event(
                    conn, name, plan.campaign_id, "CREATED", plan.state, actor, now,
                    comment=plan.comment,
                )  # fmt: skip
                if plan.rolls_back:
                    self._roll_back(conn, plan, name, actor, now)
                if plan.requests:
                    conn.execute(
                        t.seller_requests.insert(),
                        [
                            {
                                "plan_name": name,
                                "campaign_id": plan.campaign_id,
                                "request_id": r.request_id,
                                "deal_id": r.deal_id,
                                "kind": r.kind,
                                "target_total": r.target_total,
                                "requested_at": plan.as_of,
                            }
                            for r in plan.requests
                        ],
                    )
                for old in older:
                    state = next_state(PlanState(old.state), Action.SUPERSEDE)
                    conn.execute(
                        t.plans.update()
                        .where(t.plans.c.name == old.name, t.plans.c.state == old.state)
                        .values(state=str(state), etag=_etag(), update_time=now)
                    )
                    self._event(
                        conn,
                        old.name,
                        plan.campaign_id,
                        str(Action.SUPERSEDE),
                        state,
                        actor,
                        now,
                        comment=f"superseded by {name}",
                    )
                return self._get(conn, name, body=True)
        except sa.exc.IntegrityError:
            if key is None:
                raise
            # A concurrent call recorded the same key first: answer as it did.
            with self._tx() as conn:
                done = self._replay(conn, key)
                assert done is not None
                return self._get(conn, done, body=True)

    def _roll_back(
        self, conn: sa.Connection, plan: NewPlan, name: str, actor: str, now: datetime
    ) -> None:
        row = conn.execute(
            sa.select(t.plans.c.state, t.plans.c.etag).where(t.plans.c.name == plan.rolls_back)
        ).first()
        if row is None:
            raise NotFound(f"plan {plan.rolls_back!r} not found")
        try:
            state = next_state(PlanState(row.state), Action.ROLL_BACK)
        except TransitionError as exc:
            raise InvalidTransition(str(exc)) from exc
        done = conn.execute(
            t.plans.update()
            .where(t.plans.c.name == plan.rolls_back, t.plans.c.etag == row.etag)
            .values(state=str(state), etag=_etag(), update_time=now)
        )
        if done.rowcount != 1:
            raise StaleEtag(f"plan {plan.rolls_back!r} changed concurrently; read it again")
        self._event(
            conn, plan.rolls_back, plan.campaign_id, str(Action.ROLL_BACK), state, actor, now,
            comment=plan.comment, detail={"rollback_plan": name},
        )  # fmt: skip

    def _event(
        self,
        conn: sa.Connection,
        name: str,
        campaign_id: str,
        kind: str,
        state: PlanState,
        actor: str,
        now: datetime,
        *,
        comment: str = "",
        detail: dict[str, Any] | None = None,
        event_time: datetime | None = None,
    ) -> None:
        conn.execute(
            t.plan_events.insert().values(
                plan_name=name,
                campaign_id=campaign_id,
                kind=kind,
                state=str(state),
                comment=comment,
                detail=detail,
                event_time=event_time or now,
                create_time=now,
                actor=actor,
            )
        )

    def _get(
        self, conn: sa.Connection, name: str, *, body: bool, summary: bool = False
    ) -> PlanRecord:
        part = "summary_body" if summary else "body"
        cols: list[Any] = [c for c in t.plans.c if c.name not in ("body", "summary_body")]
        if body:
            cols.append(t.plans.c[part].label("body"))
        row = conn.execute(sa.select(*cols).where(t.plans.c.name == name)).first()
        if row is None:
            raise NotFound(f"plan {name!r} not found")
        events = conn.execute(
            sa.select(t.plan_events)
            .where(t.plan_events.c.plan_name == name)
            .order_by(t.plan_events.c.id)
        ).all()
        return _record(
            row,
            events=tuple(
                PlanEvent(
                    kind=e.kind,
                    state=PlanState(e.state),
                    event_time=_utc(e.event_time),
                    actor=e.actor,
                    comment=e.comment,
                    detail=e.detail,
                )
                for e in events
            ),
        )

    def get_plan(self, name: str, *, body: bool = True, summary: bool = False) -> PlanRecord:
        with self._tx() as conn:
            return self._get(conn, name, body=body, summary=summary)

    def list_plans(
        self,
        campaign_id: str,
        *,
        state: PlanState | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[PlanRecord]:
        query = sa.select(*[c for c in t.plans.c if c.name not in ("body", "summary_body")]).where(
            t.plans.c.campaign_id == campaign_id
        )
        if state is not None:
            query = query.where(t.plans.c.state == str(state))
        if start_time is not None:
            query = query.where(t.plans.c.create_time >= start_time)
        if end_time is not None:
            query = query.where(t.plans.c.create_time < end_time)
        if before_seq is not None:
            query = query.where(t.plans.c.seq < before_seq)
        query = query.order_by(t.plans.c.seq.desc()).limit(limit)
        with self._tx() as conn:
            return [_record(row) for row in conn.execute(query)]

    def transition(
        self,
        name: str,
        action: Action,
        *,
        etag: str,
        actor: str,
        now: datetime,
        comment: str = "",
        detail: dict[str, Any] | None = None,
        event_time: datetime | None = None,
    ) -> PlanRecord:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(t.plans.c.state, t.plans.c.etag, t.plans.c.campaign_id).where(
                    t.plans.c.name == name
                )
            ).first()
            if row is None:
                raise NotFound(f"plan {name!r} not found")
            if etag and etag != row.etag:
                raise StaleEtag(
                    f"plan {name!r} changed since it was read (etag {etag!r}, now {row.etag!r}); "
                    "read it again"
                )
            try:
                state = next_state(PlanState(row.state), action)
            except TransitionError as exc:
                raise InvalidTransition(str(exc)) from exc
            done = conn.execute(
                t.plans.update()
                .where(t.plans.c.name == name, t.plans.c.etag == row.etag)
                .values(state=str(state), etag=_etag(), update_time=now)
            )
            if done.rowcount != 1:  # another process changed it between our read and write
                raise StaleEtag(f"plan {name!r} changed concurrently; read it again")
            self._event(
                conn,
                name,
                row.campaign_id,
                str(action),
                state,
                actor,
                now,
                comment=comment,
                detail=detail,
                event_time=event_time,
            )
            return self._get(conn, name, body=False)

    def record_seller_response(self, answer: SellerAnswer, actor: str, now: datetime) -> None:
        with self._tx() as conn:
            plan = conn.execute(
                sa.select(t.plans.c.state, t.plans.c.campaign_id).where(
                    t.plans.c.name == answer.plan_name
                )
            ).first()
            if plan is None:
                raise NotFound(f"plan {answer.plan_name!r} not found")
            request = conn.execute(
                sa.select(t.seller_requests.c.deal_id).where(
                    t.seller_requests.c.plan_name == answer.plan_name,
                    t.seller_requests.c.request_id == answer.request_id,
                )
            ).first()
            if request is None:
                raise NotFound(
                    f"plan {answer.plan_name!r} has no seller request {answer.request_id!r}"
                )
            if PlanState(plan.state) not in SENT:
                raise InvalidTransition(
                    f"plan {answer.plan_name!r} is {plan.state}: its requests were never sent "
                    "(confirm it applied first)"
                )
            conn.execute(
                t.seller_responses.insert().values(
                    plan_name=answer.plan_name,
                    campaign_id=plan.campaign_id,
                    request_id=answer.request_id,
                    deal_id=request.deal_id,
                    status=answer.status,
                    iab_status=answer.iab_status,
                    accepted_total=answer.accepted_total,
                    available_inventory=answer.available_inventory,
                    message=answer.message,
                    response_time=answer.response_time,
                    create_time=now,
                    actor=actor,
                )
            )

    def request_history(self, campaign_id: str) -> list[dict[str, Any]]:
        q, r = t.seller_requests, t.seller_responses
        with self._tx() as conn:
            requests = conn.execute(
                sa.select(
                    q.c.plan_name,
                    q.c.request_id,
                    q.c.deal_id,
                    q.c.kind,
                    q.c.target_total,
                    q.c.requested_at,
                )
                .join(t.plans, t.plans.c.name == q.c.plan_name)
                .where(q.c.campaign_id == campaign_id, t.plans.c.state.in_([str(s) for s in SENT]))
                .order_by(q.c.id)
            ).all()
            answers = conn.execute(
                sa.select(r.c.plan_name, r.c.request_id, r.c.status, r.c.accepted_total)
                .where(r.c.campaign_id == campaign_id)
                .order_by(r.c.response_time, r.c.id)
            ).all()
        latest = {(a.plan_name, a.request_id): a for a in answers}  # the last one wins
        rows = []
        for req in requests:
            answer = latest.get((req.plan_name, req.request_id))
            rows.append(
                {
                    "deal_id": req.deal_id,
                    "requested_at": _utc(req.requested_at).timestamp(),
                    "kind": req.kind,
                    "target_total": int(req.target_total),
                    "response": answer.status if answer is not None else "PENDING",
                    "accepted_total": int(answer.accepted_total or 0) if answer else 0,
                }
            )
        return rows

    def plan_events_after(
        self, campaign_id: str, after: int | None, limit: int = 100
    ) -> list[tuple[int, str, datetime]]:
        e = t.plan_events
        with self._tx() as conn:
            if after is None:
                newest = conn.execute(
                    sa.select(sa.func.max(e.c.id)).where(e.c.campaign_id == campaign_id)
                ).scalar()
                return [(int(newest or 0), "", now())]
            rows = conn.execute(
                sa.select(e.c.id, e.c.plan_name, e.c.create_time)
                .where(e.c.campaign_id == campaign_id, e.c.id > after)
                .order_by(e.c.id)
                .limit(limit)
            ).all()
        return [(int(r.id), str(r.plan_name), _utc(r.create_time)) for r in rows]

    def purge(self, older_than: datetime) -> dict[str, int]:
        with self._tx() as conn:
            referenced = sa.select(t.plans.c.snapshot_hash).where(
                t.plans.c.snapshot_hash.is_not(None)
            )
            snaps = conn.execute(
                t.snapshots.delete().where(
                    t.snapshots.c.create_time < older_than,
                    t.snapshots.c.content_hash.not_in(referenced),
                )
            ).rowcount
            assessed = conn.execute(
                t.assessments.delete().where(t.assessments.c.create_time < older_than)
            ).rowcount
        return {"snapshots": snaps, "assessments": assessed}

    def snapshot_body(self, content_hash: str) -> bytes:
        with self._tx() as conn:
            body = conn.execute(
                sa.select(t.snapshots.c.body).where(t.snapshots.c.content_hash == content_hash)
            ).scalar()
        if body is None:
            raise NotFound(f"snapshot {content_hash} not found")
        return _unpack(bytes(body))


def _record(row: Any, events: tuple[PlanEvent, ...] = ()) -> PlanRecord:
    body = getattr(row, "body", None)
    return PlanRecord(
        name=row.name,
        campaign_id=row.campaign_id,
        state=PlanState(row.state),
        etag=row.etag,
        previous_plan=row.previous_plan,
        create_time=_utc(row.create_time),
        update_time=_utc(row.update_time),
        actor=row.actor,
        seq=row.seq,
        as_of=_utc(row.as_of),
        snapshot_hash=row.snapshot_hash or "",
        policy=bytes(row.policy or b""),
        max_severity=row.max_severity,
        body=None if body is None else bytes(body),
        events=events,
    )


def _engine(url: str) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"database_url: not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" below starts transactions
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise ValueError(f"database_url: use postgresql+psycopg://, got {parsed.drivername}")
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True, pool_size=10
        )
    raise ValueError(f"database_url: unsupported database {parsed.get_backend_name()!r}")


def default_database_url() -> str:
    """sqlite:///$XDG_DATA_HOME/reallocator/reallocator.db (~/.local/share when unset)."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'reallocator' / 'reallocator.db'}"


def now() -> datetime:
    return datetime.now(UTC)

"""`AuditStore` on SQLAlchemy 2 Core: SQLite (embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode (readers never block the writer, several server processes can share the
file) with `synchronous=FULL`: in WAL mode NORMAL may lose the last acknowledged transactions on
power loss, and the store promises nothing acknowledged is lost. `busy_timeout` lets a writer wait
for another process's transaction instead of failing at once, and every transaction starts with
BEGIN IMMEDIATE so two writers queue up instead of deadlocking on a read-to-write upgrade.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from reallocator.core.lifecycle import (
    SUPERSEDABLE,
    Action,
    InvalidTransition,
    PlanState,
    initial_state,
    transition,
)
from reallocator.core.model import Severity
from reallocator.core.plan.model import RequestHistory
from reallocator.store import plan_codec
from reallocator.store import schema as t
from reallocator.store.base import (
    CampaignEvent,
    NewPlan,
    PlanEvent,
    PlanPage,
    SellerRequestRow,
    StoredPlan,
)
from reallocator.store.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    NotFound,
    Unavailable,
)

BUSY_TIMEOUT_MS = 10_000
REPLAN_SCOPE = "Replan"


def default_database_url() -> str:
    """SQLite under $XDG_STATE_HOME/reallocator (default ~/.local/state/reallocator)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(base) / 'reallocator' / 'reallocator.db'}"


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were written as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def plan_name(campaign_id: str) -> str:
    """`campaigns/{campaign}/plans/{id}`; ids sort by creation time (ms, hex) then random."""
    return f"campaigns/{campaign_id}/plans/{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def new_etag() -> str:
    return secrets.token_hex(8)


def make_engine(url: str) -> Engine:
    """An engine with the SQLite settings above (the parent folder is created)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(engine: Engine) -> None:
    """Applies the migrations shipped in reallocator/store/migrations."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _compress(data: bytes) -> bytes:
    return bytes(pa.compress(data, codec="zstd", asbytes=True))


class SqlStore:
    """See `reallocator.store.base.AuditStore`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def upgrade(self) -> None:
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction; a database that cannot be reached answers Unavailable."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise Unavailable(f"audit store unavailable: {exc.orig}") from exc

    # --- plans -------------------------------------------------------------------------------

    def _row_plan(self, conn: Connection, row: Any, with_events: bool = True) -> StoredPlan:
        events: tuple[PlanEvent, ...] = ()
        if with_events:
            rows = conn.execute(
                sa.select(t.plan_events)
                .where(t.plan_events.c.plan_name == row.name)
                .order_by(t.plan_events.c.id)
            ).all()
            events = tuple(
                PlanEvent(
                    _utc(e.create_time), e.actor, Action(e.action), PlanState(e.state), e.comment
                )
                for e in rows
            )
        return StoredPlan(
            name=row.name,
            campaign_id=row.campaign_id,
            state=PlanState(row.state),
            etag=row.etag,
            previous_plan=row.previous_plan,
            create_time=_utc(row.create_time),
            actor=row.actor,
            body=row.body,
            events=events,
        )

    def _plan_row(self, conn: Connection, name: str, summary: bool = False) -> Any:
        row = conn.execute(_plan_select(summary).where(t.plans.c.name == name)).first()
        if row is None:
            raise NotFound(f"plan {name!r} not found")
        return row

    def _find_key(self, conn: Connection, scope: str, key: str, request_hash: str) -> str | None:
        row = conn.execute(
            sa.select(t.idempotency_keys).where(
                t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise AlreadyExists(
                f"request_id {key!r} was already used for a different {scope} request"
            )
        return str(row.result)

    def find_replan(self, request_id: str, request_hash: str) -> StoredPlan | None:
        with self._tx() as conn:
            name = self._find_key(conn, REPLAN_SCOPE, request_id, request_hash)
            return None if name is None else self._row_plan(conn, self._plan_row(conn, name))

    def save_plan(self, new: NewPlan, actor: str) -> StoredPlan:
        try:
            return self._save_plan(new, actor)
        except sa.exc.IntegrityError:
            # a concurrent call with the same request_id committed first: answer with its plan
            if not new.request_id:
                raise
            found = self.find_replan(new.request_id, new.request_hash)
            assert found is not None
            return found

    def _save_plan(self, new: NewPlan, actor: str) -> StoredPlan:
        now = _now()
        with self._tx() as conn:
            if new.request_id:
                done = self._find_key(conn, REPLAN_SCOPE, new.request_id, new.request_hash)
                if done is not None:
                    return self._row_plan(conn, self._plan_row(conn, done))
            if new.replaces is not None:
                replaced = self._plan_row(conn, new.replaces[0], summary=True)
                if replaced.etag != new.replaces[1]:
                    raise Conflict(f"plan {replaced.name!r} changed while it was being revised")
            snapshot_id = self._snapshot(conn, new.campaign_id, new.snapshot, now, actor)
            name = plan_name(new.campaign_id)
            previous = conn.execute(
                sa.select(t.plans.c.name)
                .where(t.plans.c.campaign_id == new.campaign_id)
                .order_by(t.plans.c.id.desc())
                .limit(1)
            ).scalar()
            older = conn.execute(
                sa.select(t.plans.c.name, t.plans.c.state).where(
                    t.plans.c.campaign_id == new.campaign_id,
                    t.plans.c.state.in_([s.value for s in SUPERSEDABLE]),
                )
            ).all()
            for old in older:
                state = transition(PlanState(old.state), Action.SUPERSEDE)
                conn.execute(
                    sa.update(t.plans)
                    .where(t.plans.c.name == old.name)
                    .values(state=state.value, etag=new_etag())
                )
                self._event(
                    conn, old.name, Action.SUPERSEDE, state, f"superseded by {name}", now, actor
                )
            state = initial_state(
                None if not new.severity else _severity(new.severity), new.auto_apply_up_to
            )
            conn.execute(
                sa.insert(t.plans).values(
                    name=name,
                    campaign_id=new.campaign_id,
                    state=state.value,
                    etag=new_etag(),
                    previous_plan=previous or "",
                    severity=new.severity,
                    snapshot_id=snapshot_id,
                    request_id=new.request_id or None,
                    body=new.body,
                    summary_bytes=_summary_bytes(new.body),
                    options=new.options,
                    create_time=now,
                    actor=actor,
                )
            )
            comment = "auto-approved by policy" if state == PlanState.APPROVED else ""
            self._event(conn, name, Action.CREATE, PlanState.PROPOSED, new.comment, now, actor)
            if state == PlanState.APPROVED:
                self._event(conn, name, Action.APPROVE, state, comment, now, actor)
            if new.seller_requests:
                conn.execute(
                    sa.insert(t.seller_requests),
                    [
                        {
                            "plan_name": name,
                            "campaign_id": new.campaign_id,
                            "request_id": r.request_id,
                            "deal_id": r.deal_id,
                            "kind": r.kind,
                            "target_total": r.target_total,
                            "requested_at": r.requested_at,
                            "create_time": now,
                            "actor": actor,
                        }
                        for r in new.seller_requests
                    ],
                )
            if new.request_id:
                conn.execute(
                    sa.insert(t.idempotency_keys).values(
                        scope=REPLAN_SCOPE,
                        key=new.request_id,
                        request_hash=new.request_hash,
                        result=name,
                        create_time=now,
                        actor=actor,
                    )
                )
            return self._row_plan(conn, self._plan_row(conn, name))

    def _snapshot(
        self, conn: Connection, campaign_id: str, data: bytes, now: datetime, actor: str
    ) -> int | None:
        """The snapshot's row id, stored once per distinct content (sha256 of its bytes)."""
        if not data:
            return None
        digest = hashlib.sha256(data).hexdigest()
        found = conn.execute(
            sa.select(t.snapshots.c.id).where(t.snapshots.c.content_hash == digest)
        ).scalar()
        if found is not None:
            return int(found)
        result = conn.execute(
            sa.insert(t.snapshots).values(
                content_hash=digest,
                campaign_id=campaign_id,
                raw_bytes=len(data),
                body=_compress(data),
                create_time=now,
                actor=actor,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def _event(
        self,
        conn: Connection,
        name: str,
        action: Action,
        state: PlanState,
        comment: str,
        now: datetime,
        actor: str,
    ) -> None:
        conn.execute(
            sa.insert(t.plan_events).values(
                plan_name=name,
                action=action.value,
                state=state.value,
                comment=comment,
                create_time=now,
                actor=actor,
            )
        )

    def get_plan(self, name: str, summary: bool = False) -> StoredPlan:
        with self._tx() as conn:
            return self._row_plan(conn, self._plan_row(conn, name, summary))

    def list_plans(
        self, campaign_id: str, state: PlanState | None, after: int | None, limit: int
    ) -> PlanPage:
        """Newest first; `after` is the last row id of the previous page."""
        query = _plan_select(summary=True).where(t.plans.c.campaign_id == campaign_id)
        if state is not None:
            query = query.where(t.plans.c.state == state.value)
        if after is not None:
            query = query.where(t.plans.c.id < after)
        query = query.order_by(t.plans.c.id.desc()).limit(limit + 1)
        with self._tx() as conn:
            rows = conn.execute(query).all()
            plans = tuple(self._row_plan(conn, r) for r in rows[:limit])
        return PlanPage(plans, int(rows[limit - 1].id) if len(rows) > limit else None)

    def change_state(
        self, name: str, etag: str, action: Action, actor: str, comment: str = ""
    ) -> StoredPlan:
        now = _now()
        with self._tx() as conn:
            row = self._plan_row(conn, name)
            if etag and etag != row.etag:
                raise Conflict(f"plan {name!r} changed since it was read (etag {etag!r} is stale)")
            try:
                state = transition(PlanState(row.state), action)
            except InvalidTransition as exc:
                raise FailedPrecondition(f"plan {name!r}: {exc}") from exc
            # the conditional UPDATE is what holds between processes: only one caller moves
            # the plan from the etag it read
            moved = conn.execute(
                sa.update(t.plans)
                .where(t.plans.c.name == name, t.plans.c.etag == row.etag)
                .values(state=state.value, etag=new_etag())
            ).rowcount
            if moved != 1:
                raise Conflict(f"plan {name!r} changed while this call was running; read it again")
            self._event(conn, name, action, state, comment, now, actor)
            return self._row_plan(conn, self._plan_row(conn, name, summary=True))

    def replan_inputs(self, name: str) -> tuple[bytes, bytes]:
        query = (
            sa.select(t.plans.c.options, t.snapshots.c.body, t.snapshots.c.raw_bytes)
            .select_from(t.plans)
            .outerjoin(t.snapshots, t.snapshots.c.id == t.plans.c.snapshot_id)
            .where(t.plans.c.name == name)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"plan {name!r} not found")
        if row.body is None:
            raise NotFound(f"plan {name!r}: its snapshot was purged (retention)")
        snapshot = pa.decompress(
            row.body, codec="zstd", asbytes=True, decompressed_size=int(row.raw_bytes)
        )
        return bytes(snapshot), bytes(row.options)

    # --- watching ------------------------------------------------------------------------

    def campaign_events(self, campaign_id: str, after: int | None) -> tuple[CampaignEvent, ...]:
        e = t.plan_events
        names = sa.select(t.plans.c.name).where(t.plans.c.campaign_id == campaign_id)
        with self._tx() as conn:
            if after is None:
                last = conn.execute(sa.select(sa.func.max(e.c.id))).scalar()
                return (CampaignEvent(int(last or 0), "", _NO_EVENT),)
            rows = conn.execute(
                sa.select(e).where(e.c.id > after, e.c.plan_name.in_(names)).order_by(e.c.id)
            ).all()
        return tuple(
            CampaignEvent(
                int(r.id),
                r.plan_name,
                PlanEvent(
                    _utc(r.create_time), r.actor, Action(r.action), PlanState(r.state), r.comment
                ),
            )
            for r in rows
        )

    # --- retention ---------------------------------------------------------------------------

    def purge_snapshots(self, before: datetime) -> int:
        """Removes snapshots stored before `before` that no plan from `before` on refers to;
        older plans keep their record (plan, events, requests, responses) without the snapshot.
        Returns how many were removed."""
        recent = sa.select(t.plans.c.snapshot_id).where(
            t.plans.c.create_time >= before, t.plans.c.snapshot_id.is_not(None)
        )
        old = sa.select(t.snapshots.c.id).where(
            t.snapshots.c.create_time < before, t.snapshots.c.id.not_in(recent)
        )
        with self._tx() as conn:
            ids = [int(i) for i in conn.execute(old).scalars()]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                conn.execute(
                    sa.update(t.plans)
                    .where(t.plans.c.snapshot_id.in_(chunk))
                    .values(snapshot_id=None)
                )
                conn.execute(sa.delete(t.snapshots).where(t.snapshots.c.id.in_(chunk)))
        return len(ids)

    # --- seller requests ---------------------------------------------------------------------

    def record_seller_response(
        self,
        plan_name: str,
        request_id: str,
        response: str,
        accepted_total: int,
        message: str,
        time: datetime,
        actor: str,
    ) -> SellerRequestRow:
        with self._tx() as conn:
            self._plan_row(conn, plan_name)
            row = conn.execute(
                sa.select(t.seller_requests).where(
                    t.seller_requests.c.plan_name == plan_name,
                    t.seller_requests.c.request_id == request_id,
                )
            ).first()
            if row is None:
                raise NotFound(f"plan {plan_name!r} has no seller request {request_id!r}")
            conn.execute(
                sa.insert(t.seller_responses).values(
                    seller_request=row.id,
                    response=response,
                    accepted_total=accepted_total,
                    message=message,
                    response_time=time,
                    create_time=_now(),
                    actor=actor,
                )
            )
            return SellerRequestRow(
                row.request_id, row.deal_id, row.kind, int(row.target_total), _utc(row.requested_at)
            )

    def request_history(self, campaign_id: str) -> RequestHistory:
        """Each request of the campaign's plans with its latest answer (PENDING when none)."""
        latest = (
            sa.select(
                t.seller_responses.c.seller_request,
                sa.func.max(t.seller_responses.c.id).label("last"),
            )
            .group_by(t.seller_responses.c.seller_request)
            .subquery()
        )
        query = (
            sa.select(
                t.seller_requests.c.deal_id,
                t.seller_requests.c.requested_at,
                t.seller_requests.c.kind,
                t.seller_requests.c.target_total,
                t.seller_responses.c.response,
                t.seller_responses.c.accepted_total,
            )
            .select_from(t.seller_requests)
            .outerjoin(latest, latest.c.seller_request == t.seller_requests.c.id)
            .outerjoin(t.seller_responses, t.seller_responses.c.id == latest.c.last)
            .where(t.seller_requests.c.campaign_id == campaign_id)
            .order_by(t.seller_requests.c.id)
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return RequestHistory(
            pd.DataFrame(
                {
                    "deal_id": pd.Series([r.deal_id for r in rows], dtype="str"),
                    "requested_at": pd.Series(
                        [_utc(r.requested_at).timestamp() for r in rows], dtype="float64"
                    ),
                    "kind": pd.Series([r.kind for r in rows], dtype="str"),
                    "target_total": pd.Series([r.target_total for r in rows], dtype="int64"),
                    "response": pd.Series([r.response or "PENDING" for r in rows], dtype="str"),
                    "accepted_total": pd.Series(
                        [r.accepted_total or 0 for r in rows], dtype="int64"
                    ),
                }
            )
        )


_NO_EVENT = PlanEvent(datetime.fromtimestamp(0, UTC), "", Action.CREATE, PlanState.PROPOSED)


def _plan_select(summary: bool) -> sa.Select[Any]:
    """All of a plan row; with `summary`, its body cut to what PLAN_VIEW_SUMMARY needs (the
    database sends a few kB instead of the whole plan)."""
    if not summary:
        return sa.select(t.plans)
    columns = [c for c in t.plans.c if c.name != "body"]
    cut = sa.func.substr(t.plans.c.body, 1, sa.cast(t.plans.c.summary_bytes, sa.Integer))
    return sa.select(*columns, sa.type_coerce(cut, sa.LargeBinary).label("body"))


def _summary_bytes(body: bytes) -> int:
    """The prefix of the body a summary needs (all of it for bodies the codec cannot split)."""
    try:
        return plan_codec.summary_length(body)
    except plan_codec.PlanCodecError:
        return len(body)


def _severity(value: str) -> Severity:
    return Severity(value)


def open_store(url: str, *, migrate: bool = True) -> SqlStore:
    """A store on `url`, migrated to the latest schema unless `migrate` is False."""
    store = SqlStore(url)
    if migrate:
        store.upgrade()
    return store

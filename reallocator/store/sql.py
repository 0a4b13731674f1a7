"""The audit store on SQLAlchemy Core: SQLite (WAL, the embedded default) or PostgreSQL
(psycopg 3). Every call is one transaction, so nothing half-written is ever visible; optimistic
concurrency and idempotency are enforced by the database (conditional UPDATEs, primary keys),
never in process memory, so several server processes may share one database.

Plans are stored as the Plan message the Replan call returned, life-cycle fields cleared,
ZSTD-compressed; GetPlan returns those bytes with the life cycle filled in again.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.engine import Connection, Engine

from reallocator.core.plan.model import RequestHistory
from reallocator.store.availability import DatabaseWatch, engine_options, starting
from reallocator.store.errors import AlreadyExists, NotFound, StaleEtag, WrongState
from reallocator.store.schema import idempotency, plan_events, plans, seller_requests, snapshots
from reallocator.v1 import plan_pb2

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_LIFE_CYCLE = ("name", "state", "etag", "create_time", "history", "previous_plan")
"""Plan fields the store owns: cleared before storing, filled in on reading."""

_STATE = {name: plan_pb2.PlanState.Value(f"PLAN_STATE_{name}") for name in (
    "PROPOSED", "APPROVED", "REJECTED", "APPLIED", "ROLLED_BACK", "SUPERSEDED")}  # fmt: skip
_RESPONSE: dict[int, str] = {
    plan_pb2.SELLER_RESPONSE_KIND_PENDING: "PENDING",
    plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED: "ACCEPTED",
    plan_pb2.SELLER_RESPONSE_KIND_PARTIAL: "PARTIAL",
    plan_pb2.SELLER_RESPONSE_KIND_REJECTED: "REJECTED",
}


class _Raced(Exception):
    """Another call claimed the same request id first."""


def _now() -> int:
    return time.time_ns() // 1000


def _pack(data: bytes) -> bytes:
    out: bytes = pa.compress(data, codec="zstd", asbytes=True)
    return out


def _unpack(data: bytes, size: int) -> bytes:
    out: bytes = pa.decompress(data, decompressed_size=size, codec="zstd", asbytes=True)
    return out


def _timestamp(micros: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(micros)
    return ts


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    """SQLite: WAL so readers never block the writer and several processes can share the file;
    synchronous FULL so an acknowledged write survives a power cut, not only a crash (NORMAL
    loses the last transactions then); a busy timeout instead of "database is locked"."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def default_database_url() -> str:
    """SQLite in the working directory (the Docker image's is /var/lib/reallocator)."""
    return f"sqlite:///{Path.cwd() / 'reallocator.db'}"


class SqlStore:
    """The audit store. Open it with `SqlStore.open(url)`, which applies the migrations."""

    watch: DatabaseWatch | None = None
    """Whether the database answers (store/availability.py); set by `open`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, probe_interval: float = 1.0) -> SqlStore:
        """An unreachable database is StoreUnavailable, here and in every call after; then
        `watch` probes it every `probe_interval` s and tells its listeners when it is back."""
        engine = sa.create_engine(url, pool_pre_ping=True, **engine_options(url))
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _on_connect)
        store = cls(engine)
        with starting(url):
            store.upgrade()
        store.watch = DatabaseWatch(engine, interval=probe_interval)
        return store

    def upgrade(self) -> None:
        """Applies the migrations (alembic) up to the newest."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction, committed as a whole or not at all; a database that cannot be
        reached (now or mid-way) is StoreUnavailable, whose outcome the caller retries."""
        with self.watch.guard() if self.watch else nullcontext(), self.engine.begin() as tx:
            yield tx

    # --- writing ------------------------------------------------------------------------------

    def record_plan(
        self,
        plan: plan_pb2.Plan,
        *,
        snapshot: bytes,
        actor: str,
        approve: bool,
        request_id: str = "",
        request_hash: str = "",
    ) -> plan_pb2.Plan:
        """Stores a plan Replan computed (see `_record`); a retry racing the first call of the
        same request gets the first call's plan."""
        try:
            return self._record(plan, snapshot=snapshot, actor=actor, approve=approve,
                                request_id=request_id, request_hash=request_hash)  # fmt: skip
        except _Raced:
            earlier = self.find_retry(plan.campaign_id, request_id, request_hash)
            assert earlier is not None
            return earlier

    def _insert(self, table: sa.Table) -> Any:
        """INSERT with ON CONFLICT support in this database's dialect."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _record(
        self,
        plan: plan_pb2.Plan,
        *,
        snapshot: bytes,
        actor: str,
        approve: bool,
        request_id: str = "",
        request_hash: str = "",
    ) -> plan_pb2.Plan:
        """Stores a plan Replan computed (PROPOSED, or APPROVED when the auto-apply policy
        covers it); a newer plan supersedes the campaign's unapplied older ones. With a
        `request_id`, a retry with the same body returns the first plan and records nothing;
        another body under the same id is AlreadyExists."""
        campaign = plan.campaign_id
        key = f"Replan:{campaign}:{request_id}" if request_id else ""
        now = _now()
        with self._tx() as tx:
            if key:
                seen = tx.execute(
                    sa.select(idempotency.c.request_hash, idempotency.c.result).where(
                        idempotency.c.key == key
                    )
                ).first()
                if seen is not None:
                    if seen.request_hash != request_hash:
                        raise AlreadyExists(
                            f"request_id {request_id!r} was used for another request on "
                            f"campaign {campaign!r}: use a new id for a new request"
                        )
                    return self._read(tx, seen.result)
            content_hash = hashlib.sha256(snapshot).hexdigest()
            name = f"campaigns/{campaign}/plans/{uuid.uuid4().hex[:20]}"
            if key:  # claimed first: a concurrent retry of the same request waits here, then
                # finds the claim taken and reads the plan the first one recorded
                claimed = tx.execute(
                    self._insert(idempotency)
                    .values(key=key, request_hash=request_hash, result=name, create_time=now)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                if claimed.rowcount == 0:
                    raise _Raced
            tx.execute(  # stored once per content (two plans from one snapshot share it)
                self._insert(snapshots)
                .values(
                    content_hash=content_hash,
                    campaign_id=campaign,
                    as_of=plan.as_of.ToMicroseconds(),
                    create_time=now,
                    size=len(snapshot),
                    payload=_pack(snapshot),
                )
                .on_conflict_do_nothing(index_elements=["content_hash"])
            )
            previous = tx.execute(
                sa.select(plans.c.name, plans.c.state)
                .where(plans.c.campaign_id == campaign)
                .order_by(plans.c.create_time.desc(), plans.c.name.desc())
                .limit(1)
            ).first()
            open_plans = tx.execute(
                sa.select(plans.c.name).where(
                    (plans.c.campaign_id == campaign) & plans.c.state.in_(("PROPOSED", "APPROVED"))
                )
            ).all()
            for row in open_plans:
                self._set_state(tx, row.name, "SUPERSEDED", actor, "a newer plan replaces it", now)
            stored = plan_pb2.Plan()
            stored.CopyFrom(plan)
            for field in _LIFE_CYCLE:
                stored.ClearField(field)  # type: ignore[arg-type]
            data = stored.SerializeToString()
            state = "APPROVED" if approve else "PROPOSED"
            tx.execute(
                plans.insert().values(
                    name=name,
                    campaign_id=campaign,
                    seq=now,
                    state=state,
                    status=plan_pb2.PlanStatus.Name(plan.status),
                    etag=uuid.uuid4().hex,
                    create_time=now,
                    update_time=now,
                    as_of=plan.as_of.ToMicroseconds(),
                    actor=actor,
                    previous_plan=previous.name if previous is not None else "",
                    snapshot_hash=content_hash,
                    size=len(data),
                    payload=_pack(data),
                )
            )
            comment = "created by Replan" + (
                " and approved by Policy.auto_apply" if approve else ""
            )
            tx.execute(
                plan_events.insert().values(
                    plan_name=name, event_time=now, actor=actor, state=state, comment=comment
                )
            )
            for r in plan.seller_requests:
                tx.execute(
                    seller_requests.insert().values(
                        plan_name=name,
                        request_id=r.request_id,
                        campaign_id=campaign,
                        deal_id=r.deal_id,
                        kind=plan_pb2.RequestKind.Name(r.kind).removeprefix("REQUEST_KIND_"),
                        target_total=r.target_total,
                        requested_at=plan.as_of.ToMicroseconds(),
                        response="PENDING",
                        accepted_total=0,
                        response_time=0,
                        message="",
                        actor="",
                    )
                )
            return self._read(tx, name)

    def _set_state(
        self,
        tx: Connection,
        name: str,
        state: str,
        actor: str,
        comment: str,
        now: int,
        etag: str | None = None,
    ) -> None:
        """Moves a plan to `state` (conditional on `etag` when given) and records the event."""
        condition = plans.c.name == name
        if etag:
            condition = condition & (plans.c.etag == etag)
        done = tx.execute(
            plans.update()
            .where(condition)
            .values(state=state, etag=uuid.uuid4().hex, update_time=now)
        )
        if done.rowcount != 1:
            raise StaleEtag(f"{name} changed since it was read (etag {etag!r}): read it again")
        tx.execute(
            plan_events.insert().values(
                plan_name=name, event_time=now, actor=actor, state=state, comment=comment
            )
        )

    def review(
        self, name: str, approve: bool, *, etag: str, actor: str, comment: str
    ) -> plan_pb2.Plan:
        """Approves or rejects a PROPOSED plan; a stale etag is StaleEtag (ABORTED)."""
        with self._tx() as tx:
            row = self._row(tx, name)
            if row.state != "PROPOSED":
                raise WrongState(f"{name} is {row.state}: only a PROPOSED plan can be reviewed")
            self._set_state(
                tx, name, "APPROVED" if approve else "REJECTED", actor, comment, _now(),
                etag=etag or row.etag,
            )  # fmt: skip
            return self._read(tx, name)

    def confirm_applied(self, name: str, *, actor: str, apply_time: int | None) -> plan_pb2.Plan:
        """Marks an APPROVED plan APPLIED (confirming an APPLIED one again changes nothing)."""
        with self._tx() as tx:
            row = self._row(tx, name)
            if row.state == "APPLIED":
                return self._read(tx, name)
            if row.state != "APPROVED":
                raise WrongState(f"{name} is {row.state}: only an APPROVED plan can be applied")
            when = apply_time or _now()
            note = f"applied at {datetime.fromtimestamp(when / 1e6).isoformat()}"
            self._set_state(tx, name, "APPLIED", actor, note, _now(), etag=row.etag)
            return self._read(tx, name)

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
    ) -> tuple[str, str, int, int]:
        """Records a seller's answer to one request of `plan`; returns (deal, kind,
        target_total, response_time)."""
        with self._tx() as tx:
            self._row(tx, plan)
            row = tx.execute(
                sa.select(seller_requests).where(
                    (seller_requests.c.plan_name == plan)
                    & (seller_requests.c.request_id == request_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"{plan} has no seller request {request_id!r}")
            when = response_time or _now()
            tx.execute(
                seller_requests.update()
                .where(
                    (seller_requests.c.plan_name == plan)
                    & (seller_requests.c.request_id == request_id)
                )
                .values(
                    response=_RESPONSE[response],
                    accepted_total=accepted_total,
                    response_time=when,
                    message=message,
                    actor=actor,
                )
            )
            note = f"seller answered {request_id}: {_RESPONSE[response]}"
            tx.execute(
                plan_events.insert().values(
                    plan_name=plan, event_time=_now(), actor=actor, state="", comment=note
                )
            )
            return str(row.deal_id), str(row.kind), int(row.target_total), when

    # --- reading ------------------------------------------------------------------------------

    def find_retry(self, campaign: str, request_id: str, request_hash: str) -> plan_pb2.Plan | None:
        """The plan a Replan with this request id created, if any (before computing it again);
        AlreadyExists when the id was used for another body."""
        key = f"Replan:{campaign}:{request_id}"
        with self._tx() as tx:
            seen = tx.execute(
                sa.select(idempotency.c.request_hash, idempotency.c.result).where(
                    idempotency.c.key == key
                )
            ).first()
            if seen is None:
                return None
            if seen.request_hash != request_hash:
                raise AlreadyExists(
                    f"request_id {request_id!r} was used for another request on campaign "
                    f"{campaign!r}: use a new id for a new request"
                )
            return self._read(tx, seen.result)

    def _row(self, tx: Connection, name: str) -> Any:
        row = tx.execute(sa.select(plans).where(plans.c.name == name)).first()
        if row is None:
            raise NotFound(f"no plan {name!r}")
        return row

    def _read(self, tx: Connection, name: str) -> plan_pb2.Plan:
        row = self._row(tx, name)
        plan = plan_pb2.Plan.FromString(_unpack(row.payload, row.size))
        plan.name = row.name
        plan.state = _STATE[row.state]
        plan.etag = row.etag
        plan.previous_plan = row.previous_plan
        plan.create_time.CopyFrom(_timestamp(row.create_time))
        events = tx.execute(
            sa.select(plan_events).where(plan_events.c.plan_name == name).order_by(plan_events.c.id)
        ).all()
        for e in events:
            plan.history.add(
                event_time=_timestamp(e.event_time),
                actor=e.actor,
                state=_STATE.get(e.state, plan_pb2.PLAN_STATE_UNSPECIFIED),
                comment=e.comment,
            )
        for r in plan.seller_requests:
            answer = tx.execute(
                sa.select(seller_requests.c.response).where(
                    (seller_requests.c.plan_name == name)
                    & (seller_requests.c.request_id == r.request_id)
                )
            ).scalar()
            if answer:
                r.response = plan_pb2.SellerResponseKind.Value(f"SELLER_RESPONSE_KIND_{answer}")
        return plan

    def get_plan(self, name: str) -> plan_pb2.Plan:
        with self._tx() as tx:
            return self._read(tx, name)

    def list_plans(
        self, campaign: str, *, state: str = "", page_size: int = 50, page_token: str = ""
    ) -> tuple[list[plan_pb2.Plan], str]:
        """A campaign's plans, newest first, `page_size` at a time (AIP-158 page tokens)."""
        condition = plans.c.campaign_id == campaign
        if state:
            condition = condition & (plans.c.state == state)
        if page_token:
            created, _, last = _decode_token(page_token).partition(":")
            condition = condition & (
                (plans.c.create_time < int(created))
                | ((plans.c.create_time == int(created)) & (plans.c.name < last))
            )
        with self._tx() as tx:
            rows = tx.execute(
                sa.select(plans.c.name, plans.c.create_time)
                .where(condition)
                .order_by(plans.c.create_time.desc(), plans.c.name.desc())
                .limit(page_size + 1)
            ).all()
            out = [self._read(tx, r.name) for r in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last_row = rows[page_size - 1]
            token = _encode_token(f"{last_row.create_time}:{last_row.name}")
        return out, token

    def request_history(self, campaign: str) -> RequestHistory:
        """The campaign's seller requests sent (plans approved or applied) and their answers,
        as the plan builder reads them."""
        with self._tx() as tx:
            rows = tx.execute(
                sa.select(seller_requests)
                .join(plans, plans.c.name == seller_requests.c.plan_name)
                .where(
                    (seller_requests.c.campaign_id == campaign)
                    & plans.c.state.in_(("APPROVED", "APPLIED", "ROLLED_BACK"))
                )
                .order_by(seller_requests.c.requested_at)
            ).all()
        if not rows:
            return RequestHistory()
        frame = pd.DataFrame(
            {
                "deal_id": [r.deal_id for r in rows],
                "requested_at": [r.requested_at / 1e6 for r in rows],
                "kind": [r.kind for r in rows],
                "target_total": [int(r.target_total) for r in rows],
                "response": [r.response for r in rows],
                "accepted_total": [int(r.accepted_total) for r in rows],
            }
        ).astype({"requested_at": "float64", "target_total": "int64", "accepted_total": "int64"})
        return RequestHistory(requests=frame)


def _encode_token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("page_token: not a token this server issued") from exc
    created, sep, _ = text.partition(":")
    if not sep or not created.isdigit():
        raise ValueError("page_token: not a token this server issued")
    return text


def request_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["SqlStore", "default_database_url", "request_hash"]

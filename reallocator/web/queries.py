"""Read-only queries the dashboard needs that SqlStore does not offer (campaign listing, a
campaign's snapshots and decision history, events after an id), on the tables of
store/schema.py with SQLAlchemy Core. Nothing here writes: mutations go through
SqlStore.review only, so the dashboard shares ReviewPlan's etag and state rules."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from reallocator.store.schema import plan_events, plan_tables, plans, seller_requests, snapshots


@dataclass(frozen=True)
class CampaignRow:
    """One campaign of the list: its newest plan and how many plans await review."""

    campaign_id: str
    latest_plan: str
    latest_state: str
    latest_status: str
    latest_as_of: int  # unix micros
    latest_create_time: int
    plans: int
    pending: int


@dataclass(frozen=True)
class SnapshotRow:
    content_hash: str
    as_of: int  # unix micros
    size: int
    payload: bytes  # zstd of the CampaignSnapshot message


@dataclass(frozen=True)
class EventRow:
    """A plan event: a creation, review, application, rollback or a seller's answer."""

    id: int
    plan_name: str
    campaign_id: str
    event_time: int  # unix micros
    actor: str
    state: str  # "" for a seller's answer (the plan's state did not change)
    comment: str
    plan_as_of: int


def list_campaigns(engine: Engine) -> list[CampaignRow]:
    """Every campaign with a recorded plan, newest activity first."""
    pending = sa.func.sum(sa.case((plans.c.state == "PROPOSED", 1), else_=0))
    groups = (
        sa.select(
            plans.c.campaign_id,
            sa.func.max(plans.c.seq).label("seq"),
            sa.func.count().label("plans"),
            pending.label("pending"),
        )
        .group_by(plans.c.campaign_id)
        .subquery()
    )
    query = (
        sa.select(
            plans.c.campaign_id,
            plans.c.name,
            plans.c.state,
            plans.c.status,
            plans.c.as_of,
            plans.c.create_time,
            groups.c.plans,
            groups.c.pending,
        )
        .join(
            groups,
            (plans.c.campaign_id == groups.c.campaign_id) & (plans.c.seq == groups.c.seq),
        )
        .order_by(plans.c.create_time.desc(), plans.c.campaign_id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    seen: set[str] = set()
    out = []
    for r in rows:  # two plans of one campaign recorded in the same microsecond: keep one
        if r.campaign_id in seen:
            continue
        seen.add(r.campaign_id)
        out.append(
            CampaignRow(
                campaign_id=r.campaign_id,
                latest_plan=r.name,
                latest_state=r.state,
                latest_status=r.status,
                latest_as_of=int(r.as_of),
                latest_create_time=int(r.create_time),
                plans=int(r.plans),
                pending=int(r.pending or 0),
            )
        )
    return out


def plan_payload(engine: Engine, name: str) -> tuple[bytes, int]:
    """A plan's stored bytes (zstd of the Plan message, life cycle cleared) and their size."""
    query = (
        sa.select(plan_tables.c.payload, plans.c.size)
        .join_from(plans, plan_tables, plan_tables.c.name == plans.c.name)
        .where(plans.c.name == name)
    )
    with engine.connect() as connection:
        row = connection.execute(query).one()
    return bytes(row.payload), int(row.size)


def plan_names(engine: Engine, campaign: str, *, state: str = "") -> list[str]:
    """A campaign's plan names, newest first (optionally in one state)."""
    condition = plans.c.campaign_id == campaign
    if state:
        condition = condition & (plans.c.state == state)
    query = (
        sa.select(plans.c.name)
        .where(condition)
        .order_by(plans.c.create_time.desc(), plans.c.name.desc())
    )
    with engine.connect() as connection:
        return [str(n) for n in connection.execute(query).scalars()]


def campaign_snapshots(engine: Engine, campaign: str, *, limit: int = 500) -> list[SnapshotRow]:
    """The campaign's recorded snapshots (one per content), oldest first, at most the newest
    `limit`: the chart's delivered points."""
    query = (
        sa.select(snapshots.c.content_hash, snapshots.c.as_of, snapshots.c.size)
        .where(snapshots.c.campaign_id == campaign)
        .order_by(snapshots.c.as_of.desc(), snapshots.c.content_hash)
        .limit(limit)
    )
    with engine.connect() as connection:
        heads = connection.execute(query).all()
    return [SnapshotRow(r.content_hash, int(r.as_of), int(r.size), b"") for r in heads[::-1]]


def snapshot_payload(engine: Engine, content_hash: str) -> SnapshotRow:
    query = sa.select(snapshots).where(snapshots.c.content_hash == content_hash)
    with engine.connect() as connection:
        r = connection.execute(query).one()
    return SnapshotRow(r.content_hash, int(r.as_of), int(r.size), bytes(r.payload))


def _events(condition: sa.ColumnElement[bool], limit: int) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(
            plan_events.c.id,
            plan_events.c.plan_name,
            plans.c.campaign_id,
            plan_events.c.event_time,
            plan_events.c.actor,
            plan_events.c.state,
            plan_events.c.comment,
            plans.c.as_of,
        )
        .join(plans, plans.c.name == plan_events.c.plan_name)
        .where(condition)
        .order_by(plan_events.c.id)
        .limit(limit)
    )


def _event(r: sa.Row[tuple[object, ...]]) -> EventRow:
    m = r._mapping
    return EventRow(
        id=int(m["id"]),  # type: ignore[call-overload]
        plan_name=str(m["plan_name"]),
        campaign_id=str(m["campaign_id"]),
        event_time=int(m["event_time"]),  # type: ignore[call-overload]
        actor=str(m["actor"]),
        state=str(m["state"]),
        comment=str(m["comment"]),
        plan_as_of=int(m["as_of"]),  # type: ignore[call-overload]
    )


def campaign_history(engine: Engine, campaign: str, *, limit: int = 1000) -> list[EventRow]:
    """The campaign's decision history, oldest first: every plan's creation, review,
    application, rollback and seller answer (the newest `limit`)."""
    newest = _events(plans.c.campaign_id == campaign, limit).order_by(None)
    query = newest.order_by(plan_events.c.id.desc())
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [_event(r) for r in rows[::-1]]


def events_after(
    engine: Engine, after: int, *, campaign: str = "", limit: int = 200
) -> list[EventRow]:
    """Events recorded after event id `after` (the server-sent events' cursor)."""
    condition = plan_events.c.id > after
    if campaign:
        condition = condition & (plans.c.campaign_id == campaign)
    with engine.connect() as connection:
        rows = connection.execute(_events(condition, limit)).all()
    return [_event(r) for r in rows]


def last_event_id(engine: Engine) -> int:
    with engine.connect() as connection:
        value = connection.execute(sa.select(sa.func.max(plan_events.c.id))).scalar()
    return int(value or 0)


def seller_answers(engine: Engine, plan: str) -> dict[str, tuple[str, int, str]]:
    """Each request of `plan`: (response, accepted_total, message)."""
    query = sa.select(
        seller_requests.c.request_id,
        seller_requests.c.response,
        seller_requests.c.accepted_total,
        seller_requests.c.message,
    ).where(seller_requests.c.plan_name == plan)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return {
        str(r.request_id): (str(r.response), int(r.accepted_total), str(r.message)) for r in rows
    }


__all__ = [
    "CampaignRow",
    "EventRow",
    "SnapshotRow",
    "campaign_history",
    "campaign_snapshots",
    "events_after",
    "last_event_id",
    "list_campaigns",
    "plan_names",
    "plan_payload",
    "seller_answers",
    "snapshot_payload",
]

"""The SQL audit store on SQLite and PostgreSQL: plans, life cycle, etags, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import databases
import pytest
import sqlalchemy as sa

from reallocator.core.lifecycle.states import Action, PlanState
from reallocator.store import (
    AlreadyExists,
    IdempotencyKey,
    InvalidTransition,
    NewPlan,
    NotFound,
    SqlStore,
    StaleEtag,
)

database_url = databases.database_url  # fixtures shared by the store tests
postgres_server = databases.postgres_server
T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def new_plan(
    campaign: str = "c1", body: bytes = b"plan", snapshot: bytes | None = b"snap"
) -> NewPlan:
    return NewPlan(
        campaign_id=campaign,
        as_of=T0,
        body=body,
        state=PlanState.PROPOSED,
        max_severity="MATERIAL",
        snapshot=snapshot,
    )


@pytest.fixture
def store(database_url: str) -> SqlStore:
    s = SqlStore(database_url)
    yield s
    s.close()


def test_recorded_plan_reads_back_with_its_creation_event(store: SqlStore) -> None:
    rec = store.record_plan(new_plan(), "alice", T0)
    assert rec.name.startswith("campaigns/c1/plans/") and rec.state == PlanState.PROPOSED
    got = store.get_plan(rec.name)
    assert got.body == b"plan" and got.actor == "alice" and got.create_time == T0
    assert [(e.kind, e.state, e.actor) for e in got.events] == [
        ("CREATED", PlanState.PROPOSED, "alice")
    ]
    with pytest.raises(NotFound):
        store.get_plan("campaigns/c1/plans/nope")


def test_newer_plan_supersedes_unapplied_and_links_previous(store: SqlStore) -> None:
    first = store.record_plan(new_plan(), "a", T0)
    second = store.record_plan(new_plan(body=b"p2"), "a", T0 + timedelta(minutes=5))
    assert second.previous_plan == first.name
    old = store.get_plan(first.name)
    assert old.state == PlanState.SUPERSEDED and old.etag != first.etag
    assert old.events[-1].comment == f"superseded by {second.name}"
    other = store.record_plan(new_plan(campaign="c2"), "a", T0)
    assert other.previous_plan == "" and store.get_plan(second.name).state == PlanState.PROPOSED


def test_snapshots_are_deduplicated_by_content(store: SqlStore) -> None:
    store.record_plan(new_plan(snapshot=b"same"), "a", T0)
    store.record_plan(new_plan(snapshot=b"same"), "a", T0)
    store.record_plan(new_plan(snapshot=b"other"), "a", T0)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM snapshots")).scalar() == 2


def test_review_then_confirm_and_stale_etag(store: SqlStore) -> None:
    rec = store.record_plan(new_plan(), "a", T0)
    approved = store.transition(rec.name, Action.APPROVE, etag=rec.etag, actor="bob", now=T0)
    assert approved.state == PlanState.APPROVED and approved.etag != rec.etag
    with pytest.raises(StaleEtag):
        store.transition(rec.name, Action.REJECT, etag=rec.etag, actor="eve", now=T0)
    applied = store.transition(
        rec.name, Action.CONFIRM_APPLIED, etag=approved.etag, actor="ops", now=T0
    )
    assert applied.state == PlanState.APPLIED
    assert [e.kind for e in applied.events] == ["CREATED", "APPROVE", "CONFIRM_APPLIED"]
    with pytest.raises(InvalidTransition):
        store.transition(rec.name, Action.REJECT, etag="", actor="eve", now=T0)
    # an applied plan is not superseded by a newer one
    store.record_plan(new_plan(), "a", T0)
    assert store.get_plan(rec.name).state == PlanState.APPLIED


def test_idempotency_key_returns_the_original_or_refuses_a_new_body(store: SqlStore) -> None:
    key = IdempotencyKey("Replan", "r-1", "hash-a")
    assert store.replay(key) is None
    rec = store.record_plan(new_plan(), "a", T0, key)
    assert store.replay(key) == rec.name
    again = store.record_plan(new_plan(body=b"different solve"), "a", T0, key)
    assert again.name == rec.name and again.body == b"plan"
    assert len(store.list_plans("c1")) == 1
    with pytest.raises(AlreadyExists):
        store.replay(IdempotencyKey("Replan", "r-1", "hash-b"))


def test_list_plans_pages_newest_first_and_filters(store: SqlStore) -> None:
    names = [store.record_plan(new_plan(), "a", T0 + timedelta(minutes=i)).name for i in range(5)]
    page = store.list_plans("c1", limit=2)
    assert [p.name for p in page] == names[::-1][:2] and page[0].body is None
    rest = store.list_plans("c1", before_seq=page[-1].seq, limit=10)
    assert [p.name for p in rest] == names[::-1][2:]
    assert [p.name for p in store.list_plans("c1", state=PlanState.PROPOSED)] == [names[-1]]
    window = store.list_plans(
        "c1", start_time=T0 + timedelta(minutes=1), end_time=T0 + timedelta(minutes=3)
    )
    assert [p.name for p in window] == [names[2], names[1]]


def test_purge_keeps_decisions_and_referenced_snapshots(store: SqlStore) -> None:
    kept = store.record_plan(new_plan(snapshot=b"used"), "a", T0)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO snapshots (content_hash, campaign_id, as_of, body, create_time, actor)"
                " VALUES ('orphan', 'c1', :t, :b, :t, 'a')"
            ),
            {"t": T0, "b": b"x"},
        )
    counts = store.purge(T0 + timedelta(days=1))
    assert counts["snapshots"] == 1
    assert store.get_plan(kept.name).body == b"plan"
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM snapshots")).scalar() == 1


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    SqlStore(database_url).close()
    again = SqlStore(database_url)
    assert again.list_plans("none") == []
    again.close()

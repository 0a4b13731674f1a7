"""The SQL audit store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from reallocator.core.lifecycle import Action, PlanState
from reallocator.store import schema as t
from reallocator.store.base import NewPlan, SellerRequestRow
from reallocator.store.errors import AlreadyExists, Conflict, FailedPrecondition, NotFound
from reallocator.store.sql import SqlStore, open_store


def new_plan(campaign: str = "c1", **changes: object) -> NewPlan:
    fields: dict[str, object] = {
        "campaign_id": campaign,
        "body": b"plan-bytes",
        "severity": "MATERIAL",
        "auto_apply_up_to": "",
        "snapshot": b"snapshot-bytes",
    }
    fields.update(changes)
    return NewPlan(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(database_url: str) -> SqlStore:
    s = open_store(database_url)
    yield s  # type: ignore[misc]
    s.close()


def count(store: SqlStore, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_migrations_are_idempotent_and_sqlite_runs_in_wal(store: SqlStore) -> None:
    store.upgrade()
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_plan_is_stored_with_its_life_cycle(store: SqlStore) -> None:
    first = store.save_plan(new_plan(), "alice")
    assert first.name.startswith("campaigns/c1/plans/")
    assert first.state == PlanState.PROPOSED and first.previous_plan == ""
    assert [e.action for e in first.events] == [Action.CREATE]
    assert first.actor == "alice" and first.body == b"plan-bytes"
    second = store.save_plan(new_plan(), "bob")
    assert second.previous_plan == first.name
    old = store.get_plan(first.name)
    assert old.state == PlanState.SUPERSEDED and old.etag != first.etag
    assert old.events[-1].actor == "bob"
    assert count(store, t.snapshots) == 1  # the same snapshot bytes are stored once
    with pytest.raises(NotFound):
        store.get_plan("campaigns/c1/plans/nope")


def test_auto_apply_covers_the_severity(store: SqlStore) -> None:
    assert store.save_plan(new_plan(auto_apply_up_to="MATERIAL"), "a").state == "APPROVED"
    assert store.save_plan(new_plan(auto_apply_up_to="MINOR"), "a").state == "PROPOSED"


def test_review_with_a_stale_etag_is_a_conflict(store: SqlStore) -> None:
    plan = store.save_plan(new_plan(), "a")
    approved = store.change_state(plan.name, plan.etag, Action.APPROVE, "rev", "ok")
    assert approved.state == PlanState.APPROVED and approved.events[-1].comment == "ok"
    with pytest.raises(Conflict):
        store.change_state(plan.name, plan.etag, Action.REJECT, "rev")
    with pytest.raises(FailedPrecondition):
        store.change_state(plan.name, approved.etag, Action.APPROVE, "rev")
    applied = store.change_state(plan.name, "", Action.APPLY, "ops")
    assert applied.state == PlanState.APPLIED


def test_request_id_is_idempotent(store: SqlStore) -> None:
    plan = store.save_plan(new_plan(request_id="r1", request_hash="h1"), "a")
    again = store.save_plan(new_plan(request_id="r1", request_hash="h1"), "a")
    assert again.name == plan.name
    assert store.find_replan("r1", "h1") is not None and store.find_replan("r2", "h1") is None
    assert count(store, t.plans) == 1
    with pytest.raises(AlreadyExists):
        store.save_plan(new_plan(request_id="r1", request_hash="h2"), "a")
    with pytest.raises(AlreadyExists):
        store.find_replan("r1", "h2")


def test_list_plans_pages_newest_first(store: SqlStore) -> None:
    names = [store.save_plan(new_plan(), "a").name for _ in range(5)]
    store.save_plan(new_plan("other"), "a")
    seen, after = [], None
    while True:
        page = store.list_plans("c1", None, after, 2)
        seen += [p.name for p in page.plans]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == names[::-1]
    superseded = store.list_plans("c1", PlanState.SUPERSEDED, None, 10)
    assert [p.name for p in superseded.plans] == names[:-1][::-1]


def test_seller_answers_become_request_history(store: SqlStore) -> None:
    asked = datetime(2026, 11, 30, tzinfo=UTC)
    rows = (
        SellerRequestRow("q1", "d1", "INCREASE", 500, asked),
        SellerRequestRow("q2", "d2", "DECREASE", 10, asked),
    )
    plan = store.save_plan(new_plan(seller_requests=rows), "a")
    when = datetime(2026, 12, 1, tzinfo=UTC)
    store.record_seller_response(plan.name, "q1", "PARTIAL", 300, "only 300", when, "seller")
    history = store.request_history("c1").requests
    assert history["deal_id"].tolist() == ["d1", "d2"]
    assert history["response"].tolist() == ["PARTIAL", "PENDING"]
    assert history["accepted_total"].tolist() == [300, 0]
    assert history["target_total"].tolist() == [500, 10]
    assert history["requested_at"].tolist() == [asked.timestamp()] * 2
    with pytest.raises(NotFound):
        store.record_seller_response(plan.name, "nope", "REJECTED", 0, "", when, "seller")


def test_purge_drops_old_snapshots_and_keeps_the_decisions(store: SqlStore) -> None:
    old = store.save_plan(new_plan(snapshot=b"old"), "a")
    shared = store.save_plan(new_plan(snapshot=b"shared"), "a")
    cutoff = datetime.now(UTC)
    newer = store.save_plan(new_plan(snapshot=b"shared"), "a")  # dedup: refers to an old row
    assert count(store, t.snapshots) == 2
    assert store.purge_snapshots(cutoff) == 1  # "old" only: "shared" is still referenced
    assert count(store, t.snapshots) == 1
    assert store.get_plan(old.name).body == b"plan-bytes"  # the decision record stays
    assert len(store.get_plan(shared.name).events) == 2 and newer.previous_plan == shared.name
    assert store.purge_snapshots(datetime.now(UTC)) == 1
    assert count(store, t.snapshots) == 0 and count(store, t.plans) == 3


def _review(url: str, name: str, etag: str, start: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    store = SqlStore(url)
    start.wait(10)
    try:
        store.change_state(name, etag, Action.APPROVE, "proc")
        out.put("ok")
    except Conflict:
        out.put("conflict")
    finally:
        store.close()


def test_two_processes_reviewing_the_same_plan_one_wins(store: SqlStore) -> None:
    plan = store.save_plan(new_plan(), "a")
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_review, args=(store.url, plan.name, plan.etag, start, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert sorted(out.get(timeout=5) for _ in procs) == ["conflict", "ok"]
    assert [e.action for e in store.get_plan(plan.name).events] == [Action.CREATE, Action.APPROVE]

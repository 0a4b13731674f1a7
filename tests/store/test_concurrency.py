"""Two processes race on one plan: the database decides, never process memory."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import databases
import pytest

from reallocator.core.lifecycle.states import Action, PlanState
from reallocator.store import IdempotencyKey, NewPlan, SqlStore, StaleEtag

database_url = databases.database_url  # fixtures shared by the store tests
postgres_server = databases.postgres_server

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _review(url: str, name: str, etag: str, action: str, start: object, out: object) -> None:
    store = SqlStore(url, upgrade=False)
    start.wait()  # type: ignore[attr-defined]
    try:
        store.transition(name, Action(action), etag=etag, actor=action, now=T0)
        out.put((action, "ok"))  # type: ignore[attr-defined]
    except StaleEtag:
        out.put((action, "aborted"))  # type: ignore[attr-defined]
    finally:
        store.close()


def _replan(url: str, body: bytes, start: object, out: object) -> None:
    store = SqlStore(url, upgrade=False)
    plan = NewPlan("c1", T0, body, PlanState.PROPOSED, "MINOR")
    start.wait()  # type: ignore[attr-defined]
    record = store.record_plan(plan, "p", T0, IdempotencyKey("Replan", "same", "h"))
    out.put(record.name)  # type: ignore[attr-defined]
    store.close()


@pytest.mark.parametrize("rounds", [2])
def test_two_processes_reviewing_one_plan_one_wins(database_url: str, rounds: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    store = SqlStore(database_url)
    for _ in range(rounds):
        rec = store.record_plan(NewPlan("c1", T0, b"p", PlanState.PROPOSED, "MINOR"), "a", T0)
        start, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_review, args=(database_url, rec.name, rec.etag, a, start, out))
            for a in ("APPROVE", "REJECT")
        ]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        results = dict(out.get(timeout=5) for _ in procs)
        assert sorted(results.values()) == ["aborted", "ok"]
        winner = next(a for a, r in results.items() if r == "ok")
        final = store.get_plan(rec.name)
        assert final.state == (PlanState.APPROVED if winner == "APPROVE" else PlanState.REJECTED)
        assert [e.kind for e in final.events] == ["CREATED", winner]
    store.close()


def test_concurrent_retries_of_one_request_record_one_plan(database_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    store = SqlStore(database_url)
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_replan, args=(database_url, f"b{i}".encode(), start, out))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = {out.get(timeout=5) for _ in procs}
    assert len(names) == 1 and len(store.list_plans("c1")) == 1
    store.close()

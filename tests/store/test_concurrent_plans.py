"""Concurrent writes to one campaign's plans: `serve --workers 2` runs two processes on one
SQLite file, each with a pool of threads, so two Replans of one campaign can record at once.
Each must read the campaign's last and open plans inside its own write transaction, or both
supersede the same plan and the campaign keeps two open plans (and a broken `previous_plan`
chain). Threads and processes on SQLite, threads on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from both_databases import opened_store, run_together
from plans import new_plan
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.store.errors import StaleEtag, StoreUnavailable, WrongState
from reallocator.store.schema import plans
from reallocator.store.sql import NewPlan, SqlStore
from reallocator.v1 import plan_pb2, snapshot_pb2

ROUNDS = 16
CALLERS = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    yield from opened_store(request, tmp_path)


def _together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs the calls in threads released at once by a barrier; their results (or errors)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [f.result() for f in futures]


def assert_one_chain(engine: sa.Engine, campaign: str) -> None:
    """The campaign's plans in `seq` order: strictly increasing, each one's previous_plan the
    one before it, and only the newest open (PROPOSED or APPROVED)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(plans.c.name, plans.c.seq, plans.c.state, plans.c.previous_plan)
            .where(plans.c.campaign_id == campaign)
            .order_by(plans.c.seq, plans.c.name)
        ).all()
    assert rows
    seqs = [r.seq for r in rows]
    assert len(set(seqs)) == len(seqs), "two plans of the campaign share a seq"
    open_plans = [r.name for r in rows if r.state in ("PROPOSED", "APPROVED")]
    assert open_plans == [rows[-1].name], f"{len(open_plans)} open plans of {len(rows)}"
    assert [r.previous_plan for r in rows] == ["", *(r.name for r in rows[:-1])]


def _snapshots(campaign: str, count: int) -> list[NewPlan]:
    """One plan as recorded from `count` different snapshots (as_of a second apart)."""
    base = new_plan(campaign)
    out = []
    for i in range(count):
        msg = plan_pb2.Plan()
        msg.CopyFrom(base.msg)
        msg.as_of.seconds += i
        snapshot = snapshot_pb2.CampaignSnapshot.FromString(base.snapshot)
        snapshot.as_of.seconds += i
        data = snapshot.SerializeToString(deterministic=True)
        out.append(replace(base, msg=msg, snapshot=data))
    return out


@pytest.mark.parametrize("same_snapshot", [True, False], ids=["same", "own"])
def test_concurrent_replans_of_one_campaign_leave_one_open_plan(
    store: SqlStore, same_snapshot: bool
) -> None:
    """Replans of one campaign at once, from one snapshot stored already (a retry without a
    request_id: every read comes before the first write) or each from a new one (on SQLite
    storing it took the write lock before the reads even before)."""
    campaign = f"race-{store.engine.dialect.name}-{same_snapshot}"
    news = _snapshots(campaign, 1 if same_snapshot else 1 + CALLERS * ROUNDS)
    store.record_plan(news[0], actor="first")
    for round_ in range(ROUNDS):
        these = [news[0]] * CALLERS if same_snapshot else news[1 + round_ * CALLERS :][:CALLERS]
        _together([partial(store.record_plan, new, actor="race") for new in these])
    assert_one_chain(store.engine, campaign)


def _outcome(call: Callable[[], Any]) -> Any:
    """The call's result, or the name of the store error it raised."""
    try:
        return call()
    except (StaleEtag, WrongState) as exc:
        return type(exc).__name__


def test_a_plan_confirmed_while_a_replan_records_stays_applied(store: SqlStore) -> None:
    """ConfirmApplied and a Replan of the same campaign at once: the confirmation succeeds
    (an approved plan superseded may still be confirmed) and the plan stays APPLIED, never
    overwritten SUPERSEDED by a Replan that read it open before it was applied."""
    campaign = f"confirm-{store.engine.dialect.name}"
    new = new_plan(campaign)
    for _ in range(ROUNDS):
        approved = store.record_plan(replace(new, approve=True), actor="svc")
        confirmed, _ = _together(
            [
                partial(store.confirm_applied, approved.name, actor="svc", apply_time=None),
                partial(store.record_plan, new, actor="race"),
            ]
        )
        assert confirmed.state == "APPLIED"
        assert store.life_cycle(approved.name).state == "APPLIED"
    assert_one_chain(store.engine, campaign)


def test_a_plan_rejected_while_a_replan_records_keeps_its_answer(store: SqlStore) -> None:
    """ReviewPlan (reject, no etag) and a Replan at once: either the review comes first and the
    plan stays REJECTED, or the Replan does and the review finds it SUPERSEDED (WrongState)."""
    campaign = f"reject-{store.engine.dialect.name}"
    new = new_plan(campaign)
    for _ in range(ROUNDS):
        proposed = store.record_plan(new, actor="svc")
        review = partial(store.review, proposed.name, False, etag="", actor="ana", comment="")
        reviewed, _ = _together(
            [partial(_outcome, review), partial(store.record_plan, new, actor="race")]
        )
        final = store.life_cycle(proposed.name).state
        if isinstance(reviewed, str):
            assert (reviewed, final) == ("WrongState", "SUPERSEDED")
        else:
            assert (reviewed.state, final) == ("REJECTED", "REJECTED")
    assert_one_chain(store.engine, campaign)


def test_two_confirmations_of_one_plan_at_once_both_succeed(store: SqlStore) -> None:
    """Confirming an APPLIED plan again changes nothing, also when both calls run at once."""
    campaign = f"twice-{store.engine.dialect.name}"
    new = replace(new_plan(campaign), approve=True)
    for _ in range(ROUNDS):
        approved = store.record_plan(new, actor="svc")
        confirm = partial(store.confirm_applied, approved.name, actor="svc", apply_time=None)
        states = [lc.state for lc in _together([confirm] * CALLERS)]
        assert states == ["APPLIED"] * CALLERS
        assert [e[2] for e in store.life_cycle(approved.name).events] == ["APPROVED", "APPLIED"]


def test_one_request_id_sent_at_once_records_one_plan(store: SqlStore) -> None:
    """A Replan retried under the same request_id while the first is still recording: one plan,
    every call answers it."""
    campaign = f"key-{store.engine.dialect.name}"
    new = new_plan(campaign)
    for round_ in range(ROUNDS):
        key = f"Replan:{campaign}:{round_}"
        record = partial(store.record_plan, new, actor="svc", key=key, request_hash="h")
        done = _together([record] * CALLERS)
        assert len({lc.name for lc in done}) == 1
        assert sorted(lc.replayed for lc in done) == [False] + [True] * (CALLERS - 1)
    assert_one_chain(store.engine, campaign)


def _record_in_process(url: str, new: NewPlan, rounds: int, barrier: Any, errors: Any) -> None:
    try:
        store = SqlStore.open(url)
        for _ in range(rounds):
            barrier.wait(60)
            store.record_plan(new, actor="process")
        store.close()
    except Exception as exc:  # reported to the parent: a traceback here is the failure
        errors.put(f"{type(exc).__name__}: {str(exc)[:300]}")


def test_processes_sharing_a_sqlite_file_leave_one_open_plan(tmp_path: Path) -> None:
    """`serve --workers 2`: two processes on one SQLite file, each recording plans of the
    same campaign from the same snapshot (the reads come before any write)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    campaign = "race-processes"
    new = new_plan(campaign)
    SqlStore.open(url).close()
    run_together(_record_in_process, (url, new, 3 * ROUNDS), 2)
    engine = sa.create_engine(url)
    try:
        assert_one_chain(engine, campaign)
    finally:
        engine.dispose()


def test_a_held_write_lock_delays_writes_not_reads(tmp_path: Path) -> None:
    """A write transaction takes SQLite's write lock at its start: while another connection
    holds it, a read still answers (WAL, a deferred BEGIN), and a write waits for the busy
    timeout (here cut to 0.2 s), then is StoreUnavailable, as for any locked database."""
    path = tmp_path / "held.db"
    store = SqlStore.open(f"sqlite:///{path}")
    campaign = "held"
    first = store.record_plan(new_plan(campaign), actor="svc")
    store.engine.dispose()
    sa.event.listen(store.engine, "connect", _short_busy_timeout)  # after the store's pragmas
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert store.life_cycle(first.name).state == "PROPOSED"
        with pytest.raises(StoreUnavailable):
            store.confirm_applied(first.name, actor="svc", apply_time=None)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.review(first.name, True, etag=first.etag, actor="ana", comment="")  # lock released
    store.close()


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=200")

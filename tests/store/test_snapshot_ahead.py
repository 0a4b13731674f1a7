"""A large snapshot is stored in a transaction of its own while the plan or assessment made from
it is computed (`SqlStore.snapshot_ahead`): the record then finds it stored, a failure to store
it fails the call, and a small one is left to the record's own transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from both_databases import database_url
from builders import build_snapshot, random_snapshot_spec
from call_context import CallContext
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.config import ServerConfig
from reallocator.server import servicer as servicer_module
from reallocator.server.servicer import ReallocatorServicer
from reallocator.store import sql
from reallocator.store.errors import StoreUnavailable
from reallocator.store.schema import snapshots
from reallocator.store.sql import SqlStore
from reallocator.v1 import assessment_pb2, plan_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire import plan as wire_plan


def _stored(store: SqlStore, campaign: str) -> list[str]:
    """The content hashes of the campaign's stored snapshots."""
    query = sa.select(snapshots.c.content_hash).where(snapshots.c.campaign_id == campaign)
    with store.engine.connect() as connection:
        return [str(r.content_hash) for r in connection.execute(query)]


@pytest.fixture(params=["sqlite", "postgresql"])
def servicer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReallocatorServicer]:
    store = SqlStore.open(database_url(request, tmp_path, "ahead"))
    yield ReallocatorServicer(ServerConfig(), store)
    store.close()


def test_a_large_snapshot_is_stored_before_its_record_and_once(
    servicer: ReallocatorServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "_STORED_AHEAD_FROM_BYTES", 1)  # every snapshot counts as large
    store = servicer.store
    snapshot = build_snapshot(random_snapshot_spec(30, 2), "arrow")
    snapshot.campaign_id = "ahead"
    data = snapshot.SerializeToString(deterministic=True)
    digest = hashlib.sha256(data).hexdigest()
    waited = store.snapshot_ahead("ahead", snapshot.as_of.ToMicroseconds(), data)
    assert waited() == digest and _stored(store, "ahead") == [digest]  # before any record
    assert store.latest_snapshot("ahead") == (data, snapshot.as_of.ToMicroseconds())
    writes: list[str] = []
    keep = SqlStore._store_snapshot

    def counted(self: SqlStore, tx: Any, found: str, *args: Any, **kwargs: Any) -> None:
        writes.append(found)
        keep(self, tx, found, *args, **kwargs)

    monkeypatch.setattr(SqlStore, "_store_snapshot", counted)
    plan = pb.ReplanResponse.FromString(
        servicer.replan(pb.ReplanRequest(snapshot=snapshot), CallContext()).data  # type: ignore[arg-type]
    ).plan
    assessed = pb.AssessPacingRequest(snapshot=snapshot, view=assessment_pb2.ASSESSMENT_VIEW_BASIC)
    servicer.assess_pacing(assessed, CallContext())  # type: ignore[arg-type]
    assert _stored(store, "ahead") == [digest]  # one row, whoever stored it
    assert writes == [digest] * 4  # ahead and in the record, for the plan and the assessment
    assert store.plan_inputs(plan.name).snapshot == data
    history, _ = store.pacing_history("ahead", alerts=False)
    assert len(history) == 2  # the plan's assessment and the AssessPacing call's


def test_a_snapshot_that_cannot_be_stored_fails_the_call(
    servicer: ReallocatorServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "_STORED_AHEAD_FROM_BYTES", 1)

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("the database went away")

    monkeypatch.setattr(SqlStore, "_store_snapshot", unavailable)
    snapshot = build_snapshot(random_snapshot_spec(30, 2), "arrow")
    snapshot.campaign_id = "ahead-failed"
    with pytest.raises(StoreUnavailable, match="went away"):
        servicer.replan(pb.ReplanRequest(snapshot=snapshot), CallContext())  # type: ignore[arg-type]
    assert servicer.store.list_plans(snapshot.campaign_id) == ([], "")  # nothing recorded


def test_a_small_snapshot_is_left_to_the_record(servicer: ReallocatorServicer) -> None:
    snapshot = build_snapshot(random_snapshot_spec(30, 2), "arrow")
    data = snapshot.SerializeToString(deterministic=True)
    assert len(data) < sql._STORED_AHEAD_FROM_BYTES
    waited = servicer.store.snapshot_ahead("small", snapshot.as_of.ToMicroseconds(), data)
    assert waited() == hashlib.sha256(data).hexdigest() and _stored(servicer.store, "small") == []


def test_concurrent_recorded_calls_on_their_threads_record_each_plan_once(
    servicer: ReallocatorServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots stored ahead and plans stored beside their encoding (both on threads, every
    call here), from several callers at once on one campaign: each call records its plan once
    (its retry answers the same plan), each newer plan supersedes the one before, and every
    plan reads back with its snapshot."""
    monkeypatch.setattr(sql, "_STORED_AHEAD_FROM_BYTES", 1)
    monkeypatch.setattr(servicer_module, "COLUMNAR_FROM", 10)
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 10)
    base = build_snapshot(random_snapshot_spec(40, 5), "arrow")
    base.campaign_id = "ahead-together"

    def calls(caller: int) -> list[tuple[str, str]]:
        names = []
        for i in range(3):
            request = pb.ReplanRequest(snapshot=base, request_id=f"c{caller}-{i}")
            request.snapshot.as_of.seconds += 60 * (3 * caller + i)  # a new snapshot each
            first = pb.ReplanResponse.FromString(servicer.replan(request, CallContext()).data)  # type: ignore[arg-type]
            again = pb.ReplanResponse.FromString(servicer.replan(request, CallContext()).data)  # type: ignore[arg-type]
            names.append((first.plan.name, again.plan.name))
        return names

    with ThreadPoolExecutor(max_workers=4) as pool:
        answered = [pair for names in pool.map(calls, range(4)) for pair in names]
    assert all(first == again for first, again in answered) and len(set(answered)) == 12
    plans, _ = servicer.store.list_plans("ahead-together", page_size=50)
    states = sorted(plan_pb2.PlanState.Name(p.state) for p in plans)
    assert states == ["PLAN_STATE_PROPOSED"] + ["PLAN_STATE_SUPERSEDED"] * 11
    for plan in plans:
        stored = servicer.store.plan_inputs(plan.name).snapshot
        assert snapshot_pb2.CampaignSnapshot.FromString(stored).campaign_id == "ahead-together"

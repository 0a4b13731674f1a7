"""The same store on both databases: SQLite and a real PostgreSQL server (started here, in a
temporary folder on a free port of 127.0.0.1, run as root through
the postgres user, and stopped afterwards). Without PostgreSQL's binaries the PostgreSQL case
skips, saying why; with REALLOCATOR_REQUIRE_POSTGRES=1 (CI) it fails instead."""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from both_databases import opened_store
from plans import applied_hourly, new_plan, with_requests
from throwaway_postgres import ThrowawayPostgres

from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import RequestHistory
from reallocator.lifecycle import PlanLifecycle
from reallocator.store.errors import AlreadyExists, NotFound, StaleEtag, WrongState
from reallocator.store.plan_codec import STORE_COMPRESS_FROM_BYTES
from reallocator.store.schema import (
    assessments,
    idempotency,
    metadata,
    plans,
    seller_requests,
    snapshots,
)
from reallocator.store.sql import NewPlan, SqlStore, content_hash
from reallocator.v1 import plan_pb2, snapshot_pb2
from reallocator.wire.plan import encode_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    server = ThrowawayPostgres()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    yield from opened_store(request, tmp_path)


def test_the_life_cycle_on_each_database(store: SqlStore) -> None:
    campaign = f"c-{os.getpid()}-{id(store)}"
    key = f"Replan:{campaign}:a"
    new = with_requests(campaign)
    first = store.record_plan(new, actor="svc", key=key, request_hash="h1")
    assert first.state == "PROPOSED" and not first.replayed
    assert store.find_key(key, "h1", campaign) == first.name
    assert store.record_plan(new, actor="svc", key=key, request_hash="h1").replayed
    with pytest.raises(AlreadyExists):
        store.find_key(key, "h2", campaign)
    with pytest.raises(StaleEtag):
        store.review(first.name, True, etag="stale", actor="ana", comment="")
    approved = store.review(first.name, True, etag=first.etag, actor="ana", comment="ok")
    with pytest.raises(WrongState):
        store.review(first.name, False, etag=approved.etag, actor="bo", comment="")
    assert store.confirm_applied(first.name, actor="svc", apply_time=None).state == "APPLIED"
    requests = list(new.msg.seller_requests)
    partial = plan_pb2.SELLER_RESPONSE_KIND_PARTIAL
    store.record_response(
        first.name, requests[1].request_id, response=partial, accepted_total=1_500, message="",
        response_time=None, actor="seller",
    )  # fmt: skip
    pending = plan_pb2.SELLER_RESPONSE_KIND_PENDING  # an acknowledgement: not yet an answer
    store.record_response(
        first.name, requests[0].request_id, response=pending, accepted_total=0, message="",
        response_time=None, actor="seller",
    )  # fmt: skip
    history = store.request_history(campaign).requests.set_index("deal_id")
    assert history.loc[requests[1].deal_id, "response"] == "PARTIAL"
    assert history.loc[requests[1].deal_id, "accepted_total"] == 1_500
    assert history.loc[requests[0].deal_id, "response"] == "PENDING"
    # When each seller answered (Policy.answer_time is read from it): now, for the PARTIAL.
    answered_at = history.loc[requests[1].deal_id, "answered_at"]
    assert abs(answered_at - time.time()) < 60
    assert answered_at >= history.loc[requests[1].deal_id, "requested_at"]
    assert np.isnan(history.loc[requests[0].deal_id, "answered_at"])
    second = store.record_plan(new_plan(campaign, approve=True), actor="svc")
    assert second.previous_plan == first.name and second.state == "APPROVED"
    plans, token = store.list_plans(campaign, page_size=1)
    assert [p.name for p in plans] == [second.name] and token
    more, last = store.list_plans(campaign, page_size=1, page_token=token)
    assert [p.name for p in more] == [first.name] and not last
    # A page is what GetPlan SUMMARY answers for each plan: life cycle, events and answers.
    page, _ = store.list_plans(campaign)
    assert page == [store.get_plan(p.name, "none") for p in page]
    assert [len(p.history) for p in page] == [1, 5]  # the two answers are events
    assert [r.response for r in page[1].seller_requests] == [
        plan_pb2.SELLER_RESPONSE_KIND_PENDING,
        partial,
    ]
    # The recorded plan's life cycle, as returned without reading it back, is the stored one.
    assert store.life_cycle(second.name) == replace(second, replayed=False)
    # APPLIED stays APPLIED: the newer plan does not supersede what was applied.
    assert store.get_plan(first.name).state == plan_pb2.PLAN_STATE_APPLIED
    answered = {r.request_id: r.response for r in store.get_plan(first.name).seller_requests}
    assert answered[requests[1].request_id] == partial
    with pytest.raises(NotFound):
        store.get_plan(f"campaigns/{campaign}/plans/0000")


def test_a_downgrade_and_upgrade_keep_the_records_on_each_database(store: SqlStore) -> None:
    """`db downgrade` then `db upgrade` (an older release in between) on both databases: the
    records stay, and the approval times come back from the approval events."""
    import sqlalchemy as sa

    campaign = f"down-{os.getpid()}-{id(store)}"
    first = store.record_plan(with_requests(campaign), actor="svc")
    store.review(first.name, True, etag=first.etag, actor="ana", comment="")
    store.record_plan(with_requests(campaign), actor="svc")  # supersedes the approved plan
    before = store.request_history(campaign).requests
    url = store.engine.url.render_as_string(hide_password=False)
    SqlStore.downgrade(url, "0004")
    with store.engine.connect() as connection:
        assert "approve_time" not in {
            c["name"] for c in sa.inspect(connection).get_columns("plans")
        }
    store.upgrade()
    assert store.request_history(campaign).requests.equals(before) and len(before)


def _long_history(store: SqlStore, campaign: str) -> NewPlan:
    """30 hourly plans asking up to 4 of the campaign's first 6 deals each (some plans at the
    same time), 70 % of them approved, their requests answered at random (FAILED too); the
    plan they were made from is returned."""
    rng = np.random.default_rng(7)
    base = with_requests(campaign, at_least=3)
    snapshot = snapshot_pb2.CampaignSnapshot.FromString(base.snapshot)
    deal_ids = [d.deal_id for d in snapshot.deals][:6]
    t0 = base.msg.as_of.ToMicroseconds()
    hour = 3_600_000_000
    answers = [
        None,
        plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED,
        plan_pb2.SELLER_RESPONSE_KIND_REJECTED,
        plan_pb2.SELLER_RESPONSE_KIND_PARTIAL,
        plan_pb2.SELLER_RESPONSE_KIND_FAILED,
    ]
    for k in range(30):
        msg = plan_pb2.Plan()
        msg.CopyFrom(base.msg)
        msg.as_of.FromMicroseconds(t0 + hour * int(k - (k % 4 == 1)))  # some plans tie
        del msg.seller_requests[4:]
        for r, deal in zip(msg.seller_requests, rng.permutation(len(deal_ids)), strict=False):
            r.deal_id = deal_ids[deal]
            r.kind = int(
                rng.choice([plan_pb2.REQUEST_KIND_INCREASE, plan_pb2.REQUEST_KIND_DECREASE])
            )
        lc = store.record_plan(replace(base, msg=msg), actor="svc")
        if rng.random() < 0.3:
            continue  # never approved: its requests never went out
        store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
        for r in msg.seller_requests:
            answer = answers[int(rng.integers(len(answers)))]
            if answer is not None:
                store.record_response(
                    lc.name, r.request_id, response=answer, accepted_total=5_000_000,
                    message="", response_time=None, actor="seller",
                )  # fmt: skip
    return base


def test_a_replan_reads_only_the_requests_that_decide_its_plan(store: SqlStore) -> None:
    """Per deal the last request sent and per deal and kind the last rejection: the same rows
    a plan reads of the whole history (`RequestHistory.deciding`), on both databases. Ties in
    time, FAILED answers (read as REJECTED) and plans never approved included; a plan older
    than the newest request sent reads them all (it decides what came before it)."""
    campaign = f"hist-{os.getpid()}-{id(store)}"
    _long_history(store, campaign)

    every = store.request_history(campaign).requests
    newest = round(every["requested_at"].max() * 1e6)
    read = store.request_history(campaign, before=newest + 1).requests
    at = every["requested_at"]
    rejected = every["response"] == "REJECTED"
    last = at == at.groupby(every["deal_id"]).transform("max")
    last_rejected = rejected & (
        at == at.where(rejected).groupby([every["deal_id"], every["kind"]]).transform("max")
    )
    expected = every[last | last_rejected]
    assert 0 < len(read) < len(every)
    unanswered = {"answered_at": -1.0}  # NaN: compares unequal to itself in a tuple
    assert sorted(map(tuple, read.fillna(unanswered).to_numpy().tolist())) == sorted(
        map(tuple, expected.fillna(unanswered).to_numpy().tolist())
    )
    decided = RequestHistory(requests=every).deciding().requests.reset_index(drop=True)
    assert RequestHistory(requests=read).deciding().requests.reset_index(drop=True).equals(decided)

    older = store.request_history(campaign, before=newest).requests  # the newest is not before
    assert older.reset_index(drop=True).equals(every.reset_index(drop=True))


def test_a_replan_is_supplied_the_deciding_requests_alone(store: SqlStore) -> None:
    """What the service hands the plan builder (`PlanLifecycle.supply`) from a long history:
    the deciding rows only, and the plan made from them is the plan made from all of them."""
    campaign = f"supply-{os.getpid()}-{id(store)}"
    base = _long_history(store, campaign)
    msg = snapshot_pb2.CampaignSnapshot.FromString(base.snapshot)
    msg.as_of.FromMicroseconds(base.msg.as_of.ToMicroseconds() + 31 * 3_600_000_000)
    errors = Violations()
    snapshot = decode_snapshot(msg, Policy(), errors)
    assert snapshot is not None, errors.items
    every = store.request_history(campaign)
    _, supplied_history, _ = PlanLifecycle(store).supply(snapshot)
    assert 0 < len(supplied_history.requests) < len(every.requests)
    expected = every.deciding().requests.reset_index(drop=True)
    assert supplied_history.deciding().requests.reset_index(drop=True).equals(expected)

    def plan(history: RequestHistory) -> bytes:
        made = encode_plan(build_plan(snapshot, history=history, text=True))
        made.ClearField("solver")  # its timings
        return made.SerializeToString(deterministic=True)

    assert plan(supplied_history) == plan(every)


def test_applied_plans_read_from_their_moved_rows_as_from_their_tables(store: SqlStore) -> None:
    """What later Replans read of applied plans (their moves, the last application) is the same
    from the moved rows kept since 0007 as from the whole deals table a plan stored before it
    has, on both databases."""
    campaign = f"moved-{os.getpid()}-{id(store)}"
    for _ in itertools.islice(applied_hourly(store, campaign, seed=3), 5):
        pass

    def read(store: SqlStore) -> tuple[pd.DataFrame, pd.DataFrame, str, float]:
        past = store.campaign_past(campaign, moves_since=0, application=True)
        assert past.application is not None
        name, at, table = past.application
        deals = table.to_pandas()
        moved = deals[deals["delta"] != 0].reset_index(drop=True)
        return past.history.moves, moved.astype({"pacing": str}), name, at

    kept = read(store)
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE plan_tables SET moved_table = NULL WHERE name IN "
                "(SELECT name FROM plans WHERE campaign_id = :c)"
            ),
            {"c": campaign},
        )
    before_0007 = read(SqlStore(store.engine))  # a process that has read none of them yet
    assert len(kept[0]) and len(kept[1])
    assert kept[0].equals(before_0007[0])
    assert kept[1].equals(before_0007[1])
    assert kept[2:] == before_0007[2:]


def test_the_newest_declared_inventory_per_deal(store: SqlStore) -> None:
    """Per deal the inventory of its newest answer that declared one (ties in answer time
    broken by plan and request), read through the partial index, on both databases."""
    campaign = f"declared-{os.getpid()}-{id(store)}"
    base = with_requests(campaign, at_least=3)
    rng = np.random.default_rng(11)
    t0 = base.msg.as_of.ToMicroseconds()
    for k in range(12):
        msg = plan_pb2.Plan()
        msg.CopyFrom(base.msg)
        msg.as_of.FromMicroseconds(t0 + k * 3_600_000_000)
        lc = store.record_plan(replace(base, msg=msg), actor="svc")
        store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
        for r in msg.seller_requests:
            store.record_response(
                lc.name, r.request_id, response=plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED,
                accepted_total=0, message="", actor="seller",
                response_time=t0 + int(rng.integers(0, 6)) * 60_000_000,  # ties
                available_inventory=(
                    int(rng.integers(0, 10**9)) if rng.random() < 0.7 else None
                ),
            )  # fmt: skip
    query = sa.text(
        "SELECT deal_id, available_inventory, response_time, plan_name, request_id "
        "FROM seller_requests WHERE campaign_id = :c AND available_inventory IS NOT NULL"
    )
    with store.engine.connect() as connection:
        rows = pd.DataFrame(connection.execute(query, {"c": campaign}).all())
    newest = rows.sort_values(["response_time", "plan_name", "request_id"]).drop_duplicates(
        "deal_id", keep="last"
    )
    expected = newest.set_index("deal_id")["available_inventory"].astype("int64").sort_index()
    got = store.declared_inventory(campaign).sort_index()
    assert len(got) > 1 and len(rows) > len(got)
    assert got.to_dict() == expected.to_dict()


def test_the_migrations_make_the_tables_schema_py_describes(store: SqlStore) -> None:
    """A store migrated to the newest revision has the tables, columns and indexes (partial
    ones included) that schema.py declares, on both databases: a migration and the schema
    cannot drift apart."""
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_a_recorded_snapshot_and_request_id_read_back_as_written(store: SqlStore) -> None:
    """The rows recording writes with its INSERT ... ON CONFLICT DO NOTHING statements (built
    once per store, values as parameters): each new snapshot once, its bytes back as sent
    (stored plain under 4 KB, compressed above), and the request id's row (hash, plan, time)."""
    campaign = f"c-{os.getpid()}-{id(store)}-snap"
    small = replace(new_plan(campaign), snapshot=b"a small snapshot")
    large = new_plan(campaign, seed=2)
    assert len(large.snapshot) > 4096
    before = time.time_ns() // 1000
    names = [
        store.record_plan(new, actor="svc", key=f"Replan:{campaign}:{i}", request_hash=f"h{i}").name
        for i, new in enumerate((small, large, large))
    ]
    assert [store.plan_inputs(name).snapshot for name in names] == [
        small.snapshot, large.snapshot, large.snapshot
    ]  # fmt: skip
    with store.engine.connect() as connection:
        copies = connection.execute(
            sa.select(snapshots.c.size).where(snapshots.c.campaign_id == campaign)
        ).all()
        keys = connection.execute(
            sa.select(idempotency).where(idempotency.c.key.startswith(f"Replan:{campaign}:"))
        ).all()
    assert sorted(size for (size,) in copies) == sorted([len(small.snapshot), len(large.snapshot)])
    assert sorted((k.key, k.request_hash, k.result) for k in keys) == [
        (f"Replan:{campaign}:{i}", f"h{i}", name) for i, name in enumerate(names)
    ]
    assert all(before <= k.create_time <= time.time_ns() // 1000 for k in keys)


def test_a_snapshot_hashed_by_the_caller_is_the_one_the_store_hashes(store: SqlStore) -> None:
    """`content_hash` (inline below 1 MB, on a thread above) is the key the store computes
    itself: a plan recorded with it shares the stored snapshot of one recorded without."""
    large = bytes(range(256)) * 5000  # 1.28 MB: hashed on a thread
    assert content_hash(large)() == hashlib.sha256(large).hexdigest()
    campaign = f"c-{os.getpid()}-{id(store)}-hash"
    plain = new_plan(campaign)
    hashed = replace(plain, snapshot_hash=content_hash(plain.snapshot)())
    names = [store.record_plan(new, actor="svc").name for new in (plain, hashed)]
    assert [store.plan_inputs(name).snapshot for name in names] == [plain.snapshot] * 2
    with store.engine.connect() as connection:
        stored = connection.execute(
            sa.select(snapshots.c.content_hash).where(snapshots.c.campaign_id == campaign)
        ).all()
    assert stored == [(hashlib.sha256(plain.snapshot).hexdigest(),)]


def test_recording_supersedes_every_open_plan_of_its_campaign_only(store: SqlStore) -> None:
    """The one read before recording (snapshot known, last plan, open plans) with no plan, one,
    and two open plans (the last plan's name and seq on each of their rows): each open plan of
    the campaign is superseded, the last one is the previous plan, other campaigns' plans and
    plans no longer open are left as they are."""
    campaign = f"c-{os.getpid()}-{id(store)}-open"
    other = store.record_plan(new_plan(f"{campaign}-other"), actor="svc")
    first = store.record_plan(new_plan(campaign), actor="svc")
    assert first.previous_plan == ""
    second = store.record_plan(new_plan(campaign, seed=2), actor="svc")
    rejected = store.record_plan(new_plan(campaign, seed=3), actor="svc")
    with store.engine.begin() as connection:  # two open plans, one closed (not by the store)
        for name, state in ((first.name, "APPROVED"), (rejected.name, "REJECTED")):
            connection.execute(plans.update().where(plans.c.name == name).values(state=state))
    third = store.record_plan(new_plan(campaign, seed=4), actor="svc")
    assert third.previous_plan == rejected.name
    assert [store.life_cycle(p.name).state for p in (first, second, rejected, third, other)] == [
        "SUPERSEDED", "SUPERSEDED", "REJECTED", "PROPOSED", "PROPOSED"
    ]  # fmt: skip
    assert [e[2:] for e in store.life_cycle(first.name).events] == [
        ("PROPOSED", "created by Replan"),
        ("SUPERSEDED", f"replaced by {second.name}"),
        ("SUPERSEDED", f"replaced by {third.name}"),
    ]


def test_recording_supersedes_the_open_plans_and_keeps_the_assessment(store: SqlStore) -> None:
    """What recording a plan writes in its few statements: the snapshot once per content, the
    last plan as the previous one, the open plan superseded (a new etag, its event before the
    new plan's), and the assessment read back byte for byte, stored as it is below
    STORE_COMPRESS_FROM_BYTES and compressed from there."""
    campaign = f"c-{os.getpid()}-{id(store)}-rec"
    small = bytes(range(256)) * 40  # 10 KB
    large = b"pacing " * (STORE_COMPRESS_FROM_BYTES // 6)  # 64 KiB and more, compressible
    first = store.record_plan(new_plan(campaign), actor="svc")
    second = store.record_plan(new_plan(campaign, assessment=small), actor="svc")
    third = store.record_plan(new_plan(campaign, assessment=large), actor="ana")
    assert (second.previous_plan, third.previous_plan) == (first.name, second.name)
    for old, by, actor in ((first, second, "svc"), (second, third, "ana")):
        now = store.life_cycle(old.name)
        assert now.state == "SUPERSEDED" and now.etag != old.etag
        assert [e[1:] for e in now.events] == [
            ("svc", "PROPOSED", "created by Replan"),
            (actor, "SUPERSEDED", f"replaced by {by.name}"),
        ]
    assert store.life_cycle(third.name).state == "PROPOSED"
    rows, _ = store.pacing_history(campaign)
    assert [(payload, plan) for _, payload, plan, _ in rows] == [
        (small, second.name),
        (large, third.name),
    ]
    with store.engine.connect() as connection:
        stored = connection.execute(
            sa.select(assessments.c.payload)
            .where(assessments.c.campaign_id == campaign)
            .order_by(assessments.c.id)
        ).all()
        copies = connection.execute(
            sa.select(sa.func.count()).where(snapshots.c.campaign_id == campaign)
        ).scalar()
    assert bytes(stored[0].payload) == small and len(stored[1].payload) < len(large) // 10
    assert copies == 1


def test_a_recorded_assessment_reads_back_as_written(store: SqlStore) -> None:
    """AssessPacing's rows (its INSERT built once, values as parameters): the snapshot once per
    content, each assessment's columns as given and its bytes back as sent (stored plain below
    STORE_COMPRESS_FROM_BYTES, compressed from there)."""
    campaign = f"c-{os.getpid()}-{id(store)}-assess"
    small = bytes(range(256)) * 40
    large = b"pacing " * (STORE_COMPRESS_FROM_BYTES // 6)
    snapshot = new_plan(campaign).snapshot
    for as_of, payload, severity, actor in ((5, small, 0, "svc"), (7, large, 3, "ana")):
        store.record_assessment(
            campaign, as_of, snapshot=snapshot, assessment=payload, severity=severity, actor=actor
        )
    rows, _ = store.pacing_history(campaign)
    assert [(payload, plan, state) for _, payload, plan, state in rows] == [
        (small, "", ""),
        (large, "", ""),
    ]
    with store.engine.connect() as connection:
        stored = connection.execute(
            sa.select(
                assessments.c.as_of, assessments.c.snapshot_hash, assessments.c.plan_name,
                assessments.c.actor, assessments.c.max_severity, assessments.c.size,
            ).where(assessments.c.campaign_id == campaign).order_by(assessments.c.id)
        ).all()  # fmt: skip
        copies = connection.execute(
            sa.select(snapshots.c.content_hash).where(snapshots.c.campaign_id == campaign)
        ).all()
    assert [tuple(r) for r in stored] == [
        (5, copies[0].content_hash, "", "svc", 0, len(small)),
        (7, copies[0].content_hash, "", "ana", 3, len(large)),
    ]
    assert len(copies) == 1


def test_the_life_cycle_writes_and_reads_back_its_rows(store: SqlStore) -> None:
    """The life-cycle statements built once, values as parameters: the seller requests a plan
    records, the answer's columns, approve and apply times and events as written; ListPlans with
    each filter (state, times, page token) as the same filter over all the campaign's plans."""
    campaign = f"c-{os.getpid()}-{id(store)}-life"
    new = with_requests(campaign)
    first = store.record_plan(new, actor="svc")
    asked = list(new.msg.seller_requests)
    approved = store.review(first.name, True, etag=first.etag, actor="ana", comment="ok")
    with pytest.raises(StaleEtag):
        store.confirm_applied(first.name, actor="svc", apply_time=None, etag="stale")
    applied = store.confirm_applied(first.name, actor="svc", apply_time=1_234, etag=approved.etag)
    store.record_response(
        first.name, asked[0].request_id, response=plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED,
        accepted_total=77, message="fine", response_time=99, actor="seller",
        available_inventory=500,
    )  # fmt: skip
    with pytest.raises(NotFound):
        store.record_response(
            first.name, "no-such-request", response=plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED,
            accepted_total=0, message="", response_time=None, actor="seller",
        )  # fmt: skip
    with store.engine.connect() as connection:
        requests = connection.execute(
            sa.select(seller_requests).where(seller_requests.c.plan_name == first.name)
        ).all()
        row = connection.execute(
            sa.select(plans.c.state, plans.c.approve_time, plans.c.apply_time, plans.c.etag).where(
                plans.c.name == first.name
            )
        ).one()
    as_of = new.msg.as_of.ToMicroseconds()
    kind = {r.request_id: plan_pb2.RequestKind.Name(r.kind)[13:] for r in asked}
    assert sorted(
        (r.request_id, r.campaign_id, r.deal_id, r.kind, r.target_total, r.requested_at, r.sent)
        for r in requests
    ) == sorted(
        (r.request_id, campaign, r.deal_id, kind[r.request_id], r.target_total, as_of, True)
        for r in asked
    )
    answers = {
        r.request_id: (r.response, r.accepted_total, r.response_time, r.message, r.actor,
                       r.available_inventory)
        for r in requests
    }  # fmt: skip
    assert answers[asked[0].request_id] == ("ACCEPTED", 77, 99, "fine", "seller", 500)
    assert answers[asked[1].request_id] == ("PENDING", 0, 0, "", "", None)
    assert (row.state, row.apply_time, row.etag) == ("APPLIED", 1_234, applied.etag)
    assert row.approve_time == approved.events[-1][0]
    assert [e[2:] for e in store.life_cycle(first.name).events] == [
        ("PROPOSED", "created by Replan"),
        ("APPROVED", "ok"),
        ("APPLIED", "applied at 1970-01-01T00:00:00.001234+00:00"),
        ("", f"seller answered {asked[0].request_id}: ACCEPTED"),
    ]
    later = [store.record_plan(new_plan(campaign, seed=s), actor="svc") for s in (2, 3, 4)]
    every, _ = store.list_plans(campaign)
    assert [p.name for p in every] == [p.name for p in (*reversed(later), first)]
    state = plan_pb2.PLAN_STATE_SUPERSEDED
    middle = every[2].create_time.ToMicroseconds()
    cases = [
        ({"state": "SUPERSEDED"}, [p for p in every if p.state == state]),
        ({"start": middle}, [p for p in every if p.create_time.ToMicroseconds() >= middle]),
        ({"end": middle}, [p for p in every if p.create_time.ToMicroseconds() < middle]),
        ({"state": "SUPERSEDED", "start": middle, "end": middle + 1}, [every[2]]),
    ]
    for asked_for, expected in cases:
        assert store.list_plans(campaign, **asked_for)[0] == expected, asked_for
    pages, token = [], ""
    while True:
        page, token = store.list_plans(campaign, page_size=2, page_token=token)
        pages.append(page)
        if not token:
            break
    assert pages == [every[:2], every[2:]]
    assert store.get_plan(first.name, "none") == every[3]
    with pytest.raises(NotFound):
        store.get_plan(f"campaigns/{campaign}/plans/0000", "none")


def test_a_watch_reads_the_events_and_assessments_after_its_cursor(store: SqlStore) -> None:
    """What WatchCampaign polls (its selects built once, values as parameters): the campaign's
    plan events and assessments after the cursor, oldest first, an assessment's bytes only when
    its alerts are at least `min_severity`; none of another campaign's."""
    campaign = f"c-{os.getpid()}-{id(store)}-watch"
    first = store.record_plan(new_plan(campaign), actor="svc")
    store.record_assessment(campaign, 1, snapshot=b"s", assessment=b"old", severity=3, actor="a")
    cursor = store.cursor(campaign)
    assert cursor[0] > 0 and cursor[1] > 0
    assert store.events_after(campaign, cursor) == ([], [])
    plan = store.record_plan(new_plan(campaign, seed=2), actor="svc")
    store.record_plan(new_plan(f"{campaign}-other"), actor="svc")
    for payload, severity in ((b"low", 1), (b"high", 3)):
        store.record_assessment(
            campaign, 2, snapshot=b"s", assessment=payload, severity=severity, actor="a"
        )
    events, assessed = store.events_after(campaign, cursor, min_severity=2)
    assert [e[1:] for e in events] == [  # the first plan superseded, then the new one
        (plan.create_time, first.name),
        (plan.create_time, plan.name),
    ]
    assert [payload for _, _, payload in assessed] == [b"", b"high"]
    assert all(i > cursor[1] for i, _, _ in assessed) and all(e[0] > cursor[0] for e in events)


def test_a_replan_reads_the_plans_applied_or_rolled_back_since_its_window(
    store: SqlStore,
) -> None:
    """The applied plans a Replan reads (their select built once, values as parameters): those
    APPLIED or ROLLED_BACK with as_of from `applied_since` on, oldest first, whole deals tables;
    not a plan applied before, one never applied, nor another campaign's."""
    campaign = f"window-{os.getpid()}-{id(store)}"
    t0 = new_plan(campaign).msg.as_of.ToMicroseconds()
    hour = 3_600_000_000
    names = []
    for k, target in enumerate((campaign, campaign, campaign, f"{campaign}-other", campaign)):
        new = new_plan(target, n=20, seed=k + 3)
        new.msg.as_of.FromMicroseconds(t0 + k * hour)
        lc = store.record_plan(new, actor="svc")
        names.append(lc.name)
        if k < 4:
            store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
            store.confirm_applied(lc.name, actor="ana", apply_time=t0 + k * hour + 60)
    with store.engine.begin() as connection:  # the second one rolled back (not by the store)
        connection.execute(
            plans.update().where(plans.c.name == names[1]).values(state="ROLLED_BACK")
        )
    past = store.campaign_past(campaign, applied_since=t0 + hour)
    assert [at for at, _ in past.applied] == [(t0 + hour) / 1e6, (t0 + 2 * hour) / 1e6]
    assert [len(deals) for _, deals in past.applied] == [20, 20]
    assert list(past.applied[0][1].columns) == ["deal_id", "delta", "delivered", "old_allocation"]
    assert store.campaign_past(campaign, applied_since=t0 + 3 * hour).applied == []

"""One campaign's whole life over a real gRPC channel, on SQLite and on a real PostgreSQL server:
replan -> partial review (a revision with the rejected move pinned) -> apply -> seller answers ->
replan (the stored answers change the plan) -> rollback, a watch seeing it live, and the history
read back (plans, states, pacing verdicts)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from both_databases import database_url
from conftest import rpc_error
from google.protobuf import json_format
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.config import load_config
from reallocator.server.app import start_server
from reallocator.v1 import common_pb2, plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
LIFE_CYCLE = ("name", "state", "etag", "create_time", "history", "previous_plan")


@pytest.fixture(params=["sqlite", "postgresql"])
def life_stub(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[rpc.ReallocatorServiceStub]:
    url = database_url(request, tmp_path, "life")
    config = load_config(env={}, port=0, host="127.0.0.1", database_url=url)
    config = config.__class__(**{**config.__dict__, "watch_poll": timedelta(seconds=0.1)})
    running = start_server(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            yield rpc.ReallocatorServiceStub(channel)
    finally:
        running.stop(grace=0)


def _request(campaign: str) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    request.snapshot.campaign_id = campaign
    # The display deal worth more than the stalled audio deal (1.2 against 0.9), so the plan
    # moves all three deals: a revision with one move rejected still moves the other two.
    for deal in request.snapshot.deals:
        if deal.deal_id == "display-pd-002":
            deal.value_per_unit = 1.2
    return request


def _cleared(plan: plan_pb2.Plan, *also: str) -> bytes:
    out = plan_pb2.Plan()
    out.CopyFrom(plan)
    for field in (*LIFE_CYCLE, *also):
        out.ClearField(field)  # type: ignore[arg-type]
    return out.SerializeToString(deterministic=True)


def test_a_campaign_through_its_whole_life(life_stub: rpc.ReallocatorServiceStub) -> None:
    stub = life_stub
    campaign = "flow"
    first_request = _request(campaign)
    booked = {d.deal_id: d.allocation for d in first_request.snapshot.deals}

    # 1. Replan records the plan; GetPlan reads back the very message, in every view.
    first = stub.Replan(first_request, timeout=60).plan
    assert first.state == plan_pb2.PLAN_STATE_PROPOSED
    got = stub.GetPlan(pb.GetPlanRequest(name=first.name), timeout=10).plan
    assert _cleared(got) == _cleared(first)
    for view in (pb.PLAN_VIEW_SUMMARY, pb.PLAN_VIEW_CHANGES, pb.PLAN_VIEW_TABLE):
        asked = _request(campaign)
        asked.view = view
        asked.dry_run = True
        fresh = stub.Replan(asked, timeout=60).plan
        read = stub.GetPlan(pb.GetPlanRequest(name=first.name, view=view), timeout=10).plan
        # the same plan computed again (its solver timings apart) is the stored one
        assert _cleared(read, "solver") == _cleared(fresh, "solver"), view

    # 2. A partial review: one move rejected -> a revision with that deal pinned.
    asked_of = {r.deal_id for r in first.seller_requests}
    moved = sorted((d for d in first.deals if d.delta != 0), key=lambda d: d.deal_id in asked_of)
    assert len(moved) >= 2, "the example should move at least two deals"
    rejected = moved[0].deal_id
    review = pb.ReviewPlanRequest(
        name=first.name,
        etag=first.etag,
        reviewer="ana",
        comment="keep the CTV deal",
        request_id="review-1",
        deal_decisions=[
            pb.DealDecision(deal_id=rejected, decision=pb.REVIEW_DECISION_REJECT),
            pb.DealDecision(deal_id=moved[1].deal_id, decision=pb.REVIEW_DECISION_APPROVE),
        ],
    )
    revision = stub.ReviewPlan(review, timeout=60).plan
    assert revision.previous_plan == first.name and revision.name != first.name
    assert rejected not in [d.deal_id for d in revision.deals if d.delta != 0]
    again = stub.ReviewPlan(review, timeout=60).plan  # a retry: the same revision
    assert again.name == revision.name
    assert (
        stub.GetPlan(pb.GetPlanRequest(name=first.name), timeout=10).plan.state
        == plan_pb2.PLAN_STATE_SUPERSEDED
    )
    if revision.state == plan_pb2.PLAN_STATE_PROPOSED:
        revision = stub.ReviewPlan(
            pb.ReviewPlanRequest(
                name=revision.name, etag=revision.etag, decision=pb.REVIEW_DECISION_APPROVE
            ),
            timeout=10,
        ).plan
    assert revision.state == plan_pb2.PLAN_STATE_APPROVED

    # 3. Applied.
    applied = stub.ConfirmApplied(
        pb.ConfirmAppliedRequest(name=revision.name, etag=revision.etag, request_id="apply-1"),
        timeout=10,
    ).plan
    assert applied.state == plan_pb2.PLAN_STATE_APPLIED
    full = stub.GetPlan(pb.GetPlanRequest(name=revision.name), timeout=10).plan

    # 4. The seller declines what it was asked.
    increases = list(full.seller_requests)
    assert increases, "the revision should ask a seller for a change"
    for r in increases:
        stub.RecordSellerResponse(
            pb.RecordSellerResponseRequest(
                plan=revision.name,
                request_id=r.request_id,
                response=plan_pb2.SELLER_RESPONSE_KIND_REJECTED,
                message="sold out",
            ),
            timeout=10,
        )

    # 5. The next snapshot, an hour later, carries the revision's allocations; the stored
    # answers change the plan: compared with the same call for a campaign with no history.
    later = _request(campaign)
    later.snapshot.as_of.seconds += 3600
    totals = {d.deal_id: d.new_total for d in full.deals}
    for d in later.snapshot.deals:
        d.allocation = totals[d.deal_id]
    watched: list[pb.WatchCampaignResponse] = []
    watch = stub.WatchCampaign(
        pb.WatchCampaignRequest(campaign_id=campaign, include_plans=True), timeout=60
    )
    reader = threading.Thread(target=lambda: _collect(watch, watched), daemon=True)
    reader.start()
    second = stub.Replan(later, timeout=60).plan
    stranger = pb.ReplanRequest()
    stranger.CopyFrom(later)
    stranger.snapshot.campaign_id = "flow-without-history"
    stranger.dry_run = True
    fresh = stub.Replan(stranger, timeout=60).plan
    declined = {(r.deal_id, r.kind) for r in increases}
    asked = {(r.deal_id, r.kind) for r in second.seller_requests}
    asked_fresh = {(r.deal_id, r.kind) for r in fresh.seller_requests}
    assert declined & asked_fresh, "without history the declined requests are asked again"
    assert not declined & asked, "a declined request was asked again within the cooldown"

    # 6. Roll the applied revision back: the deals it moved return to what they held before.
    rolled = stub.RollbackPlan(
        pb.RollbackPlanRequest(name=revision.name, reason="CTV underdelivers", request_id="rb-1"),
        timeout=60,
    )
    assert rolled.plan.state == plan_pb2.PLAN_STATE_ROLLED_BACK
    assert rolled.rollback.state == plan_pb2.PLAN_STATE_APPROVED
    assert rolled.rollback.previous_plan == revision.name
    moved_by_revision = {d.deal_id for d in full.deals if d.delta != 0}
    assert moved_by_revision and rejected not in moved_by_revision
    assert {d.deal_id for d in rolled.restored} == moved_by_revision
    for d in rolled.restored:
        assert d.new_total == booked[d.deal_id], d.deal_id
        assert d.reason == plan_pb2.REASON_CODE_ROLLBACK and "rolled-back plan" in d.rationale
    retry = stub.RollbackPlan(
        pb.RollbackPlanRequest(name=revision.name, reason="CTV underdelivers", request_id="rb-1"),
        timeout=60,
    )
    assert retry.rollback.name == rolled.rollback.name
    twice = rpc_error(
        lambda: stub.RollbackPlan(pb.RollbackPlanRequest(name=revision.name), timeout=60)
    )
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION

    # 7. The watch saw the new plans and the state changes, live. It sends a poll's plans one
    # message at a time, newest first: wait for every change the test looks for, not for the
    # first of them (the rollback's plan arrives before the rolled-back one's new state).
    reader.join(timeout=0.1)
    wanted = {
        (rolled.rollback.name, plan_pb2.PLAN_STATE_APPROVED),
        (revision.name, plan_pb2.PLAN_STATE_ROLLED_BACK),
    }
    deadline = 50
    while deadline and not (
        wanted <= {(w.plan.name, w.plan.state) for w in watched if w.HasField("plan")}
        and second.name in {w.plan.name for w in watched if w.HasField("plan")}
    ):
        threading.Event().wait(0.1)
        deadline -= 1
    watch.cancel()
    seen = {(w.plan.name, w.plan.state) for w in watched if w.HasField("plan")}
    assert (rolled.rollback.name, plan_pb2.PLAN_STATE_APPROVED) in seen
    assert (revision.name, plan_pb2.PLAN_STATE_ROLLED_BACK) in seen

    # 8. The history reads back: every plan and its state, and the pacing verdicts.
    listed = stub.ListPlans(pb.ListPlansRequest(parent=f"campaigns/{campaign}"), timeout=10)
    states = {p.name: p.state for p in listed.plans}
    assert states == {
        first.name: plan_pb2.PLAN_STATE_SUPERSEDED,
        revision.name: plan_pb2.PLAN_STATE_ROLLED_BACK,
        second.name: plan_pb2.PLAN_STATE_SUPERSEDED,
        rolled.rollback.name: plan_pb2.PLAN_STATE_APPROVED,
    }
    assert all(not p.deals for p in listed.plans)  # summaries
    history = stub.GetPacingHistory(pb.GetPacingHistoryRequest(campaign_id=campaign), timeout=10)
    assert [p.plan for p in history.points] == [first.name, second.name]
    assert history.points[1].as_of.seconds == history.points[0].as_of.seconds + 3600
    assert history.points[0].verdict.entity.kind == common_pb2.ENTITY_KIND_CAMPAIGN
    ctv = stub.GetPacingHistory(
        pb.GetPacingHistoryRequest(
            campaign_id=campaign,
            entity=common_pb2.EntityRef(kind=common_pb2.ENTITY_KIND_CHANNEL, id="ctv"),
        ),
        timeout=10,
    )
    assert len(ctv.points) == 2 and {p.verdict.entity.id for p in ctv.points} == {"ctv"}
    paged = stub.GetPacingHistory(
        pb.GetPacingHistoryRequest(campaign_id=campaign, page_size=1), timeout=10
    )
    assert [p.plan for p in paged.points] == [first.name] and paged.next_page_token
    events = [e.state for e in stub.GetPlan(
        pb.GetPlanRequest(name=revision.name, view=pb.PLAN_VIEW_SUMMARY), timeout=10
    ).plan.history if e.state]  # fmt: skip
    assert events == [
        plan_pb2.PLAN_STATE_PROPOSED,
        plan_pb2.PLAN_STATE_APPROVED,
        plan_pb2.PLAN_STATE_APPLIED,
        plan_pb2.PLAN_STATE_ROLLED_BACK,
    ] or events == [
        plan_pb2.PLAN_STATE_APPROVED,
        plan_pb2.PLAN_STATE_APPLIED,
        plan_pb2.PLAN_STATE_ROLLED_BACK,
    ]


def _collect(
    stream: Iterator[pb.WatchCampaignResponse], out: list[pb.WatchCampaignResponse]
) -> None:
    try:
        for item in stream:
            out.append(item)
    except grpc.RpcError:
        pass

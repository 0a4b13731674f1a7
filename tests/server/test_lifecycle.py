"""The plan life cycle over a real gRPC channel, on SQLite and on a real PostgreSQL server:
replan -> review -> apply -> seller response -> replan (the stored answer changes the plan)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from conftest import MIB, rpc_error
from google.protobuf import json_format

from reallocator.config import load_config
from reallocator.server.app import start_server
from reallocator.server.identity import ACTOR_HEADER
from reallocator.v1 import common_pb2, plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
LIFE_CYCLE_FIELDS = ("name", "state", "etag", "previous_plan", "create_time", "history")


def example(**fields: object) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    for key, value in fields.items():
        setattr(request, key, value)
    return request


@pytest.fixture
def life_stub(database_url: str) -> Iterator[rpc.ReallocatorServiceStub]:
    """A server of its own on a fresh database of each kind."""
    config = load_config(env={}, port=0, host="127.0.0.1", database_url=database_url)
    running = start_server(config)
    options = [("grpc.max_receive_message_length", 128 * MIB)]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}", options=options) as channel:
            yield rpc.ReallocatorServiceStub(channel)
    finally:
        running.stop(grace=0)


def without_life_cycle(plan: plan_pb2.Plan) -> bytes:
    copy = plan_pb2.Plan()
    copy.CopyFrom(plan)
    for name in LIFE_CYCLE_FIELDS:
        copy.ClearField(name)
    copy.solver.ClearField("total_duration")
    return copy.SerializeToString(deterministic=True)


def test_replan_review_apply_answer_replan(life_stub: rpc.ReallocatorServiceStub) -> None:
    stub = life_stub
    who = ((ACTOR_HEADER, "planner-bot"),)
    first = stub.Replan(example(request_id="r-1"), timeout=60, metadata=who).plan
    assert first.name.startswith("campaigns/acme-holiday-2026/plans/")
    assert first.state == plan_pb2.PLAN_STATE_PROPOSED  # CRITICAL: waits for a person
    assert first.etag and [e.actor for e in first.history] == ["planner-bot"]
    [asked] = first.seller_requests

    # GetPlan reads back what Replan returned, byte for byte apart from the life-cycle fields
    got = stub.GetPlan(pb.GetPlanRequest(name=first.name), timeout=30).plan
    assert without_life_cycle(got) == without_life_cycle(first)
    assert (got.name, got.etag, got.state) == (first.name, first.etag, first.state)
    summary = stub.GetPlan(
        pb.GetPlanRequest(name=first.name, view=pb.PLAN_VIEW_SUMMARY), timeout=30
    ).plan
    assert not summary.deals and summary.allocated == first.allocated

    # a retried Replan returns the stored plan without recording twice
    again = stub.Replan(example(request_id="r-1", view=pb.PLAN_VIEW_SUMMARY), timeout=60).plan
    assert (again.name, again.etag) == (first.name, first.etag)
    listed = stub.ListPlans(pb.ListPlansRequest(parent="campaigns/acme-holiday-2026"), timeout=30)
    assert [p.name for p in listed.plans] == [first.name]
    # the same id with a different body
    other = example(request_id="r-1", on_infeasible=pb.INFEASIBILITY_HANDLING_RELAX)
    error = rpc_error(lambda: stub.Replan(other, timeout=60))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "r-1" in (error.details() or "")

    reviewer = ((ACTOR_HEADER, "alice"),)
    approve = pb.ReviewPlanRequest(
        name=first.name, decision=pb.REVIEW_DECISION_APPROVE, etag=first.etag, comment="fine"
    )
    approved = stub.ReviewPlan(approve, timeout=30, metadata=reviewer).plan
    assert approved.state == plan_pb2.PLAN_STATE_APPROVED and approved.etag != first.etag
    stale = rpc_error(lambda: stub.ReviewPlan(approve, timeout=30))  # first.etag is stale now
    assert stale.code() == grpc.StatusCode.ABORTED
    applied = stub.ConfirmApplied(
        pb.ConfirmAppliedRequest(name=first.name, etag=approved.etag), timeout=30
    ).plan
    assert applied.state == plan_pb2.PLAN_STATE_APPLIED
    assert [(e.actor, e.state) for e in applied.history][1:] == [
        ("alice", plan_pb2.PLAN_STATE_APPROVED),
        ("anonymous", plan_pb2.PLAN_STATE_APPLIED),
    ]
    twice = rpc_error(
        lambda: stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=first.name), timeout=30)
    )
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION

    answer = stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=first.name,
            request_id=asked.request_id,
            response=plan_pb2.SELLER_RESPONSE_KIND_PARTIAL,
            accepted_total=asked.target_total - 4_900_000_000,
            message="can do 12k",
        ),
        timeout=30,
    ).request
    assert answer.response == plan_pb2.SELLER_RESPONSE_KIND_PARTIAL

    # an hour later: the stored PARTIAL answer caps the new request (the caller sends no history)
    later = example(request_id="r-2")
    later.snapshot.as_of.FromDatetime(later.snapshot.as_of.ToDatetime() + timedelta(hours=1))
    dry = example(dry_run=True)
    dry.snapshot.CopyFrom(later.snapshot)
    [blind] = stub.Replan(dry, timeout=60).plan.seller_requests
    second = stub.Replan(later, timeout=60).plan
    [capped] = second.seller_requests
    assert blind.target_total == asked.target_total
    assert capped.target_total == asked.target_total - 4_900_000_000
    assert second.previous_plan == first.name
    assert stub.GetPlan(pb.GetPlanRequest(name=first.name), timeout=30).plan.state == (
        plan_pb2.PLAN_STATE_APPLIED  # applied plans are not superseded
    )

    page = stub.ListPlans(
        pb.ListPlansRequest(parent="campaigns/acme-holiday-2026", page_size=1), timeout=30
    )
    assert [p.name for p in page.plans] == [second.name] and page.next_page_token
    rest = stub.ListPlans(
        pb.ListPlansRequest(
            parent="campaigns/acme-holiday-2026", page_size=1, page_token=page.next_page_token
        ),
        timeout=30,
    )
    assert [p.name for p in rest.plans] == [first.name] and not rest.next_page_token
    applied_only = stub.ListPlans(
        pb.ListPlansRequest(
            parent="campaigns/acme-holiday-2026", state=plan_pb2.PLAN_STATE_APPLIED
        ),
        timeout=30,
    )
    assert [p.name for p in applied_only.plans] == [first.name]

    rolled = stub.RollbackPlan(
        pb.RollbackPlanRequest(name=first.name, reason="delivery fell"), timeout=30
    )
    assert rolled.plan.state == plan_pb2.PLAN_STATE_ROLLED_BACK
    assert rolled.plan.history[-1].comment == "delivery fell"
    moved = {d.deal_id: d for d in first.deals if d.delta}
    assert {d.deal_id for d in rolled.restored} == set(moved) and moved
    for d in rolled.restored:
        assert (d.old_allocation, d.new_allocation) == (
            moved[d.deal_id].new_allocation,
            moved[d.deal_id].old_allocation,
        )
    again = rpc_error(lambda: stub.RollbackPlan(pb.RollbackPlanRequest(name=first.name)))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    wrong = rpc_error(
        lambda: stub.ListPlans(
            pb.ListPlansRequest(parent="campaigns/other", page_token=page.next_page_token),
            timeout=30,
        )
    )
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_newer_plan_supersedes_an_unapplied_one(life_stub: rpc.ReallocatorServiceStub) -> None:
    first = life_stub.Replan(example(), timeout=60).plan
    second = life_stub.Replan(example(), timeout=60).plan
    assert second.previous_plan == first.name
    old = life_stub.GetPlan(pb.GetPlanRequest(name=first.name), timeout=30).plan
    assert old.state == plan_pb2.PLAN_STATE_SUPERSEDED
    assert old.history[-1].comment == f"superseded by {second.name}"
    late = rpc_error(
        lambda: life_stub.ReviewPlan(
            pb.ReviewPlanRequest(name=first.name, decision=pb.REVIEW_DECISION_APPROVE),
            timeout=30,
        )
    )
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_auto_apply_approves_at_once(life_stub: rpc.ReallocatorServiceStub) -> None:
    request = example()
    request.policy.auto_apply.max_severity = common_pb2.SEVERITY_CRITICAL
    plan = life_stub.Replan(request, timeout=60).plan
    assert plan.state == plan_pb2.PLAN_STATE_APPROVED
    assert plan.history[-1].comment == "auto-approved by policy"


def test_watch_campaign_streams_plan_events_from_another_server(database_url: str) -> None:
    """Two servers on one database: a watcher on the first sees what the second records."""
    servers = [
        start_server(load_config(env={}, port=0, host="127.0.0.1", database_url=database_url))
        for _ in range(2)
    ]
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{servers[0].port}") as watch_channel,
            grpc.insecure_channel(f"127.0.0.1:{servers[1].port}") as write_channel,
        ):
            watcher = rpc.ReallocatorServiceStub(watch_channel)
            writer = rpc.ReallocatorServiceStub(write_channel)
            before = writer.Replan(example(), timeout=60).plan  # before the watch: not streamed
            stream = watcher.WatchCampaign(
                pb.WatchCampaignRequest(campaign_id="acme-holiday-2026", include_plans=True),
                timeout=30,
            )
            time.sleep(1.0)  # the watch has taken its starting point
            plan = writer.Replan(example(), timeout=60).plan
            review = pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_REJECT)
            writer.ReviewPlan(review, timeout=30)
            seen = []
            for event in stream:
                seen.append((event.plan.name, event.plan.state))
                if len(seen) == 3:
                    break
            stream.cancel()
    finally:
        for running in servers:
            running.stop(grace=0)
    # the older plan is superseded, the new one created (its state now), then rejected
    assert {n for n, _ in seen} == {before.name, plan.name}
    assert (before.name, plan_pb2.PLAN_STATE_SUPERSEDED) in seen
    assert seen[-1] == (plan.name, plan_pb2.PLAN_STATE_REJECTED)


def test_a_partial_approval_re_solves_with_the_rejected_moves_pinned(
    life_stub: rpc.ReallocatorServiceStub,
) -> None:
    plan = life_stub.Replan(example(), timeout=60).plan
    moved = [d for d in plan.deals if d.delta]
    assert len(moved) >= 2
    no = moved[0]
    review = pb.ReviewPlanRequest(
        name=plan.name,
        etag=plan.etag,
        comment="keep the audio deal",
        deal_decisions=[
            pb.DealDecision(deal_id=no.deal_id, decision=pb.REVIEW_DECISION_REJECT),
            pb.DealDecision(deal_id=moved[1].deal_id, decision=pb.REVIEW_DECISION_APPROVE),
        ],
    )
    revised = life_stub.ReviewPlan(review, timeout=60).plan
    assert revised.name != plan.name and revised.previous_plan == plan.name
    assert revised.state == plan_pb2.PLAN_STATE_PROPOSED
    assert no.deal_id in revised.history[0].comment
    assert revised.allocated <= revised.remaining_budget
    full = life_stub.GetPlan(pb.GetPlanRequest(name=revised.name), timeout=30).plan
    [pinned] = [d for d in full.deals if d.deal_id == no.deal_id]
    assert pinned.new_allocation == pinned.old_allocation == no.old_allocation
    assert pinned.binding == plan_pb2.BINDING_CONSTRAINT_LOCKED
    old = life_stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=30).plan
    assert old.state == plan_pb2.PLAN_STATE_SUPERSEDED
    stale = rpc_error(lambda: life_stub.ReviewPlan(review, timeout=60))
    assert stale.code() == grpc.StatusCode.ABORTED
    bad = pb.ReviewPlanRequest(
        name=revised.name,
        deal_decisions=[pb.DealDecision(deal_id="nope", decision=pb.REVIEW_DECISION_REJECT)],
    )
    error = rpc_error(lambda: life_stub.ReviewPlan(bad, timeout=60))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in (error.details() or "")

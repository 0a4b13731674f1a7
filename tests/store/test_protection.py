"""Protection mode: when delivery after an applied plan strays from what it scheduled, the next
Replan rolls that plan back (recorded with the reason) and answers the rollback; within the
first hour, or with protection off, it plans as usual."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format

from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def _request(
    campaign: str, minutes: int, totals: dict[str, int], protect: float
) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    request.snapshot.campaign_id = campaign
    request.snapshot.as_of.seconds += 60 * minutes
    for d in request.snapshot.deals:
        d.allocation = totals.get(d.deal_id, d.allocation)
    if protect:
        request.policy.protect_deviation = protect
    return request


def _applied(stub: rpc.ReallocatorServiceStub, campaign: str, protect: float) -> plan_pb2.Plan:
    plan = stub.Replan(_request(campaign, 0, {}, protect), timeout=60).plan
    assert plan.schedules, "the example schedules deals the buyer paces"
    if plan.state == plan_pb2.PLAN_STATE_PROPOSED:
        plan = stub.ReviewPlan(
            pb.ReviewPlanRequest(name=plan.name, etag=plan.etag, decision=1), timeout=10
        ).plan
    stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name), timeout=10)
    return stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan


def test_a_plan_whose_deals_stopped_delivering_is_rolled_back(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    first = _applied(stub, "protect-on", 0.5)
    totals = {d.deal_id: d.new_total for d in first.deals}
    # Two hours later nothing was delivered (the delivery totals did not move): 0 % of plan.
    answer = stub.Replan(_request("protect-on", 120, totals, 0.5), timeout=60).plan
    assert answer.previous_plan == first.name
    assert answer.state == plan_pb2.PLAN_STATE_APPROVED
    assert "protection" in answer.history[0].comment and "(0%)" in answer.history[0].comment
    moved = [d for d in answer.deals if d.delta != 0]
    assert moved and all(d.reason == plan_pb2.REASON_CODE_ROLLBACK for d in moved)
    rolled = stub.GetPlan(pb.GetPlanRequest(name=first.name, view=1), timeout=10).plan
    assert rolled.state == plan_pb2.PLAN_STATE_ROLLED_BACK
    assert "protection" in rolled.history[-1].comment


def test_protection_waits_for_an_hour_of_evidence_and_can_be_off(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    first = _applied(stub, "protect-early", 0.5)
    totals = {d.deal_id: d.new_total for d in first.deals}
    early = stub.Replan(_request("protect-early", 30, totals, 0.5), timeout=60).plan
    assert early.previous_plan == first.name and "Replan" in early.history[0].comment
    off = _applied(stub, "protect-off", 0.0)
    totals = {d.deal_id: d.new_total for d in off.deals}
    later = stub.Replan(_request("protect-off", 120, totals, 0.0), timeout=60).plan
    assert "Replan" in later.history[0].comment
    assert stub.GetPlan(pb.GetPlanRequest(name=off.name, view=1), timeout=10).plan.state == (
        plan_pb2.PLAN_STATE_APPLIED
    )


def _deals(plan: plan_pb2.Plan) -> list[tuple[str, int, str]]:
    return [(d.deal_id, d.new_allocation, d.rationale) for d in plan.deals]


def test_the_stored_application_is_the_one_a_caller_would_send(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    first = stub.Replan(_request("applied-fill", 0, {}, 0.0), timeout=60).plan
    first = stub.ReviewPlan(
        pb.ReviewPlanRequest(name=first.name, etag=first.etag, decision=1), timeout=10
    ).plan
    confirm = pb.ConfirmAppliedRequest(name=first.name)
    confirm.apply_time.CopyFrom(first.as_of)
    stub.ConfirmApplied(confirm, timeout=10)
    full = stub.GetPlan(pb.GetPlanRequest(name=first.name), timeout=10).plan
    totals = {d.deal_id: d.new_total for d in full.deals}
    later = _request("applied-fill", 180, totals, 0.0)
    later.dry_run = True
    stored = stub.Replan(later, timeout=60).plan  # the store supplies the application
    sent = pb.ReplanRequest()
    sent.CopyFrom(later)
    delivered = {d.deal_id: d.new_total - d.new_allocation for d in full.deals}
    took = {
        d.deal_id for d in full.deals if d.delta != 0 and d.pacing != plan_pb2.DEAL_PACING_SELLER
    }
    assert took, "the example plan should move a deal the buyer paces"
    for d in sent.snapshot.deals:
        if d.deal_id not in took:  # the plan did not restart this deal's curve
            continue
        d.last_plan_application.plan = first.name
        d.last_plan_application.apply_time.CopyFrom(first.as_of)
        d.last_plan_application.delivered_at_apply = delivered[d.deal_id]
    told = stub.Replan(sent, timeout=60).plan
    assert _deals(stored) == _deals(told)
    stranger = pb.ReplanRequest()
    stranger.CopyFrom(later)
    stranger.snapshot.campaign_id = "applied-fill-unknown"
    unknown = stub.Replan(stranger, timeout=60).plan  # no plan applied: the curve from the start
    assert _deals(unknown) != _deals(stored)

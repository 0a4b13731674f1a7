"""Seller answers in the IAB seller-agent vocabulary (applied, failed) and the inventory a seller
declares: stored, shown on the plan, and read by the next Replan as if the caller had sent the
inventory in the snapshot."""

from __future__ import annotations

from pathlib import Path

import grpc
from conftest import rpc_error
from google.protobuf import json_format

from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def _request(campaign: str) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    request.snapshot.campaign_id = campaign
    return request


def _deals(plan: plan_pb2.Plan) -> list[tuple[str, int, int]]:
    return [(d.deal_id, d.new_allocation, d.capacity_forecast) for d in plan.deals]


def _answer(
    plan: plan_pb2.Plan, request_id: str, kind: plan_pb2.SellerResponseKind.ValueType
) -> pb.RecordSellerResponseRequest:
    return pb.RecordSellerResponseRequest(plan=plan.name, request_id=request_id, response=kind)


def test_applied_failed_and_declared_inventory(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(_request("iab-answers"), timeout=60).plan
    (asked,) = plan.seller_requests[:1]
    stub.ReviewPlan(pb.ReviewPlanRequest(name=plan.name, etag=plan.etag, decision=1), timeout=10)
    inventory = 1_500_000_000
    answered = stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=plan.name,
            request_id=asked.request_id,
            response=plan_pb2.SELLER_RESPONSE_KIND_APPLIED,
            available_inventory=inventory,
        ),
        timeout=10,
    ).request
    assert answered.response == plan_pb2.SELLER_RESPONSE_KIND_APPLIED
    later = _request("iab-answers")
    later.snapshot.as_of.seconds += 3600
    later.dry_run = True
    for d in later.snapshot.deals:  # the caller no longer says: the seller's word stands
        if d.deal_id == asked.deal_id:
            d.supply.ClearField("available_inventory")
    stored = stub.Replan(later, timeout=60).plan  # the store supplies the inventory
    told = pb.ReplanRequest()
    told.CopyFrom(later)
    for d in told.snapshot.deals:
        if d.deal_id == asked.deal_id:
            d.supply.available_inventory = inventory
    sent = stub.Replan(told, timeout=60).plan
    assert _deals(stored) == _deals(sent)
    unknown = pb.ReplanRequest()
    unknown.CopyFrom(later)
    unknown.snapshot.campaign_id = "iab-answers-unknown"  # no answer stored
    assert _deals(stub.Replan(unknown, timeout=60).plan) != _deals(stored)
    failed = stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=plan.name,
            request_id=asked.request_id,
            response=plan_pb2.SELLER_RESPONSE_KIND_FAILED,
            message="ad server rejected the change",
        ),
        timeout=10,
    ).request
    assert failed.response == plan_pb2.SELLER_RESPONSE_KIND_FAILED  # the newest answer counts
    bad = rpc_error(
        lambda: stub.RecordSellerResponse(
            pb.RecordSellerResponseRequest(
                plan=plan.name,
                request_id=asked.request_id,
                response=plan_pb2.SELLER_RESPONSE_KIND_APPLIED,
                available_inventory=-5,
            ),
            timeout=10,
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "available_inventory" in (bad.details() or "")


def test_an_answer_to_a_request_never_sent_is_refused(stub: rpc.ReallocatorServiceStub) -> None:
    """A proposed plan's requests were never sent: no plan would read an answer to one, so
    OK would be an answer silently ignored. FAILED_PRECONDITION, nothing stored; once the plan
    is approved the same answer is taken."""
    plan = stub.Replan(_request("iab-unsent"), timeout=60).plan
    assert plan.state == plan_pb2.PLAN_STATE_PROPOSED
    (asked,) = plan.seller_requests[:1]
    answer = _answer(plan, asked.request_id, plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED)
    answer.available_inventory = 2_000_000_000
    refused = rpc_error(lambda: stub.RecordSellerResponse(answer, timeout=10))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.details() or ""
    assert asked.request_id in details and "never sent" in details and "PROPOSED" in details
    assert "approve it (ReviewPlan) first" in details
    stored = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan
    (unanswered,) = [r for r in stored.seller_requests if r.request_id == asked.request_id]
    assert unanswered.response == asked.response
    assert len(stored.history) == len(plan.history)  # no event recorded
    reviewed = stub.ReviewPlan(
        pb.ReviewPlanRequest(name=plan.name, etag=plan.etag, decision=1), timeout=10
    )
    assert reviewed.plan.state == plan_pb2.PLAN_STATE_APPROVED
    taken = stub.RecordSellerResponse(answer, timeout=10).request
    assert taken.response == plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED


def test_an_answer_to_a_rejected_plans_request_is_refused(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    plan = stub.Replan(_request("iab-rejected"), timeout=60).plan
    (asked,) = plan.seller_requests[:1]
    stub.ReviewPlan(pb.ReviewPlanRequest(name=plan.name, etag=plan.etag, decision=2), timeout=10)
    answer = _answer(plan, asked.request_id, plan_pb2.SELLER_RESPONSE_KIND_REJECTED)
    refused = rpc_error(lambda: stub.RecordSellerResponse(answer, timeout=10))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.details() or ""
    assert "REJECTED" in details and "will never go out" in details
    assert "approve it" not in details  # a rejected plan can no longer be approved


def test_an_answer_to_a_plan_superseded_before_approval_is_refused(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    """A newer Replan supersedes a plan nobody approved: its requests never went out, the
    answer is refused (the message does not advise approving what can no longer be), and the
    plan read back shows the request unanswered with no event added."""
    plan = stub.Replan(_request("iab-superseded"), timeout=60).plan
    (asked,) = plan.seller_requests[:1]
    later = _request("iab-superseded")
    later.snapshot.as_of.seconds += 3600
    stub.Replan(later, timeout=60)
    before = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan
    assert before.state == plan_pb2.PLAN_STATE_SUPERSEDED
    answer = _answer(plan, asked.request_id, plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED)
    refused = rpc_error(lambda: stub.RecordSellerResponse(answer, timeout=10))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.details() or ""
    assert asked.request_id in details and "SUPERSEDED" in details
    assert "approve it" not in details
    after = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan
    assert list(after.seller_requests) == list(before.seller_requests)
    assert len(after.history) == len(before.history)

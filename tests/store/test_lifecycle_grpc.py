"""The plan life cycle over a real gRPC channel, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import databases
import grpc
import pytest
from conftest import bad_request
from google.protobuf import json_format

from reallocator.config import ServerConfig
from reallocator.server.app import RunningServer, start_server
from reallocator.v1 import common_pb2, plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

database_url = databases.database_url  # fixtures shared by the store tests
postgres_server = databases.postgres_server
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
ACTOR = (("x-reallocator-actor", "planner-bot"),)


def example(**fields: object) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    for key, value in fields.items():
        setattr(request, key, value)
    return request


@pytest.fixture
def server(database_url: str) -> Iterator[RunningServer]:
    running = start_server(ServerConfig(host="127.0.0.1", port=0, database_url=database_url))
    yield running
    running.stop(0)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[rpc.ReallocatorServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield rpc.ReallocatorServiceStub(channel)


def failure(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_replan_records_a_plan_that_reads_back_identically(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    plan = stub.Replan(example(), timeout=60, metadata=ACTOR).plan
    assert plan.name.startswith("campaigns/acme-holiday-2026/plans/") and plan.etag
    assert plan.state == plan_pb2.PLAN_STATE_PROPOSED
    assert [(e.actor, e.state) for e in plan.history] == [
        ("planner-bot", plan_pb2.PLAN_STATE_PROPOSED)
    ]
    got = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=30).plan
    assert got.SerializeToString(deterministic=True) == plan.SerializeToString(deterministic=True)
    summary = stub.GetPlan(
        pb.GetPlanRequest(name=plan.name, view=pb.PLAN_VIEW_SUMMARY), timeout=30
    ).plan
    assert not summary.deals and summary.allocated == plan.allocated


def test_dry_run_records_nothing(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(example(dry_run=True), timeout=60).plan
    assert plan.name == "" and plan.state == plan_pb2.PLAN_STATE_DRY_RUN
    listed = stub.ListPlans(pb.ListPlansRequest(parent="campaigns/acme-holiday-2026"))
    assert not listed.plans


def test_retried_request_id_returns_the_original_and_a_new_body_is_refused(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    first = stub.Replan(example(request_id="run-7"), timeout=60).plan
    again = stub.Replan(example(request_id="run-7"), timeout=60).plan
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(
        deterministic=True
    )
    listed = stub.ListPlans(pb.ListPlansRequest(parent="campaigns/acme-holiday-2026"))
    assert [p.name for p in listed.plans] == [first.name]
    changed = example(request_id="run-7")
    changed.schedule_window.FromSeconds(3600)
    error = failure(lambda: stub.Replan(changed, timeout=60))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "run-7" in error.details()


def test_review_confirm_and_stale_etag(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(example(), timeout=60).plan
    approve = pb.ReviewPlanRequest(
        name=plan.name, decision=pb.REVIEW_DECISION_APPROVE, etag=plan.etag, comment="ok"
    )
    approved = stub.ReviewPlan(approve, metadata=(("x-reallocator-actor", "ann"),)).plan
    assert approved.state == plan_pb2.PLAN_STATE_APPROVED and approved.etag != plan.etag
    assert approved.history[-1].actor == "ann" and approved.history[-1].comment == "ok"
    stale = failure(lambda: stub.ReviewPlan(approve))
    assert stale.code() == grpc.StatusCode.ABORTED
    applied = stub.ConfirmApplied(
        pb.ConfirmAppliedRequest(name=plan.name, etag=approved.etag, actor="dsp")
    ).plan
    assert applied.state == plan_pb2.PLAN_STATE_APPLIED
    again = failure(
        lambda: stub.ReviewPlan(
            pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_REJECT)
        )
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_newer_plan_supersedes_and_auto_apply_approves(stub: rpc.ReallocatorServiceStub) -> None:
    first = stub.Replan(example(), timeout=60).plan
    auto = example()
    auto.policy.auto_apply.max_severity = common_pb2.SEVERITY_CRITICAL
    second = stub.Replan(auto, timeout=60).plan
    assert second.state == plan_pb2.PLAN_STATE_APPROVED and second.previous_plan == first.name
    old = stub.GetPlan(pb.GetPlanRequest(name=first.name, view=pb.PLAN_VIEW_SUMMARY)).plan
    assert old.state == plan_pb2.PLAN_STATE_SUPERSEDED


def test_list_plans_pages_and_filters(stub: rpc.ReallocatorServiceStub) -> None:
    names = [stub.Replan(example(), timeout=60).plan.name for _ in range(3)]
    parent = "campaigns/acme-holiday-2026"
    page = stub.ListPlans(pb.ListPlansRequest(parent=parent, page_size=2))
    assert [p.name for p in page.plans] == names[::-1][:2] and page.next_page_token
    rest = stub.ListPlans(
        pb.ListPlansRequest(parent=parent, page_size=2, page_token=page.next_page_token)
    )
    assert [p.name for p in rest.plans] == names[:1] and not rest.next_page_token
    proposed = stub.ListPlans(
        pb.ListPlansRequest(parent=parent, state=plan_pb2.PLAN_STATE_PROPOSED)
    )
    assert [p.name for p in proposed.plans] == [names[-1]]
    bad = failure(
        lambda: stub.ListPlans(
            pb.ListPlansRequest(
                parent=parent, state=plan_pb2.PLAN_STATE_PROPOSED, page_token=page.next_page_token
            )
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_plan_is_not_found_and_bad_name_invalid(stub: rpc.ReallocatorServiceStub) -> None:
    missing = failure(lambda: stub.GetPlan(pb.GetPlanRequest(name="campaigns/x/plans/" + "0" * 32)))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    bad = failure(lambda: stub.GetPlan(pb.GetPlanRequest(name="plans/1")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def later(hours: int) -> pb.ReplanRequest:
    request = example()
    request.snapshot.as_of.FromSeconds(request.snapshot.as_of.seconds + 3600 * hours)
    return request


def test_stored_seller_answers_shape_the_next_plan(stub: rpc.ReallocatorServiceStub) -> None:
    """replan -> review -> apply -> the seller declines -> the next plan does not ask again
    (without the caller sending the answer)."""
    plan = stub.Replan(example(), timeout=60).plan
    [asked] = plan.seller_requests
    record = pb.RecordSellerResponseRequest(
        plan=plan.name, request_id=asked.request_id, iab_status="rejected", message="sold out"
    )
    early = failure(lambda: stub.RecordSellerResponse(record))
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION  # not applied yet
    approved = stub.ReviewPlan(
        pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE, etag=plan.etag)
    ).plan
    stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name, etag=approved.etag))
    answered = stub.RecordSellerResponse(record).request
    assert answered.response == plan_pb2.SELLER_RESPONSE_KIND_REJECTED
    assert answered.request_id == asked.request_id
    declined = stub.Replan(later(2), timeout=60).plan
    assert asked.deal_id not in [r.deal_id for r in declined.seller_requests]


def test_stored_answers_differ_from_no_history(stub: rpc.ReallocatorServiceStub) -> None:
    """The same late snapshot planned with no stored history asks the seller again: the
    stored answer is what removes the request above."""
    plan = stub.Replan(later(2), timeout=60).plan
    assert [r.deal_id for r in plan.seller_requests] == ["ctv-pg-001"]


def test_bad_seller_responses_are_named(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(example(), timeout=60).plan
    approved = stub.ReviewPlan(
        pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE, etag=plan.etag)
    ).plan
    stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name, etag=approved.etag))
    unknown = failure(
        lambda: stub.RecordSellerResponse(
            pb.RecordSellerResponseRequest(plan=plan.name, request_id="nope", iab_status="approved")
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    request_id = plan.seller_requests[0].request_id
    for fields, field in (
        ({"response": plan_pb2.SELLER_RESPONSE_KIND_PARTIAL}, "accepted_total"),
        ({"iab_status": "maybe"}, "iab_status"),
        ({}, "response"),
    ):
        bad = failure(
            lambda fields=fields: stub.RecordSellerResponse(
                pb.RecordSellerResponseRequest(plan=plan.name, request_id=request_id, **fields)
            )
        )
        assert [v.field for v in bad_request(bad)] == [field]
    partial = stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=plan.name, request_id=request_id, iab_status="approved", accepted_total=5
        )
    ).request
    assert partial.response == plan_pb2.SELLER_RESPONSE_KIND_PARTIAL


def test_watch_sees_plans_recorded_by_another_server(
    server: RunningServer, stub: rpc.ReallocatorServiceStub, database_url: str
) -> None:
    """Two servers on one database: a watch on the first streams what the second records."""
    other = start_server(ServerConfig(host="127.0.0.1", port=0, database_url=database_url))
    try:
        watch = stub.WatchCampaign(
            pb.WatchCampaignRequest(campaign_id="acme-holiday-2026", include_plans=True),
            timeout=30,
        )
        with grpc.insecure_channel(f"127.0.0.1:{other.port}") as channel:
            elsewhere = rpc.ReallocatorServiceStub(channel)
            time.sleep(1.0)  # the watch starts from the newest event it finds
            plan = elsewhere.Replan(example(), timeout=60).plan
            seen = next(watch).plan
            assert seen.name == plan.name and seen.state == plan_pb2.PLAN_STATE_PROPOSED
            assert not seen.deals and seen.allocated == plan.allocated
            elsewhere.ReviewPlan(
                pb.ReviewPlanRequest(
                    name=plan.name, decision=pb.REVIEW_DECISION_REJECT, etag=plan.etag
                )
            )
            assert next(watch).plan.state == plan_pb2.PLAN_STATE_REJECTED
        watch.cancel()
    finally:
        other.stop(0)


def test_rollback_restores_the_allocations_before_the_plan(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    plan = stub.Replan(example(), timeout=60).plan
    approved = stub.ReviewPlan(
        pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE, etag=plan.etag)
    ).plan
    stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name, etag=approved.etag))
    before = {d.deal_id: d.old_allocation for d in plan.deals}
    assert any(d.delta for d in plan.deals)  # the plan did move something
    request = pb.RollbackPlanRequest(name=plan.name, reason="CTV under-delivered", actor="ann")
    request.snapshot.CopyFrom(example().snapshot)  # nothing spent since
    answer = stub.RollbackPlan(request, timeout=60)
    assert answer.plan.state == plan_pb2.PLAN_STATE_ROLLED_BACK
    assert answer.plan.history[-1].comment == "CTV under-delivered (by ann)"
    back = answer.rollback_plan
    assert back.state == plan_pb2.PLAN_STATE_APPROVED and back.previous_plan == plan.name
    stored = stub.GetPlan(pb.GetPlanRequest(name=back.name)).plan
    assert {d.deal_id: d.new_allocation for d in stored.deals} == before
    again = failure(lambda: stub.RollbackPlan(request, timeout=60))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_end_to_end_campaign_history(stub: rpc.ReallocatorServiceStub) -> None:
    """replan -> review -> apply -> seller answer -> replan (the answer changes the plan) ->
    rollback, then the history read back: one campaign over a real channel."""
    plan = stub.Replan(example(request_id="e2e-1"), timeout=60, metadata=ACTOR).plan
    approved = stub.ReviewPlan(
        pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE, etag=plan.etag)
    ).plan
    stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name, etag=approved.etag))
    [asked] = plan.seller_requests
    stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=plan.name, request_id=asked.request_id, iab_status="rejected"
        )
    )
    nxt = stub.Replan(later(2), timeout=60).plan
    assert asked.deal_id not in [r.deal_id for r in nxt.seller_requests]
    assert nxt.previous_plan == plan.name
    rollback = pb.RollbackPlanRequest(name=plan.name, reason="undo")
    rollback.snapshot.CopyFrom(later(2).snapshot)
    back = stub.RollbackPlan(rollback, timeout=60).rollback_plan
    listed = stub.ListPlans(pb.ListPlansRequest(parent="campaigns/acme-holiday-2026")).plans
    assert [(p.name, p.state) for p in listed] == [
        (back.name, plan_pb2.PLAN_STATE_APPROVED),
        (nxt.name, plan_pb2.PLAN_STATE_SUPERSEDED),
        (plan.name, plan_pb2.PLAN_STATE_ROLLED_BACK),
    ]
    history = stub.GetPlan(pb.GetPlanRequest(name=plan.name, view=pb.PLAN_VIEW_SUMMARY)).plan
    assert [plan_pb2.PlanState.Name(e.state) for e in history.history] == [
        "PLAN_STATE_PROPOSED",
        "PLAN_STATE_APPROVED",
        "PLAN_STATE_APPLIED",
        "PLAN_STATE_ROLLED_BACK",
    ]
    assert history.history[0].actor == "planner-bot"


def test_partial_approval_re_solves_with_rejected_moves_pinned(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    plan = stub.Replan(example(), timeout=60).plan
    moved = [d for d in plan.deals if d.delta]
    assert len(moved) >= 2
    rejected = moved[0]
    review = pb.ReviewPlanRequest(
        name=plan.name,
        decision=pb.REVIEW_DECISION_APPROVE,
        etag=plan.etag,
        rejected_deal_ids=[rejected.deal_id],
        comment="keep audio",
    )
    revision = stub.ReviewPlan(review, timeout=60).plan
    assert revision.name != plan.name and revision.previous_plan == plan.name
    assert revision.state == plan_pb2.PLAN_STATE_APPROVED
    by_id = {d.deal_id: d for d in revision.deals}
    assert by_id[rejected.deal_id].new_allocation == rejected.old_allocation
    assert by_id[rejected.deal_id].binding == plan_pb2.BINDING_CONSTRAINT_LOCKED
    assert "keep audio" in revision.history[0].comment
    old = stub.GetPlan(pb.GetPlanRequest(name=plan.name, view=pb.PLAN_VIEW_SUMMARY)).plan
    assert old.state == plan_pb2.PLAN_STATE_SUPERSEDED
    fresh = stub.Replan(example(), timeout=60).plan
    unknown = pb.ReviewPlanRequest(
        name=fresh.name, decision=pb.REVIEW_DECISION_APPROVE, rejected_deal_ids=["nope"]
    )
    assert [v.field for v in bad_request(failure(lambda: stub.ReviewPlan(unknown)))] == [
        "rejected_deal_ids[0]"
    ]

"""The plan life cycle over a real gRPC channel, on the audit store: Replan records, GetPlan reads
back the same plan, ListPlans pages, a newer plan supersedes, reviews and confirmations respect
the etag and the state, request ids are idempotent in the database, and seller answers recorded
through the API change the next plan without the caller sending them."""

from __future__ import annotations

import base64
import multiprocessing
from pathlib import Path

import grpc
import pytest
from builders import build_snapshot, random_snapshot_spec
from conftest import bad_request, rpc_error
from google.protobuf import json_format
from plans import new_plan

from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc
from reallocator.wire.plan import COLUMNAR_FROM

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def _request(campaign: str, request_id: str = "") -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    request.snapshot.campaign_id = campaign
    request.request_id = request_id
    return request


def _life_cycle_cleared(plan: plan_pb2.Plan) -> plan_pb2.Plan:
    out = plan_pb2.Plan()
    out.CopyFrom(plan)
    for field in ("name", "state", "etag", "create_time", "history", "previous_plan"):
        out.ClearField(field)
    return out


def test_replan_records_and_get_plan_reads_back_the_same_plan(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    plan = stub.Replan(_request("life-read"), timeout=30).plan
    assert plan.name.startswith("campaigns/life-read/plans/") and plan.etag
    assert plan.state == plan_pb2.PLAN_STATE_PROPOSED
    assert [e.state for e in plan.history] == [plan_pb2.PLAN_STATE_PROPOSED]
    again = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan
    assert again == plan  # life cycle included: nothing changed since
    assert again.SerializeToString(deterministic=True) == plan.SerializeToString(deterministic=True)


def test_a_long_plan_read_back_has_the_words_replan_gave(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    """Past the size where the words are assembled column-wise (the wire's deal rows and
    schedules, and the store's rendering on reading): the same bytes back."""
    request = pb.ReplanRequest(
        snapshot=build_snapshot(random_snapshot_spec(3_000, seed=4), "arrow"),
        view=pb.PLAN_VIEW_FULL,
    )
    request.snapshot.campaign_id = "life-long"
    plan = stub.Replan(request, timeout=60).plan
    assert len(plan.deals) == 3_000 and len(plan.schedules) >= COLUMNAR_FROM
    assert any(d.rationale != "unchanged" for d in plan.deals)
    assert all(s.rationale.startswith(f"Deal {s.deal_id} ") for s in plan.schedules)
    again = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=30).plan
    assert again.SerializeToString(deterministic=True) == plan.SerializeToString(deterministic=True)


def test_a_dry_run_is_never_recorded(stub: rpc.ReallocatorServiceStub) -> None:
    request = _request("life-dry")
    request.dry_run = True
    plan = stub.Replan(request, timeout=30).plan
    assert plan.name == "" and plan.state == plan_pb2.PLAN_STATE_DRY_RUN
    listed = stub.ListPlans(pb.ListPlansRequest(parent="campaigns/life-dry"), timeout=10)
    assert not listed.plans


def test_a_newer_plan_supersedes_and_list_pages_newest_first(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    names = [stub.Replan(_request("life-list"), timeout=30).plan.name for _ in range(3)]
    seen, token = [], ""
    while True:
        page = stub.ListPlans(
            pb.ListPlansRequest(parent="campaigns/life-list", page_size=2, page_token=token),
            timeout=10,
        )
        seen += [p.name for p in page.plans]
        token = page.next_page_token
        if not token:
            break
    assert seen == names[::-1]
    states = {p.name: p.state for p in stub.ListPlans(
        pb.ListPlansRequest(parent="campaigns/life-list"), timeout=10).plans}  # fmt: skip
    assert states[names[-1]] == plan_pb2.PLAN_STATE_PROPOSED
    assert {states[n] for n in names[:-1]} == {plan_pb2.PLAN_STATE_SUPERSEDED}
    proposed = stub.ListPlans(
        pb.ListPlansRequest(parent="campaigns/life-list", state=plan_pb2.PLAN_STATE_PROPOSED),
        timeout=10,
    )
    assert [p.name for p in proposed.plans] == [names[-1]]
    forged = [
        "nonsense",
        base64.urlsafe_b64encode(b"9" * 30 + b"::").decode(),  # past any database integer
        base64.urlsafe_b64encode("²:x".encode()).decode(),  # a digit int() refuses
    ]
    for token in forged:
        bad = rpc_error(
            lambda t=token: stub.ListPlans(
                pb.ListPlansRequest(parent="campaigns/life-list", page_token=t), timeout=10
            )
        )
        assert [v.field for v in bad_request(bad)] == ["page_token"]
        history = pb.GetPacingHistoryRequest(campaign_id="life-list", page_token=token)
        bad = rpc_error(lambda h=history: stub.GetPacingHistory(h, timeout=10))
        assert [v.field for v in bad_request(bad)] == ["page_token"]
    history = pb.GetPacingHistoryRequest(
        campaign_id="life-list", page_token=base64.urlsafe_b64encode(b"1:" + b"9" * 30).decode()
    )
    bad = rpc_error(lambda: stub.GetPacingHistory(history, timeout=10))
    assert [v.field for v in bad_request(bad)] == ["page_token"]


def test_request_ids_are_idempotent(stub: rpc.ReallocatorServiceStub) -> None:
    first = stub.Replan(_request("life-idem", "req-1"), timeout=30).plan
    retry = stub.Replan(_request("life-idem", "req-1"), timeout=30).plan
    assert retry.name == first.name and retry.etag == first.etag
    listed = stub.ListPlans(pb.ListPlansRequest(parent="campaigns/life-idem"), timeout=10)
    assert [p.name for p in listed.plans] == [first.name]  # recorded once
    other = _request("life-idem", "req-1")
    other.snapshot.deals[0].allocation += 1_000_000
    error = rpc_error(lambda: stub.Replan(other, timeout=30))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


def test_review_and_apply_follow_etag_and_state(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(_request("life-review"), timeout=30).plan
    old = pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE, etag="0" * 32)
    stale = rpc_error(lambda: stub.ReviewPlan(old, timeout=10))
    assert stale.code() == grpc.StatusCode.ABORTED
    early = rpc_error(
        lambda: stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name), timeout=10)
    )
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION
    approved = stub.ReviewPlan(
        pb.ReviewPlanRequest(
            name=plan.name,
            decision=pb.REVIEW_DECISION_APPROVE,
            etag=plan.etag,
            reviewer="ana",
            comment="looks right",
        ),
        timeout=10,
    ).plan
    assert approved.state == plan_pb2.PLAN_STATE_APPROVED and approved.etag != plan.etag
    assert (approved.history[-1].actor, approved.history[-1].comment) == ("ana", "looks right")
    applied = stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name), timeout=10).plan
    assert applied.state == plan_pb2.PLAN_STATE_APPLIED
    again = rpc_error(lambda: stub.ReviewPlan(pb.ReviewPlanRequest(
        name=plan.name, decision=pb.REVIEW_DECISION_REJECT), timeout=10))  # fmt: skip
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    missing = rpc_error(lambda: stub.GetPlan(
        pb.GetPlanRequest(name="campaigns/life-review/plans/0123abcd"), timeout=10))  # fmt: skip
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    malformed = rpc_error(lambda: stub.GetPlan(pb.GetPlanRequest(name="plans/x"), timeout=10))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stored_seller_answers_change_the_next_plan(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(_request("life-answer"), timeout=30).plan
    (request,) = [r for r in plan.seller_requests if r.deal_id == "ctv-pg-001"]
    stub.ReviewPlan(pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE,
                                         etag=plan.etag), timeout=10)  # fmt: skip
    answered = stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=plan.name,
            request_id=request.request_id,
            response=plan_pb2.SELLER_RESPONSE_KIND_REJECTED,
            message="sold out",
        ),
        timeout=10,
    ).request
    assert answered.response == plan_pb2.SELLER_RESPONSE_KIND_REJECTED
    # The next plan, from the same snapshot, knows the seller said no within the cooldown:
    # it does not ask again (the caller sent nothing but the snapshot).
    later = _request("life-answer")
    later.snapshot.as_of.seconds += 3600  # an hour later, within the 12 h cooldown
    after = stub.Replan(later, timeout=30).plan
    assert request.deal_id not in [r.deal_id for r in after.seller_requests
                                   if r.kind == request.kind]  # fmt: skip
    assert after.previous_plan == plan.name
    wrong = rpc_error(lambda: stub.RecordSellerResponse(pb.RecordSellerResponseRequest(
        plan=plan.name, request_id="nope", response=plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED),
        timeout=10))  # fmt: skip
    assert wrong.code() == grpc.StatusCode.NOT_FOUND


def test_requests_of_an_approved_plan_count_after_a_newer_plan_supersedes_it(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    """Approval sends a plan's requests; a Replan before the plan is confirmed applied
    supersedes it, but the sellers were asked: their answers and the cooldown still hold."""
    plan = stub.Replan(_request("life-superseded"), timeout=30).plan
    asked = {r.deal_id for r in plan.seller_requests}
    assert asked
    (request,) = [r for r in plan.seller_requests if r.deal_id == "ctv-pg-001"]
    stub.ReviewPlan(pb.ReviewPlanRequest(name=plan.name, decision=pb.REVIEW_DECISION_APPROVE,
                                         etag=plan.etag), timeout=10)  # fmt: skip
    stub.RecordSellerResponse(
        pb.RecordSellerResponseRequest(
            plan=plan.name, request_id=request.request_id,
            response=plan_pb2.SELLER_RESPONSE_KIND_REJECTED, message="sold out",
        ),
        timeout=10,
    )  # fmt: skip
    later = []
    for hours in (1, 2, 3):  # hourly replans, none confirmed applied
        again = _request("life-superseded")
        again.snapshot.as_of.seconds += hours * 3600
        later.append(stub.Replan(again, timeout=30).plan)
    first = stub.GetPlan(pb.GetPlanRequest(name=plan.name), timeout=10).plan
    assert first.state == plan_pb2.PLAN_STATE_SUPERSEDED
    for after in later:  # within the 24 h cooldown nothing asked is asked again
        assert not asked & {r.deal_id for r in after.seller_requests}
    # The caller applied what it approved while the newer plans were made: confirming it counts.
    applied = stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name), timeout=10).plan
    assert applied.state == plan_pb2.PLAN_STATE_APPLIED
    assert later[0].state == plan_pb2.PLAN_STATE_PROPOSED  # never approved: nothing to confirm
    never = rpc_error(
        lambda: stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=later[0].name), timeout=10)
    )
    assert never.code() == grpc.StatusCode.FAILED_PRECONDITION


def _review(url: str, name: str, etag: str, approve: bool, out: multiprocessing.Queue) -> None:
    store = SqlStore.open(url)
    try:
        store.review(name, approve, etag=etag, actor=f"proc-{approve}", comment="")
        out.put("won")
    except Exception as exc:
        out.put(type(exc).__name__)


def test_two_processes_reviewing_one_plan_one_wins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    store = SqlStore.open(url)
    stored = store.record_plan(new_plan("race"), actor="t")
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_review, args=(url, stored.name, stored.etag, a, results))
             for a in (True, False)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes in (["StaleEtag", "won"], ["WrongState", "won"]), outcomes
    final = SqlStore.open(url).get_plan(stored.name)
    assert final.state in (plan_pb2.PLAN_STATE_APPROVED, plan_pb2.PLAN_STATE_REJECTED)
    assert len(final.history) == 2  # created, then exactly one review


def test_the_store_survives_a_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reopen.db'}"
    name = SqlStore.open(url).record_plan(new_plan("reopen", approve=True), actor="a").name
    again = SqlStore.open(url)  # migrations applied twice: nothing to do the second time
    assert again.get_plan(name).state == plan_pb2.PLAN_STATE_APPROVED
    with pytest.raises(Exception, match="no plan"):
        again.get_plan("campaigns/reopen/plans/ffff")

"""Replan over a real gRPC channel."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
from conftest import rpc_error
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def example() -> pb.ReplanRequest:
    return json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())


def test_replan_returns_an_explained_plan(stub: rpc.ReallocatorServiceStub) -> None:
    request = example()
    request.dry_run = False
    plan = stub.Replan(request, timeout=30).plan
    assert plan.status == plan_pb2.PLAN_STATUS_OPTIMAL
    assert plan.state == plan_pb2.PLAN_STATE_PROPOSED
    assert plan.currency_code == "USD" and plan.budget_type
    assert sum(d.new_allocation for d in plan.deals) == plan.allocated <= plan.remaining_budget
    by_id = {d.deal_id: d for d in plan.deals}
    assert by_id["audio-pmp-003"].reason == plan_pb2.REASON_CODE_STALLED
    # Its outlook (2,158.02 USD) is more than the budget the deals worth more leave it.
    assert by_id["audio-pmp-003"].binding == plan_pb2.BINDING_CONSTRAINT_BUDGET
    assert all(d.rationale for d in plan.deals)
    assert plan.solver.path == plan_pb2.SOLVER_PATH_MIN_COST_FLOW
    assert plan.solver.total_duration.ToTimedelta().total_seconds() > 0
    [request_msg] = plan.seller_requests
    change = json_format.MessageToDict(request_msg.seller_change_request)
    assert change["order_id"] == "SO-88121" and change["idempotency_key"]
    assert change["change_type"] in ("impressions", "other")
    assert plan.rationale.summary.startswith("Campaign acme-holiday-2026")
    assert {f.name for f in plan.rationale.factors} >= {"remaining budget", "unspendable"}


def test_dry_run_is_marked(stub: rpc.ReallocatorServiceStub) -> None:
    plan = stub.Replan(example(), timeout=30).plan
    assert plan.state == plan_pb2.PLAN_STATE_DRY_RUN


def test_conflicting_constraints_answer_failed_precondition_with_details(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    request = example()
    for seller in request.snapshot.sellers:
        if seller.seller_id == "streamco":
            seller.limits.min_total = 16_000_000_000
        if seller.seller_id == "newsgroup":
            seller.limits.min_total = 13_500_000_000
    request.on_infeasible = pb.INFEASIBILITY_HANDLING_REJECT
    # On the raw forecast: shrunk towards the current plan, display's would no longer fit
    # newsgroup's minimum, which is then capped at what its deals can deliver (no conflict).
    request.policy.forecast_prior.FromTimedelta(timedelta(0))
    error = rpc_error(lambda: stub.Replan(request, timeout=30))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    failure = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(failure)
    assert failure.violations and all(v.description for v in failure.violations)
    assert {v.subject for v in failure.violations} <= {
        "seller/streamco/min_total",
        "seller/newsgroup/min_total",
    }


def test_plan_views_trim_the_response(stub: rpc.ReallocatorServiceStub) -> None:
    request = example()
    full = stub.Replan(request, timeout=30).plan
    request.view = pb.PLAN_VIEW_CHANGES
    changes = stub.Replan(request, timeout=30).plan
    request.view = pb.PLAN_VIEW_SUMMARY
    summary = stub.Replan(request, timeout=30).plan
    moved = {d.deal_id for d in full.deals if d.delta != 0}
    ahead = {d.deal_id for d in full.deals if d.pacing == plan_pb2.DEAL_PACING_AHEAD}
    assert moved
    assert {d.deal_id for d in changes.deals} == moved | ahead
    assert list(changes.schedules) == list(full.schedules)  # each one changes a pacer
    assert not summary.deals and not summary.schedules
    assert summary.allocated == changes.allocated == full.allocated
    assert len(summary.seller_requests) == len(full.seller_requests)
    assert summary.rationale.summary == full.rationale.summary


def test_a_dry_run_summary_is_the_full_answer_without_its_rows(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    """A dry-run SUMMARY makes no schedules (it returns none and keeps nothing): everything it
    does return is what the FULL answer says."""
    request = example()
    assert request.dry_run
    full = stub.Replan(request, timeout=30).plan
    request.view = pb.PLAN_VIEW_SUMMARY
    summary = stub.Replan(request, timeout=30).plan
    assert full.schedules and full.deals and full.seller_requests
    for plan in (full, summary):
        del plan.deals[:]
        del plan.schedules[:]
        plan.ClearField("create_time")
        plan.ClearField("solver")
    assert summary == full


def test_relax_returns_a_relaxed_plan_naming_what_gave_way(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    request = example()
    for seller in request.snapshot.sellers:
        if seller.seller_id == "streamco":
            seller.limits.min_total = 16_000_000_000
        if seller.seller_id == "newsgroup":
            seller.limits.min_total = 13_500_000_000
    request.on_infeasible = pb.INFEASIBILITY_HANDLING_RELAX
    # On the raw forecast: shrunk towards the current plan, display's would no longer fit
    # newsgroup's minimum, which is then capped at what its deals can deliver (no conflict).
    request.policy.forecast_prior.FromTimedelta(timedelta(0))
    plan = stub.Replan(request, timeout=30).plan
    assert plan.status == plan_pb2.PLAN_STATUS_RELAXED
    assert sum(v.relaxation for v in plan.violations) == 700_000_000
    for v in plan.violations:
        assert v.constraint in ("seller/streamco/min_total", "seller/newsgroup/min_total")
        assert v.message.startswith(f"relax seller {v.entity.id}'s minimum by ")


def test_a_campaign_with_only_a_daily_budget_is_planned_over_today(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    """No start or end date, one PERIOD_DAY budget: valid input (an always-on campaign), paced
    over the current day as AssessPacing paces it. It was planned from a curve that needed the
    dates and answered INTERNAL (found by the fuzzer)."""
    request = example()
    pacing = request.snapshot.pacing
    pacing.ClearField("start_time")
    pacing.ClearField("end_time")
    del pacing.budgets[:]
    pacing.budgets.add(period=2, amount=30_000_000_000)  # PERIOD_DAY
    for dry_run in (True, False):
        request.dry_run = dry_run
        plan = stub.Replan(request, timeout=30).plan
        assert plan.status == plan_pb2.PLAN_STATUS_OPTIMAL
        assert sum(d.new_allocation for d in plan.deals) == plan.allocated
        assert 0 < plan.allocated <= plan.remaining_budget <= 30_000_000_000

"""The README's example requests with one field changed the way an attacker (or a buggy client)
would: each answers INVALID_ARGUMENT naming the field, quickly, instead of UNKNOWN, gigabytes
of memory or a response that breaks its own rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import bad_request, rpc_error
from google.protobuf import json_format
from google.protobuf.message import Message

from reallocator.config import load_config
from reallocator.core.interrupt import Interrupted
from reallocator.server.servicer import ReallocatorServicer
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc
from reallocator.wire.limits import MAX_AMOUNT
from reallocator.wire.strings import MAX_NOTE_LENGTH, MAX_TEXT_LENGTH, check_strings
from reallocator.wire.violations import Violations

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
I64 = 2**63 - 1
YEAR_1 = -62135596800
YEAR_9999 = 253402300799 - 86400


def _replan() -> pb.ReplanRequest:
    return json_format.Parse((EXAMPLES / "replan_request.json").read_text(), pb.ReplanRequest())


def _series_width(r: pb.ReplanRequest) -> None:
    for d in r.snapshot.deals:
        d.recent_delivery.bucket_width.seconds = 315_576_000_000


def _impressions_ecpm(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budget_type = 2  # BUDGET_TYPE_IMPRESSIONS
    for d in r.snapshot.deals:
        d.ecpm_micros = I64


def _budget_and_spend_at_max(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budgets[0].amount = I64
    for d in r.snapshot.deals:
        d.delivered.spend_micros = I64 // 2
        d.allocation = I64


def _many_changes(r: pb.ReplanRequest) -> None:
    for i in range(5_000):
        change = r.snapshot.pacing.budget_changes.add(
            period=5, old_amount=i, new_amount=i + 1
        )  # PERIOD_LIFETIME
        change.change_time.CopyFrom(r.snapshot.pacing.start_time)


CASES: dict[str, tuple[Callable[[pb.ReplanRequest], None], str]] = {
    "no pacing": (lambda r: r.snapshot.ClearField("pacing"), "snapshot.pacing"),
    "pacing without budgets or dates": (
        lambda r: (
            r.snapshot.pacing.ClearField("start_time"),
            r.snapshot.pacing.ClearField("end_time"),
            r.snapshot.pacing.ClearField("budgets"),
        ),
        "snapshot.pacing.budgets",
    ),
    "lifetime budget of int64 max": (
        lambda r: setattr(r.snapshot.pacing.budgets[0], "amount", I64),
        "snapshot.pacing.budgets[0].amount",
    ),
    "as_of in year 9999": (
        lambda r: setattr(r.snapshot.as_of, "seconds", YEAR_9999),
        "snapshot.as_of",
    ),
    "schedule_window of 10,000 years": (
        lambda r: setattr(r.schedule_window, "seconds", 315_576_000_000),
        "schedule_window",
    ),
    "schedule_window of a year": (
        lambda r: setattr(r.schedule_window, "seconds", 365 * 86400),
        "schedule_window",
    ),
    "bucket_width of 10,000 years": (
        _series_width,
        "snapshot.deals[0].recent_delivery.bucket_width",
    ),
    "impressions budget with an eCPM of int64 max": (
        _impressions_ecpm,
        "snapshot.deals[0].ecpm_micros",
    ),
    "budget and spend at int64 max": (
        _budget_and_spend_at_max,
        "snapshot.pacing.budgets[0].amount",
    ),
    "flight ends in year 9999": (
        lambda r: setattr(r.snapshot.pacing.end_time, "seconds", YEAR_9999),
        "snapshot.pacing.end_time",
    ),
    "flight starts in year 1": (
        lambda r: setattr(r.snapshot.pacing.start_time, "seconds", YEAR_1),
        "snapshot.pacing.start_time",
    ),
    "flight ends in 2100": (
        lambda r: setattr(r.snapshot.pacing.end_time, "seconds", 4102444800),
        "snapshot.pacing",
    ),
    "5,000 budget changes": (_many_changes, "snapshot.pacing.budget_changes"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_hostile_field_is_invalid_argument_naming_it(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, name: str
) -> None:
    change, field = CASES[name]
    request = _replan()
    change(request)
    started = time.perf_counter()
    assess = pb.AssessPacingRequest(snapshot=request.snapshot, policy=request.policy)
    calls = [lambda: stub.Replan(request, timeout=30)]
    if field.startswith("snapshot"):  # AssessPacing has no schedule window
        calls.append(lambda: stub.AssessPacing(assess, timeout=30))
    for call in calls:
        fields = [v.field for v in bad_request(rpc_error(call))]
        assert field in fields, fields
    assert time.perf_counter() - started < 10


def test_amounts_at_the_limit_give_a_plan_within_its_own_rules(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    request = _replan()
    request.snapshot.pacing.budgets[0].amount = MAX_AMOUNT
    for d in request.snapshot.deals:
        d.delivered.spend_micros = MAX_AMOUNT // 8
        d.allocation = MAX_AMOUNT // 4
        d.ClearField("min_allocation")
    plan = stub.Replan(request, timeout=60).plan
    for r in plan.seller_requests:
        assert 0 <= r.target_total <= MAX_AMOUNT
    assert 0 <= plan.remaining_budget <= MAX_AMOUNT
    for d in plan.deals:
        assert 0 <= d.lower_bound <= d.new_allocation <= d.upper_bound
        assert 0 <= d.new_total <= 2 * MAX_AMOUNT


class _GivingUp:
    """A call context whose caller gives up after `patience` checks (deadline or cancel)."""

    def __init__(self, patience: int, why: str) -> None:
        self.patience, self.why, self.checks = patience, why, 0

    def _tick(self) -> bool:
        self.checks += 1
        return self.checks <= self.patience

    def time_remaining(self) -> float | None:
        if self.why == "DEADLINE":
            return 10.0 if self._tick() else 0.0
        return None

    def is_active(self) -> bool:
        return True if self.why == "DEADLINE" else self._tick()

    def invocation_metadata(self) -> tuple[()]:
        return ()


@pytest.mark.parametrize("why", ["DEADLINE", "CANCELLED"])
@pytest.mark.parametrize("patience", [0, 2, 4])
def test_work_stops_at_the_next_phase_once_the_caller_gave_up(why: str, patience: int) -> None:
    servicer = ReallocatorServicer(load_config(env={}))
    context = _GivingUp(patience, why)
    with pytest.raises(Interrupted) as info:
        servicer.replan(_replan(), context)  # type: ignore[arg-type]
    assert info.value.why == why
    # Stopped at the first checkpoint after giving up (Replan also reads the deadline once).
    assert context.checks - patience in (1, 2)
    context = _GivingUp(0, why)
    assess = pb.AssessPacingRequest(snapshot=_replan().snapshot)
    with pytest.raises(Interrupted):
        servicer.assess_pacing(assess, context)  # type: ignore[arg-type]


LONG = "x" * (MAX_TEXT_LENGTH + 1)
PLAN = "campaigns/acme/plans/0123"


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("Replan", pb.ReplanRequest(request_id=LONG), "request_id"),
        ("GetPlan", pb.GetPlanRequest(name=LONG), "name"),
        ("ListPlans", pb.ListPlansRequest(parent="campaigns/acme", page_token=LONG), "page_token"),
        ("ReviewPlan", pb.ReviewPlanRequest(name=PLAN, etag=LONG), "etag"),
        (
            "ReviewPlan",
            pb.ReviewPlanRequest(
                name=PLAN,
                deal_decisions=[pb.DealDecision(deal_id="d"), pb.DealDecision(deal_id=LONG)],
            ),
            "deal_decisions[1].deal_id",
        ),
        (
            "ReviewPlan",
            pb.ReviewPlanRequest(name=PLAN, comment="c" * (MAX_NOTE_LENGTH + 1)),
            "comment",
        ),
        ("RollbackPlan", pb.RollbackPlanRequest(name=PLAN, request_id=LONG), "request_id"),
        (
            "RecordSellerResponse",
            pb.RecordSellerResponseRequest(plan=PLAN, request_id="r", message="m" * 20_000),
            "message",
        ),
    ],
)
def test_an_overlong_string_anywhere_is_invalid_argument_naming_it(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
    method: str,
    request_: Message,
    field: str,
) -> None:
    """Strings outside the snapshot are logged, stored or used as keys: each has a bound
    (a 100 MB request_id was accepted as an idempotency key)."""
    fields = [v.field for v in bad_request(rpc_error(lambda: getattr(stub, method)(request_)))]
    assert fields == [field]


def test_a_comment_within_its_bound_is_not_refused_for_its_length() -> None:
    errors = Violations()
    check_strings(pb.ReviewPlanRequest(name=PLAN, comment="c" * MAX_NOTE_LENGTH), errors)
    check_strings(pb.ReplanRequest(request_id="r" * MAX_TEXT_LENGTH), errors)
    assert not errors

"""The plan life-cycle RPCs on the audit store: GetPlan, ListPlans, ReviewPlan, ConfirmApplied,
RecordSellerResponse. Each converts messages, validates and calls the store (one transaction);
the store's errors map to statuses in the dispatch layer."""

from __future__ import annotations

import re

import grpc

from reallocator.server.identity import current_actor
from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.violations import Violations

PLAN_NAME = re.compile(r"campaigns/([^/]{1,200})/plans/([0-9a-f]{1,64})")
CAMPAIGN = re.compile(r"campaigns/([^/]{1,200})")
STATES = {
    plan_pb2.PLAN_STATE_PROPOSED: "PROPOSED",
    plan_pb2.PLAN_STATE_APPROVED: "APPROVED",
    plan_pb2.PLAN_STATE_REJECTED: "REJECTED",
    plan_pb2.PLAN_STATE_APPLIED: "APPLIED",
    plan_pb2.PLAN_STATE_ROLLED_BACK: "ROLLED_BACK",
    plan_pb2.PLAN_STATE_SUPERSEDED: "SUPERSEDED",
}
MAX_PAGE = 1000


def _plan_name(value: str, field: str, errors: Violations) -> str:
    if not PLAN_NAME.fullmatch(value):
        shown = value if len(value) <= 80 else value[:80] + "…"
        errors.add(field, f"must be campaigns/{{campaign}}/plans/{{plan}} (got {shown!r})")
    return value


class LifecycleMethods:
    """Mixed into ReallocatorServicer; `self.store` is the audit store."""

    store: SqlStore

    def get_plan(
        self, request: pb.GetPlanRequest, context: grpc.ServicerContext
    ) -> pb.GetPlanResponse:
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        errors.raise_if_any()
        return pb.GetPlanResponse(plan=self.store.get_plan(name))

    def list_plans(
        self, request: pb.ListPlansRequest, context: grpc.ServicerContext
    ) -> pb.ListPlansResponse:
        errors = Violations()
        match = CAMPAIGN.fullmatch(request.parent)
        if match is None:
            errors.add("parent", f"must be campaigns/{{campaign}} (got {request.parent[:80]!r})")
        if not 0 <= request.page_size <= MAX_PAGE:
            errors.add("page_size", f"must be in 0-{MAX_PAGE} (got {request.page_size})")
        state = ""
        if request.state:
            if request.state not in STATES:
                errors.add("state", f"not a state a stored plan can be in ({request.state})")
            else:
                state = STATES[request.state]
        errors.raise_if_any()
        assert match is not None
        try:
            plans, token = self.store.list_plans(
                match.group(1),
                state=state,
                page_size=request.page_size or 50,
                page_token=request.page_token,
            )
        except ValueError as exc:
            errors.add("page_token", str(exc).removeprefix("page_token: "))
            errors.raise_if_any()
            raise
        return pb.ListPlansResponse(plans=plans, next_page_token=token)

    def review_plan(
        self, request: pb.ReviewPlanRequest, context: grpc.ServicerContext
    ) -> pb.ReviewPlanResponse:
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        if request.decision not in (pb.REVIEW_DECISION_APPROVE, pb.REVIEW_DECISION_REJECT):
            errors.add("decision", "required: REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT")
        errors.raise_if_any()
        actor = request.reviewer or current_actor(context)
        plan = self.store.review(
            name,
            request.decision == pb.REVIEW_DECISION_APPROVE,
            etag=request.etag,
            actor=actor[:200],
            comment=request.comment[:2000],
        )
        return pb.ReviewPlanResponse(plan=plan)

    def confirm_applied(
        self, request: pb.ConfirmAppliedRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmAppliedResponse:
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        when = None
        if request.HasField("apply_time"):
            micros = request.apply_time.ToMicroseconds()
            if not 0 < micros < 32503680000 * 10**6:  # 1970 .. 3000
                errors.add("apply_time", "must be between 1970 and 3000")
            when = micros
        errors.raise_if_any()
        actor = request.actor or current_actor(context)
        plan = self.store.confirm_applied(name, actor=actor[:200], apply_time=when)
        return pb.ConfirmAppliedResponse(plan=plan)

    def record_seller_response(
        self, request: pb.RecordSellerResponseRequest, context: grpc.ServicerContext
    ) -> pb.RecordSellerResponseResponse:
        errors = Violations()
        name = _plan_name(request.plan, "plan", errors)
        if not request.request_id:
            errors.add("request_id", "required")
        if request.response not in (
            plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED,
            plan_pb2.SELLER_RESPONSE_KIND_PARTIAL,
            plan_pb2.SELLER_RESPONSE_KIND_REJECTED,
            plan_pb2.SELLER_RESPONSE_KIND_PENDING,
        ):
            errors.add("response", "required: a SellerResponseKind other than UNSPECIFIED")
        if request.accepted_total < 0:
            errors.add("accepted_total", "must not be negative")
        if request.response == plan_pb2.SELLER_RESPONSE_KIND_PARTIAL and not request.accepted_total:
            errors.add("accepted_total", "required for PARTIAL: the total the seller accepts")
        when = request.response_time.ToMicroseconds() if request.HasField("response_time") else None
        errors.raise_if_any()
        self.store.record_response(
            name,
            request.request_id,
            response=request.response,
            accepted_total=request.accepted_total,
            message=request.message[:2000],
            response_time=when,
            actor=current_actor(context),
        )
        plan = self.store.get_plan(name)
        (answered,) = [r for r in plan.seller_requests if r.request_id == request.request_id]
        return pb.RecordSellerResponseResponse(request=answered)


__all__ = ["LifecycleMethods"]

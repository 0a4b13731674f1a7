"""ReallocatorService: converts messages and calls the transport-free core. No logic of its own."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf.message import Message

from reallocator.config import ServerConfig
from reallocator.core.model import CampaignSnapshot
from reallocator.core.pacing.assessment import assess
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.server.errors import abort_with, precondition_status, too_large_status
from reallocator.v1 import assessment_pb2, plan_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import encode_assessment
from reallocator.wire.plan import encode_plan
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.timefields import to_timedelta
from reallocator.wire.violations import Violations


class ReallocatorServicer:
    """Methods are named after the RPCs in snake case; missing ones answer UNIMPLEMENTED."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    def _snapshot(
        self, snapshot: snapshot_pb2.CampaignSnapshot, policy_msg: object, has_snapshot: bool
    ) -> CampaignSnapshot:
        errors = Violations()
        policy = decode_policy(policy_msg, self.config.default_policy, errors)  # type: ignore[arg-type]
        if not has_snapshot:
            errors.add("snapshot", "required")
            errors.raise_if_any()
        decoded = decode_snapshot(snapshot, policy, errors)
        errors.raise_if_any()
        assert decoded is not None
        return decoded

    def assess_pacing(
        self, request: pb.AssessPacingRequest, context: grpc.ServicerContext
    ) -> pb.AssessPacingResponse:
        snapshot = self._snapshot(request.snapshot, request.policy, request.HasField("snapshot"))
        if request.view not in (
            assessment_pb2.ASSESSMENT_VIEW_UNSPECIFIED,
            assessment_pb2.ASSESSMENT_VIEW_BASIC,
            assessment_pb2.ASSESSMENT_VIEW_FULL,
        ):
            errors = Violations()
            errors.add("view", f"unknown value {request.view}")
            errors.raise_if_any()
        result = assess(snapshot)
        full = request.view != assessment_pb2.ASSESSMENT_VIEW_BASIC
        response = pb.AssessPacingResponse(assessment=encode_assessment(result, include_deals=full))
        self._fits(context, response, "assessment", "ask for ASSESSMENT_VIEW_BASIC")
        return response

    def replan(self, request: pb.ReplanRequest, context: grpc.ServicerContext) -> pb.ReplanResponse:
        snapshot = self._snapshot(request.snapshot, request.policy, request.HasField("snapshot"))
        errors = Violations()
        if request.on_infeasible not in _INFEASIBILITY:
            errors.add("on_infeasible", f"unknown value {request.on_infeasible}")
        limit = self.config.solver_time_limit.total_seconds()
        if request.HasField("time_limit"):
            asked = to_timedelta(request.time_limit, "time_limit", errors, positive=True)
            limit = asked.total_seconds() if asked is not None else limit
        window = timedelta(hours=6)
        if request.HasField("schedule_window"):
            asked = to_timedelta(request.schedule_window, "schedule_window", errors, positive=True)
            window = asked if asked is not None else window
        if request.view not in _PLAN_VIEWS:
            errors.add("view", f"unknown value {request.view}")
        errors.raise_if_any()
        remaining = context.time_remaining()
        if remaining is not None:  # leave room to encode and send the plan
            limit = max(0.05, min(limit, 0.8 * remaining))
        relax = request.on_infeasible == pb.INFEASIBILITY_HANDLING_RELAX
        try:
            plan = build_plan(snapshot, relax=relax, time_limit=limit, schedule_window=window)
        except PlanRejected as exc:
            failures = [("CONSTRAINT", v.constraint, v.message) for v in exc.violations]
            abort_with(
                context,
                precondition_status(str(exc), failures),  # it begins "constraints conflict: "
            )
            raise AssertionError("unreachable") from exc
        response = pb.ReplanResponse()
        # Encoded in place: a copy into the response would cost as much as a large plan's encoding.
        msg = encode_plan(plan, deals=_PLAN_VIEWS[request.view], into=response.plan)
        msg.state = plan_pb2.PLAN_STATE_DRY_RUN if request.dry_run else plan_pb2.PLAN_STATE_PROPOSED
        msg.create_time.GetCurrentTime()
        smaller = (
            "PLAN_VIEW_SUMMARY"
            if request.view == pb.PLAN_VIEW_CHANGES
            else "PLAN_VIEW_CHANGES or PLAN_VIEW_SUMMARY"
        )
        self._fits(
            context,
            response,
            "plan",
            f"ask for {smaller} (view), or raise max_message_bytes on the server and the client",
        )
        return response

    def _fits(
        self, context: grpc.ServicerContext, response: Message, what: str, remedy: str
    ) -> None:
        """Ends the call with a clear RESOURCE_EXHAUSTED when `response` is over the limit."""
        size = response.ByteSize()
        limit = self.config.max_message_bytes
        if size > limit:
            abort_with(context, too_large_status(what, size, limit, remedy))


_PLAN_VIEWS = {
    pb.PLAN_VIEW_UNSPECIFIED: "all",
    pb.PLAN_VIEW_FULL: "all",
    pb.PLAN_VIEW_CHANGES: "changed",
    pb.PLAN_VIEW_SUMMARY: "none",
}

_INFEASIBILITY = (
    pb.INFEASIBILITY_HANDLING_UNSPECIFIED,
    pb.INFEASIBILITY_HANDLING_REJECT,
    pb.INFEASIBILITY_HANDLING_RELAX,
)

"""ReallocatorService: converts messages and calls the transport-free core. No logic of its own."""

from __future__ import annotations

import grpc

from reallocator.config import ServerConfig
from reallocator.core.model import CampaignSnapshot
from reallocator.core.pacing.assessment import assess
from reallocator.v1 import assessment_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import encode_assessment
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
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
        return pb.AssessPacingResponse(assessment=encode_assessment(result, include_deals=full))

    def replan(self, request: pb.ReplanRequest, context: grpc.ServicerContext) -> pb.ReplanResponse:
        self._snapshot(request.snapshot, request.policy, request.HasField("snapshot"))
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Replan validated the request; the engine is not wired in this version yet",
        )
        raise AssertionError("unreachable")

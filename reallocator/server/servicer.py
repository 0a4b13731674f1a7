"""ReallocatorService: converts messages and calls the transport-free core. No logic of its own."""

from __future__ import annotations

import grpc

from reallocator.config import ServerConfig
from reallocator.core.model import CampaignSnapshot
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import snapshot_pb2
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

    def replan(self, request: pb.ReplanRequest, context: grpc.ServicerContext) -> pb.ReplanResponse:
        self._snapshot(request.snapshot, request.policy, request.HasField("snapshot"))
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Replan validated the request; the engine is not wired in this version yet",
        )
        raise AssertionError("unreachable")

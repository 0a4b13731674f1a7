"""Where the reallocator strategy gets its plans: the plan builder in-process, or a running
service over gRPC. Both return the same small `PlanView` the simulator applies.

In-process: ``build_plan(snapshot, history=..., relax=True, time_limit=...,
schedule_window=...)``, the seller answers fed back as `RequestHistory`. Over gRPC: ``Replan``
with the snapshot encoded in the Arrow form and the scenario's policy; seller answers are
reported with ``RecordSellerResponse`` and every plan is approved and confirmed applied
(``ReviewPlan``, ``ConfirmApplied``), so the service plans from the history it stored, as it
would for a trader who applies every plan (best effort: should the life cycle fail, the run
goes on and the server plans without the history).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.model import DealPacing, RequestHistory, RequestKind, SellerResponse
from reallocator.sim.world import BoolArray, IntArray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestView:
    deal_id: str
    kind: RequestKind
    target_total: int
    request_id: str = ""


@dataclass(frozen=True, eq=False)
class PlanView:
    """What the simulator applies: the new flight total per deal (snapshot order), the deals
    to pace ahead and the seller requests; `rejected` when no plan came back (constraints
    conflicted)."""

    status: str
    new_total: IntArray
    requests: tuple[RequestView, ...]
    solver_seconds: float
    wall_seconds: float
    name: str = ""
    violations: int = 0
    rejected: bool = False
    note: str = ""
    ahead: BoolArray | None = None  # deals to pace ahead (DealPacing AHEAD); None: no plan


class Planner(Protocol):
    def plan(
        self, snapshot: CampaignSnapshot, history: RequestHistory, window: timedelta
    ) -> PlanView: ...

    def record_answer(
        self, ref: str, response: SellerResponse, accepted_total: int, at: datetime
    ) -> None: ...


def _unchanged(snapshot: CampaignSnapshot) -> IntArray:
    deals = snapshot.deals
    spent = deals["spend_micros"].to_numpy(np.int64)
    out: IntArray = np.maximum(deals["allocation"].to_numpy(np.int64), spent)
    return out


class InProcessPlanner:
    def __init__(self, time_limit: float = 10.0, relax: bool = True) -> None:
        self.time_limit = time_limit
        self.relax = relax

    def plan(
        self, snapshot: CampaignSnapshot, history: RequestHistory, window: timedelta
    ) -> PlanView:
        from reallocator.core.plan.builder import PlanRejected, build_plan

        t0 = time.perf_counter()
        try:
            plan = build_plan(
                snapshot,
                history=history,
                relax=self.relax,
                time_limit=self.time_limit,
                schedule_window=window,
            )
        except PlanRejected as exc:
            wall = time.perf_counter() - t0
            return PlanView(
                "REJECTED", _unchanged(snapshot), (), wall, wall, rejected=True, note=str(exc)
            )
        wall = time.perf_counter() - t0
        requests = tuple(
            RequestView(r.deal_id, RequestKind(r.kind), int(r.target_total), r.request_id)
            for r in plan.requests
        )
        return PlanView(
            status=str(plan.status),
            new_total=plan.deals["new_total"].to_numpy(np.int64),
            requests=requests,
            solver_seconds=float(plan.solver.total_seconds),
            wall_seconds=wall,
            violations=len(plan.violations),
            ahead=plan.deals["pacing"].to_numpy(dtype=object) == DealPacing.AHEAD.value,
        )

    def record_answer(
        self, ref: str, response: SellerResponse, accepted_total: int, at: datetime
    ) -> None:
        """In-process the history travels with every plan call: nothing to record."""


_KINDS = {
    "REQUEST_KIND_INCREASE": RequestKind.INCREASE,
    "REQUEST_KIND_DECREASE": RequestKind.DECREASE,
    "REQUEST_KIND_RESUME": RequestKind.RESUME,
    "REQUEST_KIND_INVESTIGATE": RequestKind.INVESTIGATE,
}


class GrpcPlanner:
    """Plans from a running `reallocator serve` at `target` ("host:port")."""

    def __init__(self, target: str, time_limit: float = 10.0, timeout: float = 60.0) -> None:
        import grpc

        from reallocator.v1 import reallocator_service_pb2_grpc as svc

        self.target = target
        self.time_limit = time_limit
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", 128 * 1024 * 1024),
                ("grpc.max_receive_message_length", 128 * 1024 * 1024),
            ],
        )
        self.stub: Any = svc.ReallocatorServiceStub(self.channel)
        self._record_ok = True

    def close(self) -> None:
        self.channel.close()

    def plan(
        self, snapshot: CampaignSnapshot, history: RequestHistory, window: timedelta
    ) -> PlanView:
        import grpc

        from reallocator.v1 import reallocator_service_pb2 as pb
        from reallocator.wire.encode import encode_snapshot
        from reallocator.wire.policy import encode_policy

        del history  # the server keeps its own (RecordSellerResponse)
        request = pb.ReplanRequest(
            snapshot=encode_snapshot(snapshot, "arrow", compression="auto"),
            policy=encode_policy(snapshot.policy),
            on_infeasible=pb.INFEASIBILITY_HANDLING_RELAX,
        )
        request.time_limit.FromTimedelta(timedelta(seconds=self.time_limit))
        if "schedule_window" in pb.ReplanRequest.DESCRIPTOR.fields_by_name:
            request.schedule_window.FromTimedelta(window)
        t0 = time.perf_counter()
        try:
            reply = self.stub.Replan(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            wall = time.perf_counter() - t0
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return PlanView(
                    "REJECTED",
                    _unchanged(snapshot),
                    (),
                    wall,
                    wall,
                    rejected=True,
                    note=str(exc.details()),
                )
            raise
        self._apply(reply.plan, snapshot.as_of)
        wall = time.perf_counter() - t0
        return _decode_plan(reply.plan, snapshot, wall)

    def _apply(self, plan: Any, at: datetime) -> None:
        """The simulator applies every plan: through the life cycle, so the service plans with
        the history it stored (approved, then confirmed applied at the snapshot's time)."""
        import grpc

        from reallocator.v1 import plan_pb2
        from reallocator.v1 import reallocator_service_pb2 as pb

        if not plan.name or not self._record_ok:
            return
        try:
            if plan.state == plan_pb2.PLAN_STATE_PROPOSED:
                review = pb.ReviewPlanRequest(
                    name=plan.name,
                    etag=plan.etag,
                    decision=pb.REVIEW_DECISION_APPROVE,
                    reviewer="simulator",
                )
                plan = self.stub.ReviewPlan(review, timeout=self.timeout).plan
            confirm = pb.ConfirmAppliedRequest(name=plan.name, etag=plan.etag, actor="simulator")
            confirm.apply_time.FromDatetime(at)
            self.stub.ConfirmApplied(confirm, timeout=self.timeout)
        except grpc.RpcError as exc:
            self._record_ok = False
            log.warning(
                "the plan life cycle failed (%s): the server plans without the history",
                exc.code().name,
            )

    def record_answer(
        self, ref: str, response: SellerResponse, accepted_total: int, at: datetime
    ) -> None:
        import grpc

        from reallocator.v1 import plan_pb2
        from reallocator.v1 import reallocator_service_pb2 as pb

        if not self._record_ok or not ref:
            return
        plan_name, _, request_id = ref.partition("\x1f")
        kinds = {
            SellerResponse.ACCEPTED: plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED,
            SellerResponse.PARTIAL: plan_pb2.SELLER_RESPONSE_KIND_PARTIAL,
            SellerResponse.REJECTED: plan_pb2.SELLER_RESPONSE_KIND_REJECTED,
        }
        msg = pb.RecordSellerResponseRequest(
            plan=plan_name,
            request_id=request_id,
            response=kinds[response],
            accepted_total=max(0, accepted_total),
        )
        msg.response_time.FromDatetime(at)
        try:
            self.stub.RecordSellerResponse(msg, timeout=self.timeout)
        except grpc.RpcError as exc:
            self._record_ok = False
            log.warning(
                "RecordSellerResponse failed (%s): the server plans without seller answers",
                exc.code().name,
            )


def _decode_plan(msg: Any, snapshot: CampaignSnapshot, wall: float) -> PlanView:
    from reallocator.v1 import plan_pb2

    ids = snapshot.deals["deal_id"].astype(str).tolist()
    new_total = _unchanged(snapshot).copy()
    ahead = np.zeros(len(ids), dtype=bool)
    position = {d: i for i, d in enumerate(ids)}
    for deal in msg.deals:
        i = position.get(deal.deal_id)
        if i is not None:
            new_total[i] = int(deal.new_total)
            ahead[i] = deal.pacing == plan_pb2.DEAL_PACING_AHEAD
    requests = tuple(
        RequestView(
            r.deal_id,
            _KINDS[plan_pb2.RequestKind.Name(r.kind)],
            int(r.target_total),
            f"{msg.name}\x1f{r.request_id}",
        )
        for r in msg.seller_requests
        if plan_pb2.RequestKind.Name(r.kind) in _KINDS
    )
    status = plan_pb2.PlanStatus.Name(msg.status).removeprefix("PLAN_STATUS_")
    return PlanView(
        status=status,
        new_total=new_total,
        requests=requests,
        solver_seconds=msg.solver.total_duration.ToTimedelta().total_seconds(),
        wall_seconds=wall,
        name=msg.name,
        violations=len(msg.violations),
        ahead=ahead,
    )

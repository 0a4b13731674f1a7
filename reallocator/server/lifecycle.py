"""The plan life-cycle RPCs on the audit store: GetPlan, ListPlans, ReviewPlan (whole plans or
single moves), ConfirmApplied, RollbackPlan, RecordSellerResponse, GetPacingHistory and
WatchCampaign. Each converts messages, validates, calls the pure core where something must be
computed (a revision, a rollback) and the store (one transaction); the store's errors map to
statuses in the dispatch layer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from reallocator.lifecycle import PlanLifecycle
from reallocator.server.dispatch import Encoded
from reallocator.server.errors import abort_with, too_large_status
from reallocator.server.identity import current_actor
from reallocator.store.sql import SqlStore, request_hash
from reallocator.v1 import assessment_pb2, common_pb2, plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.plan import Rows, plan_bytes
from reallocator.wire.timefields import to_datetime
from reallocator.wire.violations import Violations

if TYPE_CHECKING:
    from reallocator.config import ServerConfig

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


def _campaign_of(name: str) -> str:
    match = PLAN_NAME.fullmatch(name)
    assert match is not None
    return match.group(1)


def _micros(request: object, field: str, errors: Violations) -> int | None:
    """An optional Timestamp field as unix micros, checked as every request time is."""
    if not request.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp = getattr(request, field)
    if to_datetime(stamp, field, errors) is None:
        return None
    return int(stamp.ToMicroseconds())


def _body_hash(request: object) -> str:
    return request_hash(request.SerializeToString(deterministic=True))  # type: ignore[attr-defined]


PLAN_VIEWS = {
    pb.PLAN_VIEW_UNSPECIFIED: "all",
    pb.PLAN_VIEW_FULL: "all",
    pb.PLAN_VIEW_CHANGES: "changed",
    pb.PLAN_VIEW_SUMMARY: "none",
    pb.PLAN_VIEW_TABLE: "table",
}
"""A plan view as `wire.plan.encode_plan` and the store name it (Replan and GetPlan alike)."""


class LifecycleMethods:
    """Mixed into ReallocatorServicer; `self.store` is the audit store."""

    store: SqlStore
    config: ServerConfig
    lifecycle: PlanLifecycle

    def _fits(
        self,
        context: grpc.ServicerContext,
        response: Message,
        what: str,
        remedy: str,
        kept: Rows | None = None,
    ) -> Encoded:
        """The response serialised once (the dispatch layer sends these bytes), with the plan's
        rows `kept` apart, or a clear RESOURCE_EXHAUSTED when it is over the limit."""
        if kept is None or not kept.parts:
            data: bytes = response.SerializeToString()
            count = None
        else:
            data = plan_bytes(response, "plan", kept)
            count = len(response.plan.deals) + kept.deals  # type: ignore[attr-defined]
        limit = self.config.max_message_bytes
        if len(data) > limit:
            abort_with(context, too_large_status(what, len(data), limit, remedy))
        return Encoded(response, data, count)

    def get_plan(self, request: pb.GetPlanRequest, context: grpc.ServicerContext) -> Encoded:
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        if request.view not in PLAN_VIEWS:
            errors.add("view", f"unknown value {request.view}")
        errors.raise_if_any()
        kept = Rows()  # a long plan's rows as bytes (not copied into the answer's message)
        plan = self.store.get_plan(name, PLAN_VIEWS[request.view], kept)
        return self._fits(
            context,
            pb.GetPlanResponse(plan=plan),
            "plan",
            "ask for PLAN_VIEW_TABLE, PLAN_VIEW_CHANGES or PLAN_VIEW_SUMMARY (view)",
            kept,
        )

    def list_plans(
        self, request: pb.ListPlansRequest, context: grpc.ServicerContext
    ) -> pb.ListPlansResponse:
        """Plans as summaries (no per-deal rows): read one with GetPlan for its deals."""
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
        start = _micros(request, "start_time", errors)
        end = _micros(request, "end_time", errors)
        errors.raise_if_any()
        assert match is not None
        try:
            plans, token = self.store.list_plans(
                match.group(1),
                state=state,
                start=start,
                end=end,
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
        """A whole plan approved or rejected, or single moves: rejecting any re-solves with
        those deals pinned and records the revision (see the proto)."""
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        decisions = (pb.REVIEW_DECISION_APPROVE, pb.REVIEW_DECISION_REJECT)
        if request.decision not in decisions and not (
            request.decision == pb.REVIEW_DECISION_UNSPECIFIED and request.deal_decisions
        ):
            errors.add(
                "decision",
                "required (REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT) unless "
                "deal_decisions are given",
            )
        seen: set[str] = set()
        for i, d in enumerate(request.deal_decisions):
            if d.decision not in decisions:
                errors.add(f"deal_decisions[{i}].decision", "required: APPROVE or REJECT")
            if not d.deal_id:
                errors.add(f"deal_decisions[{i}].deal_id", "required")
            elif d.deal_id in seen:
                errors.add(f"deal_decisions[{i}].deal_id", f"{d.deal_id!r} decided twice")
            seen.add(d.deal_id)
        errors.raise_if_any()
        actor = (request.reviewer or current_actor(context))[:200]
        comment = request.comment[:2000]
        rejected = [d.deal_id for d in request.deal_decisions if d.decision != 1]
        default_reject = request.decision == pb.REVIEW_DECISION_REJECT
        if not request.deal_decisions or default_reject or not rejected:
            approve = request.decision != pb.REVIEW_DECISION_REJECT
            if default_reject and any(d.decision == 1 for d in request.deal_decisions):
                errors.add(
                    "deal_decisions",
                    "approving single moves of a rejected plan: leave decision unset or "
                    "APPROVE, and reject the moves you do not want",
                )
                errors.raise_if_any()
            lc = self.store.review(
                name, approve, etag=request.etag, actor=actor, comment=comment,
                request_id=request.request_id, request_hash=_body_hash(request),
            )  # fmt: skip
            return pb.ReviewPlanResponse(plan=lc.fill(self.store.get_plan(name, "changed")))
        key = f"ReviewPlan:{name}:{request.request_id}" if request.request_id else ""
        revision = self.lifecycle.revise(
            name, request.etag, rejected, actor=actor, comment=comment, key=key,
            digest=_body_hash(request),
        )  # fmt: skip
        return pb.ReviewPlanResponse(plan=revision)

    def confirm_applied(
        self, request: pb.ConfirmAppliedRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmAppliedResponse:
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        when = _micros(request, "apply_time", errors)
        if when == 0:
            errors.add("apply_time", "must be after 1970")
        errors.raise_if_any()
        actor = (request.actor or current_actor(context))[:200]
        lc = self.store.confirm_applied(
            name, actor=actor, apply_time=when, etag=request.etag,
            request_id=request.request_id, request_hash=_body_hash(request),
        )  # fmt: skip
        return pb.ConfirmAppliedResponse(plan=self.store.get_plan(lc.name, "none"))

    def rollback_plan(
        self, request: pb.RollbackPlanRequest, context: grpc.ServicerContext
    ) -> pb.RollbackPlanResponse:
        """Rolls an APPLIED plan back: the closest plan to the allocations before it that
        what was delivered since allows, recorded as a plan (APPROVED) beside the rolled-back
        one (ROLLED_BACK), in one transaction."""
        errors = Violations()
        name = _plan_name(request.name, "name", errors)
        errors.raise_if_any()
        actor = (request.actor or current_actor(context))[:200]
        reason = request.reason[:2000] or "rolled back"
        key = f"RollbackPlan:{name}:{request.request_id}" if request.request_id else ""
        rolled_back, rollback = self.lifecycle.rollback(
            name, request.etag, reason, actor=actor, key=key, digest=_body_hash(request)
        )
        return _rollback_response(rolled_back, rollback)

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
            plan_pb2.SELLER_RESPONSE_KIND_APPLIED,
            plan_pb2.SELLER_RESPONSE_KIND_FAILED,
        ):
            errors.add("response", "required: a SellerResponseKind other than UNSPECIFIED")
        if request.accepted_total < 0:
            errors.add("accepted_total", "must not be negative")
        inventory = None
        if request.HasField("available_inventory"):
            inventory = request.available_inventory
            if inventory < 0 or inventory > 2**53:
                errors.add("available_inventory", "must be in 0-2^53 (budget unit)")
        if request.response == plan_pb2.SELLER_RESPONSE_KIND_PARTIAL and not request.accepted_total:
            errors.add("accepted_total", "required for PARTIAL: the total the seller accepts")
        when = _micros(request, "response_time", errors)
        errors.raise_if_any()
        self.store.record_response(
            name,
            request.request_id,
            response=request.response,
            accepted_total=request.accepted_total,
            message=request.message[:2000],
            response_time=when,
            actor=current_actor(context),
            available_inventory=inventory,
        )
        plan = self.store.get_plan(name, "none")
        (answered,) = [r for r in plan.seller_requests if r.request_id == request.request_id]
        return pb.RecordSellerResponseResponse(request=answered)

    def get_pacing_history(
        self, request: pb.GetPacingHistoryRequest, context: grpc.ServicerContext
    ) -> pb.GetPacingHistoryResponse:
        """The campaign's (or one seller's or channel's) verdict at every stored assessment,
        oldest first, with the plan made from it."""
        errors = Violations()
        if not request.campaign_id:
            errors.add("campaign_id", "required")
        kind = request.entity.kind if request.HasField("entity") else 0
        if kind == common_pb2.ENTITY_KIND_DEAL:
            errors.add(
                "entity.kind",
                "deal verdicts are not stored (they are in each plan's deals): ask for the "
                "campaign, a seller or a channel",
            )
        elif kind not in (0, common_pb2.ENTITY_KIND_CAMPAIGN, common_pb2.ENTITY_KIND_SELLER,
                          common_pb2.ENTITY_KIND_CHANNEL):  # fmt: skip
            errors.add("entity.kind", f"unknown value {kind}")
        if kind in (common_pb2.ENTITY_KIND_SELLER, common_pb2.ENTITY_KIND_CHANNEL) and not (
            request.entity.id
        ):
            errors.add("entity.id", "required for a seller or a channel")
        if not 0 <= request.page_size <= MAX_PAGE:
            errors.add("page_size", f"must be in 0-{MAX_PAGE} (got {request.page_size})")
        start = _micros(request, "start_time", errors)
        end = _micros(request, "end_time", errors)
        errors.raise_if_any()
        try:
            rows, token = self.store.pacing_history(
                request.campaign_id, start=start, end=end,
                page_size=request.page_size or 500, page_token=request.page_token,
                alerts=False,  # the verdicts are read, not the alerts' words
            )  # fmt: skip
        except ValueError as exc:
            errors.add("page_token", str(exc).removeprefix("page_token: "))
            errors.raise_if_any()
            raise
        out = pb.GetPacingHistoryResponse(next_page_token=token)
        for _, payload, plan, state in rows:
            assessment = assessment_pb2.PacingAssessment.FromString(payload)
            verdict = _verdict(assessment, kind, request.entity.id)
            if verdict is None:
                continue
            out.points.add(
                as_of=assessment.as_of,
                verdict=verdict,
                plan=plan,
                plan_state=plan_pb2.PlanState.Value(f"PLAN_STATE_{state}") if state else 0,
            )
        return out

    def watch_campaign(
        self, request: pb.WatchCampaignRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchCampaignResponse]:
        """New alerts (from stored assessments) and, with include_plans, plans as they are
        created and change state (summaries), recorded after the call started by any server
        process sharing the store: it reads the store every `watch_poll`."""
        errors = Violations()
        if not request.campaign_id:
            errors.add("campaign_id", "required")
        if request.min_severity not in (0, *common_pb2.Severity.values()):
            errors.add("min_severity", f"unknown value {request.min_severity}")
        errors.raise_if_any()
        campaign = request.campaign_id
        cursor = self.store.cursor(campaign)
        poll = max(0.05, self.config.watch_poll.total_seconds())
        while context.is_active():
            events, assessed = self.store.events_after(campaign, cursor, request.min_severity)
            if assessed:
                cursor = (cursor[0], assessed[-1][0])
            for _, when, payload in assessed:
                if not payload:
                    continue
                for alert in assessment_pb2.PacingAssessment.FromString(payload).alerts:
                    if alert.severity >= request.min_severity:
                        yield pb.WatchCampaignResponse(event_time=_stamp(when), alert=alert)
            if events:
                cursor = (events[-1][0], cursor[1])
            if request.include_plans:
                sent: set[str] = set()
                for _, when, name in reversed(events):  # the newest state of each plan once
                    if name not in sent:
                        sent.add(name)
                        plan = self.store.get_plan(name, "none")
                        yield pb.WatchCampaignResponse(event_time=_stamp(when), plan=plan)
            remaining = context.time_remaining()
            time.sleep(poll if remaining is None else max(0.0, min(poll, remaining)))


def _stamp(micros: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(micros)
    return ts


def _verdict(
    assessment: assessment_pb2.PacingAssessment, kind: int, entity_id: str
) -> assessment_pb2.PacingVerdict | None:
    if kind in (0, common_pb2.ENTITY_KIND_CAMPAIGN):
        return assessment.campaign
    group = assessment.sellers if kind == common_pb2.ENTITY_KIND_SELLER else assessment.channels
    for v in group:
        if v.entity.id == entity_id:
            return v
    return None


def _rollback_response(
    rolled_back: plan_pb2.Plan, rollback: plan_pb2.Plan
) -> pb.RollbackPlanResponse:
    return pb.RollbackPlanResponse(
        plan=rolled_back, restored=[d for d in rollback.deals if d.delta != 0], rollback=rollback
    )


__all__ = ["LifecycleMethods"]

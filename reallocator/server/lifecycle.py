"""The plan life-cycle RPCs (GetPlan, ListPlans, ReviewPlan, ConfirmApplied) and Replan's
recording: converts messages, calls the audit store and the pure life-cycle rules.

Store errors (reallocator.store.errors) become status codes in dispatch.py; a server started
without a database answers these RPCs FAILED_PRECONDITION.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC as _UTC
from datetime import datetime

import grpc
import pandas as pd

from reallocator.config import ServerConfig
from reallocator.core.lifecycle.rollback import rollback_snapshot
from reallocator.core.lifecycle.states import Action, PlanState, initial_state
from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan, RequestHistory, SellerResponse
from reallocator.server.identity import current_actor
from reallocator.store import (
    AuditStore,
    IdempotencyKey,
    InvalidTransition,
    NewPlan,
    NotFound,
    PlanRecord,
    SellerAnswer,
    SellerRequest,
    StaleEtag,
)
from reallocator.store.plan_codec import decode_plan, encode_plan, encode_summary
from reallocator.store.sql import now
from reallocator.v1 import common_pb2, plan_pb2, policy_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire import plan as wire_plan
from reallocator.wire.assessment import SEVERITY, timestamp
from reallocator.wire.violations import Violations

PLAN_NAME = re.compile(r"^campaigns/([^/]+)/plans/([0-9a-f]{32})$")
CAMPAIGN_NAME = re.compile(r"^campaigns/([^/]+)$")
WATCH_POLL_SECONDS = 0.5
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

VIEWS = {
    pb.PLAN_VIEW_UNSPECIFIED: "all",
    pb.PLAN_VIEW_FULL: "all",
    pb.PLAN_VIEW_CHANGES: "changed",
    pb.PLAN_VIEW_SUMMARY: "none",
}

IAB_STATUSES = {
    "pending_approval": SellerResponse.PENDING,
    "approved": SellerResponse.ACCEPTED,
    "applied": SellerResponse.ACCEPTED,
    "rejected": SellerResponse.REJECTED,
    "failed": SellerResponse.REJECTED,
}
"""IAB Tech Lab seller-agent change-request statuses and the answer each means for planning."""

_RESPONSES = {v: k for k, v in wire_plan.RESPONSE.items()}

_STATES = {s: plan_pb2.PlanState.Value(f"PLAN_STATE_{s}") for s in PlanState}
_STATES_BACK = {v: k for k, v in _STATES.items()}


def request_hash(request: pb.ReplanRequest) -> str:
    """sha256 of the request without its request_id: what "the same body" means."""
    copy = pb.ReplanRequest()
    copy.CopyFrom(request)
    copy.request_id = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def lifecycle_fields(msg: plan_pb2.Plan, record: PlanRecord) -> plan_pb2.Plan:
    """Sets the fields the store owns (name, state, etag, times, history) on `msg`."""
    msg.name = record.name
    msg.state = _STATES[record.state]
    msg.etag = record.etag
    msg.previous_plan = record.previous_plan
    msg.create_time.CopyFrom(timestamp(record.create_time))
    del msg.history[:]
    for e in record.events:
        msg.history.add(
            event_time=timestamp(e.event_time),
            actor=e.actor,
            state=_STATES[e.state],
            comment=e.comment or e.kind,
        )
    return msg


def _plan_name(name: str, field: str, errors: Violations) -> None:
    if not PLAN_NAME.match(name):
        errors.add(field, "expected campaigns/{campaign_id}/plans/{plan_id}")


class LifecycleMixin:
    """Life-cycle RPCs of ReallocatorServicer; `store` is None when no database is set."""

    config: ServerConfig
    store: AuditStore | None

    def _store(self) -> AuditStore:
        if self.store is None:
            raise InvalidTransition(
                "this server records nothing: start it with a database_url to use the plan "
                "life cycle"
            )
        return self.store

    def _stored_plan(self, record: PlanRecord, view: str) -> plan_pb2.Plan:
        assert record.body is not None
        plan = decode_plan(record.body, summary=view == "none")
        return lifecycle_fields(wire_plan.encode_plan(plan, name=record.name, deals=view), record)

    # --- Replan -------------------------------------------------------------------------------

    def _replayed_replan(self, request: pb.ReplanRequest) -> pb.ReplanResponse | None:
        """The plan an earlier Replan with this request_id recorded (None when new)."""
        if self.store is None or request.dry_run or not request.request_id:
            return None
        key = IdempotencyKey("Replan", request.request_id, request_hash(request))
        name = self.store.replay(key)
        if name is None:
            return None
        record = self.store.get_plan(name, summary=VIEWS[request.view] == "none")
        return pb.ReplanResponse(plan=self._stored_plan(record, VIEWS[request.view]))

    def _record_replan(
        self,
        request: pb.ReplanRequest,
        snapshot: CampaignSnapshot,
        plan: Plan,
        msg: plan_pb2.Plan,
        context: grpc.ServicerContext,
    ) -> plan_pb2.Plan:
        """Records a non-dry-run plan (state by the auto-apply policy) and returns `msg` with
        its life-cycle fields, or the plan a concurrent retry of the same request recorded."""
        if self.store is None or request.dry_run:
            return msg
        key = None
        if request.request_id:
            key = IdempotencyKey("Replan", request.request_id, request_hash(request))
        body = encode_plan(plan)
        record = self.store.record_plan(
            NewPlan(
                campaign_id=plan.campaign_id,
                as_of=plan.as_of,
                body=body,
                summary=encode_summary(plan),
                policy=request.policy.SerializeToString(deterministic=True),
                state=initial_state(plan.max_severity, snapshot.policy),
                max_severity=str(plan.max_severity or ""),
                snapshot=request.snapshot.SerializeToString(deterministic=True),
                requests=tuple(
                    SellerRequest(r.request_id, r.deal_id, str(r.kind), int(r.target_total))
                    for r in plan.requests
                ),
            ),
            current_actor(context),
            now(),
            key,
        )
        if record.body != body:  # a concurrent retry of the same request recorded first
            return self._stored_plan(record, VIEWS[request.view])
        return lifecycle_fields(msg, record)

    def _stored_history(self, campaign_id: str) -> RequestHistory | None:
        """What the campaign's applied plans asked of sellers and what they answered (None
        without a store): the caller no longer carries seller answers back."""
        if self.store is None:
            return None
        rows = self.store.request_history(campaign_id)
        if not rows:
            return None
        frame = pd.DataFrame(rows, columns=list(RequestHistory().requests.columns))
        return RequestHistory(requests=frame.astype({"target_total": "int64"}))

    def record_seller_response(
        self, request: pb.RecordSellerResponseRequest, context: grpc.ServicerContext
    ) -> pb.RecordSellerResponseResponse:
        errors = Violations()
        _plan_name(request.plan, "plan", errors)
        if not request.request_id:
            errors.add("request_id", "required")
        status = _RESPONSES.get(request.response)
        if request.response != plan_pb2.SELLER_RESPONSE_KIND_UNSPECIFIED and status is None:
            errors.add("response", f"unknown value {request.response}")
        iab = request.iab_status.strip().lower()
        if iab and iab not in IAB_STATUSES:
            errors.add("iab_status", f"expected one of {', '.join(IAB_STATUSES)}, got {iab!r}")
        if status is None and iab in IAB_STATUSES:
            status = IAB_STATUSES[iab]
            if status == SellerResponse.ACCEPTED and request.accepted_total > 0:
                status = SellerResponse.PARTIAL
        if status is None and not iab and request.response == 0:
            errors.add("response", "required (or iab_status)")
        if request.accepted_total < 0:
            errors.add("accepted_total", "must not be negative")
        if status == SellerResponse.PARTIAL and request.accepted_total <= 0:
            errors.add("accepted_total", "required for a PARTIAL response")
        if request.HasField("available_inventory") and request.available_inventory < 0:
            errors.add("available_inventory", "must not be negative")
        errors.raise_if_any()
        assert status is not None
        store = self._store()
        record = store.get_plan(request.plan, summary=True)
        assert record.body is not None
        plan = decode_plan(record.body, summary=True)
        asked = next((r for r in plan.requests if r.request_id == request.request_id), None)
        if asked is None:
            raise NotFound(f"plan {request.plan!r} has no seller request {request.request_id!r}")
        answered = (
            request.response_time.ToDatetime(tzinfo=_UTC)
            if request.HasField("response_time")
            else now()
        )
        store.record_seller_response(
            SellerAnswer(
                plan_name=request.plan,
                request_id=request.request_id,
                status=str(status),
                iab_status=iab,
                accepted_total=request.accepted_total or None,
                available_inventory=request.available_inventory
                if request.HasField("available_inventory")
                else None,
                message=request.message,
                response_time=answered,
            ),
            current_actor(context),
            now(),
        )
        msg = wire_plan.encode_request(dataclasses.replace(asked, response=status))
        return pb.RecordSellerResponseResponse(request=msg)

    # --- reads --------------------------------------------------------------------------------

    def get_plan(
        self, request: pb.GetPlanRequest, context: grpc.ServicerContext
    ) -> pb.GetPlanResponse:
        errors = Violations()
        _plan_name(request.name, "name", errors)
        if request.view not in VIEWS:
            errors.add("view", f"unknown value {request.view}")
        errors.raise_if_any()
        record = self._store().get_plan(request.name, summary=VIEWS[request.view] == "none")
        return pb.GetPlanResponse(plan=self._stored_plan(record, VIEWS[request.view]))

    def list_plans(
        self, request: pb.ListPlansRequest, context: grpc.ServicerContext
    ) -> pb.ListPlansResponse:
        """Newest first; each plan carries its life-cycle fields, as_of and max_severity
        (GetPlan reads its content). Page tokens name the last plan seen and the filter."""
        errors = Violations()
        match = CAMPAIGN_NAME.match(request.parent)
        if not match:
            errors.add("parent", "expected campaigns/{campaign_id}")
        if request.page_size < 0:
            errors.add("page_size", "must not be negative")
        state = None
        if request.state != plan_pb2.PLAN_STATE_UNSPECIFIED:
            state = _STATES_BACK.get(request.state)
            if state is None:
                errors.add("state", f"not a stored state: {request.state}")
        start = (
            request.start_time.ToDatetime(tzinfo=_UTC) if request.HasField("start_time") else None
        )
        end = request.end_time.ToDatetime(tzinfo=_UTC) if request.HasField("end_time") else None
        filter_key = hashlib.sha256(
            f"{request.parent}|{request.state}|{start}|{end}".encode()
        ).hexdigest()[:16]
        before = None
        if request.page_token:
            before = _read_token(request.page_token, filter_key, errors)
        errors.raise_if_any()
        assert match is not None
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        records = self._store().list_plans(
            match[1],
            state=state,
            start_time=start,
            end_time=end,
            before_seq=before,
            limit=size + 1,
        )
        response = pb.ListPlansResponse()
        for record in records[:size]:
            msg = lifecycle_fields(plan_pb2.Plan(campaign_id=record.campaign_id), record)
            msg.as_of.CopyFrom(timestamp(record.as_of))
            msg.max_severity = SEVERITY.get(record.max_severity, common_pb2.SEVERITY_UNSPECIFIED)
            response.plans.append(msg)
        if len(records) > size:
            response.next_page_token = _token(records[size - 1].seq, filter_key)
        return response

    def watch_campaign(
        self, request: pb.WatchCampaignRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchCampaignResponse]:
        """Streams the campaign's plans as they are created or change state, as PLAN_VIEW_SUMMARY.
        Polls the store (every WATCH_POLL_SECONDS), so it sees what other server processes
        record. Alerts are not recorded yet: with include_plans false the stream stays quiet."""
        errors = Violations()
        if not request.campaign_id:
            errors.add("campaign_id", "required")
        errors.raise_if_any()
        store = self._store()
        [(last, _, _)] = store.plan_events_after(request.campaign_id, None)
        while context.is_active():
            for event_id, name, at in store.plan_events_after(request.campaign_id, last):
                last = event_id
                if request.include_plans:
                    plan = self._stored_plan(store.get_plan(name, summary=True), "none")
                    yield pb.WatchCampaignResponse(event_time=timestamp(at), plan=plan)
            time.sleep(WATCH_POLL_SECONDS)

    # --- changes ------------------------------------------------------------------------------

    def rollback_plan(
        self, request: pb.RollbackPlanRequest, context: grpc.ServicerContext
    ) -> pb.RollbackPlanResponse:
        """Records, in one transaction, a plan restoring the allocations before an APPLIED plan
        (core/lifecycle/rollback.py; given what was spent since, from `snapshot`) as APPROVED,
        and the applied plan as ROLLED_BACK."""
        errors = Violations()
        _plan_name(request.name, "name", errors)
        if not request.HasField("snapshot"):
            errors.add("snapshot", "required: the campaign's state now")
        errors.raise_if_any()
        store = self._store()
        record = store.get_plan(request.name)
        if record.state != PlanState.APPLIED:
            raise InvalidTransition(
                f"plan {request.name!r} is {record.state}: only an APPLIED plan is rolled back"
            )
        assert record.body is not None
        rolled = decode_plan(record.body)
        snapshot = self._snapshot(  # type: ignore[attr-defined]
            request.snapshot, policy_pb2.Policy(), True
        )
        if snapshot.campaign_id != rolled.campaign_id:
            errors.add("snapshot.campaign_id", f"must be {rolled.campaign_id!r}, the plan's")
            errors.raise_if_any()
        plan = build_plan(rollback_snapshot(snapshot, rolled), relax=True)
        reason = request.reason or "rolled back"
        body = encode_plan(plan)
        new = store.record_plan(
            NewPlan(
                campaign_id=plan.campaign_id,
                as_of=plan.as_of,
                body=body,
                summary=encode_summary(plan),
                state=PlanState.APPROVED,
                max_severity=str(plan.max_severity or ""),
                snapshot=request.snapshot.SerializeToString(deterministic=True),
                requests=tuple(
                    SellerRequest(r.request_id, r.deal_id, str(r.kind), int(r.target_total))
                    for r in plan.requests
                ),
                rolls_back=request.name,
                comment=f"{reason} (by {request.actor})" if request.actor else reason,
            ),
            current_actor(context),
            now(),
        )
        rollback_msg = lifecycle_fields(
            wire_plan.encode_plan(plan, name=new.name, deals="changed"), new
        )
        old = self._stored_plan(store.get_plan(request.name, summary=True), "none")
        return pb.RollbackPlanResponse(
            plan=old, restored=list(rollback_msg.deals), rollback_plan=rollback_msg
        )

    def review_plan(
        self, request: pb.ReviewPlanRequest, context: grpc.ServicerContext
    ) -> pb.ReviewPlanResponse:
        errors = Violations()
        _plan_name(request.name, "name", errors)
        actions = {
            pb.REVIEW_DECISION_APPROVE: Action.APPROVE,
            pb.REVIEW_DECISION_REJECT: Action.REJECT,
        }
        if request.decision not in actions:
            errors.add("decision", "required: REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT")
        if request.rejected_deal_ids and request.decision != pb.REVIEW_DECISION_APPROVE:
            errors.add(
                "rejected_deal_ids", "only with REVIEW_DECISION_APPROVE (a partial approval)"
            )
        errors.raise_if_any()
        store = self._store()
        reviewer = request.reviewer or current_actor(context)
        if request.rejected_deal_ids:
            return self._partial_approval(request, reviewer, context)
        record = store.transition(
            request.name,
            actions[request.decision],
            etag=request.etag,
            actor=current_actor(context),
            now=now(),
            comment=request.comment,
            detail={"reviewer": reviewer},
        )
        return pb.ReviewPlanResponse(
            plan=self._stored_plan(store.get_plan(record.name, summary=True), "none")
        )

    def _partial_approval(
        self, request: pb.ReviewPlanRequest, reviewer: str, context: grpc.ServicerContext
    ) -> pb.ReviewPlanResponse:
        """Re-solves the reviewed plan's snapshot with the rejected deals locked at their
        pre-plan allocations and records that revision APPROVED (superseding the reviewed one)."""
        store = self._store()
        record = store.get_plan(request.name)
        if request.etag and request.etag != record.etag:
            raise StaleEtag(f"plan {request.name!r} changed since it was read; read it again")
        if record.state != PlanState.PROPOSED:
            raise InvalidTransition(f"plan {request.name!r} is {record.state}, not PROPOSED")
        assert record.body is not None
        reviewed = decode_plan(record.body)
        deals = reviewed.deals
        known = set(deals["deal_id"].astype(str))
        errors = Violations()
        for i, deal_id in enumerate(request.rejected_deal_ids):
            if deal_id not in known:
                errors.add(f"rejected_deal_ids[{i}]", f"deal {deal_id!r} is not in the plan")
        errors.raise_if_any()
        if not record.snapshot_hash:
            raise InvalidTransition(f"plan {request.name!r} has no stored snapshot to re-solve")
        snapshot_msg = snapshot_pb2.CampaignSnapshot.FromString(
            store.snapshot_body(record.snapshot_hash)
        )
        policy_msg = policy_pb2.Policy.FromString(record.policy)
        snapshot = self._snapshot(snapshot_msg, policy_msg, True)  # type: ignore[attr-defined]
        rejected = deals["deal_id"].astype(str).isin(set(request.rejected_deal_ids)).to_numpy()
        pinned = rollback_snapshot(snapshot, dataclasses.replace(reviewed, deals=deals[rejected]))
        plan = build_plan(pinned, history=self._stored_history(reviewed.campaign_id), relax=True)
        comment = (
            f"partial approval of {request.name} by {reviewer}: moves of "
            f"{', '.join(request.rejected_deal_ids)} rejected"
            + (f"; {request.comment}" if request.comment else "")
        )
        new = store.record_plan(
            NewPlan(
                campaign_id=plan.campaign_id,
                as_of=plan.as_of,
                body=encode_plan(plan),
                summary=encode_summary(plan),
                policy=record.policy,
                state=PlanState.APPROVED,
                max_severity=str(plan.max_severity or ""),
                snapshot=snapshot_msg.SerializeToString(deterministic=True),
                requests=tuple(
                    SellerRequest(r.request_id, r.deal_id, str(r.kind), int(r.target_total))
                    for r in plan.requests
                ),
                comment=comment,
            ),
            current_actor(context),
            now(),
        )
        msg = lifecycle_fields(wire_plan.encode_plan(plan, name=new.name, deals="all"), new)
        return pb.ReviewPlanResponse(plan=msg)

    def confirm_applied(
        self, request: pb.ConfirmAppliedRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmAppliedResponse:
        errors = Violations()
        _plan_name(request.name, "name", errors)
        applied: datetime | None = None
        if request.HasField("apply_time"):
            applied = request.apply_time.ToDatetime(tzinfo=_UTC)
        errors.raise_if_any()
        store = self._store()
        record = store.transition(
            request.name,
            Action.CONFIRM_APPLIED,
            etag=request.etag,
            actor=current_actor(context),
            now=now(),
            comment=f"applied by {request.actor}" if request.actor else "",
            detail={"applied_by": request.actor} if request.actor else None,
            event_time=applied,
        )
        return pb.ConfirmAppliedResponse(
            plan=self._stored_plan(store.get_plan(record.name, summary=True), "none")
        )


def _token(seq: int, filter_key: str) -> str:
    raw = json.dumps({"before": seq, "filter": filter_key}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _read_token(token: str, filter_key: str, errors: Violations) -> int | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        before = int(data["before"])
        same = data["filter"] == filter_key
    except (ValueError, KeyError, TypeError):
        errors.add("page_token", "not a token this server issued")
        return None
    if not same:
        errors.add("page_token", "was issued for a different parent or filter")
        return None
    return before

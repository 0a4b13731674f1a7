"""The plan life-cycle RPCs (GetPlan, ListPlans, ReviewPlan, ConfirmApplied, RecordSellerResponse)
and the audit-store half of Replan: message conversion around `reallocator.store`, rules in
`reallocator.core.lifecycle`. Store errors carry their status code (see dispatch)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc

from reallocator.config import ServerConfig
from reallocator.core.lifecycle import Action, InvalidTransition, PlanState, transition
from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import Plan, RequestHistory, SellerResponse
from reallocator.server.identity import current_actor
from reallocator.store import plan_codec
from reallocator.store.base import AuditStore, NewPlan, SellerRequestRow, StoredPlan
from reallocator.store.errors import Conflict, FailedPrecondition, NotFound
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import timestamp
from reallocator.wire.plan import encode_plan, encode_request
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

PLAN_VIEWS = {
    pb.PLAN_VIEW_UNSPECIFIED: "all",
    pb.PLAN_VIEW_FULL: "all",
    pb.PLAN_VIEW_CHANGES: "changed",
    pb.PLAN_VIEW_SUMMARY: "none",
}
WATCH_POLL_SECONDS = 0.25
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_STATE = {s: plan_pb2.PlanState.Value(f"PLAN_STATE_{s.value}") for s in PlanState}
_STATE_BACK = {v: k for k, v in _STATE.items()}
_RESPONSE = {
    plan_pb2.SELLER_RESPONSE_KIND_PENDING: SellerResponse.PENDING,
    plan_pb2.SELLER_RESPONSE_KIND_ACCEPTED: SellerResponse.ACCEPTED,
    plan_pb2.SELLER_RESPONSE_KIND_PARTIAL: SellerResponse.PARTIAL,
    plan_pb2.SELLER_RESPONSE_KIND_REJECTED: SellerResponse.REJECTED,
}


def request_hash(request: pb.ReplanRequest) -> str:
    """What a request_id guards: the request body apart from the view asked for."""
    body = pb.ReplanRequest()
    body.CopyFrom(request)
    body.ClearField("view")
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()


def _name(value: str, field: str, errors: Violations, parts: int = 4) -> None:
    pieces = value.split("/")
    if not value:
        errors.add(field, "required")
    elif len(pieces) != parts or pieces[0] != "campaigns" or (parts == 4 and pieces[2] != "plans"):
        shape = "campaigns/{campaign}/plans/{plan}" if parts == 4 else "campaigns/{campaign}"
        errors.add(field, f"expected {shape}, got {value!r}")


def with_life_cycle(msg: plan_pb2.Plan, stored: StoredPlan) -> plan_pb2.Plan:
    """Sets the life-cycle fields of a plan message from its stored record."""
    msg.name = stored.name
    msg.state = _STATE[stored.state]
    msg.etag = stored.etag
    msg.previous_plan = stored.previous_plan
    msg.create_time.CopyFrom(timestamp(stored.create_time))
    del msg.history[:]
    for e in stored.events:
        msg.history.add(
            event_time=timestamp(e.time), actor=e.actor, state=_STATE[e.state], comment=e.comment
        )
    return msg


def plan_message(stored: StoredPlan, view: str) -> plan_pb2.Plan:
    """The stored plan as the API shows it (SUMMARY reads no per-deal rows)."""
    plan = (
        plan_codec.decode_summary(stored.body)
        if view == "none"
        else plan_codec.decode_plan(stored.body)
    )
    return with_life_cycle(encode_plan(plan, deals=view), stored)


def _options(request: pb.ReplanRequest) -> bytes:
    """The request without its snapshot and call-specific fields: what a re-solve reuses."""
    options = pb.ReplanRequest()
    options.CopyFrom(request)
    for name in ("snapshot", "view", "request_id", "dry_run"):
        options.ClearField(name)
    return options.SerializeToString(deterministic=True)


class LifecycleMixin:
    """Mixed into ReallocatorServicer, which sets `self.store`."""

    store: AuditStore
    config: ServerConfig

    # --- Replan's store half -----------------------------------------------------------------

    def stored_replan(self, request: pb.ReplanRequest) -> StoredPlan | None:
        """The plan an earlier Replan with this request_id stored (AlreadyExists: other body)."""
        if request.dry_run or not request.request_id:
            return None
        return self.store.find_replan(request.request_id, request_hash(request))

    def stored_history(self, request: pb.ReplanRequest, campaign_id: str) -> RequestHistory | None:
        """The campaign's stored seller requests and answers (None for a dry run)."""
        return None if request.dry_run else self.store.request_history(campaign_id)

    def save_replan(
        self,
        request: pb.ReplanRequest,
        snapshot: CampaignSnapshot,
        plan: Plan,
        context: grpc.ServicerContext,
    ) -> StoredPlan:
        return self.store.save_plan(self._new_plan(request, snapshot, plan), current_actor(context))

    def _new_plan(
        self,
        request: pb.ReplanRequest,
        snapshot: CampaignSnapshot,
        plan: Plan,
        replaces: tuple[str, str] | None = None,
    ) -> NewPlan:
        return NewPlan(
            replaces=replaces,
            campaign_id=plan.campaign_id,
            body=plan_codec.encode_plan(plan),
            severity=plan.max_severity.value if plan.max_severity else "",
            auto_apply_up_to=snapshot.policy.auto_apply_up_to,
            snapshot=request.snapshot.SerializeToString(deterministic=True),
            request_id=request.request_id,
            request_hash=request_hash(request) if request.request_id else "",
            options=_options(request),
            seller_requests=tuple(
                SellerRequestRow(r.request_id, r.deal_id, r.kind.value, r.target_total, plan.as_of)
                for r in plan.requests
            ),
        )

    # --- life-cycle RPCs ---------------------------------------------------------------------

    def get_plan(
        self, request: pb.GetPlanRequest, context: grpc.ServicerContext
    ) -> pb.GetPlanResponse:
        errors = Violations()
        _name(request.name, "name", errors)
        if request.view not in PLAN_VIEWS:
            errors.add("view", f"unknown value {request.view}")
        errors.raise_if_any()
        view = PLAN_VIEWS[request.view]
        stored = self.store.get_plan(request.name, summary=view == "none")
        return pb.GetPlanResponse(plan=plan_message(stored, PLAN_VIEWS[request.view]))

    def list_plans(
        self, request: pb.ListPlansRequest, context: grpc.ServicerContext
    ) -> pb.ListPlansResponse:
        """Newest first, in SUMMARY view; the page token binds the parent and the filter."""
        errors = Violations()
        _name(request.parent, "parent", errors, parts=2)
        if request.page_size < 0:
            errors.add("page_size", f"must not be negative, got {request.page_size}")
        if request.state and request.state not in _STATE_BACK:
            errors.add("state", f"not a stored state: {request.state}")
        errors.raise_if_any()
        scope = f"{request.parent}|{request.state}"
        after = None
        if request.page_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(request.page_token.encode()))
                after, ok = int(token["after"]), token["scope"] == scope
            except (ValueError, KeyError, TypeError, binascii.Error):
                ok = False
            if not ok:
                errors.add("page_token", "not a token from this listing (same parent and state)")
                errors.raise_if_any()
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        state = _STATE_BACK.get(request.state) if request.state else None
        page = self.store.list_plans(request.parent.split("/")[1], state, after, size)
        response = pb.ListPlansResponse(plans=[plan_message(p, "none") for p in page.plans])
        if page.next_after is not None:
            raw = json.dumps({"after": page.next_after, "scope": scope}).encode()
            response.next_page_token = base64.urlsafe_b64encode(raw).decode()
        return response

    def review_plan(
        self, request: pb.ReviewPlanRequest, context: grpc.ServicerContext
    ) -> pb.ReviewPlanResponse:
        errors = Violations()
        _name(request.name, "name", errors)
        actions = {
            pb.REVIEW_DECISION_APPROVE: Action.APPROVE,
            pb.REVIEW_DECISION_REJECT: Action.REJECT,
        }
        rejected: list[str] = []
        seen: set[str] = set()
        for i, d in enumerate(request.deal_decisions):
            if not d.deal_id:
                errors.add(f"deal_decisions[{i}].deal_id", "required")
            elif d.deal_id in seen:
                errors.add(f"deal_decisions[{i}].deal_id", f"{d.deal_id!r} appears twice")
            seen.add(d.deal_id)
            if d.decision not in actions:
                errors.add(f"deal_decisions[{i}].decision", "required: APPROVE or REJECT")
            elif d.decision == pb.REVIEW_DECISION_REJECT:
                rejected.append(d.deal_id)
        if request.decision not in actions and not request.deal_decisions:
            errors.add("decision", "required: REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT")
        if request.decision == pb.REVIEW_DECISION_REJECT and request.deal_decisions:
            errors.add("deal_decisions", "must be empty when the whole plan is rejected")
        errors.raise_if_any()
        comment = request.comment
        if request.reviewer:
            who = f"reviewer {request.reviewer}"
            comment = f"{who}: {comment}" if comment else who
        if rejected:
            return pb.ReviewPlanResponse(plan=self._revise(request, rejected, comment, context))
        stored = self.store.change_state(
            request.name,
            request.etag,
            Action.APPROVE if request.deal_decisions else actions[request.decision],
            current_actor(context),
            comment,
        )
        return pb.ReviewPlanResponse(plan=plan_message(stored, "none"))

    def _revise(
        self,
        request: pb.ReviewPlanRequest,
        rejected: list[str],
        comment: str,
        context: grpc.ServicerContext,
    ) -> plan_pb2.Plan:
        """A partial approval: re-solves the plan's snapshot with the rejected deals locked at
        their allocation before the plan, and stores the result as the next revision."""
        stored = self.store.get_plan(request.name, summary=True)
        if request.etag and request.etag != stored.etag:
            raise Conflict(f"plan {request.name!r} changed since it was read (etag is stale)")
        try:
            transition(stored.state, Action.APPROVE)
        except InvalidTransition as exc:
            raise FailedPrecondition(f"plan {request.name!r}: {exc}") from exc
        snapshot_bytes, option_bytes = self.store.replan_inputs(request.name)
        options = pb.ReplanRequest.FromString(option_bytes)
        options.snapshot.ParseFromString(snapshot_bytes)
        errors = Violations()
        policy = decode_policy(options.policy, self.config.default_policy, errors)
        snapshot = decode_snapshot(options.snapshot, policy, errors)
        errors.raise_if_any()
        assert snapshot is not None
        known = set(snapshot.deals["deal_id"].tolist())
        unknown = [d for d in rejected if d not in known]
        if unknown:
            errors.add("deal_decisions", f"deals not in the plan: {', '.join(unknown[:5])}")
            errors.raise_if_any()
        locked = snapshot.deals["locked"].to_numpy(bool) | snapshot.deals["deal_id"].isin(
            rejected
        ).to_numpy(bool)
        snapshot = dataclasses.replace(snapshot, deals=snapshot.deals.assign(locked=locked))
        window = (
            options.schedule_window.ToTimedelta()
            if options.HasField("schedule_window")
            else timedelta(hours=6)
        )
        try:
            plan = build_plan(
                snapshot,
                history=self.store.request_history(snapshot.campaign_id),
                relax=options.on_infeasible == pb.INFEASIBILITY_HANDLING_RELAX,
                time_limit=self.config.solver_time_limit.total_seconds(),
                schedule_window=window,
            )
        except PlanRejected as exc:
            why = f"the plan with those deals rejected is infeasible: {exc}"
            raise FailedPrecondition(why) from exc
        new = self._new_plan(options, snapshot, plan, replaces=(stored.name, stored.etag))
        note = f"revises {stored.name}; moves rejected: {', '.join(rejected)}"
        new = dataclasses.replace(new, comment=f"{comment}; {note}" if comment else note)
        revised = self.store.save_plan(new, current_actor(context))
        msg = encode_plan(plan, deals="changed")
        return with_life_cycle(msg, revised)

    def confirm_applied(
        self, request: pb.ConfirmAppliedRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmAppliedResponse:
        errors = Violations()
        _name(request.name, "name", errors)
        errors.raise_if_any()
        when = (
            request.apply_time.ToDatetime(UTC)
            if request.HasField("apply_time")
            else datetime.now(UTC)
        )
        comment = f"applied at {when.isoformat()}"
        if request.actor:
            comment += f" by {request.actor}"
        stored = self.store.change_state(
            request.name, request.etag, Action.APPLY, current_actor(context), comment
        )
        return pb.ConfirmAppliedResponse(plan=plan_message(stored, "none"))

    def rollback_plan(
        self, request: pb.RollbackPlanRequest, context: grpc.ServicerContext
    ) -> pb.RollbackPlanResponse:
        """Marks an APPLIED plan ROLLED_BACK and answers the allocations it replaced, for the
        deals it moved (the caller restores them). It does not re-plan for what was spent
        since the plan was applied."""
        errors = Violations()
        _name(request.name, "name", errors)
        errors.raise_if_any()
        comment = request.reason or "rolled back"
        if request.actor:
            comment = f"{comment} (by {request.actor})"
        stored = self.store.change_state(
            request.name, "", Action.ROLL_BACK, current_actor(context), comment
        )
        deals = plan_codec.decode_plan(self.store.get_plan(request.name).body).deals
        moved = deals[deals["delta"].to_numpy() != 0]
        response = pb.RollbackPlanResponse(plan=plan_message(stored, "none"))
        c = {k: moved[k].tolist() for k in ("deal_id", "seller_id", "channel_id")}
        old = moved["old_allocation"].to_numpy()
        new = moved["new_allocation"].to_numpy()
        for i in range(len(moved)):
            response.restored.add(
                deal_id=c["deal_id"][i],
                seller_id=c["seller_id"][i],
                channel_id=c["channel_id"][i],
                old_allocation=int(new[i]),
                new_allocation=int(old[i]),
                delta=int(old[i] - new[i]),
            )
        return response

    def watch_campaign(
        self, request: pb.WatchCampaignRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchCampaignResponse]:
        """Streams the campaign's plan events recorded after the call started, by any server
        process sharing the store: it polls the store every WATCH_POLL_SECONDS. Alerts are not
        stored yet, so without include_plans the stream stays quiet."""
        errors = Violations()
        if not request.campaign_id:
            errors.add("campaign_id", "required")
        errors.raise_if_any()
        (start,) = self.store.campaign_events(request.campaign_id, None)
        after = start.sequence
        while context.is_active():
            for item in self.store.campaign_events(request.campaign_id, after):
                after = item.sequence
                if request.include_plans:
                    stored = self.store.get_plan(item.plan_name, summary=True)
                    msg = plan_message(stored, "none")
                    yield pb.WatchCampaignResponse(event_time=timestamp(item.event.time), plan=msg)
            time.sleep(WATCH_POLL_SECONDS)

    def record_seller_response(
        self, request: pb.RecordSellerResponseRequest, context: grpc.ServicerContext
    ) -> pb.RecordSellerResponseResponse:
        errors = Violations()
        _name(request.plan, "plan", errors)
        if not request.request_id:
            errors.add("request_id", "required")
        if request.response not in _RESPONSE:
            errors.add("response", "required: PENDING, ACCEPTED, PARTIAL or REJECTED")
        if request.accepted_total < 0:
            errors.add("accepted_total", f"must not be negative, got {request.accepted_total}")
        if request.response == plan_pb2.SELLER_RESPONSE_KIND_PARTIAL and not request.accepted_total:
            errors.add("accepted_total", "required for a PARTIAL answer")
        errors.raise_if_any()
        when = (
            request.response_time.ToDatetime(UTC)
            if request.HasField("response_time")
            else datetime.now(UTC)
        )
        answer = _RESPONSE[request.response]
        self.store.record_seller_response(
            request.plan,
            request.request_id,
            answer.value,
            request.accepted_total,
            request.message,
            when,
            current_actor(context),
        )
        plan = plan_codec.decode_summary(self.store.get_plan(request.plan, summary=True).body)
        for r in plan.requests:
            if r.request_id == request.request_id:
                answered = dataclasses.replace(r, response=answer)
                return pb.RecordSellerResponseResponse(request=encode_request(answered))
        raise NotFound(f"plan {request.plan!r} has no seller request {request.request_id!r}")

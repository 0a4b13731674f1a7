"""ReallocatorService: converts messages and calls the transport-free core. No logic of its own."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import grpc
import numpy as np
import pandas as pd
from google.protobuf.message import Message

from reallocator.config import ServerConfig
from reallocator.core.interrupt import Checkpoint, Interrupted
from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.pacing.assessment import Assessment, assess
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan, RequestHistory
from reallocator.core.plan.protection import strayed
from reallocator.core.plan.rollback import rollback_snapshot
from reallocator.core.plan.rolling import WindowStarts, window_starts
from reallocator.core.plan.severity import auto_applicable
from reallocator.server.dispatch import Encoded
from reallocator.server.errors import abort_with, too_large_status
from reallocator.server.identity import current_actor
from reallocator.server.lifecycle import LifecycleMethods
from reallocator.store import plan_codec
from reallocator.store.plan_codec import StoredInputs
from reallocator.store.sql import NewPlan, Replaces, SqlStore, default_database_url, request_hash
from reallocator.v1 import assessment_pb2, plan_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import SEVERITY, encode_assessment
from reallocator.wire.plan import encode_plan
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.timefields import to_timedelta
from reallocator.wire.violations import Violations


def call_checkpoint(context: grpc.ServicerContext) -> Checkpoint:
    """Stops the core's work at its next phase once nobody waits for the answer: the caller's
    deadline has passed (DEADLINE_EXCEEDED) or it cancelled / went away (CANCELLED)."""

    def check(phase: str) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise Interrupted("DEADLINE", phase)
        if not context.is_active():
            raise Interrupted("CANCELLED", phase)

    return check


class ReallocatorServicer(LifecycleMethods):
    """Methods are named after the RPCs in snake case; missing ones answer UNIMPLEMENTED."""

    def __init__(self, config: ServerConfig, store: SqlStore | None = None) -> None:
        self.config = config
        self.store = store or SqlStore.open(config.database_url or default_database_url())

    def _snapshot(
        self, snapshot: snapshot_pb2.CampaignSnapshot, policy_msg: object, has_snapshot: bool
    ) -> CampaignSnapshot:
        errors = Violations()
        policy = decode_policy(policy_msg, self.config.default_policy, errors)  # type: ignore[arg-type]
        if not has_snapshot:
            errors.add("snapshot", "required")
            errors.raise_if_any()
        decoded = decode_snapshot(snapshot, policy, errors, limits=self.config.wire_limits)
        errors.raise_if_any()
        assert decoded is not None
        return decoded

    def assess_pacing(
        self, request: pb.AssessPacingRequest, context: grpc.ServicerContext
    ) -> Encoded:
        snapshot = self._snapshot(request.snapshot, request.policy, request.HasField("snapshot"))
        if request.view not in (
            assessment_pb2.ASSESSMENT_VIEW_UNSPECIFIED,
            assessment_pb2.ASSESSMENT_VIEW_BASIC,
            assessment_pb2.ASSESSMENT_VIEW_FULL,
        ):
            errors = Violations()
            errors.add("view", f"unknown value {request.view}")
            errors.raise_if_any()
        result = assess(snapshot, checkpoint=call_checkpoint(context))
        full = request.view != assessment_pb2.ASSESSMENT_VIEW_BASIC
        response = pb.AssessPacingResponse(assessment=encode_assessment(result, include_deals=full))
        stored = response.assessment if not full else None
        self.store.record_assessment(  # the pacing history and the alerts a watch streams
            snapshot.campaign_id,
            response.assessment.as_of.ToMicroseconds(),
            snapshot=request.snapshot.SerializeToString(deterministic=True),
            assessment=(
                stored.SerializeToString(deterministic=True)
                if stored is not None
                else _assessment_bytes(result)
            ),
            severity=max((a.severity for a in response.assessment.alerts), default=0),
            actor=current_actor(context),
        )
        return self._fits(context, response, "assessment", "ask for ASSESSMENT_VIEW_BASIC")

    def replan(self, request: pb.ReplanRequest, context: grpc.ServicerContext) -> Encoded:
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
            longest = timedelta(hours=self.config.max_schedule_window_hours)
            if window > longest:
                errors.add(
                    "schedule_window",
                    f"at most {longest.total_seconds() / 3600:.0f} h (max_schedule_window_hours)",
                )
        if request.view not in PLAN_VIEWS:
            errors.add("view", f"unknown value {request.view}")
        errors.raise_if_any()
        remaining = context.time_remaining()
        if remaining is not None:  # leave room to encode and send the plan
            limit = max(0.05, min(limit, 0.8 * remaining))
        relax = request.on_infeasible == pb.INFEASIBILITY_HANDLING_RELAX
        key, digest = "", ""
        if request.request_id and not request.dry_run:
            key = f"Replan:{snapshot.campaign_id}:{request.request_id}"
            digest = request_hash(request.SerializeToString(deterministic=True))
            earlier = self.store.find_key(key, digest, f"campaign {snapshot.campaign_id!r}")
            if earlier is not None:  # a retry: the plan it created, recorded once
                again = self.store.get_plan(earlier, PLAN_VIEWS[request.view])
                return self._fits(context, pb.ReplanResponse(plan=again), "plan", "")
        if snapshot.policy.protect_deviation > 0 and not request.dry_run:
            protected = self._protect(
                snapshot,
                request.snapshot.SerializeToString(deterministic=True),
                key,
                digest,
                PLAN_VIEWS[request.view],
                current_actor(context),
            )
            if protected is not None:  # the answer is the rollback
                return self._fits(context, pb.ReplanResponse(plan=protected), "plan", "")
        snapshot = self._with_application(snapshot)
        history = self.store.request_history(snapshot.campaign_id)
        windows = self._windows(snapshot)
        checkpoint = call_checkpoint(context)
        assessment = assess(snapshot, checkpoint=checkpoint)
        # PlanRejected (FAILED_PRECONDITION) and Interrupted map to statuses in the dispatch layer.
        plan = build_plan(
            snapshot,
            relax=relax,
            time_limit=limit,
            schedule_window=window,
            text=False,
            history=history if len(history.requests) else None,
            assessment=assessment,
            checkpoint=checkpoint,
            windows=windows,
        )
        response = pb.ReplanResponse()
        msg = encode_plan(plan, deals=PLAN_VIEWS[request.view], out=response.plan)
        if request.dry_run:
            msg.state = plan_pb2.PLAN_STATE_DRY_RUN
            msg.create_time.GetCurrentTime()
        else:  # recorded: the plan's numbers, whatever view this answer carries
            new = self._new_plan(
                plan,
                msg,
                request.snapshot.SerializeToString(deterministic=True),
                request,
                snapshot.policy,
            )
            new = replace(
                new,
                inputs=_supplied(snapshot, history, windows),
                assessment=_assessment_bytes(assessment),
                max_alert_severity=max(
                    (SEVERITY[str(v)] for v in assessment.alerts["severity"].tolist()), default=0
                ),
            )
            lc = self.store.record_plan(
                new, actor=current_actor(context), key=key, request_hash=digest
            )
            if lc.replayed:  # a concurrent retry recorded it first: its plan
                again = self.store.get_plan(lc.name, PLAN_VIEWS[request.view])
                return self._fits(context, pb.ReplanResponse(plan=again), "plan", "")
            lc.fill(msg)
        smaller = (
            "PLAN_VIEW_SUMMARY"
            if request.view in (pb.PLAN_VIEW_CHANGES, pb.PLAN_VIEW_TABLE)
            else "PLAN_VIEW_TABLE, PLAN_VIEW_CHANGES or PLAN_VIEW_SUMMARY"
        )
        return self._fits(
            context,
            response,
            "plan",
            f"ask for {smaller} (view), or raise max_message_bytes on the server and the client",
        )

    def _with_application(self, snapshot: CampaignSnapshot) -> CampaignSnapshot:
        """Deals the caller sent no last_plan_application for get the campaign's last plan
        confirmed applied (ConfirmApplied's apply_time, and the deal's delivery the plan saw),
        so the pacing curve restarts from it as if the caller had sent it; a caller who still
        sends it gets the same plan. An application after the snapshot's as_of is not yet in
        effect and is left out."""
        deals = snapshot.deals
        missing = deals["plan_applied_at"].to_numpy(np.int64) < 0
        if not missing.any():
            return snapshot
        last = self.store.last_application(snapshot.campaign_id)
        if last is None or last[1] > snapshot.as_of.timestamp():
            return snapshot
        _, at, plan_deals = last
        seen = pd.Series(
            plan_deals["delivered"].to_numpy(np.int64),
            index=plan_deals["deal_id"].astype(str).to_numpy(),
        )
        delivered = seen.reindex(deals["deal_id"].astype(str).to_numpy()).to_numpy(np.float64)
        fill = missing & ~np.isnan(delivered)
        if not fill.any():
            return snapshot
        filled = deals.assign(
            plan_applied_at=np.where(fill, int(at), deals["plan_applied_at"].to_numpy(np.int64)),
            delivered_at_plan=np.where(
                fill,
                np.nan_to_num(delivered).astype(np.int64),
                deals["delivered_at_plan"].to_numpy(np.int64),
            ),
        )
        return replace(snapshot, deals=filled)

    def _windows(self, snapshot: CampaignSnapshot) -> WindowStarts | None:
        """The rolling step windows' starts from the plans applied in the last day, when the
        policy limits steps per hour or day."""
        policy = snapshot.policy
        if policy.step_rel_per_hour <= 0 and policy.step_rel_per_day <= 0:
            return None
        as_of = snapshot.as_of.timestamp()
        applied = self.store.applied_plans(snapshot.campaign_id, int((as_of - 86_400) * 1e6))
        return window_starts(applied, snapshot.deals["deal_id"].to_numpy(dtype=object), as_of)

    def _new_plan(
        self,
        plan: Plan,
        msg: plan_pb2.Plan,
        snapshot: bytes,
        request: pb.ReplanRequest,
        policy: Policy,
    ) -> NewPlan:
        """What the store records of a plan: its numbers, its snapshot and how it was asked
        for (the request without its snapshot, so a review can re-solve it the same way)."""
        options = pb.ReplanRequest()
        options.CopyFrom(request)
        options.ClearField("snapshot")
        options.ClearField("request_id")
        options.ClearField("view")
        return NewPlan(
            msg=msg,
            parts=plan_codec.split(plan, msg),
            snapshot=snapshot,
            options=options.SerializeToString(deterministic=True),
            approve=_auto_approved(plan, policy),
            comment="created by Replan"
            + (" and approved by Policy.auto_apply" if _auto_approved(plan, policy) else ""),
        )

    def _resolve(
        self,
        name: str,
        pin: list[str] | None,
        rollback: bool,
        view: str = "changed",
        now: bytes | None = None,
    ) -> tuple[Plan, plan_pb2.Plan, NewPlan]:
        """A stored plan solved again: with the deals `pin` names held at their allocation
        before it (a partial approval), or rolled back (core/plan/rollback.py) from the
        campaign's newest stored snapshot (or `now`, a snapshot just received). Its request's
        options apply again."""
        inputs = self.store.plan_inputs(name)
        options = pb.ReplanRequest.FromString(inputs.options)
        data = inputs.snapshot
        applied_since = False
        if rollback and now is not None:
            data = now
        elif rollback:
            latest = self.store.latest_snapshot(_campaign(name))
            row = self.store.check_state(name, ("APPLIED",), "")
            if latest is not None:
                data = latest[0]
                # no snapshot newer than the plan's own: its deals hold the plan's totals now
                applied_since = latest[1] <= int(row.as_of)
        message = snapshot_pb2.CampaignSnapshot.FromString(data)
        snapshot = self._snapshot(message, options.policy, True)
        if pin:
            locked = snapshot.deals["locked"].to_numpy(bool) | snapshot.deals["deal_id"].isin(
                pin
            ).to_numpy(bool)
            snapshot = replace(snapshot, deals=snapshot.deals.assign(locked=locked))
        if rollback:
            snapshot = rollback_snapshot(snapshot, inputs.deals, applied_since)
        window = (
            to_timedelta(options.schedule_window, "schedule_window", Violations(), positive=True)
            if options.HasField("schedule_window")
            else None
        ) or timedelta(hours=6)
        history = self.store.request_history(snapshot.campaign_id)
        plan = build_plan(
            snapshot,
            relax=rollback or options.on_infeasible == pb.INFEASIBILITY_HANDLING_RELAX,
            time_limit=self.config.solver_time_limit.total_seconds(),
            schedule_window=window,
            text=False,
            history=history if len(history.requests) else None,
            rollback=rollback,
        )
        msg = encode_plan(plan, deals=view)
        return plan, msg, self._new_plan(plan, msg, data, options, snapshot.policy)

    def _protect(
        self, snapshot: CampaignSnapshot, data: bytes, key: str, digest: str, view: str,
        actor: str,
    ) -> plan_pb2.Plan | None:  # fmt: skip
        """Protection mode: the campaign's last applied plan rolled back (recorded, with the
        reason) when delivery since has strayed from it (core/plan/protection.py)."""
        latest = self.store.latest_applied(snapshot.campaign_id)
        if latest is None:
            return None
        name, as_of, deals, schedules = latest
        why = strayed(deals, schedules, as_of, snapshot)
        if why is None:
            return None
        _, msg, new = self._resolve(name, None, True, view=view, now=data)
        new = replace(new, kind="ROLLBACK", approve=True, comment=f"rolls back {name}: {why}")
        lc = self.store.record_plan(
            new,
            actor=actor,
            key=key,
            request_hash=digest,
            replaces=Replaces(name, "", "APPLIED", "ROLLED_BACK", why),
        )
        return self.store.get_plan(lc.name, view) if lc.replayed else lc.fill(msg)

    def _fits(
        self, context: grpc.ServicerContext, response: Message, what: str, remedy: str
    ) -> Encoded:
        """The response serialised once (the dispatch layer sends these bytes), or a clear
        RESOURCE_EXHAUSTED when it is over the limit."""
        data: bytes = response.SerializeToString()
        limit = self.config.max_message_bytes
        if len(data) > limit:
            abort_with(context, too_large_status(what, len(data), limit, remedy))
        return Encoded(response, data)


def _auto_approved(plan: Plan, policy: Policy) -> bool:
    """Policy.auto_apply: a plan whose most severe change is within its tier approves at once."""
    return bool(auto_applicable([str(plan.max_severity or "MINOR")], policy)[0])


def _supplied(
    snapshot: CampaignSnapshot, history: RequestHistory, windows: WindowStarts | None
) -> StoredInputs:
    """What the service supplied this plan beyond the caller's snapshot (a replay needs it to
    make the same plan): the seller history, and per deal the application and windows, when
    any was filled in (else no rows)."""
    deals = snapshot.deals
    applied = deals["plan_applied_at"].to_numpy(np.int64)
    if windows is None and not (applied >= 0).any():
        per_deal = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _SUPPLIED.items()})
    else:
        n = len(deals)
        per_deal = pd.DataFrame(
            {
                "deal_id": deals["deal_id"].astype(str).to_numpy(),
                "plan_applied_at": applied,
                "delivered_at_plan": deals["delivered_at_plan"].to_numpy(np.int64),
                "window_hour": windows.hour if windows is not None else np.full(n, np.nan),
                "window_day": windows.day if windows is not None else np.full(n, np.nan),
                "windows": np.full(n, windows is not None),
            }
        )
    return StoredInputs(history=history.requests, deals=per_deal)


_SUPPLIED = {
    "deal_id": "str",
    "plan_applied_at": "int64",
    "delivered_at_plan": "int64",
    "window_hour": "float64",
    "window_day": "float64",
    "windows": "bool",
}


def _assessment_bytes(assessment: Assessment) -> bytes:
    """The assessment as stored: campaign, seller and channel verdicts and the alerts (the
    deals' verdicts are in the plan's deals table)."""
    data: bytes = encode_assessment(assessment, include_deals=False).SerializeToString(
        deterministic=True
    )
    return data


def _campaign(plan_name: str) -> str:
    return plan_name.split("/")[1]


PLAN_VIEWS = {
    pb.PLAN_VIEW_UNSPECIFIED: "all",
    pb.PLAN_VIEW_FULL: "all",
    pb.PLAN_VIEW_CHANGES: "changed",
    pb.PLAN_VIEW_SUMMARY: "none",
    pb.PLAN_VIEW_TABLE: "table",
}

_INFEASIBILITY = (
    pb.INFEASIBILITY_HANDLING_UNSPECIFIED,
    pb.INFEASIBILITY_HANDLING_REJECT,
    pb.INFEASIBILITY_HANDLING_RELAX,
)

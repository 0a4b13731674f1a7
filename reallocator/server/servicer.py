"""ReallocatorService: converts messages and calls the transport-free core and the life cycle
(reallocator/lifecycle.py). No logic of its own."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc

from reallocator.background import at_once, begun
from reallocator.config import ServerConfig
from reallocator.core.interrupt import Checkpoint, Interrupted
from reallocator.core.model import CampaignSnapshot, reading
from reallocator.core.pacing.assessment import Assessment, assess
from reallocator.core.plan.builder import build_plan
from reallocator.lifecycle import PlanLifecycle, assessment_bytes, supplied
from reallocator.server.dispatch import Encoded
from reallocator.server.identity import current_actor
from reallocator.server.lifecycle import PLAN_VIEWS, LifecycleMethods
from reallocator.store.sql import LifeCycle, SqlStore, default_database_url, recorded_bytes
from reallocator.v1 import assessment_pb2, plan_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import SEVERITY, assessment_fields
from reallocator.wire.plan import COLUMNAR_FROM, Rows, add_rows, encode_plan
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


_RESPONSE: Any = pb.AssessPacingResponse
"""AssessPacingResponse, whose constructor takes dicts for sub-messages as upb does."""


class ReallocatorServicer(LifecycleMethods):
    """Methods are named after the RPCs in snake case; missing ones answer UNIMPLEMENTED."""

    def __init__(self, config: ServerConfig, store: SqlStore | None = None) -> None:
        self.config = config
        self.limits = config.wire_limits  # built once: a property that makes one a call (~6 us)
        self.store = store or SqlStore.open(config.database_url or default_database_url())
        self.lifecycle = PlanLifecycle(
            self.store,
            config.default_policy,
            config.solver_time_limit.total_seconds(),
            self.limits,
        )

    def _snapshot(
        self, snapshot: snapshot_pb2.CampaignSnapshot, policy_msg: object, has_snapshot: bool
    ) -> CampaignSnapshot:
        errors = Violations()
        policy = decode_policy(policy_msg, self.config.default_policy, errors)  # type: ignore[arg-type]
        if not has_snapshot:
            errors.add("snapshot", "required")
            errors.raise_if_any()
        decoded = decode_snapshot(snapshot, policy, errors, limits=self.limits)
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
        # The snapshot as stored, serialised while the heap still holds free pages of its size:
        # after the assessment its 62 MB (100k deals) were fresh pages each call (15k page
        # faults, 45 -> 23 ms in process).
        stored_snapshot = request.snapshot.SerializeToString(deterministic=True)
        stored_hash = self.store.snapshot_ahead(
            snapshot.campaign_id, request.snapshot.as_of.ToMicroseconds(), stored_snapshot
        )  # hashed and stored beside the assessment when large
        result = assess(snapshot, checkpoint=call_checkpoint(context))
        full = request.view != assessment_pb2.ASSESSMENT_VIEW_BASIC
        # Built around the assessment's fields: a built message would be copied in (~9 ms at
        # 100k deals). upb's constructor takes dicts for sub-messages (the stubs say messages).
        response: pb.AssessPacingResponse = _RESPONSE(
            assessment=assessment_fields(result, include_deals=full)
        )
        stored = response.assessment if not full else None
        self.store.record_assessment(  # the pacing history and the alerts a watch streams
            snapshot.campaign_id,
            response.assessment.as_of.ToMicroseconds(),
            snapshot=stored_snapshot,
            assessment=(
                stored.SerializeToString(deterministic=True)
                if stored is not None
                else assessment_bytes(result)
            ),
            severity=_most_severe(result),
            actor=current_actor(context),
            snapshot_hash=stored_hash(),
        )
        return self._fits(context, response, "assessment", "ask for ASSESSMENT_VIEW_BASIC")

    def replan(self, request: pb.ReplanRequest, context: grpc.ServicerContext) -> Encoded:
        stored, stored_hash, request_digest = b"", None, None
        if not request.dry_run:  # the snapshot as stored, and the hashes recording needs, begun
            # on other threads while the snapshot is decoded and the plan built: at 100k deals
            # ~55 ms of sha256 each (in process, alternated: recorded FULL wall p50 1200 ->
            # 1158 ms; with a request_id, one 62 MB serialisation fewer as well)
            stored, stored_hash, request_digest = recorded_bytes(
                request, whole=bool(request.request_id)
            )
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
            assert request_digest is not None
            digest = request_digest()
            earlier = self.store.find_key(key, digest, f"campaign {snapshot.campaign_id!r}")
            if earlier is not None:  # a retry: the plan it created, recorded once
                return self._recorded_answer(context, earlier, request.view)
        if not request.dry_run:  # stored beside the plan's making when large (validated)
            stored_hash = self.store.snapshot_ahead(
                snapshot.campaign_id, request.snapshot.as_of.ToMicroseconds(), stored, stored_hash
            )
        if snapshot.policy.protect_deviation > 0 and not request.dry_run:
            protected = self.lifecycle.protect(
                snapshot,
                stored,
                key,
                digest,
                PLAN_VIEWS[request.view],
                current_actor(context),
            )
            if protected is not None:  # the answer is the rollback
                return self._fits(context, pb.ReplanResponse(plan=protected), "plan", "")
        snapshot, history, windows = self.lifecycle.supply(snapshot)
        checkpoint = call_checkpoint(context)
        with reading(snapshot.deals):  # the assessment and the plan read each column once
            assessment = assess(snapshot, checkpoint=checkpoint)
            # PlanRejected (FAILED_PRECONDITION) and Interrupted map to statuses in the
            # dispatch layer.
            plan = build_plan(
                snapshot,
                relax=relax,
                time_limit=limit,
                schedule_window=window,
                text=False,
                history=None if history.empty else history,
                assessment=assessment,
                checkpoint=checkpoint,
                windows=windows,
                # A dry-run SUMMARY returns no schedules and keeps nothing: none are made.
                schedules=not request.dry_run or request.view != pb.PLAN_VIEW_SUMMARY,
            )
        response = pb.ReplanResponse()
        kept = Rows()  # a long plan's rows as bytes, not merged into the message
        view = PLAN_VIEWS[request.view]
        if request.dry_run:
            msg = encode_plan(plan, deals=view, out=response.plan, rows=kept)
            msg.state = plan_pb2.PLAN_STATE_DRY_RUN
            msg.create_time.GetCurrentTime()
        else:  # recorded: the plan's numbers, whatever view this answer carries
            assert stored_hash is not None
            msg = encode_plan(plan, deals="none", out=response.plan)  # what the store reads
            actor = current_actor(context)

            def record(summary: plan_pb2.Plan) -> LifeCycle:
                new = self.lifecycle.new_plan(plan, summary, stored, request, snapshot.policy)
                new = replace(
                    new,
                    snapshot_hash=stored_hash(),
                    inputs=supplied(snapshot, history, windows),
                    assessment=assessment_bytes(assessment),
                    max_alert_severity=_most_severe(assessment),
                )
                return self.store.record_plan(new, actor=actor, key=key, request_hash=digest)

            if len(plan.deals) < COLUMNAR_FROM:
                recorded = at_once(record, msg)
            else:  # stored on a thread while the rows are encoded (its own copy of the summary):
                # Arrow's compression and SQLite's writes and commit run outside the GIL, so a
                # second core overlaps them with the encoding (100k deals, FULL: ~0.26 s of
                # storing after a ~0.38 s encode; 1.35 -> 1.27 s over gRPC)
                recorded = begun(record, _copy(msg), name="record-plan")
            add_rows(msg, plan.deals, plan.schedule_table, plan.budget_type, plan.currency, view,
                     kept)  # fmt: skip
            lc = recorded()
            if lc.replayed:  # a concurrent retry recorded it first: its plan
                return self._recorded_answer(context, lc.name, request.view)
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
            kept,
        )

    def _recorded_answer(
        self, context: grpc.ServicerContext, name: str, view: pb.PlanView.ValueType
    ) -> Encoded:
        """The plan an earlier call with this request's id recorded, as Replan answers it."""
        kept = Rows()
        again = self.store.get_plan(name, PLAN_VIEWS[view], kept)
        return self._fits(context, pb.ReplanResponse(plan=again), "plan", "", kept)


def _copy(msg: plan_pb2.Plan) -> plan_pb2.Plan:
    out = plan_pb2.Plan()
    out.CopyFrom(msg)
    return out


def _most_severe(assessment: Assessment) -> int:
    """The wire number of the assessment's most severe alert (0: none), for the store's index."""
    severity = assessment.most_severe
    return SEVERITY[str(severity)] if severity is not None else 0


_INFEASIBILITY = (
    pb.INFEASIBILITY_HANDLING_UNSPECIFIED,
    pb.INFEASIBILITY_HANDLING_REJECT,
    pb.INFEASIBILITY_HANDLING_RELAX,
)

"""The plan life cycle on the audit store: what the life cycle computes, shared by every runner
(the gRPC servicer, the dashboard, the simulator through the API). Replan's record of a plan,
a partial approval's re-solve, a rollback, protection, and what the store supplies a plan
beyond the caller's snapshot (the last plan applied, the rolling step windows).

It calls the pure core (build_plan, rollback, rolling, protection) and the store; transport
comes in as decoded snapshots and goes out as Plan messages. Invalid input raises the wire
layer's InvalidRequest (field violations), the store's errors are the store's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from reallocator.core.model import (
    CampaignSnapshot,
    Policy,
    positions,
    table_of,
    text_column,
    values_of,
)
from reallocator.core.pacing.assessment import Assessment
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan, RequestHistory
from reallocator.core.plan.protection import strayed
from reallocator.core.plan.rollback import rollback_snapshot
from reallocator.core.plan.rolling import WindowStarts, window_starts
from reallocator.core.plan.severity import auto_applicable
from reallocator.store import plan_codec
from reallocator.store.plan_codec import StoredInputs
from reallocator.store.sql import CampaignPast, NewPlan, Replaces, SqlStore
from reallocator.v1 import plan_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import stored_assessment
from reallocator.wire.limits import WireLimits
from reallocator.wire.messages import copy_except
from reallocator.wire.plan import encode_plan
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.timefields import to_timedelta
from reallocator.wire.violations import Violations


class PlanLifecycle:
    """The life cycle's computations over one store, with the service's defaults."""

    def __init__(
        self,
        store: SqlStore,
        default_policy: Policy | None = None,
        time_limit: float = 10.0,
        limits: WireLimits | None = None,
    ) -> None:
        self.store = store
        self.default_policy = default_policy or Policy()
        self.time_limit = time_limit
        self.limits = limits or WireLimits()

    def decode(
        self, snapshot: snapshot_pb2.CampaignSnapshot, policy_msg: object
    ) -> CampaignSnapshot:
        """A snapshot as Replan decodes it (the policy over the service's default)."""
        errors = Violations()
        policy = decode_policy(policy_msg, self.default_policy, errors)  # type: ignore[arg-type]
        decoded = decode_snapshot(snapshot, policy, errors, limits=self.limits)
        errors.raise_if_any()
        assert decoded is not None
        return decoded

    def supply(
        self, snapshot: CampaignSnapshot
    ) -> tuple[CampaignSnapshot, RequestHistory, WindowStarts | None]:
        """What the store supplies a Replan beyond the caller's snapshot, read in one
        transaction: the snapshot with the last application and the declared inventory filled
        in where the caller sent none, the campaign's request history, and the rolling step
        windows."""
        policy = snapshot.policy
        deals = snapshot.deals
        as_of = snapshot.as_of.timestamp()
        uses_windows = policy.step_rel_per_hour > 0 or policy.step_rel_per_day > 0
        past = self.store.campaign_past(
            snapshot.campaign_id,
            moves_since=self._moves_since(snapshot),
            applied_since=int((as_of - 86_400) * 1e6) if uses_windows else None,
            application=bool((values_of(deals, "plan_applied_at", np.int64) < 0).any()),
            declared=bool((values_of(deals, "available_inventory", np.int64) < 0).any()),
            before=round(as_of * 1e6),
        )
        snapshot = _with_declared_inventory(_with_application(snapshot, past.application), past)
        windows = (
            window_starts(past.applied, snapshot.deals["deal_id"].to_numpy(dtype=object), as_of)
            if uses_windows
            else None
        )
        return snapshot, past.history, windows

    @staticmethod
    def _moves_since(snapshot: CampaignSnapshot) -> int | None:
        """Since when the moves of applied plans count (unix micros), when the policy uses
        them: the hysteresis and the reversal charge look back `Policy.reversal_window`."""
        policy = snapshot.policy
        window = policy.reversal_window.total_seconds()
        uses_moves = window > 0 and (policy.reversal_band > 0 or policy.reversal_churn > 0)
        return int((snapshot.as_of.timestamp() - window) * 1e6) if uses_moves else None

    def history(self, snapshot: CampaignSnapshot) -> RequestHistory:
        """What the store knows of the campaign's past for this plan: the seller requests and
        answers, and the moves of the plans applied within `Policy.reversal_window` (for the
        hysteresis and the reversal charge) when the policy uses them."""
        return self.store.request_history(
            snapshot.campaign_id,
            moves_since=self._moves_since(snapshot),
            before=round(snapshot.as_of.timestamp() * 1e6),
        )

    def new_plan(
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
        copy_except(request, options, ("snapshot", "request_id", "view"))  # never the snapshot
        approve = auto_approved(plan, policy)
        return NewPlan(
            msg=msg,
            parts=plan_codec.split(plan, msg),
            snapshot=snapshot,
            options=options.SerializeToString(deterministic=True),
            approve=approve,
            comment="created by Replan" + (" and approved by Policy.auto_apply" if approve else ""),
        )

    def resolve(
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
        snapshot = self.decode(message, options.policy)
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
        history = self.history(snapshot)
        plan = build_plan(
            snapshot,
            relax=rollback or options.on_infeasible == pb.INFEASIBILITY_HANDLING_RELAX,
            time_limit=self.time_limit,
            schedule_window=window,
            text=False,
            history=None if history.empty else history,
            rollback=rollback,
        )
        msg = encode_plan(plan, deals=view)
        return plan, msg, self.new_plan(plan, msg, data, options, snapshot.policy)

    def protect(
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
        _, msg, new = self.resolve(name, None, True, view=view, now=data)
        new = replace(new, kind="ROLLBACK", approve=True, comment=f"rolls back {name}: {why}")
        lc = self.store.record_plan(
            new,
            actor=actor,
            key=key,
            request_hash=digest,
            replaces=Replaces(name, "", "APPLIED", "ROLLED_BACK", why),
        )
        return self.store.get_plan(lc.name, view) if lc.replayed else lc.fill(msg)

    def revise(
        self,
        name: str,
        etag: str,
        rejected: list[str],
        *,
        actor: str,
        comment: str,
        key: str = "",
        digest: str = "",
    ) -> plan_pb2.Plan:
        """A partial approval: re-solves the reviewed plan's snapshot with the rejected deals
        pinned at their allocation before the plan, and records the revision (the reviewed
        plan SUPERSEDED). The revision is APPROVED when it only makes moves the reviewer
        approved (same deal and direction, no larger), else PROPOSED. Returned in the CHANGES
        view."""
        if key:
            earlier = self.store.find_key(key, digest, name)
            if earlier is not None:
                return self.store.get_plan(earlier, "changed")
        row = self.store.check_state(name, ("PROPOSED",), etag)
        original = self.store.plan_inputs(name).deals
        known = set(original["deal_id"].astype(str).tolist())
        unknown = [d for d in rejected if d not in known]
        if unknown:
            errors = Violations()
            errors.add("deal_decisions", f"deals not in the plan: {', '.join(unknown[:5])}")
            errors.raise_if_any()
        plan, msg, new = self.resolve(name, rejected, False)
        approved = within_approved(original, plan.deals, rejected)
        note = f"revises {name}: moves of {', '.join(rejected[:20])} rejected"
        if len(rejected) > 20:
            note += f" and {len(rejected) - 20} more"
        new = replace(
            new,
            kind="REVISION",
            approve=approved,
            comment=f"{comment}; {note}" if comment else note,
        )
        lc = self.store.record_plan(
            new,
            actor=actor,
            key=key,
            request_hash=digest,
            replaces=Replaces(
                name, etag or row.etag, "PROPOSED", "SUPERSEDED", comment or "partially approved"
            ),
        )
        return self.store.get_plan(lc.name, "changed") if lc.replayed else lc.fill(msg)

    def rollback(
        self, name: str, etag: str, reason: str, *, actor: str, key: str = "", digest: str = ""
    ) -> tuple[plan_pb2.Plan, plan_pb2.Plan]:
        """Rolls an APPLIED plan back: the closest plan to the allocations before it that
        what was delivered since allows, recorded (APPROVED) beside the rolled-back one
        (ROLLED_BACK) in one transaction. Returns (the rolled-back plan's summary, the
        rollback in the CHANGES view)."""
        if key:
            earlier = self.store.find_key(key, digest, name)
            if earlier is not None:
                return self.store.get_plan(name, "none"), self.store.get_plan(earlier, "changed")
        row = self.store.check_state(name, ("APPLIED",), etag)
        _, msg, new = self.resolve(name, None, True)
        new = replace(new, kind="ROLLBACK", approve=True, comment=f"rolls back {name}: {reason}")
        lc = self.store.record_plan(
            new,
            actor=actor,
            key=key,
            request_hash=digest,
            replaces=Replaces(name, etag or row.etag, "APPLIED", "ROLLED_BACK", reason),
        )
        rollback = self.store.get_plan(lc.name, "changed") if lc.replayed else lc.fill(msg)
        return self.store.get_plan(name, "none"), rollback


def auto_approved(plan: Plan, policy: Policy) -> bool:
    """Policy.auto_apply: a plan whose most severe change is within its tier approves at once."""
    return bool(auto_applicable([str(plan.max_severity or "MINOR")], policy)[0])


def supplied(
    snapshot: CampaignSnapshot, history: RequestHistory, windows: WindowStarts | None
) -> StoredInputs:
    """What the service supplied this plan beyond the caller's snapshot (a replay needs it to
    make the same plan): the seller history, and per deal the application and windows, when
    any was filled in (else no rows)."""
    deals = snapshot.deals
    applied = values_of(deals, "plan_applied_at", np.int64)  # no Series built
    inventory = values_of(deals, "available_inventory", np.int64)
    if windows is None and not (applied >= 0).any() and not (inventory >= 0).any():
        per_deal = _NOTHING_SUPPLIED
    else:  # built from its blocks: the dict constructor cost ~0.25 ms at 30 deals
        per_deal = table_of(
            {
                "deal_id": text_column(deals, "deal_id"),
                "plan_applied_at": applied,
                "delivered_at_plan": values_of(deals, "delivered_at_plan", np.int64),
                "available_inventory": inventory,
                "window_hour": windows.hour if windows is not None else np.nan,
                "window_day": windows.day if windows is not None else np.nan,
                "windows": windows is not None,
            },
            _SUPPLIED,
        )
    return StoredInputs(history=history.requests, deals=per_deal, moves=history.moves)


_SUPPLIED = {
    "deal_id": "str",
    "plan_applied_at": "int64",
    "delivered_at_plan": "int64",
    "available_inventory": "int64",
    "window_hour": "float64",
    "window_day": "float64",
    "windows": "bool",
}
_NOTHING_SUPPLIED = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _SUPPLIED.items()})
"""Shared, never mutated: most plans are made from the caller's snapshot alone."""


def _with_application(
    snapshot: CampaignSnapshot, last: tuple[str, float, pa.Table] | None
) -> CampaignSnapshot:
    """Deals the caller sent no last_plan_application for, and that the campaign's last plan
    confirmed applied (`last`) moved (buyer-paced deals), get that application (ConfirmApplied's
    apply_time, and the deal's delivery the plan saw), so the pacing curve restarts from it as
    if the caller had sent it; a caller who still sends it gets the same plan. An application
    after the snapshot's as_of is not yet in effect and is left out."""
    deals = snapshot.deals
    missing = values_of(deals, "plan_applied_at", np.int64) < 0
    if last is None or not missing.any() or last[1] > snapshot.as_of.timestamp():
        return snapshot
    _, at, plan_deals = last
    # The plan restarted the curve of the deals it moved and the buyer paces; a guaranteed
    # deal's changes take effect when its seller commits (the caller says when). Its columns
    # as arrays: a frame of them cost more than the rest of this (an hourly call makes one).
    delta = plan_deals.column("delta").to_numpy().astype(np.int64, copy=False)
    pacing = plan_deals.column("pacing").to_numpy().astype(str)
    took = (delta != 0) & (pacing != "SELLER")
    # Each deal's row among those the plan moved (-1: none), by the ids' index (unique).
    ids = plan_deals.column("deal_id").to_numpy().astype(str)
    at_row = positions(text_column(deals, "deal_id"), ids[took])
    fill = missing & (at_row >= 0)
    if not fill.any():
        return snapshot
    delivered = plan_deals.column("delivered").to_numpy().astype(np.int64, copy=False)
    filled = deals.assign(
        plan_applied_at=np.where(fill, int(at), values_of(deals, "plan_applied_at", np.int64)),
        delivered_at_plan=np.where(
            fill,
            delivered[took][np.maximum(at_row, 0)],
            values_of(deals, "delivered_at_plan", np.int64),
        ),
    )
    return replace(snapshot, deals=filled)


def _with_declared_inventory(snapshot: CampaignSnapshot, past: CampaignPast) -> CampaignSnapshot:
    """Deals whose snapshot carries no available_inventory get the newest figure their seller
    declared with an answer (RecordSellerResponse.available_inventory)."""
    deals = snapshot.deals
    if past.declared.empty:
        return snapshot
    unknown = values_of(deals, "available_inventory", np.int64) < 0
    if not unknown.any():
        return snapshot
    found = past.declared.reindex(deals["deal_id"].astype(str).to_numpy()).to_numpy(np.float64)
    fill = unknown & ~np.isnan(found)
    if not fill.any():
        return snapshot
    inventory = np.where(
        fill, np.nan_to_num(found).astype(np.int64), deals["available_inventory"].to_numpy()
    )
    return replace(snapshot, deals=deals.assign(available_inventory=inventory))


def assessment_bytes(assessment: Assessment) -> bytes:
    """The assessment as stored: campaign, seller and channel verdicts and the alerts (the
    deals' verdicts are in the plan's deals table), in the store's form (`stored_assessment`:
    numbers and labels, the alerts worded when read back)."""
    return stored_assessment(assessment)


def _campaign(plan_name: str) -> str:
    return plan_name.split("/")[1]


def within_approved(original: pd.DataFrame, revised: pd.DataFrame, rejected: list[str]) -> bool:
    """Every move of the revision is one the reviewer approved: the same deal moved the same
    way by no more (deals are matched by id; the revision's rejected deals do not move)."""
    before = original.set_index(original["deal_id"].astype(str))["delta"]
    delta = revised["delta"].to_numpy(np.int64)
    ids = revised["deal_id"].astype(str).to_numpy()
    approved = before.reindex(ids).fillna(0).to_numpy(np.int64)
    approved = np.where(np.isin(ids, rejected), 0, approved)
    ok = (delta == 0) | (
        (np.sign(delta) == np.sign(approved)) & (np.abs(delta) <= np.abs(approved))
    )
    return bool(ok.all())


__all__ = ["PlanLifecycle", "assessment_bytes", "supplied", "within_approved"]

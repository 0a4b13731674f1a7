"""Campaigns recorded in a real audit store the way Replan records them: snapshots built by
tests/builders.py, plans by the core (build_plan) and the wire (encode_plan), stored with
SqlStore.record_plan. Each campaign gets snapshots a day apart whose delivery grows with time,
so its chart has one delivered point per snapshot."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import AS_OF, build_snapshot, lifetime_pacing, random_delivery, random_snapshot_spec

from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.store.plan_codec import split
from reallocator.store.sql import NewPlan, SqlStore
from reallocator.v1 import plan_pb2, snapshot_pb2
from reallocator.wire.plan import encode_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


def snapshots(
    campaign: str,
    n_deals: int,
    n_snapshots: int,
    seed: int,
    *,
    n_channels: int | None = None,
    later_days: int = 0,
) -> list[snapshot_pb2.CampaignSnapshot]:
    """`n_snapshots` snapshots of one campaign, a day apart, the newest at AS_OF (plus
    `later_days`, for a snapshot that comes after those already recorded); delivery to
    date grows in proportion to the time since the campaign's start; the lifetime budget is the
    deals' booked total."""
    spec = random_snapshot_spec(n_deals, seed, n_channels=n_channels)
    # The campaign's budget is what its deals booked, so delivery and the curve share a scale.
    spec = spec.replace(pacing=lifetime_pacing(sum(d.allocation for d in spec.deals)))
    start = spec.pacing.start_time.ToDatetime().replace(tzinfo=AS_OF.tzinfo)
    out = []
    for i in range(n_snapshots):
        as_of = AS_OF - timedelta(days=n_snapshots - 1 - i - later_days)
        share = (as_of - start) / (AS_OF - start)
        deals = tuple(
            dataclasses.replace(
                d,
                spend_micros=int(d.spend_micros * share),
                impressions=int(d.impressions * share),
                clicks=int(d.clicks * share),
                completes=int(d.completes * share),
                plan_apply_unix_seconds=None,
                delivered_at_apply=0,
            )
            for d in spec.deals
        )
        at = spec.replace(
            campaign_id=campaign,
            as_of=as_of,
            deals=deals,
            delivery=random_delivery(n_deals, 24, seed + i, as_of),
        )
        out.append(build_snapshot(at, "columns"))
    return out


def new_plan(
    msg: snapshot_pb2.CampaignSnapshot, snapshot: bytes | None = None, approve: bool = False
) -> NewPlan:
    """The plan the core makes of `msg`, as Replan hands it to the store (`snapshot`: the
    bytes recorded as its snapshot, the message's own by default)."""
    errors = Violations()
    decoded = decode_snapshot(msg, Policy(), errors)
    assert decoded is not None, errors.items
    plan = build_plan(decoded, schedule_window=timedelta(hours=6), text=False)
    summary = encode_plan(plan, deals="none")
    return NewPlan(
        msg=summary,
        parts=split(plan, summary),
        snapshot=msg.SerializeToString(deterministic=True) if snapshot is None else snapshot,
        approve=approve,
    )


def record(
    store: SqlStore,
    msg: snapshot_pb2.CampaignSnapshot,
    *,
    snapshot: bytes | None = None,
    actor: str = "orchestrator",
    approve: bool = False,
) -> plan_pb2.Plan:
    """Records the plan of `msg` and returns it as the store reads it back."""
    lc = store.record_plan(new_plan(msg, snapshot, approve), actor=actor)
    return store.get_plan(lc.name)


def record_campaign(
    store: SqlStore, campaign: str, n_deals: int, n_snapshots: int, seed: int, **kw: int
) -> list[plan_pb2.Plan]:
    """Records one plan per snapshot (each newer one supersedes the older); returns them as
    the store reads them now, oldest first: only the last is PROPOSED."""
    names = [
        record(store, msg).name for msg in snapshots(campaign, n_deals, n_snapshots, seed, **kw)
    ]
    return [store.get_plan(name) for name in names]

"""Real plans for store tests: built by the core from random campaigns, as Replan records them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from builders import build_snapshot, random_snapshot_spec

from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.store.plan_codec import split
from reallocator.store.sql import NewPlan, SqlStore
from reallocator.wire.plan import encode_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


def new_plan(campaign: str, n: int = 12, seed: int = 1, **fields: Any) -> NewPlan:
    """A plan of `n` deals for `campaign`, ready for `SqlStore.record_plan`."""
    msg = build_snapshot(random_snapshot_spec(n, seed), "deals")
    msg.campaign_id = campaign
    errors = Violations()
    snapshot = decode_snapshot(msg, Policy(), errors)
    assert snapshot is not None, errors.items
    plan = build_plan(snapshot, text=False)
    summary = encode_plan(plan, deals="none")
    return NewPlan(
        msg=summary,
        parts=split(plan, summary),
        snapshot=msg.SerializeToString(deterministic=True),
        **fields,
    )


def with_requests(campaign: str, at_least: int = 2) -> NewPlan:
    """A plan asking sellers for at least `at_least` changes (the first seed that does)."""
    for seed in range(200):
        new = new_plan(campaign, n=30, seed=seed)
        if len(new.msg.seller_requests) >= at_least:
            return new
    raise AssertionError("no random campaign asked sellers for changes")


def applied_hourly(store: SqlStore, campaign: str, seed: int) -> Iterator[str]:
    """30-deal plans of `campaign` an hour apart, each approved and confirmed applied a minute
    after its as_of; yields each plan's name once it is applied (stop when enough)."""
    t0 = new_plan(campaign).msg.as_of.ToMicroseconds()
    for k in itertools.count():
        new = new_plan(campaign, n=30, seed=seed + k)
        new.msg.as_of.FromMicroseconds(t0 + k * 3_600_000_000)
        lc = store.record_plan(new, actor="svc")
        store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
        store.confirm_applied(lc.name, actor="ana", apply_time=t0 + k * 3_600_000_000 + 60)
        yield lc.name

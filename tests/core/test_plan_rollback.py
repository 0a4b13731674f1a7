"""Rolling a plan back: from the campaign as the plan left it, the rollback plan returns every
deal to the total it held before the plan (never below what it has delivered), moves nothing
else, and says why; where limits forbid it, the plan is RELAXED and says which limit."""

from __future__ import annotations

import dataclasses

import numpy as np
from builders import build_snapshot, random_snapshot_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.engine.bounds import SPENT_COLUMN
from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.rollback import rollback_snapshot
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 60), seed=st.integers(0, 5_000), stale=st.booleans())
def test_a_rollback_returns_every_deal_to_where_the_plan_found_it(
    n: int, seed: int, stale: bool
) -> None:
    errors = Violations()
    snapshot = decode_snapshot(
        build_snapshot(random_snapshot_spec(n, seed), "deals"), Policy(), errors
    )
    assert snapshot is not None, errors.items
    plan = build_plan(snapshot, text=False)
    before = plan.deals
    # The campaign as the plan left it: either a newer snapshot with the plan's totals booked,
    # or the plan's own snapshot (nothing newer recorded: `applied_since`).
    now = snapshot
    if not stale:
        booked = np.where(
            snapshot.deals["locked"].to_numpy(bool),
            snapshot.deals["allocation"].to_numpy(np.int64),
            before["new_total"].to_numpy(np.int64),
        )
        now = dataclasses.replace(snapshot, deals=snapshot.deals.assign(allocation=booked))
    back = build_plan(rollback_snapshot(now, before, stale), relax=True, rollback=True)
    spent = now.deals[SPENT_COLUMN[now.pacing.budget_type]].to_numpy(np.int64)
    wanted = np.maximum(
        before["delivered"].to_numpy(np.int64) + before["old_allocation"].to_numpy(np.int64),
        spent,
    )
    got = back.deals["new_total"].to_numpy(np.int64)
    if str(back.status) == "RELAXED":
        assert back.violations  # what stood in the way is named
    elif str(back.status) != "NO_CHANGE":
        assert np.array_equal(got, wanted)
    moved = back.deals["delta"].to_numpy() != 0
    assert set(back.deals["reason"][moved]) <= {"ROLLBACK"}
    assert all("rolled-back plan" in t for t in back.deals["rationale"][moved])
    assert set(back.deals["reason"][~moved]) <= {"UNCHANGED"}


def test_deals_the_plan_did_not_know_keep_their_allocation() -> None:
    errors = Violations()
    snapshot = decode_snapshot(
        build_snapshot(random_snapshot_spec(20, 7), "deals"), Policy(), errors
    )
    assert snapshot is not None
    plan = build_plan(snapshot, text=False)
    known = plan.deals.iloc[:10]  # the plan knew half of today's deals
    pinned = rollback_snapshot(snapshot, known)
    assert pinned.deals["locked"].to_numpy(bool)[10:].all()
    assert (
        not pinned.deals["locked"].to_numpy(bool)[:10].any()
        or snapshot.deals["locked"].to_numpy(bool)[:10].any()
    )

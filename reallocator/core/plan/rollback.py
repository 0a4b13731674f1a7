"""Rolling a plan back: the snapshot whose plan returns each deal towards where the rolled-back
plan found it, given what has been delivered since.

The rolled-back plan's deals table says, per deal, the total it held before the plan
(`delivered + old_allocation` at the plan's as_of). The rollback pins each deal of the current
snapshot at that total (its minimum and maximum), but never below what it has delivered by now,
and lifts the step limits (going back is the point). `build_plan(..., rollback=True, relax=True)`
then solves it: where the pins conflict with the budget or a seller or channel limit (money
delivered since cannot be unspent), relaxation finds the smallest departure from them and lists
it, so the rollback is the closest plan to the old allocation the campaign allows. Deals the
rolled-back plan did not know keep their allocation (locked).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from reallocator.core.engine.bounds import SPENT_COLUMN
from reallocator.core.model import CampaignSnapshot


def rollback_snapshot(
    snapshot: CampaignSnapshot, before: pd.DataFrame, applied_since: bool = False
) -> CampaignSnapshot:
    """`snapshot` (the campaign now) with each deal of `before` (the rolled-back plan's deals
    table) pinned at its total before that plan. `applied_since`: the snapshot predates the
    plan's application (no newer one was recorded), so the deals hold the plan's totals now."""
    deals = snapshot.deals
    spent = deals[SPENT_COLUMN[snapshot.pacing.budget_type]].to_numpy(np.int64)
    totals = before["delivered"].to_numpy(np.int64) + before["old_allocation"].to_numpy(np.int64)
    by_deal = pd.Series(totals, index=before["deal_id"].astype(str).to_numpy())
    target = by_deal.reindex(deals["deal_id"].astype(str).to_numpy()).to_numpy(np.float64)
    known = ~np.isnan(target)
    pinned = np.maximum(np.nan_to_num(target, nan=0.0).astype(np.int64), spent)
    allocation = deals["allocation"].to_numpy(np.int64)
    if applied_since:
        planned = pd.Series(before["new_total"].to_numpy(np.int64), index=by_deal.index)
        now = planned.reindex(deals["deal_id"].astype(str).to_numpy()).to_numpy(np.float64)
        allocation = np.where(known, np.nan_to_num(now).astype(np.int64), allocation)
    out = deals.assign(
        min_allocation=np.where(known, pinned, deals["min_allocation"].to_numpy(np.int64)),
        max_allocation=np.where(known, pinned, deals["max_allocation"].to_numpy(np.int64)),
        locked=deals["locked"].to_numpy(bool) | ~known,
        allocation=allocation,
    )
    policy = replace(snapshot.policy, step_abs=2**62, step_rel=1e6)
    return replace(snapshot, deals=out, policy=policy)


__all__ = ["rollback_snapshot"]

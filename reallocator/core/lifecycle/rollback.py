"""Rolling a plan back: the snapshot whose plan restores the allocations before it.

Each deal the rolled-back plan covered is booked back at its pre-plan total (delivered at the
plan + its remaining allocation then) and locked there, so the solver moves nothing else
(churn-minimising) and what was spent since counts against the restored booking. Deals the plan
did not cover keep their current booking and stay free to absorb what the locks cannot hold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.model import Plan


def rollback_snapshot(now: CampaignSnapshot, rolled_back: Plan) -> CampaignSnapshot:
    """`now` with the deals of `rolled_back` booked back at their pre-plan totals and locked."""
    before = rolled_back.deals.set_index("deal_id")
    pre_total = before["delivered"].to_numpy(np.int64) + before["old_allocation"].to_numpy(np.int64)
    target = pd.Series(pre_total, index=before.index)
    deals = now.deals.copy()
    ids = pd.Index(deals["deal_id"].astype(str))
    pos = target.index.get_indexer(ids)
    covered = pos >= 0
    allocation = deals["allocation"].to_numpy(np.int64).copy()
    allocation[covered] = target.to_numpy(np.int64)[pos[covered]]
    deals["allocation"] = allocation
    deals["locked"] = deals["locked"].to_numpy(bool) | covered
    return dataclasses.replace(now, deals=deals)

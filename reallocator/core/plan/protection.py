"""Protection mode: has delivery since an applied plan strayed from what the plan scheduled?

The plan's schedule table holds, for the deals the buyer paces, hourly targets from the plan's
as_of. Over the whole hours elapsed since (at most the schedule window and the policy's
`protect_window`), the campaign is compared as a whole:

    expected = sum of those deals' hourly targets over the elapsed hours
    actual   = what the same deals delivered since the plan (now - at the plan)
    strayed  = |actual / expected - 1| > Policy.protect_deviation

Only whole hours count and at least one must have passed, so a plan is judged on evidence; the
answer is the sentence recorded as the rollback's reason, or None.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reallocator.core.engine.bounds import SPENT_COLUMN
from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.model import ScheduleTable
from reallocator.core.plan.text import amounts


def strayed(
    plan_deals: pd.DataFrame,
    schedules: ScheduleTable | None,
    plan_as_of: float,
    now: CampaignSnapshot,
) -> str | None:
    """Why the applied plan should be rolled back, or None (see the module)."""
    policy = now.policy
    if policy.protect_deviation <= 0 or schedules is None or len(schedules) == 0:
        return None
    elapsed_s = now.as_of.timestamp() - plan_as_of
    if elapsed_s > policy.protect_window.total_seconds():
        return None
    hours = min(int(elapsed_s // 3600), schedules.n_hours)
    if hours < 1:
        return None
    expected = int(schedules.hourly_target[:, :hours].sum())
    if expected <= 0:
        return None
    ids = plan_deals["deal_id"].astype(str).to_numpy()[schedules.deal_index]
    bt = now.pacing.budget_type
    delivered_now = pd.Series(
        now.deals[SPENT_COLUMN[bt]].to_numpy(np.int64),
        index=now.deals["deal_id"].astype(str).to_numpy(),
    )
    at_plan = plan_deals["delivered"].to_numpy(np.int64)[schedules.deal_index]
    current = delivered_now.reindex(ids).to_numpy(np.float64)
    known = ~np.isnan(current)
    actual = int((np.nan_to_num(current).astype(np.int64) - at_plan)[known].sum())
    ratio = actual / expected
    if abs(ratio - 1.0) <= policy.protect_deviation:
        return None
    cur = now.currency
    exp_t, act_t = amounts(np.array([expected, actual], dtype=np.int64), bt, cur)
    return (
        f"protection: in the {hours} h since the plan its scheduled deals delivered {act_t} "
        f"against {exp_t} scheduled ({ratio:.0%}), beyond the {policy.protect_deviation:.0%} "
        f"allowed either way"
    )


__all__ = ["strayed"]

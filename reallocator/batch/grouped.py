"""One function for engines that hand a group's rows to pandas (Spark's
`groupBy("campaign_id").applyInPandas(plan_group, PLAN_GROUP_SCHEMA)`): deal rows joined with
their campaign's columns in, one row per deal of the plan out."""

from __future__ import annotations

import pandas as pd

from reallocator.batch.campaign import replan_campaign
from reallocator.config import load_config

CAMPAIGN_FIELDS = ("as_of", "time_zone", "currency_code", "pacing", "groups", "policy")
PLAN_GROUP_SCHEMA = (
    "campaign_id string, deal_id string, status string, reason string, "
    "old_allocation long, new_allocation long"
)


def plan_group(rows: pd.DataFrame) -> pd.DataFrame:
    """One campaign's deal rows, each carrying the campaign columns -> its plan's deal rows
    (a single row with an empty deal_id when the campaign is INVALID or REJECTED)."""
    first = rows.iloc[0]
    campaign = {"campaign_id": first["campaign_id"]}
    campaign.update({k: first[k] for k in CAMPAIGN_FIELDS if k in rows})
    deals = rows.drop(columns=[k for k in CAMPAIGN_FIELDS if k in rows])
    result = replan_campaign(deals, campaign, default_policy=load_config(env={}).default_policy)
    if result.plan is None:
        return pd.DataFrame(
            [[result.campaign_id, "", result.status, result.reason, 0, 0]],
            columns=[c.split()[0] for c in PLAN_GROUP_SCHEMA.split(", ")],
        )
    out = result.plan.deals[["deal_id", "old_allocation", "new_allocation"]].copy()
    out.insert(0, "campaign_id", result.campaign_id)
    out.insert(2, "status", result.status)
    out.insert(3, "reason", result.reason)
    return out.reset_index(drop=True)

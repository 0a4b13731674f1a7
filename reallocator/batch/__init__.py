"""Batch replanning: a whole book of campaigns from tables, no server in the loop.

One pure per-campaign function (`campaign.plan_campaign`) and runners that call it."""

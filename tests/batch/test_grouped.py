"""The README's Spark snippet, run with pandas' groupby-apply on the same function."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_run import book, job

from reallocator.batch.grouped import plan_group
from reallocator.batch.run import run_local


def test_grouped_function_gives_the_runner_plans(tmp_path: Path) -> None:
    deals, campaigns = book()
    joined = deals.merge(campaigns, on="campaign_id")
    got = joined.groupby("campaign_id", group_keys=False)[joined.columns.tolist()].apply(plan_group)
    run_local(job(), deals, campaigns, tmp_path, processes=1)
    want = pd.read_parquet(tmp_path / "deals")
    planned = got[got["deal_id"] != ""]
    assert dict(
        zip(planned["deal_id"] + planned["campaign_id"], planned["new_allocation"], strict=True)
    ) == dict(zip(want["deal_id"] + want["campaign_id"], want["new_allocation"], strict=True))
    status = got.drop_duplicates("campaign_id").set_index("campaign_id")["status"]
    assert status["campaign-16"] == "REJECTED" and status["campaign-15"] == "INVALID"

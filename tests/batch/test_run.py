"""The local runner on a synthetic book: status and errors tables, resume, processes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from test_campaign import book_rows

from reallocator.batch.run import Job, run_local
from reallocator.config import load_config


def book() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four good campaigns, one with a bad deal row, one with a bad currency, one infeasible."""
    deal_frames, rows = [], []
    for seed in range(10, 17):
        _, deals, campaign = book_rows(seed, 20 if seed == 16 else 8)
        if seed == 14:
            deals.loc[1, "allocation"] = -1
        if seed == 15:
            campaign["currency_code"] = "dollars"
        if seed == 16:
            budget = int(json.loads(campaign["pacing"])["budgets"][0]["amount"])
            deals["min_allocation"] = budget // 5  # 20 deals: floors sum to 4x the budget
            deals = deals.drop(columns=["max_allocation"])
        deal_frames.append(deals)
        rows.append(campaign)
    return pd.concat(deal_frames, ignore_index=True), pd.DataFrame(rows)


def job() -> Job:
    return Job(default_policy=load_config(env={}).default_policy)


def read(out: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(out / table)


def test_status_and_errors_tables(tmp_path: Path) -> None:
    deals, campaigns = book()
    run_local(job(), deals, campaigns, tmp_path, processes=1, chunk_size=3)
    status = read(tmp_path, "status").set_index("campaign_id")["status"].to_dict()
    assert status["campaign-14"] == "INVALID" and status["campaign-15"] == "INVALID"
    assert status["campaign-16"] == "REJECTED"
    reasons = read(tmp_path, "status").set_index("campaign_id")["reason"]
    assert "minimum allocation" in reasons["campaign-16"]
    assert all(status[f"campaign-{s}"] in ("OPTIMAL", "NO_CHANGE") for s in range(10, 14))
    errors = read(tmp_path, "errors")
    assert set(errors["campaign_id"]) == {"campaign-14", "campaign-15"}
    bad = deals[deals["campaign_id"] == "campaign-14"]["deal_id"].iloc[1]
    assert ((errors["deal_id"] == bad) & (errors["column"] == "allocation")).any()
    assert set(read(tmp_path, "deals")["campaign_id"]) == {f"campaign-{s}" for s in range(10, 14)}


def test_interrupted_run_resumes_to_identical_output(tmp_path: Path) -> None:
    deals, campaigns = book()
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_local(job(), deals, campaigns, whole, processes=1, chunk_size=3) == 3
    # interrupted after the first chunk: only its parts exist
    assert run_local(job(), deals, campaigns.iloc[:3], resumed, processes=1, chunk_size=3) == 1
    assert run_local(job(), deals, campaigns, resumed, processes=1, chunk_size=3) == 2
    assert run_local(job(), deals, campaigns, resumed, processes=1, chunk_size=3) == 0
    files = sorted(p.relative_to(whole) for p in whole.rglob("*.parquet"))
    assert files == sorted(p.relative_to(resumed) for p in resumed.rglob("*.parquet"))
    for f in files:
        assert (whole / f).read_bytes() == (resumed / f).read_bytes(), f
    assert not list(resumed.rglob("*.tmp"))


def test_two_processes_give_the_same_plans(tmp_path: Path) -> None:
    deals, campaigns = book()
    run_local(job(), deals, campaigns, tmp_path / "one", processes=1, chunk_size=2)
    run_local(job(), deals, campaigns, tmp_path / "two", processes=2, chunk_size=2)
    for table in ("deals", "status", "requests"):
        pd.testing.assert_frame_equal(read(tmp_path / "one", table), read(tmp_path / "two", table))

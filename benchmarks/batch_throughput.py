"""Batch replanning throughput: campaigns per second for the bare core solve (decode + build_plan
in a loop, no runner) and the local runner at 1 and 2 processes, and each runner's overhead.

    .venv/bin/python benchmarks/batch_throughput.py --campaigns 200 --deals 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from builders import build_snapshot, random_snapshot_spec

from reallocator.batch.book import book_rows
from reallocator.batch.campaign import Options, plan_campaign
from reallocator.batch.runner import replan_book


def book(n: int, n_deals: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n` campaigns built from a few distinct random snapshots (renamed), so setup stays cheap."""
    templates = [
        book_rows(build_snapshot(random_snapshot_spec(n_deals, s, n_buckets=0), "arrow"))
        for s in range(min(n, 8))
    ]
    rows, deals = [], []
    for i in range(n):
        row, d = templates[i % len(templates)]
        cid = f"c{i:07d}"
        rows.append({**row, "campaign_id": cid})
        deals.append(d.assign(campaign_id=cid))
    return pd.DataFrame(rows), pd.concat(deals, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--deals", type=int, default=20, help="deals per campaign")
    args = parser.parse_args()
    campaigns, deals = book(args.campaigns, args.deals)
    groups = {k: g for k, g in deals.groupby("campaign_id", sort=False)}
    options = Options()
    start = time.perf_counter()
    for _, row in campaigns.iterrows():
        plan_campaign(row, groups[row["campaign_id"]], options)
    bare = args.campaigns / (time.perf_counter() - start)
    print(f"{args.campaigns} campaigns of {args.deals} deals (figures under the machine's load)")
    print(f"  bare solve (plan_campaign loop): {bare:8.1f} campaigns/s")
    for processes in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            replan_book(campaigns, deals, Path(out), options, processes=processes, progress=False)
            rate = args.campaigns / (time.perf_counter() - start)
        overhead = (
            (bare / rate - 1) * 100 if processes == 1 else (bare / (rate / processes) - 1) * 100
        )
        print(
            f"  local runner, {processes} process(es): {rate:8.1f} campaigns/s "
            f"(overhead over the bare solve per process: {overhead:+.0f} %)"
        )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        replan_book(
            campaigns, deals, Path(out), options, processes=2, progress=False, engine="dask"
        )
        dask_rate = args.campaigns / (time.perf_counter() - start)
    print(
        f"  Dask LocalCluster, 2 workers (start included): {dask_rate:8.1f} campaigns/s "
        f"(local 2 processes / Dask: {rate / dask_rate:.2f}x)"
    )


if __name__ == "__main__":
    main()

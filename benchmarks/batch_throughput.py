"""Campaigns per second of batch replanning: the bare core solve (decode + build_plan in one
loop) and the local runner at 1 and 2 processes, and each runner's overhead over the bare solve.

    .venv/bin/python benchmarks/batch_throughput.py --campaigns 200 --deals 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "batch"))

from test_campaign import book_rows

from reallocator.batch.campaign import replan_campaign
from reallocator.batch.run import Job, run_local
from reallocator.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--deals", type=int, default=20)
    args = parser.parse_args()
    policy = load_config(env={}).default_policy
    rows = [book_rows(seed, args.deals)[1:] for seed in range(args.campaigns)]
    deals = pd.concat([d for d, _ in rows], ignore_index=True)
    campaigns = pd.DataFrame([c for _, c in rows])
    started = time.perf_counter()
    for d, c in rows:
        replan_campaign(d, c, default_policy=policy)
    bare = args.campaigns / (time.perf_counter() - started)
    print(f"{args.campaigns} campaigns of {args.deals} deals")
    print(f"bare solve       {bare:8.1f} campaigns/s")
    for processes in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            run_local(Job(policy), deals, campaigns, Path(out), processes=processes)
            rate = args.campaigns / (time.perf_counter() - started)
        overhead = (bare * processes / rate - 1) * 100
        print(f"local, {processes} proc    {rate:8.1f} campaigns/s  overhead {overhead:+.0f} %")


if __name__ == "__main__":
    main()

"""Batch replanning throughput: campaigns per second for

- the bare core solve: `build_plan` in a loop on snapshots decoded beforehand (what any caller
  pays; measured on a sample of the book),
- the per-campaign function `plan_campaign` in a loop (decode with the wire's code + solve + rows),
- the local runner (`replan_book`) at 1 and 2 processes, from the Parquet files to the written
  parts (reading, grouping, process start, writing included),
- Dask with 2 workers (`replan_on_dask`: read per partition, grouped on the workers), on an
  already running LocalCluster, and with the cluster's start included,

and the overhead each adds over the bare solve (per process, for 2 processes). The targets
(2-core machine): >= 300 campaigns/s of 20 deals with the local runner, runner overhead < 20 %,
Dask within 1.5x of the local runner.

    .venv/bin/python benchmarks/batch_throughput.py                      # 10k x 20 and 1k x 1,000
    .venv/bin/python benchmarks/batch_throughput.py --campaigns 500 --deals 20
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from builders import build_snapshot, random_snapshot_spec

from reallocator.batch import campaign as campaign_module
from reallocator.batch.book import book_rows
from reallocator.batch.campaign import Options, decode_campaign, plan_campaign
from reallocator.batch.dask_runner import replan_on_dask
from reallocator.batch.runner import group_book, read_arrow, read_table, replan_book
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.wire.violations import Violations


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


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _timed(n: int, fn: Callable[[], None]) -> tuple[float, float]:
    """Campaigns per wall-clock second and per CPU-second of this process (the CPU figure holds
    under load from other jobs; it is meaningful only for work done in this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return _rate(n, time.perf_counter() - wall), _rate(n, time.process_time() - cpu)


def measure(n: int, n_deals: int, sample: int) -> None:
    campaigns, deals = book(n, n_deals)
    options = Options()
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    campaigns.to_parquet(tmp / "campaigns.parquet")
    deals.to_parquet(tmp / "deals.parquet")
    grouped = group_book(campaigns, deals)
    picked = range(min(sample, n))
    slices = [
        grouped.deals.slice(int(grouped.starts[i]), int(grouped.stops[i] - grouped.starts[i]))
        for i in picked
    ]
    plan_campaign(grouped.rows[0], slices[0], options)  # imports and first-call costs
    snapshots = []
    for i in picked:
        snapshot = decode_campaign(grouped.rows[i], slices[i], options.default_policy, Violations())
        assert snapshot is not None
        snapshots.append(snapshot)

    def solve_all() -> None:
        for snapshot in snapshots:
            with contextlib.suppress(PlanRejected):
                build_plan(snapshot, relax=False, text=False)

    def plan_all() -> None:
        for i in picked:
            plan_campaign(grouped.rows[i], slices[i], options)

    bare, bare_cpu = _timed(len(snapshots), solve_all)
    per_campaign, per_campaign_cpu = _timed(len(slices), plan_all)
    print(f"{n} campaigns of {n_deals} deals (measured under the machine's load; CPU: per CPU-s)")
    print(f"  bare core solve (build_plan, decoded):      {bare:8.1f} /s, CPU {bare_cpu:8.1f} /s")
    print(
        f"  plan_campaign loop (decode + solve + rows): {per_campaign:8.1f} /s, "
        f"CPU {per_campaign_cpu:8.1f} /s (CPU +{(bare_cpu / per_campaign_cpu - 1) * 100:.0f} % "
        "over the bare solve)"
    )
    local = {}
    solving = [0.0]

    def timed_build_plan(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return build_plan(*a, **k)
        finally:
            solving[0] += time.perf_counter() - start

    for processes in (1, 2):

        def run(processes: int = processes) -> None:
            replan_book(
                read_table(tmp / "campaigns.parquet"),
                read_arrow(tmp / "deals.parquet"),
                tmp / f"local-{processes}",
                options,
                processes=processes,
                progress=False,
            )

        with mock.patch.object(campaign_module, "build_plan", timed_build_plan):
            start = time.perf_counter()
            local[processes], cpu = _timed(n, run)
            whole = time.perf_counter() - start
        overhead = (bare / (local[processes] / processes) - 1) * 100
        if processes == 1:  # the same run's own solves: holds under load from other jobs
            print(
                f"  local runner, 1 process:                    {local[1]:8.1f} /s, CPU "
                f"{cpu:8.1f} /s; runner overhead over its own build_plan calls: "
                f"{(whole / solving[0] - 1) * 100:+.0f} % (vs the bare loop: {overhead:+.0f} %)"
            )
        else:
            print(
                f"  local runner, 2 processes:                  {local[2]:8.1f} /s "
                f"(overhead per process over the bare loop: {overhead:+.0f} %)"
            )
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        start = time.perf_counter()
        replan_on_dask(
            tmp / "campaigns.parquet",
            tmp / "deals.parquet",
            tmp / "dask-warm",
            options,
            scheduler=cluster.scheduler_address,
            progress=False,
        )
        warm = _rate(n, time.perf_counter() - start)
    start = time.perf_counter()
    replan_on_dask(
        tmp / "campaigns.parquet",
        tmp / "deals.parquet",
        tmp / "dask-cold",
        options,
        workers=2,
        progress=False,
    )
    cold = _rate(n, time.perf_counter() - start)
    print(
        f"  Dask, 2 workers (running cluster):          {warm:8.1f} /s "
        f"(local 2 processes / Dask: {local[2] / warm:.2f}x; "
        f"overhead per worker over the bare solve: {(bare / (warm / 2) - 1) * 100:+.0f} %)"
    )
    print(
        f"  Dask, 2 workers (LocalCluster start incl.): {cold:8.1f} /s "
        f"(local 2 processes / Dask: {local[2] / cold:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns", type=int, default=None, help="default: 10k, then 1k")
    parser.add_argument("--deals", type=int, default=None, help="deals per campaign")
    parser.add_argument(
        "--sample", type=int, default=500, help="campaigns timed in the bare loops (default 500)"
    )
    args = parser.parse_args()
    if args.campaigns is None and args.deals is None:
        sizes = [(10_000, 20), (1_000, 1_000)]
    else:
        sizes = [(args.campaigns or 1_000, args.deals or 20)]
    for n, n_deals in sizes:
        measure(n, n_deals, args.sample)


if __name__ == "__main__":
    main()

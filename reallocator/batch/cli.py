"""`reallocator batch replan`: reads the book, runs the local runner with a progress bar, and
prints a summary. Imported lazily by reallocator/cli.py (no pandas at start-up)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm  # type: ignore[import-untyped]

from reallocator.batch.run import Job, chunks, done, read_table, replan_chunk, write_chunk
from reallocator.config import load_config


def replan_command(args: argparse.Namespace) -> int:
    """Exit 0 when the job ran (bad campaigns are reported in the output, not fatal)."""
    for name in ("deals", "campaigns"):
        path: Path = getattr(args, name)
        if not path.is_file():
            print(f"--{name}: no such file {path}", file=sys.stderr)
            return 2
    deals, campaigns = read_table(args.deals), read_table(args.campaigns)
    for name, frame in (("deals", deals), ("campaigns", campaigns)):
        if "campaign_id" not in frame:
            print(f"--{name}: column campaign_id is required", file=sys.stderr)
            return 2
    out: Path = args.out
    job = Job(
        default_policy=load_config(env={}).default_policy,
        relax=args.relax,
        rationale=args.rationale,
    )
    todo = [(i, c) for i, c in chunks(campaigns, args.chunk_size) if not done(out, i)]
    started = time.perf_counter()
    grouped = dict(tuple(deals.groupby("campaign_id", sort=False)))
    empty = deals.iloc[:0]
    bar = tqdm(total=sum(len(c) for _, c in todo), unit="campaign", disable=args.quiet)
    from concurrent.futures import Executor, ProcessPoolExecutor
    from multiprocessing import get_context

    pool: Executor = ProcessPoolExecutor(args.processes or None, mp_context=get_context("spawn"))
    with pool:
        futures = {
            i: (
                pool.submit(
                    replan_chunk,
                    job,
                    pd.concat([grouped.get(str(c["campaign_id"]), empty) for c in batch]),
                    batch,
                ),
                len(batch),
            )
            for i, batch in todo
        }
        for i, (future, n) in futures.items():
            write_chunk(out, i, future.result())
            bar.update(n)
    bar.close()
    status = pd.read_parquet(out / "status") if (out / "status").exists() else pd.DataFrame()
    counts = status["status"].value_counts().to_dict() if len(status) else {}
    elapsed = time.perf_counter() - started
    print(
        f"{len(status)} campaigns in {out} ({sum(n for _, n in futures.values())} replanned in "
        f"{elapsed:.1f} s): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0

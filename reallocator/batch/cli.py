"""`reallocator batch replan`: the command behind the CLI subparser (imported lazily)."""

from __future__ import annotations

import argparse
import sys

from reallocator.batch.campaign import Options
from reallocator.batch.runner import BatchError, read_table, replan_book


def batch_command(args: argparse.Namespace) -> int:
    if args.store:
        print("error: --store: the audit store is not available in this build", file=sys.stderr)
        return 2
    if args.chunk_size < 1 or (args.processes is not None and args.processes < 1):
        print("error: --chunk-size and --processes must be >= 1", file=sys.stderr)
        return 2
    try:
        campaigns = read_table(args.campaigns)
        deals = read_table(args.deals)
        summary = replan_book(
            campaigns,
            deals,
            args.out,
            Options(rationale=args.rationale, time_limit=args.time_limit),
            processes=args.processes,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
            engine=args.engine,
            scheduler=args.scheduler,
        )
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items()))
    print(
        f"{summary.campaigns} campaigns planned ({counts or 'none'}); "
        f"{summary.skipped_chunks} part(s) already written, skipped; output in {args.out}"
    )
    return 0

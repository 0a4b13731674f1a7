"""`reallocator batch replan`: the command behind the CLI subparser (imported lazily)."""

from __future__ import annotations

import argparse
import sys

from reallocator.batch.campaign import Options
from reallocator.batch.runner import BatchError, Summary, read_arrow, read_table, replan_book
from reallocator.config_error import ConfigError


def batch_command(args: argparse.Namespace) -> int:
    if args.chunk_size < 1 or (args.processes is not None and args.processes < 1):
        print("error: --chunk-size and --processes must be >= 1", file=sys.stderr)
        return 2
    if args.time_limit is not None and not args.time_limit > 0:
        print("error: --time-limit must be a positive number of seconds", file=sys.stderr)
        return 2
    options = Options(rationale=args.rationale, time_limit=args.time_limit)
    summary: Summary
    store = None
    try:
        store = _store_url(args) if args.store else None
        if store is not None:  # opened (and migrated) once here, so a bad URL fails up front
            from reallocator.store.sql import SqlStore

            SqlStore.open(store).close()
        if args.engine == "dask":
            from reallocator.batch.dask_runner import replan_on_dask

            summary = replan_on_dask(
                args.campaigns,
                args.deals,
                args.out,
                options,
                workers=args.processes,
                scheduler=args.scheduler,
                chunk_size=args.chunk_size,
                progress=not args.no_progress,
                store=store,
            )
        else:
            summary = replan_book(
                read_table(args.campaigns),
                read_arrow(args.deals),
                args.out,
                options,
                processes=args.processes,
                chunk_size=args.chunk_size,
                progress=not args.no_progress,
                store=store,
            )
    except (BatchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a store that cannot be opened: SQLAlchemy's errors are many
        if store is None or "sqlalchemy" not in type(exc).__module__:
            raise
        print(f"error: --store: cannot open the audit store: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items()))
    print(
        f"{summary.campaigns} campaigns planned ({counts or 'none'}); "
        f"{summary.skipped_chunks} part(s) already written, skipped; output in {args.out}"
    )
    if summary.orphan_deals:
        print(
            f"warning: {summary.orphan_deals} deal row(s) name a campaign_id missing from "
            f"{args.campaigns}: left out",
            file=sys.stderr,
        )
    return 0


def _store_url(args: argparse.Namespace) -> str:
    """--database-url, else the configured one (REALLOCATOR_DATABASE_URL), else SQLite."""
    from reallocator.config import load_config
    from reallocator.store.sql import default_database_url

    return load_config(None, database_url=args.database_url).database_url or (
        default_database_url()
    )

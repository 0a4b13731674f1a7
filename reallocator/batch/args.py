"""Arguments of `reallocator batch` (argparse only: cheap to import when the CLI starts)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["replan"], help="what to do with the book")
    parser.add_argument("--deals", type=Path, required=True, help="deal rows (.parquet or .csv)")
    parser.add_argument(
        "--campaigns", type=Path, required=True, help="campaign rows (.parquet or .csv)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    parser.add_argument(
        "--processes", type=int, default=None, help="local processes (default: all cores)"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=64, help="campaigns per output part (default 64)"
    )
    parser.add_argument(
        "--rationale", action="store_true", help="also write the rationale text (large)"
    )
    parser.add_argument("--time-limit", type=float, default=None, help="solver seconds per plan")
    parser.add_argument(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="local processes (default) or Dask (needs reallocator[batch])",
    )
    parser.add_argument(
        "--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--store",
        action="store_true",
        help="record each plan in the audit store, as Replan does (actor 'batch')",
    )
    parser.add_argument(
        "--database-url",
        help="the audit store for --store (SQLAlchemy URL; default REALLOCATOR_DATABASE_URL, "
        "else SQLite reallocator.db in the working directory)",
    )

"""The `simulate` command's arguments, importable without numpy, pandas or the solvers (the main
`reallocator` parser builds every subcommand's arguments at start-up)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STRATEGIES = ("static", "rules", "greedy", "reallocator")
"""The online strategies, in report order (the oracle is computed beside them)."""

DIAGNOSTICS = ("foresight", "unstabilised")
"""Strategies to tell costs apart: `foresight` is the reallocator planning with every deal's true
remaining capacity instead of its forecast (what the forecast costs vs what replanning, step
limits, pacers and sellers cost; no one can run it for real); `unstabilised` the reallocator
without its stabilisation (churn weights 0, raw forecasts: cut_confidence 0, no dead band), an
ablation."""


def policy_overrides(text: str) -> dict[str, float]:
    """A JSON object of Policy overrides (scenario file syntax), for --policy."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise argparse.ArgumentTypeError("expected a JSON object of numbers")
    return {str(k): float(v) for k, v in value.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        help="scenario file (.json, or .yaml with PyYAML), or the name of a standard one "
        "shipped with the package (steady, stalled_seller, channel_collapse, flash_sale, "
        "conflicting_limits, portfolio_500, steady_discount)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="run this one seed only")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default reports/<scenario>)"
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        choices=[*STRATEGIES, *DIAGNOSTICS],
        help="strategies to compare (the oracle is always computed); 'foresight' is the "
        "reallocator given the true remaining capacities as the caller's own forecasts",
    )
    parser.add_argument(
        "--target",
        default=None,
        metavar="HOST:PORT",
        help="plan with a running reallocator service (gRPC Replan) instead of in-process",
    )
    parser.add_argument(
        "--solver-time-limit-seconds",
        dest="time_limit",
        type=float,
        default=10.0,
        help="solver time limit per plan (default 10)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument(
        "--policy",
        type=policy_overrides,
        default=None,
        metavar="JSON",
        help="policy overrides merged into the scenario's, durations as <name>_seconds, e.g. "
        "'{\"min_evidence_seconds\": 86400}'",
    )

"""`reallocator replay`: the command's arguments (importable without numpy or the solvers) and
its run."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reallocator.core.model import Policy
    from reallocator.replay.counterfactual import Candidate, ReplayResult
    from reallocator.replay.source import Recorded


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _named_policy(text: str) -> tuple[str, str]:
    name, sep, body = text.partition("=")
    if not sep or not name.strip() or not body.strip():
        raise argparse.ArgumentTypeError(
            "expected NAME=JSON or NAME=FILE (a Policy in the API's JSON form), "
            'e.g. calm=\'{"churn": {"deal": 0.5}}\''
        )
    return name.strip(), body.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--snapshots",
        type=Path,
        metavar="FILE",
        help="recorded snapshots: JSON lines (ReplanRequest or CampaignSnapshot JSON per line) "
        "or a Parquet/Arrow file with a 'request' (or 'snapshot') column of serialised messages",
    )
    source.add_argument(
        "--database-url",
        metavar="URL",
        help="read the snapshots recorded by the audit store (needs --campaign)",
    )
    parser.add_argument("--campaign", help="the campaign to replay (required with several)")
    parser.add_argument("--from", dest="start", type=_instant, help="first as_of (ISO 8601)")
    parser.add_argument("--to", dest="end", type=_instant, help="as_of before this (ISO 8601)")
    parser.add_argument(
        "--policy",
        type=_named_policy,
        action="append",
        default=[],
        metavar="NAME=JSON|FILE",
        help="an alternative policy: fields of the API's Policy (JSON form) over the recorded "
        'one, e.g. calm=\'{"churn": {"deal": 0.5}}\' or strict=policy.json; repeatable',
    )
    parser.add_argument(
        "--no-reallocation",
        action="store_true",
        help="also replay keeping every booking (no plan at all)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report folder (CSVs, PNG plots)")
    parser.add_argument("--no-plots", action="store_true", help="CSVs only in the report folder")
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="what to print (default table)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _change(name: str, body: str) -> Candidate:
    from google.protobuf import json_format

    from reallocator.replay.counterfactual import Candidate
    from reallocator.v1 import policy_pb2
    from reallocator.wire.policy import decode_policy
    from reallocator.wire.violations import Violations

    text = body
    if not body.lstrip().startswith("{"):
        try:
            text = Path(body).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--policy {name}: cannot read {body}: {exc}") from exc
    try:
        msg = json_format.Parse(text, policy_pb2.Policy())
    except json_format.ParseError as exc:
        raise ValueError(f"--policy {name}: {exc}") from exc
    probe = Violations()
    from reallocator.core.model import Policy as DefaultPolicy

    decode_policy(msg, DefaultPolicy(), probe, "policy")
    if probe:
        first = probe.items[0]
        raise ValueError(f"--policy {name}: {first.field}: {first.description}")

    def change(recorded: Policy) -> Policy:
        return decode_policy(msg, recorded, Violations(), "policy")

    return Candidate(name, change)


def _with_progress(
    records: Sequence[Recorded], candidates: Sequence[Candidate], *, quiet: bool
) -> ReplayResult:
    """The replay with a progress bar on stderr (rate and ETA), one step per snapshot planned."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    from reallocator.replay.counterfactual import replay

    total = len(records) * (1 + len(candidates))
    with tqdm(total=total, unit="plan", disable=quiet, file=sys.stderr, leave=False) as bar:
        return replay(records, candidates, tick=lambda: bar.update(1))


def replay_command(args: argparse.Namespace) -> int:
    from reallocator.replay.counterfactual import Candidate
    from reallocator.replay.report import dumps, table_text, write_report
    from reallocator.replay.source import ReplaySourceError, read_recorded, read_store

    if args.database_url is not None and not args.campaign:
        print("reallocator replay: --database-url needs --campaign", file=sys.stderr)
        return 2
    try:
        candidates = [Candidate("replayed")]
        candidates += [_change(name, body) for name, body in args.policy]
        if args.no_reallocation:
            candidates.append(Candidate("no reallocation", None))
        names = [c.name for c in candidates]
        if len(set(names)) != len(names) or "recorded" in names:
            raise ValueError("--policy names must be unique and not 'recorded' or 'replayed'")
        if args.database_url is not None:
            records = read_store(args.database_url, args.campaign, start=args.start, end=args.end)
        else:
            records = read_recorded(args.snapshots, campaign=args.campaign, start=args.start,
                                    end=args.end)  # fmt: skip
        result = _with_progress(records, candidates, quiet=args.no_progress)
    except (ReplaySourceError, ValueError, OSError) as exc:
        print(f"reallocator replay: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        try:
            write_report(result, args.out, plots=not args.no_plots)
        except RuntimeError as exc:
            print(f"reallocator replay: {exc}", file=sys.stderr)
            return 2
    print(dumps(result) if args.format == "json" else table_text(result))
    if args.out is not None and args.format == "table":
        print(f"\nreport: {args.out}", file=sys.stderr)
    return 0


__all__ = ["add_arguments", "replay_command"]

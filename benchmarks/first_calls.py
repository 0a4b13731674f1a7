"""A fresh server's first calls as a caller sees them, with each worker's warm-up (the default)
and without it (`--no-warm-up`), alternated: `reallocator serve` started as README says (its own
SQLite store in a temporary directory), then `--channels` clients one after another, each a new
channel making `--calls` recorded 50-deal FULL Replans (the orchestrator's everyday call; the
campaign of `assess_scaling.make_snapshot`). Prints, per setting, the median over rounds of the
time to SERVING, of the first call of all, of the slowest call and of the median call, so the
first calls' excess over a warm call is measured in one run against the same machine.

    .venv/bin/python benchmarks/first_calls.py [--rounds 3] [--channels 4] [--calls 6]
        [--deals 50] [--dry-run]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from assess_scaling import make_snapshot
from replan_scaling import started_server

from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc
from reallocator.wire.encode import encode_snapshot

SETTINGS = {"warm-up": (), "no warm-up": ("--no-warm-up",)}


def one_round(
    flags: tuple[str, ...],
    request: pb.ReplanRequest,
    channels: int,
    calls: int,
) -> dict[str, float]:
    """One fresh server: seconds to SERVING and every call's latency, in order."""
    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        with started_server(None, store=Path(store), flags=flags) as target:
            ready = time.perf_counter() - started
            latencies: list[float] = []
            for _ in range(channels):
                with grpc.insecure_channel(target) as channel:
                    stub = rpc.ReallocatorServiceStub(channel)
                    for _ in range(calls):
                        t0 = time.perf_counter()
                        stub.Replan(request, timeout=60)
                        latencies.append(time.perf_counter() - t0)
    return {
        "serving s": ready,
        "first ms": 1e3 * latencies[0],
        "slowest ms": 1e3 * max(latencies),
        "median ms": 1e3 * statistics.median(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=4, help="new channels, one after another")
    parser.add_argument("--calls", type=int, default=6, help="calls per channel")
    parser.add_argument("--deals", type=int, default=50)
    parser.add_argument("--dry-run", action="store_true", help="dry runs instead of recorded")
    args = parser.parse_args()
    request = pb.ReplanRequest(
        snapshot=encode_snapshot(make_snapshot(args.deals), "arrow", compression="auto"),
        view=pb.PLAN_VIEW_FULL,
        dry_run=args.dry_run,
    )
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):  # alternated, so a machine slowing down meanwhile hits both
        for name, flags in SETTINGS.items():
            rows[name].append(one_round(flags, request, args.channels, args.calls))
    columns = list(rows["warm-up"][0])
    kind = "dry-run" if args.dry_run else "recorded"
    print(f"{args.deals}-deal FULL {kind} Replans, {args.channels} channels x {args.calls} "
          f"calls, medians of {args.rounds} rounds")  # fmt: skip
    print(f"{'setting':>12}" + "".join(f"{c:>12}" for c in columns))
    for name, runs in rows.items():
        cells = "".join(f"{statistics.median(r[c] for r in runs):>12.2f}" for c in columns)
        print(f"{name:>12}{cells}")


if __name__ == "__main__":
    main()

"""Concurrent callers against a started `reallocator serve` on loopback: 1, 8 and 32 clients of
50-deal and 2,000-deal Replans (dry runs, SUMMARY view), each client a process with its own
channel issuing calls back to back (threads of one process would share a GIL and be the
bottleneck themselves). Bounded: every run stops after `--calls` calls or
`--seconds`, whichever comes first. Prints p50/p99 latency and throughput, for one server
process and for `--workers N` (one per core by default), and the throughput ratio.

    .venv/bin/python benchmarks/grpc_load.py [--clients 1 8 32] [--sizes 50 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os

from assess_scaling import make_snapshot
from replan_scaling import run, started_server

from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 2_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server processes of the second run (default: the cores)")  # fmt: skip
    parser.add_argument("--calls", type=int, default=400, help="most calls per run (default 400)")
    parser.add_argument("--seconds", type=float, default=30.0, help="most seconds per run")
    args = parser.parse_args()
    requests = {
        n: pb.ReplanRequest(
            snapshot=encode_snapshot(make_snapshot(n), "arrow", compression="auto"),
            view=pb.PLAN_VIEW_SUMMARY,
            dry_run=True,
        )
        for n in args.sizes
    }
    header = ("workers", "deals", "clients", "calls", "errors", "p50 ms", "p99 ms", "calls/s")
    print("".join(f"{h:>10}" for h in header))
    rates: dict[tuple[int, int, int], float] = {}
    for workers in sorted({1, args.workers}):
        with started_server(workers) as target:
            for n, request in requests.items():
                for clients in args.clients:
                    r = run(target, request, clients, args.calls, args.seconds)
                    rates[(workers, n, clients)] = r["rate"]
                    print(f"{workers:>10}{n:>10}{clients:>10}{r['calls']:>10.0f}"
                          f"{r['errors']:>10.0f}{r['p50'] * 1e3:>10.1f}{r['p99'] * 1e3:>10.1f}"
                          f"{r['rate']:>10.1f}", flush=True)  # fmt: skip
    if args.workers > 1:
        print(f"\nthroughput with {args.workers} workers / 1 worker:")
        for n in args.sizes:
            for clients in args.clients:
                one, many = rates[(1, n, clients)], rates[(args.workers, n, clients)]
                ratio = many / one if one else float("nan")
                print(f"  {n:>6} deals, {clients:>3} clients: {ratio:.2f}x")


if __name__ == "__main__":
    main()

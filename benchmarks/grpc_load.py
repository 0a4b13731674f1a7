"""Replan under concurrent load: 1, 8 and 32 clients over loopback against `reallocator serve`.

Each client is a thread with its own channel calling Replan (PLAN_VIEW_FULL) on a 50-deal and a
2,000-deal campaign (`assess_scaling.make_snapshot`), back to back; a run ends after `--calls`
calls per client or `--seconds` seconds, whichever comes first. Prints p50/p99 latency and
throughput (plans per second). `--workers N` starts the server with `reallocator serve --workers N`
(one process per core); without it the server runs with its default.

    .venv/bin/python benchmarks/grpc_load.py [--clients 1 8 32] [--sizes 50 2000] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from assess_scaling import make_snapshot
from grpc_server import channel, percentile, running_server, stub

from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot


def _client(
    target: str, request: pb.ReplanRequest, calls: int, until: float, out: list[float]
) -> None:
    with channel(target) as ch:
        call = stub(ch).Replan
        call(request, timeout=60)  # connect and warm
        for _ in range(calls):
            if time.perf_counter() > until:
                break
            t0 = time.perf_counter()
            call(request, timeout=60)
            out.append(time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 2_000])
    parser.add_argument("--calls", type=int, default=50, help="most calls per client")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per run")
    parser.add_argument("--workers", type=int, help="server processes (default: the server's)")
    args = parser.parse_args()
    header = ("deals", "clients", "calls", "p50 ms", "p99 ms", "plans/s")
    print(f"workers: {args.workers or 'server default'}")
    print("".join(f"{h:>10}" for h in header), flush=True)
    with running_server(args.workers) as target:
        for n in args.sizes:
            request = pb.ReplanRequest(
                snapshot=encode_snapshot(make_snapshot(n), "arrow"), view=pb.PLAN_VIEW_FULL
            )
            for clients in args.clients:
                results: list[list[float]] = [[] for _ in range(clients)]
                until = time.perf_counter() + args.seconds
                threads = [
                    threading.Thread(target=_client, args=(target, request, args.calls, until, r))
                    for r in results
                ]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                times = [x for r in results for x in r]
                if not times:
                    print(f"{n:>10}{clients:>10}  no call finished in {args.seconds} s")
                    continue
                print(f"{n:>10}{clients:>10}{len(times):>10}"
                      f"{statistics.median(times) * 1e3:>10.1f}{percentile(times, 99) * 1e3:>10.1f}"
                      f"{len(times) / wall:>10.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

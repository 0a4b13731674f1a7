"""Concurrent callers against a started `reallocator serve` on loopback: 1, 8 and 32 clients of
50-deal and 2,000-deal Replans (dry runs, SUMMARY view unless `--view`), each client a process
with its own channel issuing calls back to back (threads of one process would share a GIL and
be the bottleneck themselves). Bounded: every run stops after `--calls` calls or
`--seconds`, whichever comes first. Prints p50/p99 latency and throughput, for one server
process and for `--workers N` (one per core by default), and the throughput ratio.

`--one-channel` runs the callers the other way many clients are written: one process, one
channel, that many calls in flight at once (futures). grpcio sends them all over one
connection, which the kernel gives one server process; the workers share such calls
(server/peers.py), and this is what shows it.

The clients keep large buffers as replan_scaling's do (`--default-malloc`: without).

`--interleave-after 0 0.02` compares server settings instead (`serve --interleave-after-seconds`:
how long a running call runs before a second one starts beside it), all with `--workers`
processes, a server per setting started afresh in each of `--rounds` rounds, the settings
alternated so that a drifting machine slows them alike.

    .venv/bin/python benchmarks/grpc_load.py [--clients 1 8 32] [--sizes 50 2000] [--workers 2]
        [--one-channel] [--default-malloc] [--interleave-after 0 0.02 --rounds 3] [--view FULL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Any

import grpc
from assess_scaling import make_snapshot
from replan_scaling import run, started_server

from reallocator.client import keep_large_buffers
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot

WORKER_HEADER = "x-reallocator-worker"


def run_one_channel(
    target: str, request: pb.ReplanRequest, inflight: int, calls: int, seconds: float
) -> dict[str, Any]:
    """One channel, `inflight` calls in flight at once (a new one as each ends), until `calls`
    calls or `seconds`: p50/p99, calls/s and the share each server process computed."""
    limit = 256 * 1024 * 1024
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    data = request.SerializeToString()
    with grpc.insecure_channel(target, options) as channel:
        call = channel.unary_unary(
            "/reallocator.v1.ReallocatorService/Replan",
            request_serializer=None,
            response_deserializer=None,
        )
        for _ in range(3):
            call(data, timeout=120)  # warm
        lock, slots, finished = threading.Lock(), threading.Semaphore(inflight), threading.Event()
        latencies: list[float] = []
        workers: dict[str, int] = {}
        errors = [0]
        sent = [0]

        def done(future: grpc.Future, start: float) -> None:
            elapsed = time.perf_counter() - start
            try:
                future.result()
                who = str(dict(future.trailing_metadata() or ()).get(WORKER_HEADER, "-"))
            except grpc.RpcError:
                who = "error"
            with lock:
                if who == "error":
                    errors[0] += 1
                else:
                    latencies.append(elapsed)
                workers[who] = workers.get(who, 0) + 1
                if len(latencies) + errors[0] == sent[0] and stopping:
                    finished.set()
            slots.release()

        stopping = False
        started = time.perf_counter()
        while sent[0] < calls and time.perf_counter() - started < seconds:
            slots.acquire()
            with lock:
                sent[0] += 1
            begin = time.perf_counter()
            call.future(data, timeout=120).add_done_callback(lambda f, b=begin: done(f, b))
        with lock:
            stopping = True
            if len(latencies) + errors[0] == sent[0]:
                finished.set()
        finished.wait(300)
        wall = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "calls": n,
        "errors": errors[0],
        "p50": statistics.median(latencies) if n else float("nan"),
        "p99": latencies[min(n - 1, round(0.99 * (n - 1)))] if n else float("nan"),
        "rate": n / wall if wall > 0 else 0.0,
        "workers": workers,
    }


def compare_settings(
    args: argparse.Namespace, requests: dict[int, pb.ReplanRequest], kept: bool
) -> None:
    """Each `--interleave-after` setting in turn, round after round (warmed by 50 calls)."""
    header = ("round", "interleave", "deals", "clients", "calls", "p50 ms", "p99 ms", "calls/s")
    print("".join(f"{h:>11}" for h in header))
    for round_ in range(1, args.rounds + 1):
        for seconds in args.interleave_after:
            flags = ["--interleave-after-seconds", str(seconds)]
            with started_server(args.workers, flags=flags) as target:
                for n, request in requests.items():
                    run(target, request, 1, 50, args.seconds, kept)
                    for clients in args.clients:
                        r = run(target, request, clients, args.calls, args.seconds, kept)
                        print(f"{round_:>11}{seconds:>11g}{n:>11}{clients:>11}{r['calls']:>11.0f}"
                              f"{r['p50'] * 1e3:>11.1f}{r['p99'] * 1e3:>11.1f}"
                              f"{r['rate']:>11.1f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 2_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server processes of the second run (default: the cores)")  # fmt: skip
    parser.add_argument("--calls", type=int, default=400, help="most calls per run (default 400)")
    parser.add_argument("--seconds", type=float, default=30.0, help="most seconds per run")
    parser.add_argument("--one-channel", action="store_true",
                        help="one process, one channel, --clients calls in flight")  # fmt: skip
    parser.add_argument("--default-malloc", action="store_true",
                        help="clients keep glibc's default allocator settings")  # fmt: skip
    parser.add_argument("--interleave-after", type=float, nargs="+", default=None,
                        metavar="SECONDS", help="compare these server settings")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --interleave-after")
    parser.add_argument("--view", default="SUMMARY", choices=["SUMMARY", "TABLE", "FULL"])
    args = parser.parse_args()
    kept = not args.default_malloc  # as replan_scaling: README's advice to Python callers
    if kept:
        keep_large_buffers()
    requests = {
        n: pb.ReplanRequest(
            snapshot=encode_snapshot(make_snapshot(n), "arrow", compression="auto"),
            view=pb.PlanView.Value(f"PLAN_VIEW_{args.view}"),
            dry_run=True,
        )
        for n in args.sizes
    }
    if args.interleave_after:
        compare_settings(args, requests, kept)
        return
    header = ("workers", "deals", "clients", "calls", "errors", "p50 ms", "p99 ms", "calls/s")
    print("".join(f"{h:>10}" for h in header))
    rates: dict[tuple[int, int, int], float] = {}
    for workers in sorted({1, args.workers}):
        with started_server(workers) as target:
            for n, request in requests.items():
                for clients in args.clients:
                    if args.one_channel:
                        r = run_one_channel(target, request, clients, args.calls, args.seconds)
                    else:
                        r = run(target, request, clients, args.calls, args.seconds, kept)
                    rates[(workers, n, clients)] = r["rate"]
                    split = f"  {r['workers']}" if "workers" in r else ""
                    print(f"{workers:>10}{n:>10}{clients:>10}{r['calls']:>10.0f}"
                          f"{r['errors']:>10.0f}{r['p50'] * 1e3:>10.1f}{r['p99'] * 1e3:>10.1f}"
                          f"{r['rate']:>10.1f}{split}", flush=True)  # fmt: skip
    if args.workers > 1:
        print(f"\nthroughput with {args.workers} workers / 1 worker:")
        for n in args.sizes:
            for clients in args.clients:
                one, many = rates[(1, n, clients)], rates[(args.workers, n, clients)]
                ratio = many / one if one else float("nan")
                print(f"  {n:>6} deals, {clients:>3} clients: {ratio:.2f}x")


if __name__ == "__main__":
    main()

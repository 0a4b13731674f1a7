"""Replan (and AssessPacing) as a caller sees it: a started `reallocator serve`, a real gRPC channel
on loopback, warm calls repeated, median and p99 of the whole round trip (encode on the client,
transport, decode, assess, forecast, solve, verify, explain, encode, transport, the client's
parse), with the request and response sizes.

The campaign is `assess_scaling.make_snapshot` (10-day flight, dayparts, hourly traffic curve,
lifetime budget plus a daily cap, 100 sellers, 10 channels, 48 h of hourly series), sent in the
Arrow form with ZSTD body compression on the tables of 32 MiB or more
(`encode_snapshot(..., compression="auto")`: small tables go plain, as compressing them costs more
CPU than it saves), so even the 100k-deal request fits a default server's 128 MiB limit. Views:
SUMMARY (no per-deal rows), TABLE (every deal and schedule as Arrow columns) and FULL (per-deal
messages with their words),
all dry runs; then a Replan recorded in the server's audit store (`--recorded`, SUMMARY view), and
AssessPacing (BASIC), which is always recorded.

First, the everyday call under concurrency: 50-deal FULL Replans from 1 and 8 concurrent
clients (each a process with its own channel, so the callers do not share one GIL; warmed,
calls back to back, bounded in count and time) against a warmed server of 1 process and of
one per core (`--concurrency-workers`), p50/p99 and calls/s. Then the sizes, one caller at a
time, against a server of `--workers`.

The clients keep large buffers (`reallocator.client.keep_large_buffers`, as README advises a
Python caller of large requests: glibc's defaults page-fault every serialisation's buffer in
afresh, ~13 ms of a 10k-deal call's and ~50 ms of a 100k-deal call's); `--default-malloc`
measures them without.

    .venv/bin/python benchmarks/replan_scaling.py [--sizes 50 1000 10000 100000] [--workers N]
        [--clients 1 8] [--concurrency-workers 1 2] [--concurrent-calls 400]
        [--guaranteed 0.3] [--default-malloc]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from assess_scaling import make_snapshot
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reallocator.client import keep_large_buffers
from reallocator.v1 import assessment_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc
from reallocator.wire.encode import encode_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ports import free_port  # the tests' ports: below the ephemeral range

MIB = 1024 * 1024
VIEWS = {"SUMMARY": pb.PLAN_VIEW_SUMMARY, "TABLE": pb.PLAN_VIEW_TABLE, "FULL": pb.PLAN_VIEW_FULL}
REPEATS = {50: 200, 1_000: 60, 10_000: 12, 100_000: 5}


@contextmanager
def started_server(
    workers: int | None,
    root: Path | None = None,
    store: Path | None = None,
    flags: Sequence[str] = (),
) -> Iterator[str]:
    """`reallocator serve` as a README reader starts it (default settings), on loopback; with
    `root`, the code of that checkout (its package first on the path) instead of this one; with
    `store`, its audit store (SQLite) in that directory, which is also its working directory;
    `flags`: more of `serve`'s flags.
    A server that exits before it serves (its port taken in the meantime by another process on
    a shared machine) is started again on another port, up to three times."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALLOCATOR_")}
    if root is not None:
        env["PYTHONPATH"] = str(root)
    cwd = store or root or Path(__file__).resolve().parents[1]
    for _ in range(3):
        port = free_port()
        command = [sys.executable, "-m", "reallocator.cli", "--log-level", "WARNING", "serve",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        if workers is not None:
            command += ["--workers", str(workers)]
        if store is not None:
            command += ["--database-url", f"sqlite:///{store / 'reallocator.db'}"]
        command += flags
        proc = subprocess.Popen(command, env=env, cwd=cwd)
        target = f"127.0.0.1:{port}"
        try:
            if _serving(target, proc):
                yield target
                return
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    raise RuntimeError(f"the server did not start (3 attempts, last on port {port})")


def _serving(target: str, proc: subprocess.Popen[bytes]) -> bool:
    """Whether the server at `target` reports SERVING within a minute; False as soon as its
    process has exited."""
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            if proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not report SERVING within 60 s")
            time.sleep(0.2)


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    call()  # warm: caches, first allocations
    seconds = []
    reply: object = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        reply = call()
        seconds.append(time.perf_counter() - t0)
    seconds.sort()
    p99 = seconds[min(len(seconds) - 1, round(0.99 * (len(seconds) - 1)))]
    return statistics.median(seconds), p99, reply


def _client(
    target: str, data: bytes, ready: Any, left: Any, stop_at: Any, out: Any, kept: bool
) -> None:
    """One client process: its own channel, warmed by one call, then calls back to back until
    the shared budget of calls is spent or the clock runs out; its latencies go to `out`.
    `kept`: with the allocator setting README advises Python callers of large requests."""
    if kept:
        keep_large_buffers()
    request = pb.ReplanRequest.FromString(data)
    options = [
        ("grpc.max_receive_message_length", 256 * MIB),
        ("grpc.max_send_message_length", 256 * MIB),
    ]
    latencies: list[float] = []
    errors: list[str] = []
    with grpc.insecure_channel(target, options) as channel:
        stub = rpc.ReallocatorServiceStub(channel)
        try:
            stub.Replan(request, timeout=120)  # warm this channel
        finally:
            ready.wait()
        while time.time() < stop_at.value:
            with left.get_lock():
                if left.value <= 0:
                    break
                left.value -= 1
            t0 = time.perf_counter()
            try:
                stub.Replan(request, timeout=120)
            except grpc.RpcError as exc:
                errors.append(exc.code().name)
                continue
            latencies.append(time.perf_counter() - t0)
    out.put((latencies, errors))


def run(
    target: str,
    request: pb.ReplanRequest,
    clients: int,
    calls: int,
    seconds: float,
    kept: bool = True,
) -> dict[str, float]:
    """`clients` client processes (so the callers' own Python does not share one GIL and
    become the bottleneck), each with its own channel (warmed by one call first), calling until
    `calls` calls in all or `seconds` have passed: p50/p99 of the calls and calls/s. `kept`:
    the clients keep large buffers (`reallocator.client.keep_large_buffers`)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
    stop_at = context.Value("d", float("inf"))
    ready = context.Barrier(clients + 1)
    left = context.Value("l", calls)
    out = context.Queue()
    data = request.SerializeToString()
    procs = [
        context.Process(target=_client, args=(target, data, ready, left, stop_at, out, kept))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=300)  # every channel connected and warm: the clock starts
    started = time.perf_counter()
    stop_at.value = time.time() + seconds
    results = [out.get(timeout=seconds + 300) for _ in procs]
    wall = time.perf_counter() - started
    for p in procs:
        p.join(timeout=30)
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = [e for _, errs in results for e in errs]
    n = len(latencies)
    return {
        "calls": n,
        "errors": len(errors),
        "p50": statistics.median(latencies) if n else float("nan"),
        "p99": latencies[min(n - 1, round(0.99 * (n - 1)))] if n else float("nan"),
        "rate": n / wall if wall > 0 else 0.0,
    }


def concurrency(
    deals: int,
    clients: list[int],
    workers: list[int],
    calls: int,
    seconds: float,
    guaranteed: float = 0.0,
    kept: bool = True,
) -> None:
    """The everyday call (a FULL dry-run Replan) from concurrent clients, per server size."""
    request = pb.ReplanRequest(
        snapshot=encode_snapshot(
            make_snapshot(deals, guaranteed=guaranteed), "arrow", compression="auto"
        ),
        view=pb.PLAN_VIEW_FULL,
        dry_run=True,
    )
    header = ("workers", "deals", "clients", "calls", "errors", "p50 ms", "p99 ms", "calls/s")
    print("".join(f"{h:>10}" for h in header))
    rates: dict[tuple[int, int], float] = {}
    for w in workers:
        with started_server(w) as target:
            run(target, request, 1, 50, seconds, kept)  # warm every worker and cache
            for c in clients:
                r = run(target, request, c, calls, seconds, kept)
                rates[(w, c)] = r["rate"]
                print(f"{w:>10}{deals:>10}{c:>10}{r['calls']:>10.0f}{r['errors']:>10.0f}"
                      f"{r['p50'] * 1e3:>10.1f}{r['p99'] * 1e3:>10.1f}{r['rate']:>10.1f}",
                      flush=True)  # fmt: skip
    if len(workers) > 1:
        for c in clients:
            one, many = rates[(workers[0], c)], rates[(workers[-1], c)]
            print(f"  {c} client(s): {workers[-1]} workers / {workers[0]}: "
                  f"{many / one if one else float('nan'):.2f}x calls/s")  # fmt: skip
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 1_000, 10_000, 100_000])
    parser.add_argument("--views", nargs="+", default=list(VIEWS), choices=list(VIEWS))
    parser.add_argument("--repeats", type=int, default=None, help="calls per row (default by size)")
    parser.add_argument(
        "--workers", type=int, default=None, help="server processes (default: the server's own)"
    )
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 8],
                        help="concurrent clients of the 50-deal run (none: skip it)")  # fmt: skip
    parser.add_argument(
        "--concurrency-workers",
        type=int,
        nargs="+",
        default=sorted({1, os.cpu_count() or 1}),
        help="server processes of the concurrent runs (default: 1 and the cores)",
    )
    parser.add_argument("--recorded", default="SUMMARY", choices=["", *VIEWS],
                        help="view of recorded (not dry) Replans ('': none)")  # fmt: skip
    parser.add_argument("--concurrent-deals", type=int, default=50)
    parser.add_argument("--guaranteed", type=float, default=0.0,
                        help="share of guaranteed deals (seller requests; default 0)")  # fmt: skip
    parser.add_argument("--concurrent-calls", type=int, default=400,
                        help="most calls per concurrent run")  # fmt: skip
    parser.add_argument("--concurrent-seconds", type=float, default=30.0,
                        help="most seconds per concurrent run")  # fmt: skip
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="clients keep glibc's default allocator settings (without: as README advises "
        "Python callers of large requests, reallocator.client.keep_large_buffers)",
    )
    args = parser.parse_args()
    kept = not args.default_malloc
    if kept:
        keep_large_buffers()
    print(f"clients: {'keep large buffers' if kept else 'glibc default malloc'}", flush=True)
    if args.clients:
        concurrency(
            args.concurrent_deals,
            args.clients,
            args.concurrency_workers,
            args.concurrent_calls,
            args.concurrent_seconds,
            args.guaranteed,
            kept,
        )
    options = [
        ("grpc.max_receive_message_length", 256 * MIB),
        ("grpc.max_send_message_length", 256 * MIB),
    ]
    header = ("deals", "call", "p50 ms", "p99 ms", "calls", "request MB", "response MB")
    print(f"{header[0]:>8}{header[1]:>16}" + "".join(f"{h:>13}" for h in header[2:]))
    with started_server(args.workers) as target, grpc.insecure_channel(target, options) as ch:
        stub = rpc.ReallocatorServiceStub(ch)
        for n in args.sizes:
            snapshot = encode_snapshot(
                make_snapshot(n, guaranteed=args.guaranteed), "arrow", compression="auto"
            )
            repeats = args.repeats or REPEATS.get(n, 5)
            calls: list[tuple[str, Callable[[], object], int]] = []
            for view in args.views:
                request = pb.ReplanRequest(snapshot=snapshot, view=VIEWS[view], dry_run=True)
                calls.append(
                    (
                        f"Replan {view}",
                        lambda r=request: stub.Replan(r, timeout=600),
                        request.ByteSize(),
                    )
                )
            if args.recorded:  # not a dry run: the plan is stored (its snapshot, tables, requests)
                recorded = pb.ReplanRequest(snapshot=snapshot, view=VIEWS[args.recorded])
                calls.append(
                    (
                        f"{args.recorded} stored",
                        lambda r=recorded: stub.Replan(r, timeout=600),
                        recorded.ByteSize(),
                    )
                )
            assess = pb.AssessPacingRequest(
                snapshot=snapshot, view=assessment_pb2.ASSESSMENT_VIEW_BASIC
            )
            calls.append(
                (
                    "Assess BASIC",
                    lambda r=assess: stub.AssessPacing(r, timeout=600),
                    assess.ByteSize(),
                )
            )
            for name, call, size in calls:
                p50, p99, reply = timed(call, repeats)
                out = reply.ByteSize() if hasattr(reply, "ByteSize") else 0
                print(f"{n:>8}{name:>16}{p50 * 1e3:>13.1f}{p99 * 1e3:>13.1f}{repeats:>13}"
                      f"{size / 1e6:>13.2f}{out / 1e6:>13.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

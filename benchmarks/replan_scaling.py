"""Replan as a caller sees it: over gRPC on loopback against a started `reallocator serve`.

The campaign is `assess_scaling.make_snapshot` (10-day flight, dayparts, hourly traffic curve,
lifetime budget plus a daily cap, 100 sellers, 10 channels, 48 h of hourly series), sent as
`encode_snapshot(..., "arrow")` writes it (zstd-compressed Arrow when the plain request is over
the default message limit, as at 100k deals). Each size and view is called once to warm the server,
then `--repeat` times (fewer at 100k, bounded by `--budget` seconds); the figures are the median
and p99 of the end-to-end call (serialise, send, decode, assess, solve, explain, encode, receive,
parse), with the request and response sizes. Server and client run with their default settings
(the client's message limit is the server's default `max_message_bytes`).

    .venv/bin/python benchmarks/replan_scaling.py [--sizes 50 1000 10000 100000] [--views FULL ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import grpc
from assess_scaling import make_snapshot
from grpc_server import LIMIT, channel, percentile, running_server, stub

from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot

VIEWS = {name: getattr(pb, f"PLAN_VIEW_{name}") for name in ("FULL", "CHANGES", "SUMMARY")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 1_000, 10_000, 100_000])
    parser.add_argument("--views", nargs="+", default=["FULL", "SUMMARY"], choices=sorted(VIEWS))
    parser.add_argument("--repeat", type=int, default=20, help="calls per size and view")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per size and view")
    parser.add_argument(
        "--compression",
        choices=["auto", "none", "zstd", "lz4"],
        default="auto",
        help="Arrow IPC compression of the request (auto: zstd when plain is over the limit)",
    )
    args = parser.parse_args()
    header = ("deals", "view", "calls", "p50 s", "p99 s", "min s", "MB in", "MB out", "request")
    print("".join(f"{h:>10}" for h in header), flush=True)
    with running_server() as target, channel(target) as ch:
        call = stub(ch).Replan
        for n in args.sizes:
            snapshot = make_snapshot(n)
            compression = None if args.compression in ("auto", "none") else args.compression
            request = pb.ReplanRequest(snapshot=encode_snapshot(snapshot, compression=compression))
            if args.compression == "auto" and request.ByteSize() > LIMIT:
                compression = "zstd"
                request = pb.ReplanRequest(snapshot=encode_snapshot(snapshot, compression="zstd"))
            size_in = request.ByteSize() / 1e6
            for view in args.views:
                request.view = VIEWS[view]
                times: list[float] = []
                size_out = 0.0
                deadline = time.perf_counter() + args.budget
                for i in range(args.repeat + 1):
                    t0 = time.perf_counter()
                    try:
                        response = call(request, timeout=600)
                    except grpc.RpcError as exc:
                        print(f"{n:>10}{view:>10}  {exc.code().name}: {exc.details()}")
                        break
                    elapsed = time.perf_counter() - t0
                    size_out = response.ByteSize() / 1e6
                    if i:  # the first call warms the server
                        times.append(elapsed)
                    if time.perf_counter() > deadline and len(times) >= 3:
                        break
                if times:
                    figures = (statistics.median(times), percentile(times, 99), min(times))
                    print(f"{n:>10}{view:>10}{len(times):>10}"
                          + "".join(f"{v:>10.4f}" for v in figures)
                          + f"{size_in:>10.2f}{size_out:>10.2f}{compression or 'plain':>10}",
                          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

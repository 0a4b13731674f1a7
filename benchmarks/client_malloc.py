"""What a Python caller's allocator costs it: client processes with glibc's default malloc and
with `reallocator.client.keep_large_buffers()`, alternated against one started `reallocator
serve` (dry-run Replans of `assess_scaling.make_snapshot`, the view asked, warm; each round a
new client process per setting, the order swapped every round). Prints each round's median
and the median of the rounds per setting, and their ratio.

    .venv/bin/python benchmarks/client_malloc.py [--deals 10000] [--view TABLE] [--calls 12]
        [--rounds 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
from typing import Any

from assess_scaling import make_snapshot
from replan_scaling import MIB, VIEWS, started_server, timed

from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot


def _client(target: str, data: bytes, view: int, kept: bool, calls: int, out: Any) -> None:
    """One client process: the setting first (before grpc's threads start), one warm call,
    then `calls` timed ones; their median goes to `out`."""
    if kept:
        from reallocator.client import keep_large_buffers

        keep_large_buffers()
    import grpc

    from reallocator.v1 import reallocator_service_pb2_grpc as rpc

    request = pb.ReplanRequest.FromString(data)
    request.view = view  # type: ignore[assignment]
    options = [
        ("grpc.max_receive_message_length", 256 * MIB),
        ("grpc.max_send_message_length", 256 * MIB),
    ]
    with grpc.insecure_channel(target, options) as channel:
        stub = rpc.ReallocatorServiceStub(channel)
        p50, _, _ = timed(lambda: stub.Replan(request, timeout=600), calls)  # warm, then timed
    out.put(p50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=10_000)
    parser.add_argument("--view", default="TABLE", choices=list(VIEWS))
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    snapshot = encode_snapshot(make_snapshot(args.deals), "arrow", compression="auto")
    data = pb.ReplanRequest(snapshot=snapshot, dry_run=True).SerializeToString()
    context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
    medians: dict[bool, list[float]] = {False: [], True: []}
    with started_server(None) as target:
        for r in range(args.rounds):
            for kept in (r % 2 == 1, r % 2 == 0):
                out = context.Queue()
                proc = context.Process(
                    target=_client, args=(target, data, VIEWS[args.view], kept, args.calls, out)
                )
                proc.start()
                medians[kept].append(out.get(timeout=3600))
                proc.join(timeout=60)
    for kept in (False, True):
        name = "keep_large_buffers" if kept else "glibc default     "
        rounds = " ".join(f"{m * 1e3:.1f}" for m in medians[kept])
        print(f"{args.deals} deals {args.view} {name}: rounds {rounds} ms; "
              f"median {statistics.median(medians[kept]) * 1e3:.1f} ms")  # fmt: skip
    ratio = statistics.median(medians[True]) / statistics.median(medians[False])
    print(f"kept / default: {ratio:.2f}x")


if __name__ == "__main__":
    main()

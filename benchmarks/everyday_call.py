"""The everyday orchestrator call in process: the auction pool's hourly recorded Replan of a
campaign with a day of applied plans behind it, through the servicer, without the transport.

First a day of `auction_pool.py`'s shared pool is played against a started `reallocator serve`
(its own SQLite store in a temporary directory; hourly Replans, each approved and confirmed
applied, as that benchmark's reallocator strategy does). Then, in this process, a copy of that
store is opened and the day's last hourly snapshot is sent to the servicer's `replan` again and
again (recorded: each call stores a plan superseding the one before, as a retried hour would):
the median thread CPU and wall time per call. `--profile N` prints cProfile's top N functions.
Run it with another checkout first on `PYTHONPATH` to compare versions on the same store.

    .venv/bin/python benchmarks/everyday_call.py [--calls 150] [--deals 30] [--seed 0]
        [--profile 40] [--sort cumulative]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from auction_pool import Reallocator, build_world, simulate, started_server

from reallocator.config import ServerConfig
from reallocator.server.memory import collect_garbage_less_often, keep_large_buffers
from reallocator.server.servicer import ReallocatorServicer
from reallocator.server.warm_up import InProcessContext
from reallocator.store.sql import SqlStore
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc


def played_day(root: Path, deals: int, seed: int) -> str:
    """A day of the pool (equal values, 24 h series) played into the store under `root`; the
    campaign's name."""
    campaign = f"everyday-{seed}-{os.getpid()}"
    with started_server(root) as target, grpc.insecure_channel(target) as channel:
        world = build_world(seed, deals, 1, varied_values=False)
        simulate(world, Reallocator(rpc.ReallocatorServiceStub(channel), campaign, True, False))
    return campaign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--deals", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="everyday-") as tmp:
        played, copy = Path(tmp, "played"), Path(tmp, "copy")
        played.mkdir()
        campaign = played_day(played, args.deals, args.seed)
        shutil.copytree(played, copy, ignore=shutil.ignore_patterns("*.lock"))
        store = SqlStore.open(f"sqlite:///{copy / 'reallocator.db'}")
        try:
            snapshot, _, _, _ = store.recorded_replans(campaign)[-1]
            request = pb.ReplanRequest()
            request.snapshot.ParseFromString(snapshot)
            data = request.SerializeToString()
            servicer = ReallocatorServicer(ServerConfig(), store)
            keep_large_buffers()  # the server process's settings, as `serve` makes them
            collect_garbage_less_often()

            def call() -> None:
                servicer.replan(pb.ReplanRequest.FromString(data), InProcessContext())  # type: ignore[arg-type]

            for _ in range(10):
                call()
            cpu, wall = [], []
            for _ in range(args.calls):
                t0, c0 = time.perf_counter(), time.thread_time()
                call()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
            print(
                f"{args.deals}-deal hourly call, a day applied behind it "
                f"({len(store.recorded_replans(campaign))} plans recorded): thread CPU p50 "
                f"{statistics.median(cpu) * 1e3:.2f} ms (min {min(cpu) * 1e3:.2f}), wall p50 "
                f"{statistics.median(wall) * 1e3:.2f} ms"
            )
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(args.calls):
                    call()
                profile.disable()
                pstats.Stats(profile).sort_stats(args.sort).print_stats(args.profile)
        finally:
            store.close()


if __name__ == "__main__":
    main()

"""Two versions of the server side by side: the same Replan against a server of this working tree
and one of an earlier commit, in one run, calls alternated in blocks, so a machine whose speed
drifts (a shared VM's does, by a quarter within an hour) slows both alike and the ratio holds.

The earlier commit is checked out with `git worktree` into a temporary folder (removed after);
both servers start as README says (`reallocator serve`, one worker each unless `--workers`),
warm, then `--blocks` blocks of `--calls` calls alternate between them. Prints p50 and p99 of
each and the ratio of the p50s. The request is `assess_scaling.make_snapshot` (Arrow,
compression="auto"), a dry run in `--view` (`--recorded`: stored in each server's audit store,
a SQLite file in a temporary folder of its own, empty at the start). `--cycle` times an
orchestrator's hourly round instead, each call on its own: the recorded Replan, GetPlan of it
(FULL), ReviewPlan (approve) and ConfirmApplied.

    .venv/bin/python benchmarks/replan_versions.py --base b31b1c9 [--deals 50] [--view SUMMARY]
        [--guaranteed 0.3] [--blocks 20] [--calls 25] [--workers 1] [--recorded | --cycle]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
from assess_scaling import make_snapshot
from replan_scaling import VIEWS, started_server

from reallocator.client import keep_large_buffers
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc
from reallocator.wire.encode import encode_snapshot

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """The tree of `commit` in a temporary folder (a detached git worktree)."""
    with tempfile.TemporaryDirectory(prefix="reallocator-base-") as folder:
        path = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(path), commit], cwd=ROOT, check=True
        )
        try:
            yield path
        finally:
            remove = ["git", "worktree", "remove", "--force", str(path)]
            subprocess.run(remove, cwd=ROOT, check=False)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    answer = call()
    return time.perf_counter() - t0, answer


def one_round(stub: rpc.ReallocatorServiceStub, request: pb.ReplanRequest) -> dict[str, float]:
    """An orchestrator's hourly round, each call timed: a recorded Replan (`request`), then
    its plan read, approved and confirmed applied."""
    took, answer = timed(lambda: stub.Replan(request, timeout=60))
    name = answer.plan.name  # type: ignore[attr-defined]
    get = pb.GetPlanRequest(name=name, view=pb.PLAN_VIEW_FULL)
    review = pb.ReviewPlanRequest(name=name, decision=pb.REVIEW_DECISION_APPROVE)
    confirm = pb.ConfirmAppliedRequest(name=name)
    times = {"Replan": took}
    times["GetPlan FULL"], _ = timed(lambda: stub.GetPlan(get, timeout=60))
    times["ReviewPlan"], _ = timed(lambda: stub.ReviewPlan(review, timeout=60))
    confirm.apply_time.GetCurrentTime()
    times["ConfirmApplied"], _ = timed(lambda: stub.ConfirmApplied(confirm, timeout=60))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--deals", type=int, default=50)
    parser.add_argument("--view", default="SUMMARY", choices=list(VIEWS))
    parser.add_argument("--guaranteed", type=float, default=0.0, help="share of guaranteed deals")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--calls", type=int, default=25, help="calls per block and version")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--recorded", action="store_true",
                        help="not a dry run: each call records a plan in its store")  # fmt: skip
    parser.add_argument("--cycle", action="store_true",
                        help="recorded; then GetPlan, ReviewPlan, ConfirmApplied")  # fmt: skip
    args = parser.parse_args()
    args.recorded = args.recorded or args.cycle
    keep_large_buffers()  # the client as README advises Python callers (both versions alike)
    snapshot = make_snapshot(args.deals, guaranteed=args.guaranteed)
    request = pb.ReplanRequest(
        snapshot=encode_snapshot(snapshot, "arrow", compression="auto"),
        view=VIEWS[args.view],
        dry_run=not args.recorded,
    )
    with ExitStack() as stack:
        base_tree = stack.enter_context(checkout(args.base))
        stores = [
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="replan-versions-")))
            for _ in range(2)
        ]  # each server's own empty audit store, whatever runs came before
        targets = {
            args.base: stack.enter_context(started_server(args.workers, base_tree, stores[0])),
            "this tree": stack.enter_context(started_server(args.workers, None, stores[1])),
        }
        # A TABLE or FULL answer of 10k deals and more is over grpcio's 4 MiB default.
        limit = 256 * 1024 * 1024
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        stubs = {
            name: rpc.ReallocatorServiceStub(
                stack.enter_context(grpc.insecure_channel(target, options))
            )
            for name, target in targets.items()
        }
        warm = 50 if args.deals <= 1_000 else 3
        for stub in stubs.values():
            for _ in range(warm):  # caches, first allocations
                stub.Replan(request, timeout=60)
        seconds: dict[str, dict[str, list[float]]] = {name: {} for name in stubs}
        for _ in range(args.blocks):
            for name, stub in stubs.items():
                for _ in range(args.calls):
                    if args.cycle:
                        times = one_round(stub, request)
                    else:
                        times = {"Replan": timed(lambda s=stub: s.Replan(request, timeout=60))[0]}
                    for call, took in times.items():
                        seconds[name].setdefault(call, []).append(took)
    kind = "hourly round" if args.cycle else "recorded" if args.recorded else "dry run"
    print(f"{args.deals} deals, {args.view} {kind}, {args.guaranteed:.0%} guaranteed, "
          f"{args.workers} worker(s), {args.blocks} x {args.calls} calls each")  # fmt: skip
    for call in seconds["this tree"]:
        for name, calls in seconds.items():
            values = calls[call]
            print(f"  {call:>14} {name:>12}: p50 {percentile(values, 0.5) * 1e3:6.2f} ms  "
                  f"p99 {percentile(values, 0.99) * 1e3:6.2f} ms")  # fmt: skip
        base, now = (percentile(seconds[k][call], 0.5) for k in stubs)
        print(f"  {call:>14} p50 this tree / {args.base}: {now / base:.2f}x")


if __name__ == "__main__":
    main()

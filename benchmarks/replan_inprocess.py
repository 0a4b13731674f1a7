"""The server's work for one Replan, in process and per stage: what a servicer call costs in CPU
without the transport (parse the request bytes, decode and validate the snapshot, build the
plan without words as the servicer does, assessment included, encode the plan in the asked
view, serialise the answer; "(assess)" is the assessment alone, timed apart, not in the total;
"plan-assess" is the plan stage less the assessment: medians and minimums subtracted).

It prints the median and the minimum thread CPU time of each stage and of the whole call over
`--repeats` warm calls (CPU time, not wall time, so other jobs on the machine disturb it less),
for each size. `--profile` prints cProfile's top functions of the whole call instead.

The snapshot is `assess_scaling.make_snapshot` as replan_scaling sends it (Arrow,
compression="auto"). The process uses the server's memory settings (server/memory.py).

    .venv/bin/python benchmarks/replan_inprocess.py [--sizes 50 1000] [--view all] [--profile]
        [--sort tottime] [--top 40]
        [--guaranteed 0.3]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from assess_scaling import make_snapshot

from reallocator.config import ServerConfig
from reallocator.core.pacing.assessment import assess
from reallocator.core.plan.builder import build_plan
from reallocator.server.memory import collect_garbage_less_often, keep_large_buffers
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.plan import VIEWS, Rows, encode_plan, plan_bytes
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

STAGES = ("parse", "decode", "plan", "encode", "serialise")


def one_call(
    data: bytes, view: str, config: ServerConfig, clock: Callable[[], float]
) -> dict[str, float]:
    """One Replan's stages, timed with `clock`."""
    times: dict[str, float] = {}
    t = clock()

    def lap(stage: str) -> None:
        nonlocal t
        now = clock()
        times[stage] = now - t
        t = now

    request = pb.ReplanRequest()
    request.ParseFromString(data)
    lap("parse")
    errors = Violations()
    policy = decode_policy(request.policy, config.default_policy, errors)
    snapshot = decode_snapshot(request.snapshot, policy, errors, limits=config.wire_limits)
    errors.raise_if_any()
    assert snapshot is not None
    lap("decode")
    plan = build_plan(
        snapshot,
        time_limit=10.0,
        schedule_window=timedelta(hours=6),
        text=False,
        relax=False,
        schedules=view != "none",  # as the servicer's dry-run SUMMARY
    )
    lap("plan")
    response = pb.ReplanResponse()
    kept = Rows()  # as the servicer: a long plan's rows as bytes beside the message
    encode_plan(plan, deals=view, out=response.plan, rows=kept)
    lap("encode")
    plan_bytes(response, "plan", kept) if kept.parts else response.SerializeToString()
    lap("serialise")
    assess(snapshot, alert_messages=False)  # as build_plan calls it
    lap("(assess)")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 1_000])
    parser.add_argument("--view", default="all", choices=VIEWS, help="encode_plan's deals=")
    parser.add_argument("--repeats", type=int, default=None, help="calls (default by size)")
    parser.add_argument("--profile", action="store_true", help="cProfile of the whole call")
    parser.add_argument(
        "--sort",
        default="cumulative",
        choices=["cumulative", "tottime"],
        help="--profile's order: cumulative time, or a function's own time",
    )
    parser.add_argument("--top", type=int, default=40, help="--profile's functions shown")
    parser.add_argument("--guaranteed", type=float, default=0.0,
                        help="share of guaranteed deals (seller requests; default 0)")  # fmt: skip
    args = parser.parse_args()
    config = ServerConfig()
    keep_large_buffers()  # the server process's memory settings, as `serve` makes them
    collect_garbage_less_often()
    if not args.profile:
        print(f"{'deals':>8}{'stage':>12}{'cpu p50 ms':>13}{'cpu min ms':>13}")
    for n in args.sizes:
        snapshot = encode_snapshot(
            make_snapshot(n, guaranteed=args.guaranteed), "arrow", compression="auto"
        )
        data = pb.ReplanRequest(snapshot=snapshot, dry_run=True).SerializeToString()
        repeats = args.repeats or max(3, min(300, 20_000 // n))
        for _ in range(3):  # warm: imports, caches, first allocations
            one_call(data, args.view, config, time.thread_time)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(repeats):
                one_call(data, args.view, config, time.thread_time)
            profile.disable()
            print(f"--- {n} deals, {repeats} calls")
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
            continue
        runs: list[dict[str, Any]] = [
            one_call(data, args.view, config, time.thread_time) for _ in range(repeats)
        ]
        for stage in (*STAGES, "total", "(assess)"):
            values = [sum(r[s] for s in STAGES) if stage == "total" else r[stage] for r in runs]
            print(f"{n:>8}{stage:>12}{statistics.median(values) * 1e3:>13.2f}"
                  f"{min(values) * 1e3:>13.2f}", flush=True)  # fmt: skip
        # The plan without its assessment: the difference of the medians and of the minimums
        # (a per-call difference mixes two calls' noise).
        plan, own = [r["plan"] for r in runs], [r["(assess)"] for r in runs]
        p50 = statistics.median(plan) - statistics.median(own)
        print(f"{n:>8}{'plan-assess':>12}{p50 * 1e3:>13.2f}{(min(plan) - min(own)) * 1e3:>13.2f}")


if __name__ == "__main__":
    main()

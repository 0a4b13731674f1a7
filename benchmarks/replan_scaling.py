"""End-to-end Replan cost at 1k, 10k and 100k deals: decode, plan, encode.

The campaign is `assess_scaling.make_snapshot` (10-day flight, dayparts, hourly traffic curve,
lifetime budget plus a daily cap, 100 sellers, 10 channels, 48 h of hourly series). `plan` is
`build_plan`: assessment, capacity forecast, problem, solve (min-cost flow), explanations,
seller requests, buyer schedules and the decision record; the solver's own share is printed
beside it. `encode` is the Plan message (every deal, request and schedule).

    .venv/bin/python benchmarks/replan_scaling.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import time

from assess_scaling import decode_wire, make_snapshot

from reallocator.config import ServerConfig
from reallocator.core.plan.builder import build_plan
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.plan import encode_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    header = ("deals", "decode s", "plan s", "solver s", "encode s", "total s", "requests",
              "schedules", "MB out")  # fmt: skip
    print("".join(f"{h:>11}" for h in header))
    for n in args.sizes:
        wire = encode_snapshot(make_snapshot(n), "arrow").SerializeToString()
        t0 = time.perf_counter()
        snapshot = decode_wire(wire)
        t1 = time.perf_counter()
        plan = build_plan(snapshot)
        t2 = time.perf_counter()
        out = encode_plan(plan).SerializeToString()
        t3 = time.perf_counter()
        solver = plan.solver.build_seconds + plan.solver.solve_seconds + plan.solver.verify_seconds
        row = (n, t1 - t0, t2 - t1, solver, t3 - t2, t3 - t0, len(plan.requests),
               len(plan.schedules), len(out) / 1e6)  # fmt: skip
        print(f"{row[0]:>11}" + "".join(f"{v:>11.3f}" for v in row[1:6])
              + f"{row[6]:>11}{row[7]:>11}{row[8]:>11.1f}")  # fmt: skip
        limit = ServerConfig().max_message_bytes
        if len(out) > limit:
            print(f"  the full plan exceeds the default message limit ({limit / 2**20:.0f} MiB): "
                  "use PLAN_VIEW_CHANGES or raise max_message_bytes")  # fmt: skip


if __name__ == "__main__":
    main()

"""Random valid scenarios: shapes the shipped ones never had (flights of half a day to ten days,
5- to 60-minute steps, 1 to 60 deals, time zones with 30- and 45-minute offsets and flights
across a change of clocks, collapses to nothing and surges, stalls of a channel or of every
deal, bursts, both pacers, replans every 1 to 12 hours, budgets from 50 to 50 million). Each
world is run with the booking never moved (static) and with the reallocator; it prints both
utilisations and the hindsight oracle's, flags a run whose reallocator spends more than
`--below` (default 3 points) less than the static booking, and fails (exit 1) on an error or
any overspend. A flagged world is printed as its scenario JSON and seed, ready for
`reallocator simulate FILE --seeds ...` or a trace.

    .venv/bin/python benchmarks/random_scenarios.py [--seed 1] [--count 25] [--below 0.03]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from typing import Any

from reallocator.sim import profiles
from reallocator.sim.args import policy_overrides
from reallocator.sim.cli import with_policy
from reallocator.sim.oracle import solve_oracle
from reallocator.sim.run import make_strategy, simulate
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.world import build_world

ZONES = (
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Europe/London",
    "UTC",
    "Australia/Lord_Howe",
    "America/St_Johns",
)
STARTS = (  # a Monday; a clock change; Halloween night; New Year's Eve; a clock change
    "2026-11-02T00:00:00",
    "2026-03-07T13:00:00",
    "2026-10-31T22:30:00",
    "2026-12-31T18:00:00",
    "2027-03-27T23:00:00",
)


def _select(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.3:
        return {"channels": [rng.choice(["display", "video", "ctv", "native", "audio"])]}
    if roll < 0.5:
        return {"deal_type": rng.choice(["pg", "non_pg"])}
    if roll < 0.7:
        return {"count": rng.randint(1, 5)}
    return {}  # every deal


def random_scenario(rng: random.Random, name: str) -> dict[str, Any]:
    """One valid scenario (a dict in the scenario files' syntax)."""
    days = rng.choice([0.5, 1, 2, 3, 7, 10])
    hours = days * 24
    deals = rng.choice([1, 2, 5, 20, 60])
    collapses = []
    for _ in range(rng.randint(0, 2)):
        collapse = {
            "select": _select(rng),
            "start_hour": rng.uniform(0, hours),
            "level": rng.choice([0, 0.2, 3.0]),
            "ramp_hours": rng.choice([0.5, 2, 24]),
        }
        if rng.random() < 0.5:
            collapse["end_hour"] = collapse["start_hour"] + rng.uniform(1, hours)
        collapses.append(collapse)
    return {
        "name": name,
        "budget": rng.choice([50, 1000, 100_000, 5e7]),
        "replan_hours": rng.choice([1, 2, 6, 12]),
        "platform_budget_cap": rng.random() < 0.3,
        "flight": {
            "start": rng.choice(STARTS),
            "days": days,
            "timezone": rng.choice(ZONES),
            "step_minutes": rng.choice([5, 15, 30, 60]),
        },
        "portfolio": {
            "deals": deals,
            "sellers": rng.randint(1, deals),
            "channels": rng.randint(1, 6),
            "pg_share": rng.choice([0, 0.25, 0.5, 1.0]),
            "capacity_ratio": rng.choice([1.2, 1.6, 3, 8]),
            "booking_max": rng.choice([0.85, 1.0]),
            "value_sigma": rng.choice([0, 0.3, 1.5]),
        },
        "traffic": {
            "profile": rng.choice(profiles.TRAFFIC_PROFILES),
            "noise_scale": rng.choice([0, 1, 3]),
        },
        "drift": {
            "sigma_per_day": rng.choice([0, 0.08, 0.3]),
            "bias_per_day": rng.choice([-0.2, 0, 0.2]),
        },
        "stalls": {
            "rate_per_week": rng.choice([0, 1, 5]),
            "mean_hours": rng.choice([2, 10, 40]),
            "events": [
                {
                    "select": _select(rng),
                    "start_hour": rng.uniform(0, hours),
                    "hours": rng.uniform(1, hours),
                }
                for _ in range(rng.randint(0, 2))
            ],
        },
        "collapses": collapses,
        "events": [
            {
                "select": _select(rng),
                "start_hour": rng.uniform(0, hours),
                "shape": rng.choice(profiles.EVENT_SHAPES),
                "amplitude": rng.choice([0.5, 1, 3, 10]),
                "price_elasticity": rng.choice([0, 0.3, 1]),
            }
            for _ in range(rng.randint(0, 2))
        ],
        "pacer": {"kind": rng.choice(["probabilistic", "discount"])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=25)
    parser.add_argument("--below", type=float, default=0.03, help="flag: static minus this")
    parser.add_argument(
        "--policy",
        type=policy_overrides,
        default=None,
        help="policy overrides merged into every world's (scenario file syntax); the worlds "
        "and their seeds are the same with or without",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures, flagged = 0, 0
    margins: list[float] = []
    print(" # realloc   static   oracle  deals replans seconds  zone, start, days, step")
    for i in range(args.count):
        spec = random_scenario(rng, f"random-{args.seed}-{i}")
        seed = rng.randint(0, 999)
        started = time.perf_counter()
        try:
            world = build_world(with_policy(scenario_from_dict(spec), args.policy), seed)
            runs = {s: simulate(world, make_strategy(s)) for s in ("static", "reallocator")}
            oracle = solve_oracle(world)
        except Exception:  # a valid scenario must run: report it and go on
            failures += 1
            traceback.print_exc()
            print(f"{i:2d} ERROR seed {seed}: {json.dumps(spec)}")
            continue
        use = {s: float(r.state.spent.sum()) / world.budget for s, r in runs.items()}
        margins.append(use["reallocator"] - use["static"])
        flight = spec["flight"]
        print(
            f"{i:2d} {use['reallocator']:8.1%} {use['static']:8.1%} {oracle.utilisation:8.1%} "
            f"{world.n_deals:6d} {len(runs['reallocator'].replans):7d} "
            f"{time.perf_counter() - started:7.1f}  {flight['timezone']}, {flight['start']}, "
            f"{flight['days']}, {flight['step_minutes']} min",
            flush=True,
        )
        if max(use.values()) > 1.0 + 1e-9:
            failures += 1
            print(f"   OVERSPEND seed {seed}: {json.dumps(spec)}")
        if use["reallocator"] < use["static"] - args.below:
            flagged += 1
            print(f"   below static, seed {seed}: {json.dumps(spec)}")
    print(f"{args.count} worlds: {failures} failed (error or overspend), {flagged} below static")
    if margins:
        above = sum(m > args.below for m in margins)
        below = sum(m < -args.below for m in margins)
        print(
            f"against static: {above} above by more than {args.below:.0%}, "
            f"{len(margins) - above - below} within, {below} below; "
            f"mean {100 * sum(margins) / len(margins):+.2f} points"
        )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

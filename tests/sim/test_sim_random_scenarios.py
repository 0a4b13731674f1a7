"""Worlds the shipped scenarios never had (benchmarks/random_scenarios.py's generator: odd time
zones and clock changes, 5- to 60-minute steps, stalls of every deal, collapses to nothing,
surges, one-deal campaigns, both pacers): the reallocator runs every one without an error and
never spends beyond the budget, nor a deal the buyer paces beyond its allocation."""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from reallocator.sim.run import make_strategy, simulate
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.world import build_world

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
try:
    from random_scenarios import random_scenario
finally:
    sys.path.remove(str(BENCHMARKS))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), world_seed=st.integers(0, 999))
# St John's springs forward at 02:00 on the flight's second day: the steps once walked the
# local clock into that missing hour, and a plan at it had a schedule window ending when it
# began (found by this test).
@example(seed=6375, world_seed=1)
def test_any_valid_world_runs_without_overspend(seed: int, world_seed: int) -> None:
    spec = random_scenario(random.Random(seed), "random")
    spec["flight"]["days"] = min(spec["flight"]["days"], 2)  # a test's time: two days at most
    spec["portfolio"]["deals"] = min(spec["portfolio"]["deals"], 20)
    spec["portfolio"]["sellers"] = min(spec["portfolio"]["sellers"], spec["portfolio"]["deals"])
    world = build_world(scenario_from_dict(spec), world_seed)
    run = simulate(world, make_strategy("reallocator"))
    spent = run.state.spent
    assert spent.sum() <= world.budget * (1 + 1e-9), spec
    # No deal the buyer paces beyond its allocation (a plan never sets one below what the deal
    # delivered; a seller may deliver before it agrees to less, so its deals are not held to it).
    buyer = ~world.pg
    assert (spent[buyer] <= run.state.alloc[buyer] + 1.0).all(), spec


def test_a_worlds_steps_are_elapsed_time_across_a_change_of_clocks() -> None:
    """Steps an equal stretch of time apart, however the local clock jumps: St John's springs
    forward at 02:00 on 2026-03-08 (an aware local datetime plus a timedelta is wall-clock
    arithmetic: 01:45 + 15 min was 02:00, an hour that does not exist, the same instant as
    03:00)."""
    spec = random_scenario(random.Random(6375), "random")
    spec["flight"].update(timezone="America/St_Johns", start="2026-03-07T12:00:00", days=2)
    spec["flight"]["step_minutes"] = 15
    world = build_world(scenario_from_dict(spec), 1)
    stamps = [world.at(t).timestamp() for t in range(world.n_steps + 1)]
    assert all(b - a == 900.0 for a, b in itertools.pairwise(stamps))
    assert world.end.timestamp() == stamps[-1]
    assert world.scenario.end.timestamp() == stamps[-1]

"""Worlds the shipped scenarios never had (benchmarks/random_scenarios.py's generator: odd time
zones and clock changes, 5- to 60-minute steps, stalls of every deal, collapses to nothing,
surges, one-deal campaigns, both pacers): the reallocator runs every one without an error and
never spends beyond the budget, nor a deal the buyer paces beyond its allocation."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from hypothesis import given, settings
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

"""The shared pool replanned hourly with no night supply on most deals: no death spiral."""

from __future__ import annotations

from pathlib import Path

from reallocator.sim.metrics import run_metrics
from reallocator.sim.run import run_world
from reallocator.sim.scenario import load_scenario
from reallocator.sim.world import build_world

SCENARIO = (
    Path(__file__).resolve().parents[2] / "reallocator" / "sim" / "scenarios" / "night_pool.json"
)


def test_no_deal_ends_a_day_cut_to_its_spend_while_it_had_supply() -> None:
    scenario = load_scenario(SCENARIO)
    world = build_world(scenario, 0)
    result = run_world(world, ("reallocator",))
    row = run_metrics(world, result.oracle, result.runs["reallocator"])
    assert row["cut_to_spend_eod"] == 0
    assert row["utilisation_vs_oracle"] > 0.97
    assert row["overspend"] == 0.0

"""The oracle bounds every strategy on value, within the real supply, budget and limits."""

from __future__ import annotations

import numpy as np

from reallocator.sim.metrics import oracle_metrics, run_metrics
from reallocator.sim.oracle import solve_oracle
from reallocator.sim.run import run_world
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.world import build_world

BASE = {
    "budget": 20_000,
    "flight": {"days": 2},
    "portfolio": {"deals": 12, "sellers": 4, "channels": 3},
}


def test_oracle_beats_every_strategy_on_value() -> None:
    scenario = scenario_from_dict(
        {
            **BASE,
            "name": "bound",
            "stalls": {"events": [{"select": {"sellers": ["S00"]}, "start_hour": 6, "hours": 20}]},
        }
    )
    for seed in (0, 1):
        world = build_world(scenario, seed)
        result = run_world(world)
        oracle = result.oracle
        assert (oracle.allocation <= np.floor(world.true_capacity)).all()
        assert oracle.allocation.sum() <= world.budget
        for run in result.runs.values():
            spent = run.state.spent
            assert spent.sum() <= world.budget * (1 + 1e-9)
            row = run_metrics(world, oracle, run)
            assert row["value"] <= oracle.value * (1 + 1e-9), run.strategy
            assert row["utilisation"] <= oracle.utilisation + 1e-9, run.strategy
            # what moved never exceeds what the plans moved or asked for (an ask moves at most
            # its size, once, when the seller answers)
            assert row["churn"] <= row["churn_plan"] + 1e-9, run.strategy
        assert oracle_metrics(world, oracle)["value_vs_oracle"] == 1.0


def test_oracle_relaxes_contradicting_limits() -> None:
    scenario = scenario_from_dict(
        {
            **BASE,
            "name": "conflict",
            "constraints": {
                "sellers": {"S00": {"min_share": 0.6}},
                "channels": {"display": {"max_share": 0.05}},
            },
        }
    )
    world = build_world(scenario, 0)
    oracle = solve_oracle(world)
    assert oracle.relaxed in ("group minimums", "group and deal minimums")
    display = world.channel == world.channel_ids.index("display")
    assert oracle.allocation[display].sum() <= 0.05 * world.budget + 1

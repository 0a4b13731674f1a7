"""Pacers hit their targets on a steady world; step targets follow the opportunity curve."""

from __future__ import annotations

import numpy as np
import pytest

from reallocator.sim.metrics import worst_cumulative_gap
from reallocator.sim.pacers import step_targets
from reallocator.sim.run import make_strategy, simulate
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.world import build_world


def steady(pacer: str) -> dict[str, object]:
    return {
        "name": f"steady_{pacer}",
        "budget": 10_000,
        "flight": {"days": 3},
        "portfolio": {
            "deals": 10,
            "sellers": 4,
            "channels": 2,
            "pg_share": 0.0,
            "capacity_ratio": 2.0,
            "booking_max": 0.6,
        },
        "traffic": {"noise_scale": 0.3, "cpm_noise_scale": 0.3},
        "drift": {"sigma_per_day": 0.0},
        "pacer": {"kind": pacer},
    }


def test_step_targets_spread_the_remainder_over_the_curve() -> None:
    remaining = np.array([100.0, 100.0, 0.0, -5.0])
    weight = np.array([1.0, 2.0, 1.0, 1.0])
    left = np.array([4.0, 2.0, 4.0, 4.0])
    assert step_targets(remaining, weight, left).tolist() == [25.0, 100.0, 0.0, 0.0]
    # no opportunity left: what remains is due now
    assert step_targets(np.array([7.0]), np.array([0.0]), np.array([0.0])).tolist() == [7.0]


@pytest.mark.parametrize(("pacer", "gap"), [("probabilistic", 0.01), ("discount", 0.01)])
def test_pacers_deliver_the_allocation_on_the_curve(pacer: str, gap: float) -> None:
    world = build_world(scenario_from_dict(steady(pacer)), 1)
    run = simulate(world, make_strategy("static"))
    spent = run.state.spent
    booked = world.booked.astype(float)
    assert (spent <= booked + 1e-6).all()  # never beyond the allocation
    assert spent.sum() / world.budget >= 0.99
    assert (spent / booked).min() >= 0.97
    actual = run.state.spend_hist.sum(axis=0)
    assert worst_cumulative_gap(actual, world.planned, world.budget) <= gap
    # the pacer never buys beyond what the step offered
    assert (run.state.spend_hist <= world.full_spend * (1 + 1e-9)).all()

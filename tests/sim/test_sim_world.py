"""The world: deterministic given a seed, booked to the budget, shaped by the real profiles."""

from __future__ import annotations

import numpy as np

from reallocator.sim import profiles
from reallocator.sim.run import run_world
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.world import build_world

SMALL = {
    "name": "small",
    "budget": 10_000,
    "flight": {"days": 2},
    "portfolio": {"deals": 12, "sellers": 4, "channels": 3},
    "stalls": {"events": [{"select": {"sellers": ["S01"]}, "start_hour": 10, "hours": 6}]},
}


def test_same_seed_same_world_and_runs() -> None:
    scenario = scenario_from_dict(SMALL)
    a, b = build_world(scenario, 3), build_world(scenario, 3)
    for name in ("avails", "price", "full_spend", "booked", "accept_draws", "delivery_noise"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = build_world(scenario, 4)
    assert not np.array_equal(a.full_spend, c.full_spend)
    ra = run_world(a, ("static", "rules"))
    rb = run_world(b, ("static", "rules"))
    for name in ("static", "rules"):
        assert np.array_equal(ra.runs[name].state.spend_hist, rb.runs[name].state.spend_hist)
    assert ra.oracle.value == rb.oracle.value


def test_booking_fills_the_budget_within_capacity() -> None:
    scenario = scenario_from_dict(SMALL)
    world = build_world(scenario, 0)
    assert int(world.booked.sum()) == world.budget
    assert (world.booked <= scenario.portfolio.booking_max * world.nominal_capacity + 1).all()
    # every seller has a deal; ids are stable
    assert set(world.seller) == set(range(4))
    assert world.deal_ids[0] == "D000" and world.channel_ids == ("display", "video", "ctv")


def test_stall_zeroes_supply_for_its_hours() -> None:
    world = build_world(scenario_from_dict(SMALL), 0)
    deals = world.seller == world.seller_ids.index("S01")
    a, b = 10 * 4, 16 * 4
    assert (world.full_spend[deals, a:b] == 0).all()
    assert (world.full_spend[deals, b:] > 0).all()
    assert world.stalled[deals, a:b].all()


def test_traffic_follows_the_profile() -> None:
    scenario = scenario_from_dict(
        {**SMALL, "traffic": {"noise_scale": 0.0}, "drift": {"sigma_per_day": 0.0}}
    )
    world = build_world(scenario, 0)
    weights = profiles.traffic_weights("avito_mean")
    assert np.isclose(weights.mean(), 1.0)
    ok = ~world.stalled[0]
    ratio = world.avails[0, ok] / weights[world.how[ok]]
    assert np.allclose(ratio, ratio[0])  # without noise, avails are the curve scaled per deal
    assert np.isclose(world.campaign_weights.mean(), 1.0)

"""Sellers answer after their delay, accept with their probability, and never commit beyond
their real inventory or below what is delivered."""

from __future__ import annotations

import numpy as np

from reallocator.core.plan.model import RequestKind, SellerResponse
from reallocator.sim.run import make_strategy, simulate
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.sellers import SellerDesk
from reallocator.sim.world import World, build_world


def pg_world(accept: float, delay: float = 2.0) -> World:
    return build_world(
        scenario_from_dict(
            {
                "name": "pg",
                "budget": 10_000,
                "flight": {"days": 2},
                "portfolio": {"deals": 6, "sellers": 3, "channels": 2, "pg_share": 1.0},
                "sellers": {
                    "delay_hours": [delay, delay],
                    "accept_increase": accept,
                    "accept_decrease": accept,
                },
            }
        ),
        0,
    )


def test_answers_arrive_after_the_delay_and_respect_inventory() -> None:
    world = pg_world(accept=1.0)
    assert (world.delay_steps == 8).all()  # 2 h of 15-minute steps
    desk = SellerDesk(world)
    committed = world.booked.astype(float).copy()
    spent = committed * 0.25
    huge = int(world.budget * 10)
    desk.submit(10, 0, RequestKind.INCREASE, huge, ref="r0")
    desk.submit(10, 1, RequestKind.INCREASE, int(committed[1] + 1_000_000), ref="r1")
    desk.submit(10, 2, RequestKind.DECREASE, 0, ref="r2")
    assert desk.answer_due(17, committed, spent) == []  # not before the delay
    answers = {a.deal: a for a in desk.answer_due(18, committed, spent)}
    assert set(answers) == {0, 1, 2}
    supply = int(np.floor(spent[0] + world.capacity_left[0, 18]))
    assert answers[0].response is SellerResponse.PARTIAL  # capped by real inventory
    assert answers[0].accepted_total == supply == committed[0]
    assert answers[1].response is SellerResponse.ACCEPTED
    assert committed[1] == answers[1].accepted_total
    assert answers[2].response is SellerResponse.ACCEPTED
    assert committed[2] == np.ceil(spent[2])  # never below what is delivered
    history = desk.history().requests
    assert history["response"].tolist() == ["PARTIAL", "ACCEPTED", "ACCEPTED"]
    assert answers[0].ref == "r0"


def test_rejections_leave_the_commitment() -> None:
    world = pg_world(accept=0.0)
    desk = SellerDesk(world)
    committed = world.booked.astype(float).copy()
    before = committed.copy()
    desk.submit(0, 3, RequestKind.INCREASE, int(committed[3] * 2))
    desk.submit(0, 4, RequestKind.DECREASE, 1)
    answers = desk.answer_due(8, committed, np.zeros(world.n_deals))
    assert [a.response for a in answers] == [SellerResponse.REJECTED] * 2
    assert np.array_equal(committed, before)
    assert desk.history().requests["accepted_total"].tolist() == [-1, -1]


def test_seller_paced_deals_never_exceed_supply_or_commitment() -> None:
    world = pg_world(accept=1.0)
    run = simulate(world, make_strategy("static"))
    assert (run.state.spend_hist <= world.full_spend * (1 + 1e-9)).all()
    assert (run.state.spent <= world.booked + 1e-6).all()

"""A guaranteed deal moves through seller requests: such a move costs `Policy.churn_request` x the
churn weight on top of what any move costs (`request_churn`), and a deal with a request still
unanswered is planned from what that request asks (`pending_asks`, `asked_as_current`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from builders import request_history

from reallocator.core.engine import AllocationProblem, solve
from reallocator.core.model import (
    GROUP_COLUMNS,
    Budget,
    CampaignSnapshot,
    DealType,
    PacingSpec,
    Period,
    Policy,
    empty_deals,
)
from reallocator.core.plan.model import RequestHistory
from reallocator.core.plan.prepare import asked_as_current, pending_asks, request_churn


def _problem(current: list[int], total: int, lam: float = 0.1) -> AllocationProblem:
    n = len(current)
    return AllocationProblem(
        current=np.array(current, np.int64),
        lb=np.zeros(n, np.int64),
        ub=np.full(n, 100, np.int64),
        seller=np.zeros(n, np.int32),
        channel=np.zeros(n, np.int32),
        seller_min=np.zeros(1, np.int64),
        seller_max=np.array([2**62]),
        channel_min=np.zeros(1, np.int64),
        channel_max=np.array([2**62]),
        total=total,
        value_slopes=np.ones((n, 1)),
        lam_deal=lam,
    )


def test_request_churn_charges_only_guaranteed_deals_on_top_of_the_reversal_charge() -> None:
    problem = replace(
        _problem([10, 10, 10], 30, lam=0.5),
        lam_above=np.array([1.0, 0.0, 0.0]),
        lam_below=np.array([0.0, 1.0, 0.0]),
    )
    pg = np.array([True, True, False])
    out = request_churn(problem, pg, Policy(churn_request=2.0))
    assert out.lam_above is not None and out.lam_below is not None
    assert out.lam_above.tolist() == [2.0, 1.0, 0.0]
    assert out.lam_below.tolist() == [1.0, 2.0, 0.0]
    assert request_churn(problem, pg, Policy(churn_request=0.0)) is problem
    assert request_churn(problem, np.zeros(3, bool), Policy()) is problem
    fresh = request_churn(_problem([10, 10, 10], 30, lam=0.5), pg, Policy(churn_request=1.0))
    assert fresh.lam_above is not None and fresh.lam_above.tolist() == [0.5, 0.5, 0.0]


@pytest.mark.parametrize("guaranteed", [1, 2])
def test_budget_a_deal_frees_goes_to_a_deal_the_buyer_paces(guaranteed: int) -> None:
    # Deal 0 can spend only 20 of its 60: the 40 it frees must go to deal 1 or deal 2, equal in
    # value. The one its seller paces would need a request; the other takes it.
    problem = replace(_problem([60, 20, 20], 100), ub=np.array([20, 100, 100]))
    pg = np.array([False, guaranteed == 1, guaranteed == 2])
    charged = request_churn(problem, pg, Policy())
    x = solve(charged).allocation
    buyer = 2 if guaranteed == 1 else 1
    assert x[0] == 20 and x[buyer] == 60 and x[3 - buyer] == 20


def test_a_plan_keeps_an_unanswered_ask_rather_than_giving_its_money_away() -> None:
    # The last plan asked guaranteed deal 0's seller for 30 more (its commitment leaves 10) and
    # moved buyer-paced deal 1 down to 30 at once; the seller has not answered. Planned from
    # the commitment, the 20 the ask needs looks spare and goes to deal 1 (a move of the buyer's
    # own, the cheap one) while the seller, never told otherwise, still takes the ask.
    problem = _problem([10, 30], 60)
    pg = np.array([True, False])
    from_commitment = solve(request_churn(problem, pg, Policy())).allocation
    assert from_commitment.tolist() == [10, 50]
    asked = np.array([30, -1], np.int64)
    from_ask = solve(request_churn(asked_as_current(problem, asked), pg, Policy())).allocation
    assert from_ask.tolist() == [30, 30]
    assert asked_as_current(problem, np.array([-1, -1], np.int64)) is problem


def test_an_ask_outside_the_deals_bounds_is_planned_from_the_nearest_bound() -> None:
    problem = replace(_problem([10, 30], 60), ub=np.array([25, 100]))
    out = asked_as_current(problem, np.array([40, -1], np.int64))
    assert out.current.tolist() == [25, 30]


def test_pending_asks_are_the_last_unanswered_request_of_a_guaranteed_deal() -> None:
    deals = empty_deals(4)
    deals["deal_type"] = np.int8(DealType.PROGRAMMATIC_GUARANTEED)
    deals.loc[3, "deal_type"] = np.int8(DealType.PREFERRED)
    deals["spend_micros"] = np.array([100, 200, 300, 400], np.int64)
    deals["allocation"] = 1_000
    groups = pd.DataFrame({c: pd.Series(dtype=t) for c, t in GROUP_COLUMNS.items()})
    start = datetime(2026, 3, 2, tzinfo=UTC)
    snapshot = CampaignSnapshot(
        campaign_id="c",
        as_of=start + timedelta(days=1),
        timezone="UTC",
        currency="USD",
        deals=deals,
        sellers=groups,
        channels=groups,
        pacing=PacingSpec(
            start=start,
            end=start + timedelta(days=2),
            budgets=(Budget(Period.LIFETIME, 4_000),),
        ),
    )
    ids = deals["deal_id"].tolist()
    t, hour = snapshot.as_of - timedelta(hours=3), timedelta(hours=1)
    history = request_history(
        (ids[0], t - hour, "DECREASE", 50, "ACCEPTED", 50),
        (ids[0], t, "INCREASE", 900, "PENDING", -1),  # the last: awaited
        (ids[1], t - hour, "INCREASE", 900, "PENDING", -1),
        (ids[1], t, "DECREASE", 250, "REJECTED", -1),  # answered: nothing awaited
        (ids[2], t, "DECREASE", 150, "PENDING", -1),  # below the spend: nothing more to give
        (ids[3], t, "INCREASE", 900, "PENDING", -1),  # paced by the buyer: no ask stands
        ("unknown", t, "INCREASE", 900, "PENDING", -1),
    )
    assert pending_asks(history, snapshot).tolist() == [800, -1, 0, -1]
    assert pending_asks(None, snapshot).tolist() == [-1, -1, -1, -1]
    assert pending_asks(RequestHistory(), snapshot).tolist() == [-1, -1, -1, -1]

"""A snapshot with no recent delivery series: each deal is measured by its totals (the rate to
date over the opportunity hours elapsed), so a caller that sends only totals still gets plans
that follow delivery; too few hours elapsed and the deal keeps what it holds."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from builders import AS_OF, DealSpec, SnapshotSpec, build_snapshot, lifetime_pacing

from reallocator.core.engine.forecast import (
    TOTALS_HOURLY_CV,
    ForecastInputs,
    with_totals_rate,
)
from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.prepare import prepare
from reallocator.v1 import common_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

USD = 10**6


def _deal(deal_id: str, allocation: float, spent: float, participation: float) -> DealSpec:
    return DealSpec(
        deal_id=deal_id,
        seller_id="s1",
        channel_id="display",
        allocation=int(allocation * USD),
        spend_micros=int(spent * USD),
        impressions=int(spent * 100),  # a 10 USD eCPM
        ecpm_micros=10 * USD,
        value_per_unit=1.0,
        avails=int(spent * 100 / participation),  # bid requests; bids on `participation` of them
        bids=int(spent * 100),
        wins=int(spent * 100),  # every bid won: the supply is what participation leaves out
        participation_rate=participation,
        deal_type=common_pb2.DEAL_TYPE_PREFERRED,
    )


def _snapshot(elapsed: timedelta, spent_slow: float, spent_fast: float) -> CampaignSnapshot:
    """Two equal deals on a 9,000 USD lifetime budget, 30 days: `slow` holds 6,000 and
    delivers at full participation; `fast` holds 3,000 and takes part in a quarter of its
    auctions (so it could deliver four times its pace)."""
    spec = SnapshotSpec(
        deals=(_deal("slow", 6_000, spent_slow, 1.0), _deal("fast", 3_000, spent_fast, 0.25)),
        seller_ids=("s1",),
        channel_ids=("display",),
        pacing=lifetime_pacing(
            9_000 * USD, start=AS_OF - elapsed, end=AS_OF - elapsed + timedelta(days=30)
        ),
    )
    errors = Violations()
    snapshot = decode_snapshot(build_snapshot(spec), Policy(), errors)
    assert snapshot is not None and snapshot.delivery is None, errors.items
    return snapshot


def test_a_deal_known_only_by_its_totals_is_forecast_from_its_rate_to_date() -> None:
    """Ten days in, `slow` spent 300 USD (30 a day: about 600 more in the 20 days left, far
    short of the 5,700 it holds) and `fast` 1,000 at a quarter participation (400 a day at
    full): the plan takes budget from `slow` and gives it to `fast`, each forecast read from
    the rate to date ("rate", not the booking)."""
    snapshot = _snapshot(timedelta(days=10), spent_slow=300, spent_fast=1_000)
    prepared = prepare(
        snapshot, assessment=None, history=None, forecast=None, windows=None,
        time_limit=10.0, checkpoint=lambda _: None,
    )  # fmt: skip
    methods = prepared.forecast_table["method"].astype(str).tolist()
    assert methods == ["rate", "rate"]
    slow, fast = prepared.capacity
    # slow: ~20 x 30 USD = 600 at its rate (the prior on what it holds pulls it up a little);
    # fast: 20 x 100 / 0.25 = 8,000 at full participation, capped by nothing else.
    assert 500 * USD < slow < 1_500 * USD
    assert fast > 5_000 * USD
    plan = build_plan(snapshot)
    new = dict(zip(plan.deals["deal_id"], plan.deals["new_total"], strict=True))
    assert new["slow"] < 6_000 * USD and new["fast"] > 3_000 * USD
    assert new["slow"] + new["fast"] == 9_000 * USD


def test_with_too_few_hours_elapsed_a_deal_keeps_what_it_holds() -> None:
    """Three hours in (less than `min_evidence`, 6 h), the same totals are not evidence: every
    forecast is what the deal holds and nothing moves."""
    snapshot = _snapshot(timedelta(hours=3), spent_slow=3, spent_fast=10)
    plan = build_plan(snapshot)
    assert (plan.deals["new_total"].to_numpy() == [6_000 * USD, 3_000 * USD]).all()


def _inputs(rate: list[float], evidence: list[float]) -> ForecastInputs:
    n = len(rate)
    nan = np.full(n, np.nan)
    return ForecastInputs(
        observed_rate=np.array(rate),
        participation_rate=nan,
        avails_rate=nan.copy(),
        win_rate=nan,
        units_per_win=nan,
        available_inventory=np.full(n, -1, np.int64),
        booked=np.full(n, 1_000, np.int64),
        evidence_hours=np.array(evidence),
        evidence_impressions=np.full(n, 400, np.int64),
        stalled=np.zeros(n, bool),
        active=np.array([True, True, False][:n]),
        rate_se=np.array([2.0, np.nan, np.nan][:n]),
    )


@pytest.mark.parametrize("elapsed", [6.0, 48.0, 500.0])
def test_totals_fill_only_the_active_deals_without_a_series(elapsed: float) -> None:
    """A deal with a series keeps its measurement; an active one without is read at spent /
    elapsed, with the elapsed hours as evidence and a standard error from the assumed hourly
    spread and the units won; an inactive one stays unknown."""
    out = with_totals_rate(
        _inputs([10.0, np.nan, np.nan], [24.0, 0.0, 0.0]),
        spent=np.array([0.0, 600.0, 600.0]),
        avails=np.array([0.0, 1_200.0, 0.0]),
        elapsed_hours=elapsed,
    )
    rate = 600.0 / elapsed
    assert out.observed_rate[0] == 10.0 and out.evidence_hours[0] == 24.0
    assert out.rate_se is not None and out.rate_se[0] == 2.0
    assert out.observed_rate[1] == pytest.approx(rate)
    assert out.avails_rate[1] == pytest.approx(1_200.0 / elapsed)
    assert out.evidence_hours[1] == elapsed
    assert out.rate_se[1] == pytest.approx(rate * np.sqrt(TOTALS_HOURLY_CV**2 / elapsed + 1 / 400))
    assert np.isnan(out.observed_rate[2]) and out.evidence_hours[2] == 0.0


def test_no_hours_elapsed_leaves_the_inputs_as_they_are() -> None:
    inputs = _inputs([np.nan, np.nan], [0.0, 0.0])
    assert with_totals_rate(inputs, np.ones(2), np.ones(2), 0.0) is inputs


def _three(policy: Policy, budget: int = 9_000 * USD) -> CampaignSnapshot:
    """Ten days into a 30-day, 9,000 USD flight, totals only: `a` and `c` are measured (10 and
    50 USD a day), `new` is not (20 impressions, under the 30 a forecast needs, and at 45 USD
    each, read up by their count's upper bound, enough for the 2,700 USD it holds: no measured
    shortfall either): it is forecast at what it holds. The forecasts leave budget unplaced."""
    deals = (
        _deal("a", 3_400, 100, 1.0),
        dataclasses.replace(_deal("new", 3_600, 900, 1.0), impressions=20),
        _deal("c", 2_000, 500, 1.0),
    )
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("s1",),
        channel_ids=("display",),
        pacing=lifetime_pacing(
            budget, start=AS_OF - timedelta(days=10), end=AS_OF + timedelta(days=20)
        ),
    )
    errors = Violations()
    snapshot = decode_snapshot(build_snapshot(spec), policy, errors)
    assert snapshot is not None, errors.items
    return snapshot


def test_a_deal_without_evidence_takes_budget_beyond_the_forecasts_last() -> None:
    """The measured deals take one forecast more each first (the hedge); the unmeasured deal
    takes what they leave, up to one of its own (it is forecast at what it holds: stretched in
    proportion to that before them, it would grow on its own forecast plan after plan); only
    then do the measured deals take more (`beyond_forecast` 5: up to 5 x forecast in all), and
    the unmeasured one last again. Here the hedge and the unmeasured deal's own place it all,
    so the wide policy gives the plan the narrow one does."""
    plans = {
        ratio: build_plan(_three(Policy(beyond_forecast=ratio))) for ratio in (1.0, 5.0, 100.0)
    }
    spent = {"a": 100 * USD, "new": 900 * USD, "c": 500 * USD}
    for ratio, plan in plans.items():
        new = dict(zip(plan.deals["deal_id"], plan.deals["new_total"], strict=True))
        capacity = dict(zip(plan.deals["deal_id"], plan.deals["capacity"], strict=True))
        assert plan.unspendable == 0, ratio
        for deal in ("a", "c"):  # filled to twice their forecasts, no more
            assert new[deal] - spent[deal] == 2 * capacity[deal], (ratio, deal)
        assert 2 * capacity["new"] > new["new"] - spent["new"] > capacity["new"], ratio
        assert sum(new.values()) == 9_000 * USD
    allocations = [p.deals["new_allocation"].tolist() for p in plans.values()]
    assert allocations[0] == allocations[1] == allocations[2]
    # With a larger budget (and a step limit of 3 x what a deal holds) the measured deals take
    # the rest up to their step limits before the unmeasured one takes more than its hedge.
    plan = build_plan(_three(Policy(step_rel=3.0), budget=30_000 * USD))
    d = plan.deals.set_index("deal_id")
    left = d["new_allocation"] - d["capacity"]
    for deal in ("a", "c"):
        assert d.at[deal, "new_allocation"] == d.at[deal, "upper_bound"], deal
        assert d.at[deal, "new_allocation"] == 4 * d.at[deal, "old_allocation"], deal
        assert left[deal] > d.at[deal, "capacity"], deal
    assert left["new"] > d.at["new", "capacity"]
    assert d.at["new", "new_allocation"] < d.at["new", "upper_bound"]
    assert plan.unspendable == 0

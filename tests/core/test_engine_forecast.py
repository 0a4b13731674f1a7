"""Capacity forecast: unthrottled rate over the remaining opportunity, capped by avails and
declared inventory; fallbacks below minimum evidence; zero when stalled or inactive."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.engine import ForecastInputs, forecast, forecast_capacity
from reallocator.core.model import BudgetType, DealStatus, DeliverySeries, Policy, empty_deals

POLICY = Policy(min_evidence=timedelta(hours=6), min_evidence_impressions=1000)


def inputs(n: int, **kw: object) -> ForecastInputs:
    base: dict[str, object] = {
        "observed_rate": np.full(n, 100.0),
        "participation_rate": np.full(n, np.nan),
        "avails_rate": np.full(n, np.nan),
        "win_rate": np.full(n, np.nan),
        "units_per_win": np.full(n, np.nan),
        "available_inventory": np.full(n, -1, np.int64),
        "booked": np.full(n, 777, np.int64),
        "evidence_hours": np.full(n, 24.0),
        "evidence_impressions": np.full(n, 10_000, np.int64),
        "stalled": np.zeros(n, bool),
        "active": np.ones(n, bool),
    }
    base.update(kw)
    return ForecastInputs(**base)  # type: ignore[arg-type]


def test_throttled_deal_could_deliver_more() -> None:
    cap, why = forecast_capacity(
        inputs(2, participation_rate=np.array([0.25, np.nan])), 10.0, POLICY
    )
    assert cap.tolist() == [4000, 1000]  # 100/h / 0.25 * 10 h; unknown participation = 1
    assert why["method"].tolist() == ["rate", "rate"]
    assert why["unthrottled_rate"].tolist() == [400.0, 100.0]


def test_avails_and_declared_inventory_cap_the_rate() -> None:
    x = inputs(
        3,
        avails_rate=np.array([50.0, np.nan, np.nan]),
        win_rate=np.array([0.5, np.nan, np.nan]),
        units_per_win=np.array([2.0, np.nan, np.nan]),
        available_inventory=np.array([-1, 300, -1], np.int64),
    )
    cap, _ = forecast_capacity(x, np.array([10.0, 10.0, 2.5]), POLICY)
    assert cap.tolist() == [500, 300, 250]  # 50*10*0.5*2; inventory; per-deal hours


def test_low_evidence_uses_declared_then_booked() -> None:
    x = inputs(
        3,
        evidence_hours=np.array([2.0, 2.0, 24.0]),
        evidence_impressions=np.array([10_000, 10_000, 10], np.int64),
        available_inventory=np.array([300, -1, -1], np.int64),
    )
    cap, why = forecast_capacity(x, 10.0, POLICY)
    assert cap.tolist() == [300, 777, 777]
    assert why["method"].tolist() == ["declared", "booked", "booked"]


def test_a_long_look_at_few_impressions_measures_a_shortfall() -> None:
    """16 impressions in 24 hours, a rate that forecasts 10 of the 777 the deal holds: even
    the count's upper bound (16 + 2 x 4 + 4 = 28 impressions, 1.75 x) keeps it far short, so
    the rate forecasts the deal although 16 is below the 30 a forecast needs. Not with no
    impression at all, fewer hours than `min_evidence`, or a holding the bound reaches."""
    x = inputs(
        4,
        observed_rate=np.full(4, 1.0),
        evidence_hours=np.array([24.0, 24.0, 2.0, 24.0]),
        evidence_impressions=np.array([16, 0, 16, 16], np.int64),
        booked=np.array([777, 777, 777, 17], np.int64),
    )
    cap, why = forecast_capacity(x, 10.0, POLICY)
    assert why["method"].tolist() == ["rate", "booked", "booked", "booked"]
    assert cap.tolist() == [10, 777, 777, 17]


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(0, 29),
    rate=st.floats(0.0, 1e4),
    booked=st.integers(0, 10**7),
    hours=st.floats(0.0, 48.0),
)
def test_few_impressions_forecast_only_a_confident_shortfall(
    count: int, rate: float, booked: int, hours: float
) -> None:
    """Below the impressions a forecast needs, a deal keeps what it holds unless it was watched
    for `min_evidence` and bought at least one impression, and its forecast read up by its
    count's upper bound (n + 2 sqrt(n) + 4) still falls short of its holding; then its rate
    forecasts it, and the capacity is below what it holds."""
    x = inputs(
        1,
        observed_rate=np.array([rate]),
        evidence_hours=np.array([hours]),
        evidence_impressions=np.array([count], np.int64),
        booked=np.array([booked], np.int64),
    )
    cap, why = forecast_capacity(x, 10.0, POLICY)
    upper = rate * 10.0 * (count + 2 * np.sqrt(count) + 4) / count if count else np.inf
    measured = hours >= 6.0 and count >= 1 and upper < booked
    assert why["method"].tolist() == ["rate" if measured else "booked"]
    if measured:
        assert cap[0] == int(np.floor(rate * 10.0)) and cap[0] < booked
    else:
        assert cap[0] == booked


@given(verdict=st.integers(0, 10**9), count=st.integers(0, 10**9))
def test_a_forecast_needs_a_share_of_the_impressions_a_verdict_needs(
    verdict: int, count: int
) -> None:
    """A rate measured on `count` impressions forecasts the deal once the count reaches 3 %
    (rounded up) of `min_evidence_impressions`; below it the deal keeps what it holds. The
    verdict's own threshold (alerts) is untouched."""
    assert forecast.forecast_min_impressions(Policy()) == 30  # the default verdict's 1,000
    policy = replace(POLICY, min_evidence_impressions=verdict)
    need = forecast.forecast_min_impressions(policy)
    assert need == -(-verdict * 3 // 100)
    x = inputs(1, evidence_impressions=np.array([count], np.int64))
    cap, why = forecast_capacity(x, 10.0, policy)
    measured = count >= need
    assert why["method"].tolist() == ["rate" if measured else "booked"]
    assert cap.tolist() == [1000 if measured else 777]


def test_stalled_and_inactive_deals_forecast_zero() -> None:
    x = inputs(2, stalled=np.array([True, False]), active=np.array([True, False]))
    cap, why = forecast_capacity(x, 10.0, POLICY)
    assert cap.tolist() == [0, 0]
    assert why["method"].tolist() == ["stalled", "inactive"]


def test_inputs_from_a_snapshot_series() -> None:
    deals = empty_deals(2)
    deals["impressions"] = [5000, 5000]
    deals["spend_micros"] = [1_000_000, 2_000_000]
    deals["allocation"] = [5_000_000, 5_000_000]
    deals["bids"] = [100, 100]
    deals["wins"] = [50, 50]
    deals["status"] = np.array([DealStatus.ACTIVE, DealStatus.PAUSED], np.int8)
    hours = 12
    spend = np.array([[100.0] * hours, [10.0] * 6 + [0.0] * 6])
    series = DeliverySeries(
        window_start=datetime(2026, 11, 1, tzinfo=UTC),
        bucket=timedelta(hours=1),
        spend_micros=spend,
        impressions=spend / 10,
        avails=np.full((2, hours), 40.0),
        wins=np.full((2, hours), 4.0),
    )
    x = ForecastInputs.from_snapshot(deals, series, BudgetType.SPEND, POLICY)
    assert x.observed_rate.tolist() == [100.0, 5.0]
    assert x.evidence_hours.tolist() == [12.0, 12.0]
    assert x.stalled.tolist() == [False, True]  # nothing in the last 6 hours
    assert x.booked.tolist() == [4_000_000, 3_000_000]
    cap, _ = forecast_capacity(x, 10.0, POLICY)
    assert cap.tolist() == [1000, 0]


def test_no_bid_request_where_the_deal_delivered_is_unreported_not_no_supply() -> None:
    """Spend in buckets that report no bid request (counts reported late, or rounded away): the
    avails say nothing, so the supply forecast is unknown and the rate decides, as for totals.
    Read as 0 it forecast the deal at 0 and cut it to its spend. A deal with bid requests
    reported keeps its avails-based cap; one that delivered nothing keeps its 0 supply."""
    deals = empty_deals(3)
    deals["impressions"] = 5000
    deals["spend_micros"] = 1_000_000
    deals["allocation"] = 5_000_000
    deals["bids"] = 100
    deals["wins"] = 50
    hours = 12
    spend = np.array([[100.0] * hours, [100.0] * hours, [0.0] * hours])
    avails = np.array([[0.0] * hours, [4.0] * hours, [0.0] * hours])
    series = DeliverySeries(
        window_start=datetime(2026, 11, 1, tzinfo=UTC),
        bucket=timedelta(hours=1),
        spend_micros=spend,
        impressions=spend / 10,
        avails=avails,
        wins=np.where(spend > 0, 2.0, 0.0),
    )
    x = ForecastInputs.from_snapshot(deals, series, BudgetType.SPEND, POLICY)
    assert np.isnan(x.avails_rate[0])
    assert x.avails_rate[1:].tolist() == [4.0, 0.0]
    cap, table = forecast_capacity(x, 10.0, POLICY)
    assert np.isnan(table["by_avails"].to_numpy()[0])
    # Both at their rate (100 an hour over 10 hours); the second's bid requests read as ever
    # (4 an hour x 10 hours x 0.5 wins a bid x 20,000 a win), the third's at 0.
    assert cap.tolist()[:2] == [1000, 1000]
    assert table["by_avails"].to_numpy()[1:].tolist() == pytest.approx([400_000.0, 0.0])


# --- seller-paced deals: the rate is the seller's pace ---------------------------------------


def seller_paced(n: int, keeping: list[bool], **kw: object) -> ForecastInputs:
    return inputs(n, seller_paced=np.ones(n, bool), keeping_pace=np.array(keeping), **kw)


def test_a_guaranteed_deal_keeping_pace_can_deliver_its_commitment() -> None:
    """100/h over 5 h projects 500, below the 777 still committed: the seller paces it there,
    which says nothing about a shortfall. Above it (10 h: 1,000) the rate stands."""
    cap, why = forecast_capacity(seller_paced(2, [True, True]), np.array([5.0, 10.0]), POLICY)
    assert cap.tolist() == [777, 1000]
    assert why["method"].tolist() == ["commitment", "rate"]


def test_a_guaranteed_deal_falling_behind_is_capped_by_its_rate() -> None:
    cap, why = forecast_capacity(seller_paced(1, [False]), 5.0, POLICY)
    assert cap.tolist() == [500]
    assert why["method"].tolist() == ["rate"]


def test_the_sellers_declaration_says_how_much_more_or_less() -> None:
    """Declared 2,000 (more than its pace shows) or 300 (less than it holds): the seller's word
    is the supply of a deal it paces; the rate and the avails it sends only show its pace."""
    x = seller_paced(
        2,
        [True, True],
        available_inventory=np.array([2000, 300], np.int64),
        avails_rate=np.array([10.0, 10.0]),
        win_rate=np.array([1.0, 1.0]),
        units_per_win=np.array([1.0, 1.0]),
    )
    cap, why = forecast_capacity(x, 5.0, POLICY)
    assert cap.tolist() == [2000, 300]
    assert why["method"].tolist() == ["declared", "declared"]


def test_buyer_paced_and_unflagged_deals_keep_the_conservative_forecast() -> None:
    """The same deal paced by the buyer (its rate is supply seen through a throttle), or with
    no flags at all, is capped by its rate as before."""
    base, _ = forecast_capacity(inputs(1), 5.0, POLICY)
    buyer, _ = forecast_capacity(
        inputs(1, seller_paced=np.zeros(1, bool), keeping_pace=np.ones(1, bool)), 5.0, POLICY
    )
    assert base.tolist() == buyer.tolist() == [500]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 10_000),
    hours=st.floats(0.0, 500.0, allow_nan=False),
)
def test_only_guaranteed_deals_keeping_pace_change(n: int, seed: int, hours: float) -> None:
    rng = np.random.default_rng(seed)
    x = inputs(
        n,
        observed_rate=rng.uniform(0.0, 500.0, n),
        booked=rng.integers(0, 100_000, n),
        available_inventory=np.where(rng.random(n) < 0.3, rng.integers(0, 100_000, n), -1),
        evidence_hours=np.where(rng.random(n) < 0.8, 24.0, 1.0),
        stalled=rng.random(n) < 0.1,
        active=rng.random(n) < 0.9,
    )
    paced, keeping = rng.random(n) < 0.5, rng.random(n) < 0.6
    flagged = replace(x, seller_paced=paced, keeping_pace=keeping)
    before, _ = forecast_capacity(x, hours, POLICY)
    after, why = forecast_capacity(flagged, hours, POLICY)
    changed = paced & keeping
    assert np.array_equal(after[~changed], before[~changed])
    dead = x.stalled | ~x.active
    evident = x.evidence_hours >= 6.0
    live = changed & ~dead & evident
    declared = x.available_inventory >= 0
    # Kept pace, no declaration: at least what remains of the commitment, and never below the
    # rule for any deal; declared: exactly the declaration.
    assert np.all(after[live & ~declared] >= x.booked[live & ~declared])
    assert np.all(after[live & ~declared] >= before[live & ~declared])
    assert np.array_equal(after[live & declared], x.available_inventory[live & declared])
    assert np.all(after[changed & dead] == 0)
    assert set(why["method"][live & ~declared]) <= {"commitment", "rate"}


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 12),
    buckets=st.integers(1, 30),
)
def test_silent_hours_count_the_active_buckets_after_the_last_delivery(
    data: st.DataObject, n: int, buckets: int
) -> None:
    """Against a plain loop: the active buckets after a deal's last delivery, or all of its
    observed ones when it never delivered, in hours."""
    from reallocator.core.engine.forecast import _silent_hours

    values = np.array(
        data.draw(
            st.lists(st.sampled_from([0.0, 0.0, 3.0]), min_size=n * buckets, max_size=n * buckets)
        )
    ).reshape(n, buckets)
    active = np.array(data.draw(st.lists(st.booleans(), min_size=buckets, max_size=buckets)))
    seen = np.broadcast_to(active, (n, buckets)).copy()
    masked = np.where(seen, values, 0.0)
    want = []
    for row, observed in zip(masked, seen, strict=True):
        hit = np.flatnonzero(row > 0)
        want.append(observed[hit[-1] + 1 :].sum() if hit.size else observed.sum())
    got = _silent_hours(masked, seen, active, 2.0)
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float64) * 2.0)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    buckets=st.integers(0, 30),
    kind=st.sampled_from(["int32", "uint16", "int64", "float64"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_rate_se_is_nanstd_over_sqrt_count(n: int, buckets: int, kind: str, seed: int) -> None:
    """The rate's standard error (computed without nanstd's NaN passes) is exactly nanstd's
    over the usable buckets / sqrt(count), NaN below two buckets, for integer series (the
    matrix form sends them) and float ones with unknown buckets."""
    from reallocator.core.engine.forecast import _rate_se

    rng = np.random.default_rng(seed)
    series = rng.integers(0, 60_000, (n, buckets)).astype(kind)
    seen = rng.random((n, buckets)) < 0.8
    if seed % 2:  # one mask shared by every row (a broadcast view), as the matrix form has
        seen = np.broadcast_to(seen[:1], (n, buckets))
    if kind == "float64":
        series[~seen] = np.nan
    weights = (
        None
        if seed % 3 == 0
        else np.where(rng.random(buckets) < 0.2, 0.0, rng.random(buckets) + 0.1)
    )
    got = _rate_se(series, seen, 2.0, weights)
    w = np.ones(buckets) if weights is None else weights
    usable = seen & (w > 0)[None, :]
    for i in range(n):
        values = series[i][usable[i]].astype(np.float64) / (2.0 * w[usable[i]])
        if values.size < 2:
            assert np.isnan(got[i])
        else:
            want = np.std(values, ddof=1) / np.sqrt(values.size)
            assert got[i] == pytest.approx(want, rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 8),
    buckets=st.integers(1, 30),
    width=st.sampled_from(["uint8", "uint16", "int32", "int64"]),
    seed=st.integers(0, 2**32 - 1),
    dayparts=st.booleans(),
    stalls=st.booleans(),
)
def test_integer_series_forecast_as_their_float_copies(
    n: int, buckets: int, width: str, seed: int, dayparts: bool, stalls: bool
) -> None:
    """The matrix form's series arrive as integers in the width sent: every forecast input
    (rates, spreads, evidence, stalls, and the rates of deals back from a stall, measured from
    its end) is exactly what the same series as float64 give."""
    rng = np.random.default_rng(seed)
    high = min(np.iinfo(width).max, 10**9)
    arrays = {
        k: rng.integers(0, high, (n, buckets)).astype(width)
        * (rng.random((n, buckets)) < 0.7).astype(width)
        for k in ("spend_micros", "impressions", "avails", "wins")
    }
    if stalls:  # a silent run (no delivery, no bid requests) of 6-12 buckets in some deals
        for row in np.flatnonzero(rng.random(n) < 0.6):
            length = int(rng.integers(6, 13))
            first = int(rng.integers(0, max(1, buckets - length)))
            for values in arrays.values():
                values[row, first : first + length] = 0
    deals = empty_deals(n)
    deals["impressions"] = rng.integers(0, 10**6, n)
    deals["spend_micros"] = rng.integers(0, 10**9, n)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    active = (rng.random(buckets) < 0.7) if dayparts else None

    def inputs_of(kind: str, budget: BudgetType) -> ForecastInputs:
        series = DeliverySeries(start, timedelta(hours=1),
                                **{k: v.astype(kind) for k, v in arrays.items()})  # fmt: skip
        return ForecastInputs.from_snapshot(
            deals, series, budget, POLICY, active_buckets=active,
            bucket_weights=rng.random(buckets) + 0.5 if seed % 2 else None,
        )  # fmt: skip

    for budget in (BudgetType.SPEND, BudgetType.IMPRESSIONS):
        rng = np.random.default_rng(seed + 1)
        ints = inputs_of(width, budget)
        rng = np.random.default_rng(seed + 1)
        floats = inputs_of("float64", budget)
        for name in ("observed_rate", "avails_rate", "evidence_hours", "rate_se",
                     "stalled", "stall_hours"):  # fmt: skip
            np.testing.assert_array_equal(getattr(ints, name), getattr(floats, name), name)


@given(
    n=st.integers(1, 40),
    block=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["uint32", "float64"]),
    read_from=st.sampled_from([0, 12]),
)
def test_series_read_in_blocks_as_in_one(
    n: int, block: int, seed: int, kind: str, read_from: int
) -> None:
    """The series are read BLOCK_ROWS deals at a time: every input is bit for bit what one
    block of all the deals gives, with stalls ended inside the series (measured outside them
    together), deals without a series (NaN rows), dayparts and traffic weights."""
    rng = np.random.default_rng(seed)
    buckets = 24
    arrays = {
        k: rng.integers(0, 10**9, (n, buckets)) * (rng.random((n, buckets)) < 0.8)
        for k in ("spend_micros", "impressions", "avails", "wins")
    }
    for row in np.flatnonzero(rng.random(n) < 0.5):  # a silent run of 6-12 buckets
        length = int(rng.integers(6, 13))
        first = int(rng.integers(0, buckets - length))
        for values in arrays.values():
            values[row, first : first + length] = 0
    series = {k: v.astype(kind) for k, v in arrays.items()}
    if kind == "float64":
        for values in series.values():
            values[rng.random(n) < 0.2] = np.nan
    deals = empty_deals(n)
    deals["impressions"] = rng.integers(0, 2000, n)
    deals["spend_micros"] = rng.integers(0, 10**9, n)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    delivery = DeliverySeries(start, timedelta(hours=1), **series)
    kw = {
        "active_buckets": rng.random(buckets) < 0.8,
        "bucket_weights": rng.random(buckets) + 0.5,
        "read_from": read_from,
    }
    for budget in (BudgetType.SPEND, BudgetType.IMPRESSIONS):
        whole = ForecastInputs.from_snapshot(deals, delivery, budget, POLICY, **kw)  # type: ignore[arg-type]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(forecast, "BLOCK_ROWS", block)
            blocks = ForecastInputs.from_snapshot(deals, delivery, budget, POLICY, **kw)  # type: ignore[arg-type]
        for name in ("observed_rate", "avails_rate", "evidence_hours", "evidence_impressions",
                     "rate_se", "stalled", "stall_hours"):  # fmt: skip
            a, b = getattr(whole, name), getattr(blocks, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


# --- a deal live again after a stall -----------------------------------------------------------


def _stall_series(spend: np.ndarray, avails: np.ndarray) -> DeliverySeries:
    return DeliverySeries(
        window_start=datetime(2026, 11, 1, tzinfo=UTC),
        bucket=timedelta(hours=1),
        spend_micros=spend,
        impressions=spend / 10,
        avails=avails,
        wins=spend / 100,
    )


def test_a_deal_live_again_after_a_stall_is_measured_outside_it() -> None:
    """Eight hours at 100, ten with neither delivery nor bid requests (a stall: the window is
    6 h), then six at 300: the deal is forecast on the fourteen live hours (2,600 / 14 an hour),
    not at the 24 h mean the outage dragged down (a deal whose supply returned would otherwise
    stay at what the stall left it). Not so for a deal the plan left with nothing to spend (its
    bid requests never stopped: no stall), a silence shorter than the stall window, or a stall
    still going on. Its impressions in those hours count as evidence."""
    deals = empty_deals(4)
    deals["impressions"] = 10
    deals["spend_micros"] = 2_000_000
    deals["allocation"] = 5_000_000
    pattern = np.array([100.0] * 8 + [0.0] * 10 + [300.0] * 6)
    short = np.array([100.0] * 13 + [0.0] * 5 + [300.0] * 6)
    ongoing = np.array([100.0] * 14 + [0.0] * 10)
    spend = np.stack([pattern, pattern, short, ongoing])
    offered = np.where(spend > 0, 50.0, 0.0)
    offered[1] = 50.0  # supply all along: the silence was the plan's, not a stall
    x = ForecastInputs.from_snapshot(deals, _stall_series(spend, offered), BudgetType.SPEND, POLICY)
    assert x.observed_rate[0] == pytest.approx(2_600.0 / 14)
    assert x.evidence_hours[0] == 14.0
    assert x.avails_rate[0] == 50.0
    assert x.observed_rate[1:].tolist() == pytest.approx(
        [pattern.sum() / 24, short.sum() / 24, ongoing.sum() / 24]
    )
    assert x.evidence_hours[1:].tolist() == [24.0, 24.0, 24.0]
    assert x.avails_rate[1] == 50.0
    assert x.stalled.tolist() == [False, False, False, True]
    # The series' impressions (a tenth of the spend), above the totals' 10.
    assert x.evidence_impressions.tolist() == [260, 260, 310, 140]
    # The spread is the live hours' own (two levels), not the outage's.
    live = np.array([100.0] * 8 + [300.0] * 6)
    assert x.rate_se[0] == pytest.approx(live.std(ddof=1) / np.sqrt(14))


def test_hours_idle_before_the_plan_that_raised_a_deal_are_not_its_rate() -> None:
    """A deal the last plan left at its spend for 18 hours (bid requests all along, so no
    stall), raised at hour 18 and delivering 300 an hour since: its rate is read on the six
    hours since the plan, not the 24 h mean the plan's own starvation dragged to 75 (which cut
    it back at the next plan). Not so without a plan in the series, for a deal that delivered
    before the plan, or for an idle stretch shorter than the stall window (6 h)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    deals = empty_deals(4)
    deals["impressions"] = 10_000
    idle = np.array([0.0] * 18 + [300.0] * 6)
    early = np.array([50.0] + [0.0] * 17 + [300.0] * 6)
    short = np.array([100.0] * 14 + [0.0] * 4 + [300.0] * 6)
    spend = np.stack([idle, idle, early, short])
    plan_at = int((start + timedelta(hours=18)).timestamp())
    deals["plan_applied_at"] = [plan_at, -1, plan_at, plan_at]
    x = ForecastInputs.from_snapshot(
        deals, _stall_series(spend, np.full(spend.shape, 50.0)), BudgetType.SPEND, POLICY
    )
    assert x.observed_rate[0] == pytest.approx(300.0)
    assert x.evidence_hours[0] == 6.0
    assert x.observed_rate[1:].tolist() == pytest.approx([r.sum() / 24 for r in spend[1:]])
    assert x.evidence_hours[1:].tolist() == [24.0, 24.0, 24.0]


def test_a_night_without_supply_before_the_plan_stays_the_deals_daily_cycle() -> None:
    """A deal without supply from midnight to 06:00 (48 h sent, the rate read on the last
    24), whose plan was applied at 06:00 on the second day: its silent night had no bid
    requests, so it is its daily cycle (kept in the rate as its daily average), not hours
    the plan starved it."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    deals = empty_deals(1)
    deals["impressions"] = 10_000
    day = [0.0] * 6 + [100.0] * 18
    spend = np.array([day + day])
    deals["plan_applied_at"] = int((start + timedelta(hours=30)).timestamp())
    x = ForecastInputs.from_snapshot(
        deals, _stall_series(spend, np.where(spend > 0, 50.0, 0.0)), BudgetType.SPEND, POLICY,
        read_from=24,
    )  # fmt: skip
    assert x.evidence_hours[0] == 24.0
    assert x.observed_rate[0] == pytest.approx(1_800.0 / 24)


def test_every_stall_that_ended_is_left_out_and_short_silences_are_not() -> None:
    """Two outages (8 h and 6 h, at least the 6 h window) at different hours of a 48 h series
    and a 3 h gap: the rate is read on the 34 hours outside the two outages, the short gap
    included (it is the deal's own variation, not an outage)."""
    deals = empty_deals(1)
    deals["impressions"] = 10_000
    day = [0.0] * 8 + [100.0] * 6 + [0.0] * 3 + [100.0] * 7
    later = [100.0] * 17 + [0.0] * 6 + [100.0]  # the second outage at other hours
    spend = np.array([day + later])
    x = ForecastInputs.from_snapshot(
        deals, _stall_series(spend, np.where(spend > 0, 5.0, 0.0)), BudgetType.SPEND, POLICY
    )
    assert x.evidence_hours[0] == 34.0
    assert x.observed_rate[0] == pytest.approx(3_100.0 / 34)


def test_a_hole_at_the_same_hours_every_day_is_the_deals_daily_cycle_not_a_stall() -> None:
    """A deal without supply from midnight to 08:00 every night (two nights in a 48 h series):
    the nights are its daily cycle, so its rate is its daily average over all 48 hours, as a
    deal without the hole in its dayparts would be read, not the daytime rate a stall's
    exclusion would give (which every morning's verdict then cut back). One night alone in the
    series (24 h) is still an outage left out of the rate, and so is a silence longer than a
    day: its hours a day apart have no delivery between them, so they are one stall, not two
    nights (read as holes, a five-day stall that ended this morning kept most of the day's
    silent hours in the deal's rate, a third of what it delivers since)."""
    deals = empty_deals(3)
    deals["impressions"] = 10_000
    night = [0.0] * 8 + [100.0] * 16
    dead = [0.0] * 30 + [100.0] * 18  # silent from the start of the series for 30 hours
    spend = np.array([night + night, night + night, dead])
    x = ForecastInputs.from_snapshot(
        deals, _stall_series(spend, np.where(spend > 0, 5.0, 0.0)), BudgetType.SPEND, POLICY
    )
    assert x.evidence_hours[0] == 48.0
    assert x.observed_rate[0] == pytest.approx(3_200.0 / 48)
    one = ForecastInputs.from_snapshot(
        deals[:1], _stall_series(spend[:1, 24:], np.where(spend[:1, 24:] > 0, 5.0, 0.0)),
        BudgetType.SPEND, POLICY,
    )  # fmt: skip
    assert one.evidence_hours[0] == 16.0
    assert one.observed_rate[0] == pytest.approx(100.0)
    # Silent 30 h: hours 0-5 and 24-29 are silent a day apart but nothing lived between
    # them: all 30 are the stall, left out.
    assert x.evidence_hours[2] == 18.0
    assert x.observed_rate[2] == pytest.approx(100.0)
    # The same silence in the last 30 hours (still running, the stall outlook's) is no past
    # stall; and a hole a day apart needs a live bucket between the two nights.
    from reallocator.core.engine.forecast import _past_stalls

    hole = np.array([night + night, dead[::-1]])
    stalls = _past_stalls(hole, np.ones(hole.shape, bool), 6, np.where(hole > 0, 5.0, 0.0), 24)
    assert stalls is None


def test_the_rate_outside_a_stall_is_per_traffic_weighted_hour() -> None:
    """A morning after a night's outage is not an average hour: the rate outside the stall is
    the deal's delivery over the traffic those hours carry (`bucket_weights`), so a deal live
    again in the quiet hours is not read as slow."""
    deals = empty_deals(1)
    deals["impressions"] = 10_000
    deals["spend_micros"] = 2_000_000
    deals["allocation"] = 5_000_000
    spend = np.array([[100.0] * 10 + [0.0] * 8 + [50.0] * 6])
    weights = np.array([1.2] * 10 + [0.5] * 8 + [0.5] * 6)
    x = ForecastInputs.from_snapshot(
        deals,
        _stall_series(spend, np.where(spend > 0, 5.0, 0.0)),
        BudgetType.SPEND,
        POLICY,
        bucket_weights=weights,
    )
    traffic = 10 * 1.2 + 6 * 0.5  # the live hours' weighted hours
    assert x.observed_rate[0] == pytest.approx((1_000.0 + 300.0) / traffic)
    assert x.avails_rate[0] == pytest.approx(16 * 5.0 / traffic)
    assert x.evidence_hours[0] == 16.0


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 10),
    buckets=st.integers(1, 30),
    tail=st.integers(1, 8),
    day=st.sampled_from([0, 0, 3, 5, 9]),
)
def test_the_stalls_that_ended_are_found_as_a_plain_loop_finds_them(
    data: st.DataObject, n: int, buckets: int, tail: int, day: int
) -> None:
    """Against a loop: every observed bucket with neither delivery nor supply in a run of >=
    `tail` such buckets that a later live bucket ended (None when no deal has one). Unobserved
    buckets neither end a run nor count in it, nor do silent ones whose bucket `day` earlier
    or later is silent too with a live bucket between the two (a daily hole)."""
    from reallocator.core.engine.forecast import _past_stalls

    cells = n * buckets

    def matrix(values: list[float]) -> np.ndarray:
        drawn = data.draw(st.lists(st.sampled_from(values), min_size=cells, max_size=cells))
        return np.array(drawn).reshape(n, buckets)

    spend, avails = matrix([0.0, 0.0, 0.0, 2.0]), matrix([0.0, 0.0, 0.0, 0.0, 7.0])
    seen = np.array(data.draw(st.lists(st.booleans(), min_size=cells, max_size=cells)))
    seen = seen.reshape(n, buckets) | data.draw(st.booleans())
    masked, offered = np.where(seen, spend, 0.0), np.where(seen, avails, 0.0)
    want = np.zeros((n, buckets), dtype=bool)

    def silent(i: int, j: int) -> bool:
        return 0 <= j < buckets and bool(seen[i, j]) and masked[i, j] <= 0 and offered[i, j] <= 0

    def lived(i: int, a: int, b: int) -> bool:  # a live bucket strictly between a and b
        return any(masked[i, k] > 0 or offered[i, k] > 0 for k in range(max(a + 1, 0), b))

    def hole(i: int, j: int) -> bool:
        return bool(day) and (
            (silent(i, j - day) and lived(i, j - day, j))
            or (silent(i, j + day) and lived(i, j, j + day))
        )

    for i, (row, offer) in enumerate(zip(masked, offered, strict=True)):
        quiet: list[int] = []  # the observed silent buckets of the current run
        for j in range(buckets):
            if row[j] > 0 or offer[j] > 0:
                if len(quiet) >= tail:
                    want[i, quiet] = True
                quiet = []
            elif silent(i, j) and not hole(i, j):
                quiet.append(j)
    got = _past_stalls(masked, seen, tail, offered, day)
    if not want.any():
        assert got is None
    else:
        assert got is not None
        assert got.tolist() == want.tolist()

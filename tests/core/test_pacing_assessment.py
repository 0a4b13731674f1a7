"""Pacing assessment: statuses, projections, groups, confidence and its gates, alerts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import (
    GROUP_COLUMNS,
    Budget,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DeliverySeries,
    PacingMode,
    PacingSpec,
    Period,
    Policy,
    empty_deals,
)
from reallocator.core.pacing import (
    ASSESSMENT_COLUMNS,
    AlertSeverity,
    Assessment,
    EntityKind,
    PacingStatus,
    Reason,
    assess,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # Monday
HOUR = timedelta(hours=1)
ALLOC = 240_000  # impressions over 240 hours: 1,000 an hour on an EVEN curve


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def spec(**kwargs: object) -> PacingSpec:
    base: dict[str, object] = {
        "budget_type": BudgetType.IMPRESSIONS,
        "start": T0,
        "end": T0 + timedelta(days=10),
        "catch_up_fraction": 1.0,
    }
    base.update(kwargs)
    return PacingSpec(**base)  # type: ignore[arg-type]


def deals(
    actual: Sequence[float],
    alloc: Sequence[float] | None = None,
    *,
    sellers: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    unit: str = "impressions",
) -> pd.DataFrame:
    n = len(actual)
    frame = empty_deals(n)
    frame["allocation"] = np.asarray(alloc if alloc is not None else [ALLOC] * n, np.int64)
    frame[unit] = np.asarray(actual, np.int64)
    if unit != "impressions":
        frame["impressions"] = np.asarray(actual, np.int64) * 100
    frame["spend_micros"] = np.asarray(actual, np.int64) * 2_000  # $2 CPM if impressions
    frame["price_micros"] = 2_000_000
    if sellers is not None:
        frame["seller_id"] = list(sellers)
    if channels is not None:
        frame["channel_id"] = list(channels)
    return frame


def hourly(
    per_hour: np.ndarray,
    as_of: datetime,
    *,
    spend_per_unit: float = 2_000.0,
    units_are_impressions: bool = True,
) -> DeliverySeries:
    """A series of len(per_hour[0]) hourly buckets ending at as_of."""
    values = np.atleast_2d(np.asarray(per_hour, dtype=np.float64))
    hours = values.shape[1]
    impressions = values if units_are_impressions else values * 100
    return DeliverySeries(
        window_start=as_of - hours * HOUR,
        bucket=HOUR,
        spend_micros=values * spend_per_unit,
        impressions=impressions,
        avails=impressions * 10,
        wins=impressions,
    )


def snapshot(
    frame: pd.DataFrame,
    as_of: datetime,
    *,
    pacing: PacingSpec | None = None,
    delivery: DeliverySeries | None = None,
    policy: Policy | None = None,
    tz: str = "UTC",
) -> CampaignSnapshot:
    groups = pd.DataFrame({c: pd.Series(dtype=t) for c, t in GROUP_COLUMNS.items()})
    budget = int(frame["allocation"].sum())
    return CampaignSnapshot(
        campaign_id="c1",
        as_of=as_of,
        timezone=tz,
        currency="USD",
        deals=frame,
        sellers=groups,
        channels=groups.copy(),
        pacing=pacing or spec(budgets=(Budget(Period.LIFETIME, budget),)),
        delivery=delivery,
        policy=policy or Policy(),
    )


def steady(rates: Sequence[float], hours: int = 48) -> np.ndarray:
    return np.repeat(np.asarray(rates, dtype=np.float64)[:, None], hours, axis=1)


DAY5 = T0 + timedelta(days=5)


def one(result: Assessment, deal: int = 0) -> pd.Series:
    return result.deals.iloc[deal]


# --- statuses ------------------------------------------------------------------------------------


def test_on_pace_deal() -> None:
    result = assess(snapshot(deals([120_000]), DAY5, delivery=hourly(steady([1000]), DAY5)))
    row = one(result)
    assert row["status"] == PacingStatus.ON_PACE
    assert row["expected"] == pytest.approx(120_000)
    assert row["pacing_ratio"] == pytest.approx(1.0)
    assert row["recent_rate"] == pytest.approx(1000)
    assert row["recent_rate_clock"] == pytest.approx(1000)
    assert row["projected_end"] == pytest.approx(ALLOC)
    assert row["required_rate"] == pytest.approx(1000)
    assert row["projected_exhaustion"] == pytest.approx((T0 + timedelta(days=10)).timestamp())
    in_band = 1 - sigmoid(-2.0)  # every signal at the centre of the band
    assert row["confidence"] == pytest.approx(100 * in_band)
    assert row["reason"] == ""
    assert result.alerts.empty
    assert list(result.deals.columns) == ["seller_id", "channel_id", *ASSESSMENT_COLUMNS]


def test_over_pace_deal_alerts_with_numbers() -> None:
    result = assess(snapshot(deals([180_000]), DAY5, delivery=hourly(steady([1500]), DAY5)))
    row = one(result)
    assert row["status"] == PacingStatus.OVER
    assert row["pacing_ratio"] == pytest.approx(1.5)
    # At 1,500 an hour the remaining 60,000 run out 40 hours from now.
    assert row["projected_exhaustion"] == pytest.approx((DAY5 + 40 * HOUR).timestamp())
    assert row["projected_end"] == pytest.approx(ALLOC)  # capped by the allocation
    beyond = sigmoid(2 * (math.log(1.5) / math.log(1.1) - 1))
    assert row["conf_gap"] == pytest.approx(beyond)
    assert row["conf_outlook"] == pytest.approx(beyond)  # 360,000 projected uncapped
    assert row["conf_trend"] == pytest.approx(0.5)  # holding its lead, not widening it
    assert row["confidence"] == pytest.approx(100 * (0.8 * beyond + 0.2 * 0.5))
    assert row["severity"] == AlertSeverity.CRITICAL
    alerts = result.alerts
    deal_alerts = alerts[alerts["entity_kind"] == EntityKind.DEAL]
    assert list(deal_alerts["reason"]) == [Reason.OVERPACING]
    message = deal_alerts["message"].iloc[0]
    assert "180,000 impressions delivered vs 120,000 impressions expected (150%)" in message
    assert "runs out at 2026-03-08 16:00 UTC" in message


def test_under_pace_deal() -> None:
    result = assess(snapshot(deals([60_000]), DAY5, delivery=hourly(steady([500]), DAY5)))
    row = one(result)
    assert row["status"] == PacingStatus.UNDER
    assert row["projected_end"] == pytest.approx(120_000)
    assert row["required_rate"] == pytest.approx(1500)
    assert np.isnan(row["projected_exhaustion"])
    assert row["severity"] == AlertSeverity.CRITICAL
    assert row["confidence"] > 89
    alert = result.alerts[result.alerts["entity_kind"] == EntityKind.DEAL].iloc[0]
    assert alert["reason"] == Reason.UNDERPACING
    assert (
        "ends at 120,000 impressions of 240,000 impressions, needs 1,500.0 impressions/h"
        in (alert["message"])
    )


def test_severity_grows_with_the_gap() -> None:
    actual = [110_000, 100_000, 80_000]  # ratios 0.917, 0.833, 0.667
    result = assess(snapshot(deals(actual), DAY5, delivery=hourly(steady([900, 830, 660]), DAY5)))
    assert list(result.deals["status"]) == ["ON_PACE", "UNDER", "UNDER"]
    assert list(result.deals["severity"]) == ["", "MATERIAL", "CRITICAL"]
    minor = assess(snapshot(deals([106_000]), DAY5, delivery=hourly(steady([880]), DAY5)))
    assert one(minor)["severity"] == AlertSeverity.MINOR  # ratio 0.883: just past 0.9


def test_stalled_deal_and_its_poisson_confidence() -> None:
    rates = steady([1000, 1], 48)
    rates[:, -8:] = 0.0
    frame = deals([120_000, 40], [ALLOC, 80])
    result = assess(snapshot(frame, DAY5, delivery=hourly(rates, DAY5)))
    big, small = one(result, 0), one(result, 1)
    assert big["status"] == small["status"] == PacingStatus.STALLED
    assert big["confidence"] == pytest.approx(100.0)
    # 80 over 240 h: 2 impressions expected in the 6-hour window; P(0) = e^-2.
    assert small["confidence"] == pytest.approx(100 * (1 - math.exp(-2)))
    assert big["severity"] == AlertSeverity.CRITICAL
    deal_alerts = result.alerts[result.alerts["entity_kind"] == EntityKind.DEAL]
    # The small deal has too little evidence (40 impressions) to alert.
    assert list(deal_alerts["entity_id"]) == [result.deals.index[0]]
    assert (
        "no impressions in the last 6 h while about 6,000 were expected"
        in (deal_alerts["message"].iloc[0])
    )


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 23),
    silent=st.integers(6, 12),
    before=st.booleans(),
    between=st.booleans(),
    hours=st.sampled_from([24, 30, 36, 48]),
)
def test_a_silence_repeated_a_day_earlier_with_delivery_between_is_no_stall(
    start: int, silent: int, before: bool, between: bool, hours: int
) -> None:
    """The deal has been silent for the last `silent` hours (at least the 6 h window). It is
    STALLED unless the series reaches a day before the window and shows there the same hours
    silent (`before`) with delivery in the hours between (`between`): then the silence is its
    daily cycle."""
    as_of = DAY5 + timedelta(hours=start)
    rates = steady([1000.0], hours)
    rates[0, -silent:] = 0.0
    window = 6  # Policy().stalled_window
    reaches = hours >= 24 + window  # the series holds the window's hours a day earlier
    if reaches:
        rates[0, hours - 24 - window : hours - 24] = 0.0 if before else 1000.0
        # Between the two: delivery up to the silence, or none at all.
        rates[0, hours - 24 : hours - silent] = 1000.0 if between else 0.0
    frame = deals([120_000])
    status = one(assess(snapshot(frame, as_of, delivery=hourly(rates, as_of))))["status"]
    daily = reaches and before and between
    assert (status != PacingStatus.STALLED) == daily, (hours, silent, before, between)


def test_paused_deal_is_never_stalled_and_says_so_when_under() -> None:
    rates = steady([500], 48)
    rates[:, -8:] = 0.0
    frame = deals([60_000])
    frame["status"] = np.int8(DealStatus.PAUSED)
    result = assess(snapshot(frame, DAY5, delivery=hourly(rates, DAY5)))
    assert one(result)["status"] == PacingStatus.UNDER
    assert one(result)["reason"] == Reason.PAUSED
    deal_alerts = result.alerts[result.alerts["entity_kind"] == EntityKind.DEAL]
    assert "is under pace and paused" in deal_alerts["message"].iloc[0]


def test_not_started_before_the_flight_and_before_the_first_active_hour() -> None:
    before = assess(snapshot(deals([0, 0]), T0 - HOUR))
    assert set(before.deals["status"]) == {PacingStatus.NOT_STARTED}
    assert before.campaign["status"].iloc[0] == PacingStatus.NOT_STARTED
    assert (before.deals["confidence"] == 100).all()
    assert before.alerts.empty
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 9:17] = True
    early = spec(budgets=(Budget(Period.LIFETIME, ALLOC),), daypart=daypart)
    result = assess(snapshot(deals([0]), T0 + 3 * HOUR, pacing=early))
    assert one(result)["status"] == PacingStatus.NOT_STARTED
    assert result.horizon_start == T0


def test_completed_after_the_horizon_on_delivery_and_when_ended() -> None:
    after = assess(snapshot(deals([ALLOC]), T0 + timedelta(days=11)))
    assert one(after)["status"] == PacingStatus.COMPLETED
    near_end = T0 + timedelta(days=9, hours=23)
    frame = deals([ALLOC, 100_000, 5_000])
    frame.loc[2, "status"] = np.int8(DealStatus.ENDED)
    result = assess(snapshot(frame, near_end, delivery=hourly(steady([1000, 1000, 0]), near_end)))
    assert list(result.deals["status"]) == ["COMPLETED", "UNDER", "COMPLETED"]
    assert one(result, 0)["projected_exhaustion"] == pytest.approx(near_end.timestamp())


def test_allocation_exhausted_early_is_over_with_its_own_reason() -> None:
    day3 = T0 + timedelta(days=3)
    result = assess(snapshot(deals([ALLOC]), day3, delivery=hourly(steady([3300]), day3)))
    row = one(result)
    assert row["status"] == PacingStatus.OVER
    assert row["reason"] == Reason.EARLY_EXHAUSTION
    assert row["projected_exhaustion"] == pytest.approx(day3.timestamp())
    assert row["projected_end"] == pytest.approx(ALLOC)
    assert row["required_rate"] == 0


def test_zero_allocation_deal_is_on_pace_with_zero_ratio() -> None:
    result = assess(
        snapshot(deals([0, 120_000], [0, ALLOC]), DAY5, delivery=hourly(steady([0, 1000]), DAY5))
    )
    row = one(result, 0)
    assert row["pacing_ratio"] == 0
    assert row["status"] == PacingStatus.ON_PACE


# --- projections follow the opportunity curve ----------------------------------------------------


def test_asap_is_judged_on_the_projected_total() -> None:
    asap = spec(mode=PacingMode.ASAP, budgets=(Budget(Period.LIFETIME, 2 * ALLOC),))
    frame = deals([100_000, 100_000])
    result = assess(snapshot(frame, DAY5, pacing=asap, delivery=hourly(steady([1200, 500]), DAY5)))
    assert result.ceiling
    fast, slow = one(result, 0), one(result, 1)
    assert fast["expected"] == ALLOC  # the ceiling
    assert fast["pacing_ratio"] == pytest.approx(100_000 / ALLOC)
    assert fast["status"] == PacingStatus.ON_PACE  # 100,000 + 1,200 x 120 h = 244,000
    assert slow["status"] == PacingStatus.UNDER  # 160,000 projected: 67%
    assert slow["projected_end"] == pytest.approx(160_000)
    assert slow["reason"] == Reason.PROJECTED_UNDERDELIVERY
    assert (
        "projected to deliver 160,000 impressions of 240,000 impressions (67%)"
        in (result.alerts.set_index("entity_id").loc[result.deals.index[1], "message"])
    )


def test_night_snapshot_with_dayparts_does_not_read_under() -> None:
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 8:20] = True  # 12 active hours a day, 120 in the flight
    pacing = spec(budgets=(Budget(Period.LIFETIME, 120_000),), daypart=daypart)
    night = T0 + timedelta(days=4, hours=2)  # 02:00: 48 active hours done
    per_hour = np.array(
        [1000.0 if 8 <= (night - (48 - i) * HOUR).hour < 20 else 0.0 for i in range(48)]
    )
    result = assess(
        snapshot(
            deals([48_000], [120_000]),
            night,
            pacing=pacing,
            delivery=hourly(per_hour[None, :], night),
        )
    )
    row = one(result)
    assert row["expected"] == pytest.approx(48_000)
    assert row["status"] == PacingStatus.ON_PACE
    # The last 6 h were dark: the rate comes from the whole series' 24 active hours.
    assert result.rate_window_hours == pytest.approx(24)
    assert row["recent_rate"] == pytest.approx(1000)
    assert row["projected_end"] == pytest.approx(120_000)
    assert result.opportunity_remaining_hours == pytest.approx(72)
    assert result.alerts.empty


def test_projection_follows_custom_traffic_weights() -> None:
    weights = np.array([1.0] * 12 + [3.0] * 12)  # normalised: 0.5 and 1.5
    pacing = spec(
        mode=PacingMode.CUSTOM, custom_weights=weights, budgets=(Budget(Period.LIFETIME, 24_000),)
    )
    noon = T0 + timedelta(days=5, hours=12)
    per_hour = np.array(
        [100 * (0.5 if (noon - (48 - i) * HOUR).hour < 12 else 1.5) for i in range(48)]
    )
    result = assess(
        snapshot(
            deals([12_600], [24_000]), noon, pacing=pacing, delivery=hourly(per_hour[None, :], noon)
        )
    )
    row = one(result)
    assert row["expected"] == pytest.approx(12_600)  # 5 x 24 + 12 x 0.5 opportunity hours
    assert row["recent_rate"] == pytest.approx(100)  # per opportunity hour, morning window
    assert row["recent_rate_clock"] == pytest.approx(50)  # per wall-clock hour
    assert row["projected_end"] == pytest.approx(24_000)
    assert row["status"] == PacingStatus.ON_PACE


def test_dayparts_in_new_york_across_the_dst_change() -> None:
    ny = ZoneInfo("America/New_York")
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:5, 9:17] = True
    pacing = spec(
        start=datetime(2026, 3, 5, tzinfo=ny),
        end=datetime(2026, 3, 12, tzinfo=ny),
        daypart=daypart,
        budgets=(Budget(Period.LIFETIME, 40_000),),
    )
    as_of = datetime(2026, 3, 9, 15, tzinfo=UTC)  # Monday 11:00 EDT
    result = assess(
        snapshot(deals([18_000], [40_000]), as_of, pacing=pacing, tz="America/New_York")
    )
    row = one(result)
    assert row["expected"] == pytest.approx(18_000)  # Thu 8 h + Fri 8 h + Mon 2 h, of 40 h
    assert row["status"] == PacingStatus.ON_PACE
    assert result.opportunity_remaining_hours == pytest.approx(22)
    assert row["required_rate"] == pytest.approx(1000)


# --- groups ------------------------------------------------------------------------------------


def test_sellers_channels_and_campaign_are_judged_as_wholes() -> None:
    frame = deals(
        [150_000, 60_000, 120_000], sellers=["s1", "s1", "s2"], channels=["web", "ctv", "web"]
    )
    pacing = spec(budgets=(Budget(Period.LIFETIME, 900_000),))  # 180,000 not allocated
    result = assess(
        snapshot(frame, DAY5, pacing=pacing, delivery=hourly(steady([1250, 500, 1000]), DAY5))
    )
    s1 = result.sellers.loc["s1"]
    assert s1["expected"] == pytest.approx(240_000)
    assert s1["actual"] == pytest.approx(210_000)
    assert s1["pacing_ratio"] == pytest.approx(0.875)
    assert s1["status"] == PacingStatus.UNDER
    assert s1["recent_rate"] == pytest.approx(1750)
    assert result.sellers.loc["s2", "status"] == PacingStatus.ON_PACE
    web = result.channels.loc["web"]
    assert web["actual"] == pytest.approx(270_000)
    assert web["status"] == PacingStatus.OVER  # 270,000 vs 240,000: 1.125
    assert result.channels.loc["ctv", "status"] == PacingStatus.UNDER
    campaign = result.campaign.loc["c1"]
    assert campaign["allocation"] == pytest.approx(900_000)
    assert campaign["expected"] == pytest.approx(450_000)
    assert campaign["pacing_ratio"] == pytest.approx(330_000 / 450_000)
    assert campaign["status"] == PacingStatus.UNDER
    kinds = set(result.alerts["entity_kind"])
    assert {EntityKind.DEAL, EntityKind.SELLER, EntityKind.CHANNEL, EntityKind.CAMPAIGN} <= kinds


def test_alerts_without_their_words_are_the_same_alerts() -> None:
    """A planner that only counts alerts asks for no sentences: same rows, same order, same
    numbers, empty messages."""
    frame = deals(
        [150_000, 60_000, 120_000], sellers=["s1", "s1", "s2"], channels=["web", "ctv", "web"]
    )
    pacing = spec(budgets=(Budget(Period.LIFETIME, 900_000),))
    snap = snapshot(frame, DAY5, pacing=pacing, delivery=hourly(steady([1250, 500, 1000]), DAY5))
    full, bare = assess(snap), assess(snap, alert_messages=False)
    assert len(full.alerts) >= 4
    assert (full.alerts["message"] != "").all()
    assert (bare.alerts["message"] == "").all()
    pd.testing.assert_frame_equal(
        full.alerts.drop(columns="message"), bare.alerts.drop(columns="message")
    )
    pd.testing.assert_frame_equal(full.deals, bare.deals)


def test_spend_columns_for_a_clicks_goal() -> None:
    frame = deals([500], [1_000], unit="clicks")  # 500 clicks for 1,000,000 micros: 2,000 each
    pacing = spec(budget_type=BudgetType.CLICKS, budgets=(Budget(Period.LIFETIME, 1_000),))
    result = assess(snapshot(frame, DAY5, pacing=pacing))
    row = one(result)
    assert row["actual"] == 500
    assert row["expected_spend_micros"] == pytest.approx(500 * 2_000)
    assert row["actual_spend_micros"] == pytest.approx(1_000_000)


def test_without_a_series_the_rate_is_the_flight_average_and_nothing_stalls() -> None:
    result = assess(snapshot(deals([120_000, 60_000]), DAY5))
    assert list(result.deals["recent_rate"]) == pytest.approx([1000, 500])
    assert PacingStatus.STALLED not in set(result.deals["status"])
    assert result.rate_window_hours == 0
    assert list(result.deals["conf_trend"]) == pytest.approx([0.5, 0.5])  # no signal: neutral


def test_series_must_match_the_deals() -> None:
    with pytest.raises(ValueError, match="rows"):
        assess(snapshot(deals([1, 2]), DAY5, delivery=hourly(steady([1000]), DAY5)))


# --- confidence gates and plan restart -----------------------------------------------------------


def test_first_hours_raise_nothing_then_strong_evidence_alerts() -> None:
    early = T0 + HOUR
    first = assess(snapshot(deals([0]), early, delivery=hourly(steady([0], 1), early)))
    assert first.alerts.empty
    row = one(first)
    # 1,000 impressions were expected in that hour, but a stall needs its whole 6-hour window:
    # the first hour of a flight (night supply at an hourly replan) is only behind.
    assert row["status"] == PacingStatus.UNDER
    assert row["conf_evidence"] == pytest.approx(1 / 6)
    assert not row["alert"]
    assert first.alerts.empty
    for hours, verdict in ((5, PacingStatus.UNDER), (6, PacingStatus.STALLED)):
        at = T0 + hours * HOUR
        row = one(assess(snapshot(deals([0]), at, delivery=hourly(steady([0], hours), at))))
        assert row["status"] == verdict, hours
    # A series shorter than the window cannot show a stall either, however late in the flight.
    short = assess(snapshot(deals([0]), DAY5, delivery=hourly(steady([0], 3), DAY5)))
    assert one(short)["status"] != PacingStatus.STALLED
    half = assess(snapshot(deals([500]), early))  # half the first hour's 1,000: noise
    assert one(half)["status"] == PacingStatus.UNDER
    assert one(half)["confidence"] < 100 / 6
    assert half.alerts.empty
    later = assess(snapshot(deals([20_000]), DAY5, delivery=hourly(steady([150]), DAY5)))
    assert one(later)["status"] == PacingStatus.UNDER
    assert one(later)["confidence"] > 90
    assert one(later)["alert"]


def test_policy_confidence_threshold_gates_alerts() -> None:
    snap = snapshot(deals([60_000]), DAY5, delivery=hourly(steady([500]), DAY5))
    assert not assess(snap).alerts.empty
    strict = replace(snap, policy=Policy(confidence_threshold=99.99))
    result = assess(strict)
    assert one(result)["status"] == PacingStatus.UNDER
    assert result.alerts.empty
    unproven = replace(snap, policy=Policy(min_evidence_impressions=10**9))
    assert assess(unproven).alerts.empty


def test_accepted_plan_restarts_the_curve_and_raises_no_alert() -> None:
    day4 = T0 + timedelta(days=4)
    as_of = day4 + 2 * HOUR
    frame = deals([62_500])
    frame["plan_applied_at"] = int(day4.timestamp())
    frame["delivered_at_plan"] = 60_000  # it was 36,000 behind when the plan was applied
    rates = steady([625], 48)
    rates[:, -2:] = 1250  # since the plan: the new required rate
    result = assess(snapshot(frame, as_of, delivery=hourly(rates, as_of)))
    row = one(result)
    assert row["expected"] == pytest.approx(62_500)  # 60,000 + 180,000 x 2 / 144
    assert row["status"] == PacingStatus.ON_PACE
    assert row["evidence_hours"] == pytest.approx(2)
    assert result.alerts[result.alerts["entity_kind"] == EntityKind.DEAL].empty
    without = assess(snapshot(deals([62_500]), as_of, delivery=hourly(rates, as_of)))
    assert one(without)["status"] == PacingStatus.UNDER
    assert one(without)["alert"]


def test_alerts_are_sorted_and_typed() -> None:
    rates = steady([1500, 500, 950, 1000], 48)
    rates[3, -8:] = 0
    frame = deals([180_000, 60_000, 106_000, 120_000])
    result = assess(
        snapshot(frame, DAY5, delivery=hourly(rates, DAY5), policy=Policy(confidence_threshold=30))
    )
    severities = [AlertSeverity(s) for s in result.alerts["severity"]]
    ranks = [{"CRITICAL": 0, "MATERIAL": 1, "MINOR": 2}[s] for s in severities]
    assert ranks == sorted(ranks)
    critical = result.alerts[result.alerts["severity"] == "CRITICAL"]
    breadth = [["CAMPAIGN", "CHANNEL", "SELLER", "DEAL"].index(k) for k in critical["entity_kind"]]
    assert breadth == sorted(breadth)
    deal_confidence = critical[critical["entity_kind"] == "DEAL"]["confidence"].to_numpy()
    assert list(deal_confidence) == sorted(deal_confidence, reverse=True)
    assert len(deal_confidence) >= 2
    typed = result.alert_list()
    assert len(typed) == len(result.alerts)
    assert typed[0].severity is AlertSeverity.CRITICAL
    assert isinstance(typed[0].entity_kind, EntityKind)


@settings(max_examples=40, deadline=None)
@given(
    actual=st.lists(st.integers(0, 400_000), min_size=1, max_size=6),
    rate=st.floats(0.0, 3000.0),
    day=st.floats(0.1, 9.9),
)
def test_verdicts_are_consistent(actual: list[int], rate: float, day: float) -> None:
    as_of = T0 + timedelta(days=day)
    n = len(actual)
    result = assess(snapshot(deals(actual), as_of, delivery=hourly(steady([rate] * n), as_of)))
    frame = result.deals
    assert frame["confidence"].between(0, 100).all()
    ratio = frame["pacing_ratio"].to_numpy()
    status = frame["status"].astype(str).to_numpy()
    delivered = frame["actual"].to_numpy() >= frame["allocation"].to_numpy()
    assert np.all(ratio[status == "OVER"] > 1.1)
    assert np.all(ratio[status == "UNDER"] < 0.9)
    on = status == "ON_PACE"
    assert np.all((ratio[on] >= 0.9) & (ratio[on] <= 1.1))
    assert np.all(delivered[status == "COMPLETED"])
    assert np.all(frame["projected_end"] <= np.maximum(frame["allocation"], frame["actual"]))
    alerted = frame["alert"].to_numpy()
    assert np.all(frame["confidence"].to_numpy()[alerted] > 60)


def _silent_since_a_plan(offered_while_silent: float) -> DeliverySeries:
    """48 h of delivery, the last 8 silent, with `offered_while_silent` bid requests an hour
    in them; the frame's plan was applied an hour ago."""
    rates = steady([1000], 48)
    rates[:, -8:] = 0.0
    series = hourly(rates, DAY5)
    avails = np.array(series.avails, dtype=np.float64)
    avails[:, -8:] = offered_while_silent
    return replace(series, avails=avails)


def _planned_an_hour_ago() -> pd.DataFrame:
    frame = deals([110_000])
    frame["plan_applied_at"] = int((DAY5 - HOUR).timestamp())
    frame["delivered_at_plan"] = 110_000
    frame["avails"] = 1_100_000  # bid requests to date
    return frame


def test_stall_after_a_plan_counts_only_what_was_expected_since_the_plan() -> None:
    """Offered supply while silent before the plan: the silence may be the plan's own doing
    (a deal left nothing to spend), so only the hour since the plan is evidence."""
    frame = _planned_an_hour_ago()
    result = assess(snapshot(frame, DAY5, delivery=_silent_since_a_plan(5_000.0)))
    row = one(result)
    assert row["status"] == PacingStatus.STALLED
    assert row["expected"] == pytest.approx(110_000 + 130_000 / 121)  # 1 h of the 121 left
    assert row["evidence_hours"] == pytest.approx(1)
    assert row["confidence"] == pytest.approx(100 / 6)  # a plan an hour old: little evidence
    assert result.alerts[result.alerts["entity_kind"] == EntityKind.DEAL].empty


def test_a_silence_without_supply_before_a_plan_is_judged_over_the_whole_window() -> None:
    """No bid requests before the plan either: the plan did not cause the silence, so the
    stall is judged over its whole window (the plan's pace extended back to its start) with
    the window's hours as evidence. Restarted instead, a silent deal that every plan moved
    never gathered confidence and budget piled into it."""
    frame = _planned_an_hour_ago()
    quiet_series = _silent_since_a_plan(0.0)
    result = assess(snapshot(frame, DAY5, delivery=quiet_series))
    row = one(result)
    assert row["status"] == PacingStatus.STALLED
    assert row["expected"] == pytest.approx(110_000 + 130_000 / 121)  # the curve: unchanged
    assert row["evidence_hours"] == pytest.approx(6)  # the stall window
    assert row["confidence"] == pytest.approx(100.0)  # 6 h of the plan's pace: no chance
    alerted = result.alerts[result.alerts["entity_kind"] == EntityKind.DEAL]
    assert list(alerted["status"]) == [PacingStatus.STALLED]
    # A deal whose bid requests are not reported cannot tell the silences apart: as before.
    frame["avails"] = 0
    assert one(assess(snapshot(frame, DAY5, delivery=quiet_series)))["evidence_hours"] == 1


def test_a_deal_offered_no_bid_request_where_others_were_is_judged_over_the_whole_window() -> None:
    """Beside a deal whose bid requests are reported, one offered none to date was offered
    none: the campaign's platform reports them. Its silence across the plan is judged over the
    whole window, as the other's is; taken for unreported, only the hour since the plan
    counted, and a deal silent since the start of a stall of the whole campaign was never
    confidently stalled (`random_scenarios.py --seed 33`, world 11)."""
    frame = deals([110_000, 110_000])
    frame["plan_applied_at"] = int((DAY5 - HOUR).timestamp())
    frame["delivered_at_plan"] = 110_000
    frame["avails"] = [1_100_000, 0]
    quiet = _silent_since_a_plan(0.0)
    two = replace(
        quiet,
        **{
            name: np.repeat(np.asarray(getattr(quiet, name), dtype=np.float64), 2, axis=0)
            for name in ("spend_micros", "impressions", "avails", "wins")
        },
    )
    avails = np.array(two.avails)
    avails[1] = 0.0  # the second deal was never offered a bid request
    result = assess(snapshot(frame, DAY5, delivery=replace(two, avails=avails)))
    for deal in (0, 1):
        row = one(result, deal)
        assert row["status"] == PacingStatus.STALLED
        assert row["evidence_hours"] == pytest.approx(6)
        assert row["confidence"] == pytest.approx(100.0)
    # Where no deal of the campaign reports any, nothing tells the silences apart.
    frame["avails"] = 0
    avails[0] = 0.0
    result = assess(snapshot(frame, DAY5, delivery=replace(two, avails=avails)))
    assert [one(result, d)["evidence_hours"] for d in (0, 1)] == [1, 1]


def test_dateless_campaign_is_judged_over_its_current_period() -> None:
    pacing = PacingSpec(
        budget_type=BudgetType.IMPRESSIONS,
        budgets=(Budget(Period.DAY, 24_000),),
        catch_up_fraction=1.0,
    )
    as_of = datetime(2026, 3, 4, 18, tzinfo=UTC)
    result = assess(snapshot(deals([18_000], [24_000]), as_of, pacing=pacing))
    assert result.horizon_start == datetime(2026, 3, 4, tzinfo=UTC)
    assert result.horizon_end == datetime(2026, 3, 5, tzinfo=UTC)
    assert one(result)["expected"] == pytest.approx(18_000)
    assert one(result)["status"] == PacingStatus.ON_PACE

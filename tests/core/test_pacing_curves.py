"""Pacing curves: every mode, budgets combined, flights, budget changes, plan restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reallocator.core.model import (
    Budget,
    BudgetChange,
    BudgetChangeBehavior,
    Flight,
    PacingMode,
    PacingSpec,
    Period,
)
from reallocator.core.pacing.curves import (
    PacingCurve,
    build_curve,
    deal_expected,
    expected_cumulative,
    expected_share,
    mode_shape,
)

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAY = 86400.0


def at_days(*days: float) -> np.ndarray:
    return T0.timestamp() + DAY * np.asarray(days, dtype=np.float64)


def ten_days(**kwargs: object) -> PacingSpec:
    base: dict[str, object] = {
        "start": T0,
        "end": T0 + timedelta(days=10),
        "budgets": (Budget(Period.LIFETIME, 1000),),
    }
    base.update(kwargs)
    return PacingSpec(**base)  # type: ignore[arg-type]


def day(x: float) -> float:
    return T0.timestamp() + DAY * x


def daily(curve: PacingCurve, n_days: int) -> np.ndarray:
    return np.diff(curve.cumulative(at_days(*range(n_days + 1))))


# --- modes -------------------------------------------------------------------------------------


def test_even_is_linear_with_a_catch_up_buffer() -> None:
    curve = build_curve(ten_days(), "UTC")
    assert curve.cumulative(at_days(5.0))[()] == pytest.approx(1000 * 0.5 / 0.95)
    assert curve.cumulative(at_days(9.5))[()] == pytest.approx(1000)
    assert curve.cumulative(at_days(9.75))[()] == pytest.approx(1000)
    assert not curve.ceiling


def test_even_without_buffer_is_exactly_linear() -> None:
    curve = build_curve(ten_days(catch_up_fraction=1.0), "UTC")
    np.testing.assert_allclose(
        curve.cumulative(at_days(0, 2.5, 5, 7.25, 10)), [0, 250, 500, 725, 1000]
    )


def test_asap_makes_the_budget_a_ceiling_available_at_once() -> None:
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 9:17] = True
    curve = build_curve(ten_days(mode=PacingMode.ASAP, daypart=daypart), "UTC")
    assert curve.ceiling
    # Nothing before the first active instant (09:00), all of it from then on.
    np.testing.assert_allclose(
        curve.cumulative(at_days(0, 0.25, 0.375, 0.38, 5, 10)), [0, 0, 1000, 1000, 1000, 1000]
    )


def test_asap_with_a_daily_budget_is_a_daily_ceiling() -> None:
    spec = ten_days(mode=PacingMode.ASAP, budgets=(Budget(Period.DAY, 30),))
    curve = build_curve(spec, "UTC")
    np.testing.assert_allclose(curve.cumulative(at_days(0, 0.5, 1, 1.9, 2.1)), [30, 30, 60, 60, 90])


def test_front_loaded_spends_its_share_over_the_first_fraction() -> None:
    curve = build_curve(ten_days(mode=PacingMode.FRONT_LOADED), "UTC")  # s=0.35, f=0.25
    np.testing.assert_allclose(
        curve.cumulative(at_days(1.25, 2.5, 5, 10)),
        [175, 350, 350 + 650 * (2.5 / 7.5), 1000],
    )


def test_front_loaded_head_with_zero_fraction_is_a_ceiling() -> None:
    curve = build_curve(ten_days(mode=PacingMode.FRONT_LOADED, front_fraction=0.0), "UTC")
    assert curve.ceiling
    np.testing.assert_allclose(curve.cumulative(at_days(0, 5, 10)), [350, 350 + 325, 1000])


def test_back_loaded_spends_its_share_over_the_last_fraction() -> None:
    curve = build_curve(ten_days(mode=PacingMode.BACK_LOADED), "UTC")  # s=0.35 over last 25%
    np.testing.assert_allclose(
        curve.cumulative(at_days(3.75, 7.5, 8.75, 10)), [325, 650, 825, 1000]
    )


@settings(max_examples=80, deadline=None)
@given(
    s=st.floats(0.0, 1.0),
    f=st.floats(0.01, 0.99),
    u=st.floats(0.0, 1.0),
)
def test_back_is_front_mirrored(s: float, f: float, u: float) -> None:
    front = mode_shape(PacingSpec(mode=PacingMode.FRONT_LOADED, front_share=s, front_fraction=f))
    back = mode_shape(PacingSpec(mode=PacingMode.BACK_LOADED, back_share=s, back_fraction=f))
    assume(0.0 < u < 1.0)
    lhs = float(back(np.array([u]))[0])
    rhs = 1.0 - float(front(np.array([1.0 - u]))[0])
    assert lhs == pytest.approx(rhs, abs=1e-12)


def test_back_loaded_full_fraction_has_a_head() -> None:
    shape = mode_shape(PacingSpec(mode=PacingMode.BACK_LOADED, back_fraction=1.0))  # s = 0.35
    assert shape.is_ceiling
    assert shape.head == pytest.approx(0.65)


def test_custom_hour_of_day_weights_shape_the_pace() -> None:
    weights = np.zeros(24)
    weights[6:12] = 1.0
    weights[12:18] = 3.0
    spec = ten_days(mode=PacingMode.CUSTOM, custom_weights=weights, catch_up_fraction=1.0)
    curve = build_curve(spec, "UTC")
    hours = np.diff(curve.cumulative(T0.timestamp() + 3600.0 * np.arange(25)))
    np.testing.assert_allclose(hours[6:12], 100 / 24)  # a day: 100 over 6*1 + 6*3 weight-hours
    np.testing.assert_allclose(hours[12:18], 100 / 8)
    np.testing.assert_allclose(hours[:6], 0)
    np.testing.assert_allclose(hours[18:], 0)


def test_custom_hour_of_week_weights_skip_the_weekend() -> None:
    weights = np.ones(168)
    weights[5 * 24 :] = 0.0
    curve = build_curve(ten_days(mode=PacingMode.CUSTOM, custom_weights=weights), "UTC")
    per_day = daily(curve, 10)
    np.testing.assert_allclose(per_day[[5, 6]], 0)  # Saturday, Sunday
    np.testing.assert_allclose(per_day[:5], 1000 / 8)  # 8 weekdays; CUSTOM has no buffer


def test_even_ignores_traffic_weights_but_custom_follows_them() -> None:
    weights = np.arange(1.0, 25.0)
    even = build_curve(ten_days(custom_weights=weights, catch_up_fraction=1.0), "UTC")
    hours = np.diff(even.cumulative(T0.timestamp() + 3600.0 * np.arange(25)))
    np.testing.assert_allclose(hours, 1000 / 240)


@pytest.mark.parametrize(
    ("mode", "kwargs"),
    [
        (PacingMode.FRONT_LOADED, {"front_fraction": 1.0}),
        (PacingMode.BACK_LOADED, {"back_fraction": 0.0}),
        (PacingMode.EVEN, {"catch_up_fraction": 0.0}),
        (PacingMode.FRONT_LOADED, {"front_share": 1.5}),
    ],
)
def test_invalid_shapes_are_rejected(mode: PacingMode, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        mode_shape(PacingSpec(mode=mode, **kwargs))  # type: ignore[arg-type]


# --- dayparts and DST ---------------------------------------------------------------------------


def test_dayparted_pace_runs_over_active_minutes_across_dst_in_new_york() -> None:
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:5, 9:17] = True  # weekdays 9-17 local
    spec = PacingSpec(
        start=datetime(2026, 3, 5, tzinfo=NY),
        end=datetime(2026, 3, 12, tzinfo=NY),
        budgets=(Budget(Period.LIFETIME, 400),),
        daypart=daypart,
        catch_up_fraction=1.0,
    )
    curve = build_curve(spec, "America/New_York")

    # Thu, Fri (EST), then Mon, Tue, Wed (EDT): 40 active hours, 10 per hour.
    def at(month: int, day: int, hour: int) -> float:
        instant = datetime(2026, month, day, hour, tzinfo=UTC)
        return float(curve.cumulative(instant.timestamp()))

    assert at(3, 6, 14) == pytest.approx(80)  # Friday 9:00 EST
    assert at(3, 6, 22) == pytest.approx(160)  # Friday 17:00 EST
    assert at(3, 9, 12) == pytest.approx(160)  # Monday 8:00 EDT: flat over the weekend
    assert at(3, 9, 13) == pytest.approx(160)  # Monday 9:00 EDT
    assert at(3, 9, 14) == pytest.approx(170)
    assert at(3, 9, 21) == pytest.approx(240)  # Monday 17:00 EDT


def test_daily_budget_spreads_over_the_real_length_of_dst_days() -> None:
    spec = PacingSpec(
        start=datetime(2026, 10, 31, tzinfo=NY),
        end=datetime(2026, 11, 3, tzinfo=NY),
        budgets=(Budget(Period.DAY, 250),),
        catch_up_fraction=1.0,
    )
    curve = build_curve(spec, "America/New_York")
    # Sunday 2026-11-01 has 25 hours: 10 per hour.
    sunday = datetime(2026, 11, 1, tzinfo=NY).timestamp()
    hours = np.diff(curve.cumulative(sunday + 3600.0 * np.arange(26)))
    np.testing.assert_allclose(hours, 10.0)
    assert curve.total() == pytest.approx(750)


# --- several budgets ----------------------------------------------------------------------------


def test_worked_example_lifetime_is_tighter_than_daily_cap() -> None:
    spec = ten_days(
        budgets=(Budget(Period.LIFETIME, 1000), Budget(Period.DAY, 200)), catch_up_fraction=1.0
    )
    curve = build_curve(spec, "UTC")
    np.testing.assert_allclose(daily(curve, 10), 100.0)
    assert curve.total() == pytest.approx(1000)


def test_worked_example_daily_cap_is_tighter_than_lifetime() -> None:
    spec = ten_days(
        budgets=(Budget(Period.LIFETIME, 1000), Budget(Period.DAY, 50)), catch_up_fraction=1.0
    )
    curve = build_curve(spec, "UTC")
    np.testing.assert_allclose(daily(curve, 10), 50.0)
    assert curve.total() == pytest.approx(500)
    assert float(curve.share(day(5.0))) == pytest.approx(0.5)


def test_worked_example_with_the_default_catch_up_buffer() -> None:
    spec = ten_days(budgets=(Budget(Period.LIFETIME, 1000), Budget(Period.DAY, 200)))
    per_day = daily(build_curve(spec, "UTC"), 10)
    np.testing.assert_allclose(per_day[:9], 1000 / 9.5)
    assert per_day[9] == pytest.approx(1000 / 9.5 / 2)


def test_weekly_budget_runs_sunday_to_saturday() -> None:
    start = datetime(2026, 3, 4, tzinfo=UTC)  # Wednesday
    spec = PacingSpec(
        start=start,
        end=start + timedelta(days=14),
        budgets=(Budget(Period.LIFETIME, 10_000), Budget(Period.WEEK, 70)),
    )
    curve = build_curve(spec, "UTC")
    per_day = np.diff(curve.cumulative(start.timestamp() + DAY * np.arange(15)))
    np.testing.assert_allclose(per_day[:4], 70 / 4)  # Wed-Sat
    np.testing.assert_allclose(per_day[4:11], 10)  # Sun-Sat
    np.testing.assert_allclose(per_day[11:], 70 / 3)  # Sun-Tue
    assert curve.total() == pytest.approx(210)


def test_monthly_budget_is_the_local_calendar_month() -> None:
    spec = PacingSpec(
        start=datetime(2026, 1, 20, tzinfo=NY),
        end=datetime(2026, 2, 10, tzinfo=NY),
        budgets=(Budget(Period.LIFETIME, 10_000), Budget(Period.MONTH, 120)),
    )
    curve = build_curve(spec, "America/New_York")
    end_of_january = datetime(2026, 2, 1, tzinfo=NY).timestamp()
    assert float(curve.cumulative(end_of_january)) == pytest.approx(120)
    # At 02:00 UTC on Feb 1st it is still January in New York: 2 hours short of the month end.
    assert float(curve.cumulative(datetime(2026, 2, 1, 2, tzinfo=UTC).timestamp())) == (
        pytest.approx(120 - 120 / (12 * 24) * 3)
    )
    assert curve.total() == pytest.approx(240)


def test_hourly_cap() -> None:
    spec = PacingSpec(
        start=T0,
        end=T0 + timedelta(days=1),
        budgets=(Budget(Period.LIFETIME, 240), Budget(Period.HOUR, 5)),
    )
    curve = build_curve(spec, "UTC")
    assert curve.total() == pytest.approx(120)
    np.testing.assert_allclose(
        np.diff(curve.cumulative(T0.timestamp() + 3600.0 * np.arange(25))), 5.0
    )


def test_no_budget_gives_shares_of_a_unit_budget() -> None:
    curve = build_curve(
        PacingSpec(start=T0, end=T0 + timedelta(days=10), catch_up_fraction=1.0), "UTC"
    )
    assert not curve.budget_units
    assert float(curve.share(day(4.0))) == pytest.approx(0.4)


def test_dateless_campaign_is_paced_over_its_current_period() -> None:
    spec = PacingSpec(budgets=(Budget(Period.DAY, 240),), catch_up_fraction=1.0)
    noon = T0 + timedelta(days=3, hours=12)
    assert float(expected_cumulative(spec, "UTC", noon)) == pytest.approx(120)
    with pytest.raises(ValueError, match="span"):
        build_curve(spec, "UTC")


# --- flights -----------------------------------------------------------------------------------


def two_flights(f1_amount: int = 300, **kwargs: object) -> PacingSpec:
    f1 = Flight("f1", T0, T0 + timedelta(days=3), (Budget(Period.LIFETIME, f1_amount),))
    f2 = Flight(
        "f2", T0 + timedelta(days=5), T0 + timedelta(days=10), (Budget(Period.LIFETIME, 700),)
    )
    return PacingSpec(flights=(f1, f2), catch_up_fraction=1.0, **kwargs)  # type: ignore[arg-type]


def test_each_flight_paces_to_its_own_budget() -> None:
    curve = build_curve(two_flights(), "UTC")
    np.testing.assert_allclose(
        curve.cumulative(at_days(1.5, 3, 4, 5, 7.5, 10)), [150, 300, 300, 300, 650, 1000]
    )
    flight2 = (day(5.0), day(10.0))
    assert curve.horizon_at(day(4.0)) == flight2
    assert float(curve.share(day(7.5), flight2)) == pytest.approx(0.5)
    assert curve.total(flight2) == pytest.approx(700)
    share = expected_share(
        two_flights(), "UTC", day(6.0), horizon=(T0 + timedelta(days=5), T0 + timedelta(days=10))
    )
    assert float(share) == pytest.approx(0.2)


def test_campaign_daily_cap_applies_inside_every_flight() -> None:
    curve = build_curve(two_flights(budgets=(Budget(Period.DAY, 80),)), "UTC")
    np.testing.assert_allclose(daily(curve, 10), [80, 80, 80, 0, 0, 80, 80, 80, 80, 80])


def test_flight_without_budget_when_campaign_has_none_is_an_error() -> None:
    f1 = Flight("f1", T0, T0 + timedelta(days=3), (Budget(Period.LIFETIME, 300),))
    f2 = Flight("f2", T0 + timedelta(days=5), T0 + timedelta(days=10))
    with pytest.raises(ValueError, match="no budget"):
        build_curve(PacingSpec(flights=(f1, f2)), "UTC")


# --- budget changes ----------------------------------------------------------------------------


def changed(new: int, behavior: BudgetChangeBehavior) -> PacingCurve:
    change = BudgetChange(T0 + timedelta(days=5), Period.LIFETIME, 1000, new)
    spec = ten_days(
        budgets=(Budget(Period.LIFETIME, new),),
        budget_changes=(change,),
        change_behavior=behavior,
        catch_up_fraction=1.0,
    )
    return build_curve(spec, "UTC")


def test_even_change_increase_is_a_spike() -> None:
    curve = changed(1500, BudgetChangeBehavior.EVEN)
    five = day(5.0)
    assert float(curve.cumulative(five, left=True)) == pytest.approx(500)
    np.testing.assert_allclose(curve.cumulative(at_days(5, 6, 10)), [750, 900, 1500])


def test_even_change_decrease_is_a_pause() -> None:
    curve = changed(800, BudgetChangeBehavior.EVEN)
    # Flat at 500 until the new curve (80/day from the start) catches up at day 6.25.
    np.testing.assert_allclose(
        curve.cumulative(at_days(4, 5, 6, 6.25, 7, 10)), [400, 500, 500, 500, 560, 800]
    )


def test_smooth_change_is_a_step_in_rate() -> None:
    up = changed(1500, BudgetChangeBehavior.SMOOTH)
    np.testing.assert_allclose(up.cumulative(at_days(5, 6, 7.5, 10)), [500, 700, 1000, 1500])
    down = changed(800, BudgetChangeBehavior.SMOOTH)
    np.testing.assert_allclose(down.cumulative(at_days(5, 7.5, 10)), [500, 650, 800])


def test_smooth_change_of_a_daily_cap_mid_day() -> None:
    change = BudgetChange(T0 + timedelta(days=1, hours=12), Period.DAY, 100, 200)
    spec = PacingSpec(
        start=T0,
        end=T0 + timedelta(days=3),
        budgets=(Budget(Period.DAY, 200),),
        budget_changes=(change,),
        change_behavior=BudgetChangeBehavior.SMOOTH,
        catch_up_fraction=1.0,
    )
    curve = build_curve(spec, "UTC")
    # Day 0 at the old 100; day 1: 50 by noon then 150 over the afternoon; day 2 at 200.
    np.testing.assert_allclose(daily(curve, 3), [100, 200, 200])
    np.testing.assert_allclose(curve.cumulative(at_days(1.5, 1.75)), [150, 225])


def test_change_before_the_start_applies_throughout() -> None:
    change = BudgetChange(T0 - timedelta(days=1), Period.LIFETIME, 1000, 2000)
    spec = ten_days(budgets=(Budget(Period.LIFETIME, 2000),), budget_changes=(change,))
    assert build_curve(spec, "UTC").total() == pytest.approx(2000)


def test_flight_budget_change_stays_in_its_flight() -> None:
    change = BudgetChange(T0 + timedelta(days=1), Period.LIFETIME, 300, 600, flight_id="f1")
    spec = two_flights(600, budget_changes=(change,), change_behavior=BudgetChangeBehavior.SMOOTH)
    curve = build_curve(spec, "UTC")
    np.testing.assert_allclose(curve.cumulative(at_days(1, 2, 3, 10)), [100, 350, 600, 1300])


# --- plan restart ------------------------------------------------------------------------------


def test_deal_curve_restarts_from_actual_after_a_plan() -> None:
    curve = build_curve(ten_days(catch_up_fraction=1.0), "UTC")
    horizon = (day(0.0), day(10.0))
    alloc = np.array([100.0, 100.0, 100.0, 50.0])
    plan_at = np.array([day(4.0), -1.0, day(9.0), day(4.0)])
    delivered_at_plan = np.array([30.0, 0.0, 0.0, 70.0])

    def expected(when: float) -> np.ndarray:
        return deal_expected(curve, horizon, day(when), alloc, plan_at, delivered_at_plan)

    np.testing.assert_allclose(expected(4.0), [30, 40, 40, 70])
    np.testing.assert_allclose(expected(7.0), [30 + 70 * 0.3 / 0.6, 70, 70, 70])
    np.testing.assert_allclose(expected(10.0), [100, 100, 100, 70])


# --- properties ----------------------------------------------------------------------------------

TIMEZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe"]


@st.composite
def specs(draw: st.DrawFn) -> tuple[PacingSpec, str]:
    tz = draw(st.sampled_from(TIMEZONES))
    start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(
        minutes=15 * draw(st.integers(0, 4 * 24 * 300))
    )
    end = start + timedelta(hours=draw(st.integers(6, 24 * 21)), minutes=draw(st.integers(0, 59)))
    mode = draw(st.sampled_from(list(PacingMode)))
    daypart = None
    if draw(st.booleans()):
        daypart = np.array(
            draw(st.lists(st.booleans(), min_size=168, max_size=168)), dtype=bool
        ).reshape(7, 24)
        assume(daypart.any())
    weights = None
    if mode is PacingMode.CUSTOM or draw(st.booleans()):
        weights = np.array(draw(st.lists(st.floats(0.0, 5.0), min_size=24, max_size=24)))
        assume(float(weights.sum()) > 0)
    budgets = [Budget(Period.LIFETIME, draw(st.integers(1, 10**9)))]
    for period in (Period.HOUR, Period.DAY, Period.WEEK, Period.MONTH):
        if draw(st.booleans()):
            budgets.append(Budget(period, draw(st.integers(1, 10**8))))
    spec = PacingSpec(
        mode=mode,
        start=start,
        end=end,
        budgets=tuple(budgets),
        daypart=daypart,
        custom_weights=weights,
        front_share=draw(st.floats(0.0, 1.0)),
        front_fraction=draw(st.floats(0.0, 0.9)),
        back_fraction=draw(st.floats(0.1, 1.0)),
        catch_up_fraction=draw(st.floats(0.5, 1.0)),
    )
    return spec, tz


@settings(max_examples=60, deadline=None)
@given(specs(), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30))
def test_curve_properties(case: tuple[PacingSpec, str], fractions: list[float]) -> None:
    spec, tz = case
    try:
        curve = build_curve(spec, tz)
    except ValueError as error:  # e.g. a daypart whose hours all carry zero weight
        assume("weight" not in str(error))
        raise
    cal = curve.calendar
    lo, hi = cal.start, cal.end
    t = np.sort(lo + (hi - lo) * np.asarray(fractions))
    values = curve.cumulative(t)
    # Monotone, never above the tightest budget, within [0, 1] as a share.
    assert np.all(np.diff(values) >= -1e-6)
    assert np.all(curve.cum_end >= curve.cum_start - 1e-6)
    assert np.all(curve.cum_start[1:] >= curve.cum_end[:-1] - 1e-6)
    lifetime = spec.budgets[0].amount
    assert curve.total() <= lifetime * (1 + 1e-9)
    shares = curve.share(t)
    assert np.all((shares >= 0) & (shares <= 1))
    # Ends at the budget when the lifetime budget is the only one and something is active.
    if len(spec.budgets) == 1 and cal.cum_active[-1] > 0:
        active_weight = cal.opportunity if spec.mode is PacingMode.CUSTOM else cal.active
        if float(np.sum(active_weight)) > 0:
            assert curve.total() == pytest.approx(lifetime, rel=1e-9)
    # Flat outside dayparts: an inactive slot adds nothing and jumps only happen into
    # active slots (ceilings become available at the first active instant).
    pace = cal.opportunity if spec.mode is PacingMode.CUSTOM else cal.hours * cal.active
    idle = pace <= 0
    np.testing.assert_allclose(curve.cum_end[idle], curve.cum_start[idle], atol=1e-6)
    jumps = curve.cum_start[1:] - curve.cum_end[:-1] > 1e-6
    assert not np.any(jumps & idle[1:])
    # No daily increment exceeds a daily cap.
    for budget in spec.budgets:
        if budget.period is Period.DAY:
            key = cal.period_key(Period.DAY)
            per_day = np.bincount(
                np.searchsorted(np.unique(key), key),
                weights=curve.cum_end - np.concatenate([[0.0], curve.cum_end[:-1]]),
            )
            assert np.all(per_day <= budget.amount * (1 + 1e-9) + 1e-6)

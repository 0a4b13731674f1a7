"""The campaign-time grid: slots, dayparts in local time across DST, periods, opportunity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import Budget, Flight, PacingSpec, Period
from reallocator.core.pacing.calendar import (
    SLOT_SECONDS,
    build_calendar,
    default_span,
    period_bounds,
    to_unix,
)
from reallocator.core.pacing.curves import opportunity_profile, remaining_opportunity

NY = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def weekday_daypart(first_hour: int, last_hour: int, days: range = range(5)) -> np.ndarray:
    """Active [first_hour, last_hour) on the given weekdays (Monday = 0)."""
    mask = np.zeros((7, 24), dtype=bool)
    for d in days:
        mask[d, first_hour:last_hour] = True
    return mask


def active_between(cal: object, a: datetime, b: datetime) -> float:
    return float(cal.active_hours_at(b) - cal.active_hours_at(a))  # type: ignore[attr-defined]


def test_grid_is_quarter_hours_plus_breakpoints() -> None:
    start, end = utc(2026, 3, 2, 10, 7), utc(2026, 3, 2, 12, 0)
    change = utc(2026, 3, 2, 11, 3).timestamp()
    cal = build_calendar(PacingSpec(), "UTC", start, end, breakpoints=[change])
    assert cal.edges[0] == start.timestamp()
    assert cal.edges[1] == utc(2026, 3, 2, 10, 15).timestamp()
    assert cal.edges[-1] == end.timestamp()
    assert change in cal.edges
    assert np.all(np.diff(cal.edges) <= SLOT_SECONDS)
    assert cal.n_slots == 9  # 10:07, 10:15, ..., 11:00, 11:03, 11:15, ..., 11:45
    assert active_between(cal, start, end) == pytest.approx(113 / 60)


def test_daypart_in_new_york_follows_spring_dst_change() -> None:
    # 9:00-17:00 weekdays in New York; DST starts Sunday 2026-03-08.
    spec = PacingSpec(daypart=weekday_daypart(9, 17))
    cal = build_calendar(
        spec, "America/New_York", datetime(2026, 3, 5, tzinfo=NY), datetime(2026, 3, 12, tzinfo=NY)
    )
    # Friday before the change: EST, 9:00 local = 14:00 UTC.
    assert active_between(cal, utc(2026, 3, 6, 14), utc(2026, 3, 6, 22)) == pytest.approx(8)
    assert active_between(cal, utc(2026, 3, 6, 13), utc(2026, 3, 6, 14)) == 0
    assert active_between(cal, utc(2026, 3, 6, 22), utc(2026, 3, 6, 23)) == 0
    # Monday after: EDT, 9:00 local = 13:00 UTC.
    assert active_between(cal, utc(2026, 3, 9, 13), utc(2026, 3, 9, 21)) == pytest.approx(8)
    assert active_between(cal, utc(2026, 3, 9, 12), utc(2026, 3, 9, 13)) == 0
    assert active_between(cal, utc(2026, 3, 9, 21), utc(2026, 3, 9, 22)) == 0
    # The weekend (incl. the 23-hour Sunday) is dark; 5 weekdays x 8 h in total.
    assert active_between(cal, utc(2026, 3, 7, 5), utc(2026, 3, 9, 4)) == 0
    assert float(cal.cum_active[-1]) == pytest.approx(40)


def test_daypart_in_new_york_follows_fall_dst_change() -> None:
    spec = PacingSpec(daypart=weekday_daypart(9, 17))
    cal = build_calendar(
        spec,
        "America/New_York",
        datetime(2026, 10, 29, tzinfo=NY),
        datetime(2026, 11, 4, tzinfo=NY),
    )
    assert active_between(cal, utc(2026, 10, 30, 13), utc(2026, 10, 30, 21)) == pytest.approx(8)
    assert active_between(cal, utc(2026, 11, 2, 14), utc(2026, 11, 2, 22)) == pytest.approx(8)
    assert active_between(cal, utc(2026, 11, 2, 13), utc(2026, 11, 2, 14)) == 0


@pytest.mark.parametrize(
    ("day", "hours"),
    [((2026, 3, 8), 23.0), ((2026, 3, 9), 24.0), ((2026, 11, 1), 25.0), ((2026, 11, 2), 24.0)],
)
def test_local_days_have_their_real_length(day: tuple[int, int, int], hours: float) -> None:
    cal = build_calendar(
        PacingSpec(),
        "America/New_York",
        datetime(2026, 3, 6, tzinfo=NY),
        datetime(2026, 11, 4, tzinfo=NY),
    )
    key = cal.period_key(Period.DAY)
    local_day = (utc(*day).date() - utc(1970, 1, 1).date()).days
    assert float(cal.hours[key == local_day].sum()) == pytest.approx(hours)


def test_repeated_fall_back_hour_is_two_hour_instances() -> None:
    cal = build_calendar(PacingSpec(), "America/New_York", utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    key = cal.period_key(Period.HOUR)
    # 04:00-05:00Z = 00:00 EDT, 05:00-06:00Z = 01:00 EDT, 06:00-07:00Z = 01:00 EST, then 02:00.
    runs = np.flatnonzero(np.diff(key)) + 1
    starts = cal.edges[np.concatenate([[0], runs])]
    assert list(starts) == [utc(2026, 11, 1, h).timestamp() for h in (4, 5, 6, 7)]


def test_week_runs_sunday_to_saturday_in_local_time() -> None:
    cal = build_calendar(
        PacingSpec(),
        "America/New_York",
        datetime(2026, 3, 1, tzinfo=NY),
        datetime(2026, 3, 16, tzinfo=NY),
    )
    key = cal.period_key(Period.WEEK)

    def week_of(local: datetime) -> int:
        slot = int(np.searchsorted(cal.edges, local.timestamp(), side="right") - 1)
        return int(key[slot])

    sunday = week_of(datetime(2026, 3, 8, 0, 10, tzinfo=NY))
    assert week_of(datetime(2026, 3, 7, 23, 50, tzinfo=NY)) == sunday - 1  # Saturday before
    assert week_of(datetime(2026, 3, 14, 23, 50, tzinfo=NY)) == sunday  # that Saturday
    assert week_of(datetime(2026, 3, 15, 0, 10, tzinfo=NY)) == sunday + 1


def test_month_is_the_local_calendar_month() -> None:
    cal = build_calendar(
        PacingSpec(),
        "America/New_York",
        datetime(2026, 1, 31, tzinfo=NY),
        datetime(2026, 2, 2, tzinfo=NY),
    )
    key = cal.period_key(Period.MONTH)
    # 2026-02-01 02:00 UTC is still January 31st in New York.
    slot = int(np.searchsorted(cal.edges, utc(2026, 2, 1, 2).timestamp(), side="right") - 1)
    assert key[slot] == key[0]
    assert float(cal.hours[key == key[0]].sum()) == pytest.approx(24)


def test_half_hour_offset_timezone_daypart() -> None:
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 9] = True  # 9:00-10:00 India time = 03:30-04:30 UTC
    cal = build_calendar(
        PacingSpec(daypart=daypart), "Asia/Kolkata", utc(2026, 3, 2), utc(2026, 3, 3)
    )
    assert active_between(cal, utc(2026, 3, 2, 3, 30), utc(2026, 3, 2, 4, 30)) == pytest.approx(1)
    assert float(cal.cum_active[-1]) == pytest.approx(1)


def test_custom_weights_are_normalised_over_active_hours() -> None:
    weights = np.arange(1.0, 25.0)  # hour-of-day traffic
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 12:] = True
    spec = PacingSpec(custom_weights=weights, daypart=daypart)
    cal = build_calendar(spec, "UTC", utc(2026, 3, 2), utc(2026, 3, 4))
    mean_active = weights[12:].mean()
    assert float(cal.opportunity_hours(utc(2026, 3, 2), utc(2026, 3, 3))) == pytest.approx(12)
    hour_13 = cal.opportunity_hours(utc(2026, 3, 2, 13), utc(2026, 3, 2, 14))
    assert float(hour_13) == pytest.approx(14 / mean_active)
    assert float(cal.opportunity_hours(utc(2026, 3, 2, 0), utc(2026, 3, 2, 12))) == 0


def test_hour_of_week_weights_start_monday() -> None:
    weights = np.ones(168)
    weights[5 * 24 :] = 0.0  # nothing on the weekend
    cal = build_calendar(
        PacingSpec(custom_weights=weights), "UTC", utc(2026, 3, 6), utc(2026, 3, 10)
    )  # Friday .. Tuesday
    assert float(cal.opportunity_hours(utc(2026, 3, 7), utc(2026, 3, 9))) == 0
    # Normalised so the average hour of the (all-active) week weighs 1: a weekday hour 7/5.
    monday = float(cal.opportunity_hours(utc(2026, 3, 9), utc(2026, 3, 10)))
    assert monday == pytest.approx(24 * 7 / 5)


def test_flights_limit_activity_and_define_horizons() -> None:
    budget = (Budget(Period.LIFETIME, 100),)
    f1 = Flight("f1", utc(2026, 3, 2), utc(2026, 3, 4), budget)
    f2 = Flight("f2", utc(2026, 3, 6), utc(2026, 3, 9), budget)
    cal = build_calendar(PacingSpec(flights=(f2, f1)), "UTC", utc(2026, 3, 2), utc(2026, 3, 9))
    assert float(cal.cum_active[-1]) == pytest.approx(5 * 24)
    assert active_between(cal, utc(2026, 3, 4), utc(2026, 3, 6)) == 0
    assert cal.horizon_at(utc(2026, 3, 3).timestamp()) == (f1.start.timestamp(), f1.end.timestamp())
    # Between flights the snapshot is judged against the coming flight; after, the last one.
    assert cal.horizon_at(utc(2026, 3, 5).timestamp())[0] == f2.start.timestamp()
    assert cal.horizon_at(utc(2026, 3, 20).timestamp())[0] == f2.start.timestamp()
    # Flights without budgets only restrict activity: the horizon is the whole span.
    dated = PacingSpec(flights=(replace(f1, budgets=()), replace(f2, budgets=())))
    span_only = build_calendar(dated, "UTC", utc(2026, 3, 2), utc(2026, 3, 9))
    assert span_only.horizons == ((utc(2026, 3, 2).timestamp(), utc(2026, 3, 9).timestamp()),)
    assert float(span_only.cum_active[-1]) == pytest.approx(5 * 24)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0))
def test_time_at_opportunity_inverts_opportunity(fraction: float) -> None:
    weights = np.tile(np.array([0.0] * 6 + [1.0] * 12 + [3.0] * 6), 7)
    cal = build_calendar(
        PacingSpec(custom_weights=weights), "America/New_York", utc(2026, 3, 6), utc(2026, 3, 11)
    )
    target = fraction * float(cal.cum_opportunity[-1])
    when = cal.time_at_opportunity(np.array([target]))
    assert float(cal.opportunity_at(when)[0]) == pytest.approx(target, abs=1e-6)
    beyond = cal.time_at_opportunity(np.array([float(cal.cum_opportunity[-1]) + 1.0]))
    assert np.isnan(beyond[0])


def test_period_bounds_and_default_span() -> None:
    day = period_bounds(Period.DAY, "America/New_York", datetime(2026, 11, 1, 12, tzinfo=NY))
    assert day[1] - day[0] == timedelta(hours=25)
    week = period_bounds(Period.WEEK, "America/New_York", datetime(2026, 3, 11, tzinfo=NY))
    assert week[0] == datetime(2026, 3, 8, tzinfo=NY)  # Sunday
    assert week[1] == datetime(2026, 3, 15, tzinfo=NY)
    month = period_bounds(Period.MONTH, "UTC", utc(2026, 2, 14))
    assert month == (utc(2026, 2, 1), utc(2026, 3, 1))
    hour = period_bounds(Period.HOUR, "Asia/Kolkata", utc(2026, 3, 2, 4, 0))
    assert hour == (utc(2026, 3, 2, 3, 30), utc(2026, 3, 2, 4, 30))
    spec = PacingSpec(budgets=(Budget(Period.DAY, 10), Budget(Period.WEEK, 50)))
    assert default_span(spec, "UTC", utc(2026, 3, 11)) == (utc(2026, 3, 8), utc(2026, 3, 15))
    with pytest.raises(ValueError, match="LIFETIME"):
        period_bounds(Period.LIFETIME, "UTC", utc(2026, 3, 2))


def test_remaining_opportunity_and_profile() -> None:
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 8:20] = True
    spec = PacingSpec(start=utc(2026, 3, 2), end=utc(2026, 3, 5), daypart=daypart)
    assert remaining_opportunity(spec, "UTC", utc(2026, 3, 3, 14)) == pytest.approx(6 + 12)
    starts, opp = opportunity_profile(spec, "UTC", utc(2026, 3, 3, 18), utc(2026, 3, 4, 10))
    assert starts[0] == utc(2026, 3, 3, 18).timestamp()
    assert list(opp) == [1, 1] + [0] * 12 + [1, 1]


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_unix(datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="shape"):
        build_calendar(
            PacingSpec(daypart=np.ones((24, 7), bool)), "UTC", utc(2026, 3, 2), utc(2026, 3, 3)
        )
    with pytest.raises(ValueError, match="24 or 168"):
        build_calendar(
            PacingSpec(custom_weights=np.ones(23)), "UTC", utc(2026, 3, 2), utc(2026, 3, 3)
        )
    with pytest.raises(ValueError, match="overlap"):
        flights = (
            Flight("a", utc(2026, 3, 2), utc(2026, 3, 4)),
            Flight("b", utc(2026, 3, 3), utc(2026, 3, 5)),
        )
        build_calendar(PacingSpec(flights=flights), "UTC", utc(2026, 3, 2), utc(2026, 3, 5))
    with pytest.raises(ValueError, match="weight"):
        build_calendar(
            PacingSpec(daypart=np.zeros((7, 24), bool)), "UTC", utc(2026, 3, 2), utc(2026, 3, 3)
        )

"""The curve cache and the curve's scalar path: a cached curve is the curve a fresh build gives,
it is shared read-only, a different campaign never gets it, and one instant read with scalar
arithmetic gives exactly what the array path gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import Budget, BudgetChange, Flight, PacingMode, PacingSpec, Period
from reallocator.core.pacing import curves
from reallocator.core.pacing.curves import build_curve

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def spec(**changes: object) -> PacingSpec:
    base = PacingSpec(
        mode=PacingMode.FRONT_LOADED,
        start=T0,
        end=T0 + timedelta(days=6),
        budgets=(Budget(Period.LIFETIME, 6_000_000), Budget(Period.DAY, 1_500_000)),
        budget_changes=(
            BudgetChange(T0 + timedelta(days=2, hours=5), Period.DAY, 1_500_000, 900_000),
        ),
        custom_weights=np.linspace(0.5, 1.5, 24),
        daypart=np.ones((7, 24), dtype=bool),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def same_curve(a: curves.PacingCurve, b: curves.PacingCurve) -> None:
    np.testing.assert_array_equal(a.cum_start, b.cum_start)
    np.testing.assert_array_equal(a.cum_end, b.cum_end)
    for name, value in vars(a.calendar).items():
        other = getattr(b.calendar, name)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other)
        else:
            assert value == other
    assert a.shape == b.shape
    assert a.budget_units == b.budget_units


def test_a_cached_curve_is_the_built_one_and_read_only() -> None:
    s = spec()
    first = build_curve(s, "America/New_York")
    again = build_curve(replace(s, custom_weights=s.custom_weights.copy()), "America/New_York")
    assert again is first  # equal arrays by value are the same campaign
    span = (T0, T0 + timedelta(days=6))
    same_curve(first, curves._build_curve(s, "America/New_York", span))
    with pytest.raises(ValueError, match="read-only"):
        first.cum_end[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        first.calendar.edges[0] = 1.0


@pytest.mark.parametrize(
    "change",
    [
        {"mode": PacingMode.EVEN},
        {"custom_weights": np.linspace(0.5, 1.6, 24)},
        {"daypart": np.arange(24)[None, :].repeat(7, axis=0) >= 6},
        {"budgets": (Budget(Period.LIFETIME, 6_000_001), Budget(Period.DAY, 1_500_000))},
        {"budget_changes": ()},
        {"flights": (Flight("f", T0, T0 + timedelta(days=3), (Budget(Period.LIFETIME, 5),)),)},
        {"catch_up_fraction": 0.9},
    ],
)
def test_another_campaign_gets_its_own_curve(change: dict[str, object]) -> None:
    base = build_curve(spec(), "America/New_York")
    other = spec(**change)
    try:
        fresh = curves._build_curve(other, "America/New_York", (T0, T0 + timedelta(days=6)))
    except ValueError:
        return
    cached = build_curve(other, "America/New_York", span=(T0, T0 + timedelta(days=6)))
    assert cached is not base
    same_curve(cached, fresh)


def test_timezone_and_span_are_part_of_the_key() -> None:
    s = spec()
    assert build_curve(s, "UTC") is not build_curve(s, "America/New_York")
    longer = build_curve(s, "UTC", span=(T0, T0 + timedelta(days=7)))
    assert longer is not build_curve(s, "UTC")
    assert longer.calendar.end == (T0 + timedelta(days=7)).timestamp()


def test_the_cache_stays_within_its_bounds() -> None:
    for day in range(curves.CACHE_ENTRIES + 5):
        build_curve(spec(), "UTC", span=(T0, T0 + timedelta(days=6, hours=day)))
    assert len(curves._CACHE) <= curves.CACHE_ENTRIES
    assert sum(c.calendar.n_slots for c in curves._CACHE.values()) <= curves.CACHE_SLOTS


@settings(max_examples=60, deadline=None)
@given(
    hours=st.lists(st.floats(-30.0, 180.0), min_size=1, max_size=8),
    left=st.booleans(),
    horizon_days=st.sampled_from([None, (1, 4), (0, 6)]),
)
def test_one_instant_reads_as_the_array_path(
    hours: list[float], left: bool, horizon_days: tuple[int, int] | None
) -> None:
    curve = build_curve(spec(), "America/New_York")
    edges = curve.calendar.edges
    # Instants on slot edges too (where the scalar and the array branches could part).
    times = [T0.timestamp() + h * 3600.0 for h in hours] + edges[
        :: max(1, edges.size // 7)
    ].tolist()
    horizon = None
    if horizon_days is not None:
        horizon = tuple((T0 + timedelta(days=d)).timestamp() for d in horizon_days)
    as_array = curve.cumulative(np.asarray(times), left=left)
    shares = curve.share(np.asarray(times), horizon)  # type: ignore[arg-type]
    for i, t in enumerate(times):
        assert float(curve.cumulative(t, left=left)) == as_array[i]
        assert float(curve.share(t, horizon)) == shares[i]  # type: ignore[arg-type]
    h0, h1 = horizon or (curve.calendar.start, curve.calendar.end)
    as_before = float(curve.cumulative(np.asarray([h1]), left=True)[0]) - float(
        curve.cumulative(np.asarray([h0]), left=True)[0]
    )
    assert curve.total(horizon) == as_before  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(-2e9, 4e9),
    step=st.sampled_from([450.0, 900.0, 3600.0, 86_400.0, 1e5 + 0.5]),
    tz=st.sampled_from(
        [
            "UTC",
            "Etc/UTC",
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
            "America/St_Johns",
            "Pacific/Chatham",
        ]
    ),
)
def test_local_offsets_are_those_of_naive_timestamps(start: float, step: float, tz: str) -> None:
    """The offsets as they were computed before (local minus UTC naive timestamps)."""
    from zoneinfo import ZoneInfo

    import pandas as pd

    from reallocator.core.pacing.calendar import _local_offsets

    mid = start + step * np.arange(400.0)
    utc = pd.to_datetime(mid, unit="s", utc=True)
    local = utc.tz_convert(ZoneInfo(tz)).tz_localize(None)
    want = np.rint(((local - utc.tz_localize(None)) / pd.Timedelta(seconds=1)).to_numpy(float))
    np.testing.assert_array_equal(_local_offsets(mid, tz), want.astype(np.int64))

"""Daily pacing, the money cap and the ASAP head as properties of the curve (the server-level
examples are in tests/server/test_seed_pacing_rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import Budget, BudgetType, PacingMode, PacingSpec, Period
from reallocator.core.pacing.curves import build_curve

START = datetime(2026, 3, 2, tzinfo=UTC)


def _spec(days: int, **kw: object) -> PacingSpec:
    return PacingSpec(start=START, end=START + timedelta(days=days), **kw)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    days=st.integers(1, 12),
    daily=st.integers(1, 500),
    lifetime=st.integers(1, 5000),
    hours=st.lists(st.floats(0, 1), min_size=1, max_size=6),
)
def test_daily_pacing_is_the_daily_rate_until_the_lifetime_budget_runs_out(
    days: int, daily: int, lifetime: int, hours: list[float]
) -> None:
    spec = _spec(
        days,
        mode=PacingMode.EVEN,
        catch_up_fraction=1.0,
        budgets=(Budget(Period.LIFETIME, lifetime), Budget(Period.DAY, daily)),
        paced_period=Period.DAY,
    )
    curve = build_curve(spec, "UTC")
    tol = 1e-6 * max(lifetime, daily)

    def exact(t: np.ndarray) -> np.ndarray:
        return np.minimum(daily * (t - START.timestamp()) / 86400, lifetime)

    # Exact at every slot edge (quarter hours); inside the slot where the lifetime budget starts
    # to bind the curve takes the chord, which stays within both budgets.
    edges = curve.calendar.edges
    np.testing.assert_allclose(curve.cumulative(edges), exact(edges), atol=tol)
    at = np.array([START.timestamp() + h * days * 86400 for h in hours])
    assert bool(np.all(curve.cumulative(at) <= exact(at) + tol))
    assert curve.total() == pytest.approx(min(daily * days, lifetime))


@settings(max_examples=40, deadline=None)
@given(
    days=st.integers(1, 12),
    daily=st.integers(1, 500),
    cap=st.integers(0, 5000),
    budget_type=st.sampled_from([BudgetType.SPEND, BudgetType.IMPRESSIONS]),
)
def test_max_spend_bounds_a_spend_curve_only(
    days: int, daily: int, cap: int, budget_type: BudgetType
) -> None:
    budgets = (Budget(Period.DAY, daily),)
    capped = build_curve(
        _spec(days, budgets=budgets, max_spend_micros=cap, budget_type=budget_type), "UTC"
    )
    free = build_curve(_spec(days, budgets=budgets, budget_type=budget_type), "UTC")
    edges = capped.calendar.edges
    if budget_type is BudgetType.SPEND:
        np.testing.assert_allclose(
            capped.cumulative(edges), np.minimum(free.cumulative(edges), cap), atol=1e-6
        )
    else:  # impressions cannot be compared with money: the plan bounds the spend instead
        np.testing.assert_allclose(capped.cumulative(edges), free.cumulative(edges))


@settings(max_examples=40, deadline=None)
@given(share=st.floats(0.01, 1.0), u=st.floats(0.0, 1.0))
def test_front_loaded_with_no_head_time_is_an_asap_head_then_even(share: float, u: float) -> None:
    spec = _spec(
        10,
        mode=PacingMode.FRONT_LOADED,
        front_share=share,
        front_fraction=0.0,
        budgets=(Budget(Period.LIFETIME, 1000),),
    )
    curve = build_curve(spec, "UTC")
    assert curve.ceiling
    t = START.timestamp() + max(u, 1e-6) * 10 * 86400
    assert float(curve.cumulative(t)) == pytest.approx(
        1000 * (share + (1 - share) * max(u, 1e-6)), rel=1e-6
    )


def test_paced_period_without_such_a_budget_is_an_error() -> None:
    spec = _spec(3, budgets=(Budget(Period.LIFETIME, 10),), paced_period=Period.DAY)
    with pytest.raises(ValueError, match="paced_period"):
        build_curve(spec, "UTC")

"""Deal bounds and group limits from a snapshot's tables: the formulas, and that locks,
commitments beyond capacity and exceeded shares are reported rather than infeasible."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.engine import bounds as bounds_module
from reallocator.core.engine import build_from_snapshot, build_problem, solve
from reallocator.core.engine.bounds import (
    PRICE_DEN,
    deal_bounds,
    group_limits,
    horizon,
    total_to_allocate,
)
from reallocator.core.engine.problem import NO_MAX
from reallocator.core.model import (
    GROUP_COLUMNS,
    Budget,
    BudgetType,
    CampaignSnapshot,
    Flight,
    PacingSpec,
    Period,
    Policy,
    PriceKind,
    empty_deals,
)


def i64(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def test_deal_bounds_follow_the_formulas() -> None:
    policy = Policy(step_abs=50, step_rel=0.5)
    current, min_r, max_r, step, lb, ub = deal_bounds(
        allocation=i64(1000, 0, 600, 500, 300),
        min_allocation=i64(0, 0, 500, 0, 0),
        max_allocation=i64(NO_MAX, NO_MAX, 700, NO_MAX, NO_MAX),
        spent=i64(200, 0, 100, 100, 0),
        capacity=i64(10_000, 10_000, 50, 10_000, 100),
        locked=np.array([False, False, False, True, True]),
        policy=policy,
    )
    assert current.tolist() == [800, 0, 500, 400, 300]
    assert step.tolist() == [400, 50, 250, 200, 150]  # max(step_abs, step_rel * current)
    assert min_r.tolist() == [0, 0, 400, 0, 0]
    assert max_r.tolist() == [NO_MAX, NO_MAX, 600, NO_MAX, NO_MAX]
    # deal 0: [800-400, 800+400]; deal 1 grows from 0 by step_abs; deal 2: the commitment
    # (400) outranks capacity (50); locked deals stay at current, even beyond capacity.
    assert lb.tolist() == [400, 0, 400, 400, 300]
    assert ub.tolist() == [1200, 50, 400, 400, 300]


def _snapshot() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    deals = empty_deals(4)
    deals["seller_id"] = ["s0", "s0", "s1", "s1"]
    deals["channel_id"] = ["c0", "c0", "c0", "c1"]
    deals["allocation"] = i64(400, 300, 200, 100)
    deals["spend_micros"] = i64(100, 100, 50, 0)
    deals["min_allocation"] = i64(0, 0, 150, 0)
    deals["locked"] = [False, True, False, False]
    deals["value_per_unit"] = [1.0, 1.0, 2.0, 0.5]
    sellers = pd.DataFrame(
        {c: [np.nan, np.nan] for c in GROUP_COLUMNS}, index=pd.Index(["s0", "s1"])
    )
    sellers.loc["s0", "max_share"] = 0.2  # of a 1000 flight: 200, already 200 spent
    channels = pd.DataFrame(
        {c: [np.nan, np.nan] for c in GROUP_COLUMNS}, index=pd.Index(["c0", "c1"])
    )
    channels.loc["c1", "min_total"] = 500.0  # its one deal can deliver far less
    return deals, sellers, channels


def test_exceeded_share_and_short_minimum_are_reported_not_infeasible() -> None:
    deals, sellers, channels = _snapshot()
    capacity = i64(1000, 0, 50, 80)
    built = build_problem(
        deals,
        capacity,
        Policy(),
        total=700,
        flight_budget=1000,
        sellers=sellers,
        channels=channels,
    )
    p, report = built.problem, built.report
    assert list(built.seller_ids) == ["s0", "s1"]
    # s0 spent its 200 share: nothing beyond the locked deal's 200.
    assert p.seller_max.tolist() == [200, NO_MAX]
    assert report.seller_over_limit.tolist() == [200, 0]
    # The locked deal keeps 200 with capacity 0; deal 2's commitment (100) is 50 beyond its
    # capacity of 50.
    assert report.held_beyond_capacity.tolist() == [0, 200, 50, 0]
    # c1 wants 500 more but its deal can take 80 (capacity): capped and reported.
    assert p.channel_min.tolist() == [0, 80]
    assert report.channel_min_short.tolist() == [0, 420]
    result = solve(p)
    assert result.allocation.tolist() == [0, 200, 100, 80]
    assert result.objective.unspendable == 700 - 380


def test_money_prices_are_exact_for_impression_goals() -> None:
    deals, _, _ = _snapshot()
    deals["price_micros"] = i64(2_000_000, 2_000_000, 3, 3)
    deals["price_kind"] = np.array(
        [PriceKind.ECPM, PriceKind.ECPM, PriceKind.PER_UNIT, PriceKind.PER_UNIT], np.int8
    )
    built = build_problem(
        deals,
        i64(1000, 1000, 1000, 1000),
        Policy(),
        total=500,
        flight_budget=None,
        budget_type=BudgetType.IMPRESSIONS,
        money_left=1_000,
    )
    p = built.problem
    assert p.price_den == PRICE_DEN
    assert p.price_num is not None
    # $2 CPM: 2000 micros per impression = 2_000_000 per 1000; 3 micros per unit = 3000.
    assert p.price_num.tolist() == [2_000_000, 2_000_000, 3000, 3000]
    assert p.money_cap == 1_000


def test_horizon_is_the_flight_with_budgets_and_total_is_the_tightest_left() -> None:
    t = datetime(2026, 11, 1, tzinfo=UTC)
    flights = (
        Flight("f1", t.replace(day=1), t.replace(day=15), (Budget(Period.LIFETIME, 5000),)),
        Flight("f2", t.replace(day=15), t.replace(day=30), (Budget(Period.LIFETIME, 3000),)),
    )
    spec = PacingSpec(flights=flights, budgets=(Budget(Period.LIFETIME, 10_000),))
    h = horizon(spec, t.replace(day=20))
    assert h.flight_id == "f2" and h.lifetime_budget == 3000
    lifetime = horizon(PacingSpec(budgets=(Budget(Period.LIFETIME, 10_000),)), t)
    assert lifetime.lifetime_budget == 10_000
    budgets = (Budget(Period.LIFETIME, 3000), Budget(Period.DAY, 200))
    assert total_to_allocate(budgets, spent=1000) == 2000
    assert total_to_allocate(budgets, spent=1000, period_left={Period.DAY: 1800}) == 1800
    assert total_to_allocate(budgets, spent=5000) == 0


def test_build_from_snapshot_reads_horizon_total_and_money_cap() -> None:
    deals, sellers, channels = _snapshot()
    deals["impressions"] = i64(100, 100, 50, 0)
    t = datetime(2026, 11, 10, tzinfo=UTC)
    spec = PacingSpec(
        budget_type=BudgetType.IMPRESSIONS,
        flights=(
            Flight("f1", t.replace(day=1), t.replace(day=20), (Budget(Period.LIFETIME, 1000),)),
        ),
        max_spend_micros=10_000,
    )
    snapshot = CampaignSnapshot(
        campaign_id="c",
        as_of=t,
        timezone="UTC",
        currency="USD",
        deals=deals,
        sellers=sellers,
        channels=channels,
        pacing=spec,
    )
    built = build_from_snapshot(snapshot, i64(1000, 1000, 1000, 1000))
    assert built.problem.total == 1000 - 250  # lifetime budget less impressions delivered
    assert built.problem.money_cap == 10_000 - 250  # money left beside the impression goal
    # s0: 20% of the flight's 1000 is 200, all delivered; its locked deal holds 200 more.
    assert built.report.seller_over_limit.tolist() == [200, 0]
    no_budget = replace(snapshot, pacing=PacingSpec(budget_type=BudgetType.IMPRESSIONS))
    rebuilt = build_from_snapshot(no_budget, i64(1000, 1000, 1000, 1000))
    assert rebuilt.problem.total == int(rebuilt.problem.current.sum())
    assert rebuilt.report.notes


def test_a_spend_goals_money_cap_bounds_the_total_placed() -> None:
    """With SPEND, max_spend_micros is a budget in the same unit: the plan places at most what
    it leaves, on the network path (no separate money row)."""
    deals, sellers, channels = _snapshot()
    t = datetime(2026, 11, 10, tzinfo=UTC)
    spent = int(deals["spend_micros"].sum())
    lifetime = (Budget(Period.LIFETIME, spent + 5000),)
    flight = Flight("f1", t.replace(day=1), t.replace(day=20), lifetime)
    spec = PacingSpec(flights=(flight,), max_spend_micros=spent + 700)
    snapshot = CampaignSnapshot(
        campaign_id="c",
        as_of=t,
        timezone="UTC",
        currency="USD",
        deals=deals,
        sellers=sellers,
        channels=channels,
        pacing=spec,
    )
    built = build_from_snapshot(snapshot, i64(1000, 1000, 1000, 1000))
    assert built.problem.total == 700
    assert built.problem.money_cap is None
    uncapped = build_from_snapshot(
        replace(snapshot, pacing=replace(spec, max_spend_micros=None)), i64(1000, 1000, 1000, 1000)
    )
    assert uncapped.problem.total == 5000


def test_churn_weight_stays_finite_at_the_float_limit() -> None:
    """Values near the float limit (a caller's, fuzzed) once made the weight inf: INTERNAL."""
    from reallocator.core.engine.bounds import MAX_CHURN, churn_weight
    from reallocator.core.model import Policy

    slopes = np.array([[1e308], [1e308], [0.0]])
    current = np.array([2**50, 2**50, 1], dtype=np.int64)
    for policy in (Policy(), Policy(churn_deal=1e308)):
        lam = churn_weight(policy, slopes, current)
        assert np.isfinite(lam) and 0 < lam <= MAX_CHURN
    assert churn_weight(Policy(), np.array([[2.0], [4.0]]), np.array([1, 3])) == pytest.approx(
        0.1 * 3.5
    )


@given(
    groups=st.integers(1, 6),
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 10**9), st.integers(0, 10**9)),
        min_size=1,
        max_size=40,
    ),
    flight_budget=st.one_of(st.none(), st.integers(1, 10**12)),
)
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_groups_without_limits_skip_the_sums_and_say_the_same(
    groups: int,
    rows: list[tuple[int, int, int]],
    flight_budget: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table of groups none of which has a limit takes a shortcut: the same four answers as
    the general arithmetic gives it."""
    index = pd.Index([f"g{i}" for i in range(groups)], dtype=object)
    table = pd.DataFrame(np.nan, index=index, columns=list(GROUP_COLUMNS))
    codes = np.array([g % groups for g, _, _ in rows], dtype=np.int32)
    spent = np.array([s for _, s, _ in rows], dtype=np.int64)
    lb = np.array([min(a, b) for _, a, b in rows], dtype=np.int64)
    ub = np.array([max(a, b) for _, a, b in rows], dtype=np.int64)
    fast = group_limits(table, index, codes, spent, lb, ub, flight_budget)
    with monkeypatch.context() as m:
        m.setattr(bounds_module, "_no_limits", lambda _table: False)
        general = group_limits(table, index, codes, spent, lb, ub, flight_budget)
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(*[st.one_of(st.none(), st.floats(0, 1e6)) for _ in range(4)]), max_size=6),
    st.sampled_from(["float64", "Float64"]),
    st.booleans(),
)
def test_no_limits_reads_the_four_limits_as_one_matrix_as_column_by_column(
    rows: list[tuple[float | None, ...]], dtype: str, extra: bool
) -> None:
    columns = ("min_total", "max_total", "min_share", "max_share")
    table = pd.DataFrame(
        {c: pd.array([r[i] for r in rows], dtype=dtype) for i, c in enumerate(columns)}
    )
    if extra:  # another column: read column by column
        table["note"] = "x"
    want = all(bool(table[c].isna().all()) for c in columns)
    assert bounds_module._no_limits(table) is want


def test_group_codes_share_one_named_index_per_id_list() -> None:
    """The problem's group ids: a named "str" Index of the ids in order of first appearance,
    then the table's own; the same id list gives the same (immutable) Index."""
    deals = pd.DataFrame({"seller_id": pd.array(["b", "a", "b", "c"], dtype="str")})
    table = pd.DataFrame(index=pd.Index(["a", "z"], dtype=object, name="seller_id"))
    codes, index = bounds_module._codes(deals, "seller_id", None)
    assert codes.tolist() == [0, 1, 0, 2] and codes.dtype == np.int32
    assert index.tolist() == ["b", "a", "c"] and index.name == "seller_id"
    assert str(index.dtype) == "str"
    assert bounds_module._codes(deals.copy(), "seller_id", None)[1] is index  # shared
    _, more = bounds_module._codes(deals, "seller_id", table)
    assert more.tolist() == ["b", "a", "c", "z"]
    assert index.tolist() == ["b", "a", "c"]  # the shared one untouched

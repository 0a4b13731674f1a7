"""Values on any scale plan alike. `value_per_unit` is "any consistent scale": a campaign's values
(and churn weights, which are in the values' unit) times a power of two, from where the smallest
is still a normal float up to where the largest is near float64's limit, give the same plan -
allocation, codes, status, path - with its marginal values and objective times the same power
(clipped to the largest float where that product is beyond it), and no numpy warning.

Before the engine held the objective's coefficients in a power-of-two `value_unit` (problem.py):
from 1e30 a unit GLOP refused the costs (ABNORMAL: a money-capped plan fell back to its first
stage, value ignored, reported TIME_LIMITED); once value x amount passed the float limit (from
1e292 a unit at the largest totals) the objective's sums overflowed (numpy warnings in
segments.py, stretch.py, explain.py); from about 1e301 the churn weight was clipped at 1e300
(another plan); at the largest float the folded slopes reached inf and the flow's costs NaN
(BAD_COST_RANGE: no plan)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plan_builder import check_plan, decode

from reallocator.core.engine import SolvePath, solve
from reallocator.core.engine.problem import (
    FLOAT_MAX,
    AllocationProblem,
    from_unit,
    power_of_two_unit,
)
from reallocator.core.engine.synthetic import random_problem
from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import Plan, RequestHistory
from reallocator.v1 import common_pb2

TINY = float(np.finfo(np.float64).tiny)  # smallest normal float64


def times(x: npt.ArrayLike, k: int) -> npt.NDArray[np.float64]:
    """x * 2**k, clipped to the float range like the engine's figures (inf -> largest float)."""
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(np.asarray(x, np.float64), k)
    return np.clip(out, -FLOAT_MAX, FLOAT_MAX)


def assert_scaled(got: npt.ArrayLike, ref: npt.ArrayLike, k: int) -> None:
    """`got` is `ref` x 2**k, clipped to the largest float beyond the range. The engine's own
    scaling is by powers of two (exact); GLOP's duals may differ in their last bits between
    scales (5e-14 relative at most over 1,200 solves), and a product below the normal range
    underflows gradually."""
    got, want = np.asarray(got, np.float64), times(ref, k)
    assert np.isfinite(got).all()
    assert np.allclose(got, want, rtol=1e-9, atol=4 * TINY), (got, want)


def test_the_unit_is_a_power_of_two_outside_the_realistic_range() -> None:
    assert power_of_two_unit(0.0) == 1.0
    assert power_of_two_unit(3.0) == 1.0 and power_of_two_unit(2.0**64) == 1.0
    assert power_of_two_unit(2.0**-64) == 1.0 and power_of_two_unit(1e-19) == 1.0
    assert power_of_two_unit(math.inf) == 1.0 and power_of_two_unit(math.nan) == 1.0
    assert power_of_two_unit(1.5 * 2.0**70) == 2.0**70
    assert power_of_two_unit(FLOAT_MAX) == 2.0**1023
    assert power_of_two_unit(5e-324) == 5e-324  # 2**-1074: the smallest subnormal
    assert power_of_two_unit(3 * 2.0**-80) == 2.0**-79
    assert from_unit(1.5, 2.0**1000) == 1.5 * 2.0**1000
    assert from_unit(2.0, 2.0**1023) == FLOAT_MAX and from_unit(-3.0, 2.0**1023) == -FLOAT_MAX
    assert from_unit(7.0, 1.0) == 7.0


def test_a_problem_beyond_the_range_is_held_in_a_power_of_two_unit() -> None:
    spec: dict[str, Any] = dict(
        current=[5, 5], lb=[0, 0], ub=[10, 10], seller=[0, 0], channel=[0, 0],
        seller_min=[0], seller_max=[10], channel_min=[0], channel_max=[10], total=10,
        value_slopes=[FLOAT_MAX, 1e300], lam_deal=1e307, lam_channel=1e-300,
        lam_above=[0.0, 1e308],
    )  # fmt: skip
    p = AllocationProblem(**spec)
    assert p.value_unit == 2.0**1023
    assert 1 <= p.value_slopes.max() < 2 and p.lam_deal * p.value_unit == 1e307
    assert p.lam_above is not None and p.lam_above[1] * p.value_unit == 1e308
    again = dataclasses.replace(p, total=9)  # already in range: the unit stays
    assert again.value_unit == p.value_unit and np.array_equal(again.value_slopes, p.value_slopes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = solve(p)
    assert result.allocation.tolist() == [10, 0]
    assert result.objective.value == FLOAT_MAX  # 10 x 1.8e308: the largest float, not inf
    assert math.isfinite(result.objective.objective)


def _scaled_problem(p: AllocationProblem, k: int) -> AllocationProblem:
    return dataclasses.replace(
        p,
        value_slopes=times(p.value_slopes, k),
        lam_deal=float(times(p.lam_deal, k)),
        lam_channel=float(times(p.lam_channel, k)),
    )


@pytest.mark.parametrize("path", [SolvePath.FLOW, SolvePath.LP])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1_000), k=st.integers(-1_000, 1_021))
def test_the_engine_solves_every_scale_alike(path: SolvePath, seed: int, k: int) -> None:
    """Both paths (the LP with a binding money cap) on a synthetic instance whose slopes (0.05
    to 2) and churn weights are scaled by 2**k: the same allocation, its duals and objective x
    2**k. From 2**100 GLOP answered ABNORMAL (costs above 1e30)."""
    cap = 0.6 if path is SolvePath.LP else None
    base = random_problem(80, n_sellers=8, n_channels=3, seed=seed, money_cap_share=cap)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = solve(base, path=path)
        got = solve(_scaled_problem(base, k), path=path)
    assert got.allocation.tolist() == ref.allocation.tolist()
    assert (got.status, got.path, got.notes) == (ref.status, ref.path, ref.notes)
    parts = ("value", "churn_deal", "churn_channel", "objective")
    assert_scaled([getattr(got.objective, a) for a in parts],
                  [getattr(ref.objective, a) for a in parts], k)  # fmt: skip
    assert (got.duals is None) == (ref.duals is None)
    if got.duals is not None and ref.duals is not None:
        assert_scaled(got.duals.seller, ref.duals.seller, k)
        assert_scaled(got.duals.channel, ref.duals.channel, k)
        assert_scaled([got.duals.total], [ref.duals.total], k)


def _snapshot(n: int, seed: int, money_cap: bool) -> CampaignSnapshot:
    msg = build_snapshot(random_snapshot_spec(n, seed, n_buckets=6), "columns")
    if money_cap:  # an impressions goal under a money cap: the LP path when the cap binds
        msg.pacing.budget_type = common_pb2.BUDGET_TYPE_IMPRESSIONS
        msg.pacing.max_spend_micros = 10**9
    return decode(msg)


def _history(snapshot: CampaignSnapshot, seed: int) -> RequestHistory:
    """Recent moves on about half the deals: reversal churn (lam_above/lam_below) in play."""
    rng = np.random.default_rng(seed)
    ids = snapshot.deals["deal_id"].to_numpy()
    moved = ids[rng.random(len(ids)) < 0.5]
    return RequestHistory(
        moves=pd.DataFrame(
            {
                "deal_id": moved.astype(str),
                "planned_at": np.full(len(moved), snapshot.as_of.timestamp() - 3600.0),
                "delta": rng.choice([-(10**8), 10**8], len(moved)).astype(np.int64),
            }
        )
    )


def _plan(snapshot: CampaignSnapshot, **kw: Any) -> Plan | None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return build_plan(snapshot, **kw)
        except PlanRejected:
            return None


HEAVY: dict[str, Any] = {
    "churn_relative": 10.0,
    "reversal_churn": 100.0,
    "churn_request": 100.0,
    "churn_deal": 0.5,
    "churn_channel": 0.25,
}
"""The policy's largest relative churn (10 x values near the float limit is beyond it) and some
absolute churn, which is in the values' unit and scales with them."""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 5_000),
    money_cap=st.booleans(),
    heavy=st.booleans(),
    history=st.booleans(),
    relax=st.booleans(),
    where=st.floats(0.0, 1.0),
)
def test_a_plan_is_the_same_on_every_value_scale(
    n: int, seed: int, money_cap: bool, heavy: bool, history: bool, relax: bool, where: float
) -> None:
    snapshot = _snapshot(n, seed, money_cap)
    if heavy:
        snapshot = dataclasses.replace(
            snapshot, policy=dataclasses.replace(snapshot.policy, **HEAVY)
        )
    values = snapshot.deals["value_per_unit"].to_numpy(np.float64)
    # From where the smallest value is still a normal float to where the largest (or a churn
    # weight) is within a factor 2 of the float limit; the extremes weigh most.
    # With x = m 2**e (m in [0.5, 1)): x 2**k <= FLOAT_MAX for k <= 1024 - e, and x 2**k is
    # normal (>= 2**-1022) for k >= -1021 - e.
    largest = max(float(values.max()), snapshot.policy.churn_deal, snapshot.policy.churn_channel)
    k_max = 1024 - math.frexp(largest)[1]
    k_min = -1021 - math.frexp(float(min(values[values > 0], default=1.0)))[1]
    k = k_min + round((k_max - k_min) * where)
    p = snapshot.policy
    scaled = dataclasses.replace(
        snapshot,
        deals=snapshot.deals.assign(value_per_unit=times(values, k)),
        policy=dataclasses.replace(
            p,
            churn_deal=float(times(p.churn_deal, k)),
            churn_channel=float(times(p.churn_channel, k)),
        ),
    )
    kw: dict[str, Any] = {"relax": relax}
    if history:
        kw["history"] = _history(snapshot, seed)
    ref, got = _plan(snapshot, **kw), _plan(scaled, **kw)
    assert (got is None) == (ref is None)
    if got is None or ref is None:
        return
    check_plan(got)
    for column in ("new_allocation", "binding", "reason", "pacing"):
        assert got.deals[column].tolist() == ref.deals[column].tolist(), column
    assert (got.status, got.solver.path, got.solver.time_limited) == (
        ref.status, ref.solver.path, ref.solver.time_limited
    )  # fmt: skip
    assert [r.target_total for r in got.requests] == [r.target_total for r in ref.requests]
    assert_scaled(got.deals["marginal_value"], ref.deals["marginal_value"], k)
    assert_scaled([got.solver.objective_value], [ref.solver.objective_value], k)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 5_000),
    money_cap=st.booleans(),
    relax=st.booleans(),
    values=st.lists(
        st.one_of(
            st.floats(-324.0, 308.25).map(lambda e: min(10.0**e, FLOAT_MAX)),
            st.sampled_from([0.0, 5e-324, TINY, 1.0, 1e300, 1.7e308, FLOAT_MAX]),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_values_over_the_whole_float_range_give_verified_finite_plans(
    n: int, seed: int, money_cap: bool, relax: bool, values: list[float]
) -> None:
    """Values from subnormal to the largest float side by side (no common scale brings them to
    an ordinary range, so the plan is checked, not compared): a plan whose bounds and totals
    hold, with finite marginal values and objective, and no numpy warning; or the limits'
    conflict named."""
    snapshot = _snapshot(n, seed, money_cap)
    deals = snapshot.deals.assign(value_per_unit=np.resize(np.asarray(values), n))
    plan = _plan(dataclasses.replace(snapshot, deals=deals), relax=relax)
    if plan is None:
        return
    check_plan(plan)
    assert np.isfinite(plan.deals["marginal_value"]).all()
    assert (plan.deals["marginal_value"] >= 0).all()
    assert math.isfinite(plan.solver.objective_value)

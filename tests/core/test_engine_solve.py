"""The dispatcher and both paths on hand-made and synthetic instances: priority order, churn
behaviour, path choice, determinism, infeasibility, verification."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.engine import (
    AllocationProblem,
    InfeasibleProblem,
    NoFeasiblePlan,
    PlanVerificationError,
    SolvePath,
    SolveStatus,
    solve,
    verify_allocation,
)
from reallocator.core.engine.flow import max_deliverable, network_max_deliverable
from reallocator.core.engine.problem import NO_MAX
from reallocator.core.engine.synthetic import random_problem


def make(**kw: Any) -> AllocationProblem:
    """A small problem: one seller, one channel, no limits, unless overridden."""
    n = len(kw["current"])
    base: dict[str, Any] = {
        "lb": np.zeros(n, np.int64),
        "seller": np.zeros(n, np.int32),
        "channel": np.zeros(n, np.int32),
        "seller_min": [0],
        "seller_max": [NO_MAX],
        "channel_min": [0],
        "channel_max": [NO_MAX],
    }
    base.update(kw)
    return AllocationProblem(**base)


BOTH = pytest.mark.parametrize("path", [SolvePath.FLOW, SolvePath.LP])


@BOTH
def test_priority_one_delivers_even_when_value_is_negative(path: SolvePath) -> None:
    # Growing the deal costs lam_deal = 1.0 per unit for a value of 0.1: still allocated.
    p = make(current=[0], ub=[100], total=100, value_slopes=[0.1], lam_deal=1.0)
    result = solve(p, path=path)
    assert result.allocation.tolist() == [100]
    assert result.objective.objective < 0
    assert result.objective.unspendable == 0


@BOTH
def test_unspendable_is_what_no_deal_can_deliver(path: SolvePath) -> None:
    p = make(current=[50, 50], ub=[60, 30], total=200, value_slopes=[1.0, 2.0])
    result = solve(p, path=path)
    assert result.allocation.tolist() == [60, 30]
    assert result.objective.unspendable == 110


@BOTH
def test_value_then_churn_decide_where_budget_goes(path: SolvePath) -> None:
    # Budget 100 between a deal worth 1.0 (current 100) and one worth 1.2 (current 0).
    values = [1.0, 1.2]
    cheap_churn = make(current=[100, 0], ub=[100, 100], total=100, value_slopes=values)
    assert solve(cheap_churn, path=path).allocation.tolist() == [0, 100]
    # Moving costs 0.15 per unit on each of the two deals: 0.3 > 0.2 gain, so it stays.
    sticky = make(current=[100, 0], ub=[100, 100], total=100, value_slopes=values, lam_deal=0.15)
    assert solve(sticky, path=path).allocation.tolist() == [100, 0]


def _two_channels(lam_channel: float, a_capacity: int) -> AllocationProblem:
    # Channel 0: a1 (current 100) can no longer deliver, a2 (new, worth 1.0).
    # Channel 1: b1 (new, worth 1.2).
    return make(
        current=[100, 0, 0],
        ub=[0, a_capacity, 100],
        total=100,
        value_slopes=[1.0, 1.0, 1.2],
        channel=np.array([0, 0, 1], np.int32),
        channel_min=[0, 0],
        channel_max=[NO_MAX, NO_MAX],
        lam_channel=lam_channel,
    )


@BOTH
def test_budget_moves_within_a_channel_before_across(path: SolvePath) -> None:
    assert solve(_two_channels(0.0, 100), path=path).allocation.tolist() == [0, 0, 100]
    # With channel churn (0.5 per unit on both channels' totals), a2 wins inside channel 0.
    assert solve(_two_channels(0.5, 100), path=path).allocation.tolist() == [0, 100, 0]


@BOTH
def test_budget_crosses_channels_when_a_whole_channel_underdelivers(path: SolvePath) -> None:
    # Channel 0 can place only 30 in total: the rest crosses despite the churn weight.
    assert solve(_two_channels(0.5, 30), path=path).allocation.tolist() == [0, 30, 70]


@BOTH
def test_locks_and_commitments_hold_beyond_capacity_without_infeasibility(path: SolvePath) -> None:
    # A locked deal keeps its 80 even though bounds.py would report it as beyond capacity.
    p = make(current=[80, 10], lb=[80, 0], ub=[80, 50], total=100, value_slopes=[0.0, 1.0])
    assert solve(p, path=path).allocation.tolist() == [80, 20]


def test_flow_and_lp_agree_on_the_benchmark_family() -> None:
    p = random_problem(5_000, seed=7)
    flow = solve(p, path=SolvePath.FLOW)
    lp = solve(p, path=SolvePath.LP)
    assert flow.path is SolvePath.FLOW and lp.path is SolvePath.LP
    assert flow.objective.delivered == lp.objective.delivered
    assert flow.objective.objective == pytest.approx(lp.objective.objective, rel=1e-9)
    assert lp.duals is not None
    assert lp.duals.seller.shape == (p.n_sellers,) and lp.duals.channel.shape == (p.n_channels,)


@pytest.mark.parametrize("money", [None, 0.5])
def test_identical_inputs_give_identical_plans(money: float | None) -> None:
    first = solve(random_problem(3_000, seed=3, money_cap_share=money))
    second = solve(random_problem(3_000, seed=3, money_cap_share=money))
    np.testing.assert_array_equal(first.allocation, second.allocation)


def test_binding_money_cap_takes_the_lp_path_and_holds() -> None:
    p = random_problem(2_000, seed=11, money_cap_share=0.4)
    result = solve(p)
    assert result.path is SolvePath.LP and result.status is SolveStatus.OPTIMAL
    assert result.binding.money
    assert p.price_num is not None and p.money_cap is not None
    money = sum(int(a) * int(b) for a, b in zip(p.price_num, result.allocation, strict=True))
    assert money <= p.money_cap * p.price_den
    assert result.duals is not None and result.duals.money is not None
    with pytest.raises(ValueError, match="money cap"):
        solve(p, path=SolvePath.FLOW)


def test_loose_money_cap_stays_on_the_exact_flow_path() -> None:
    p = random_problem(2_000, seed=11, money_cap_share=5.0)
    result = solve(p)
    assert result.path is SolvePath.FLOW
    assert not result.binding.money


def test_necessary_conditions_name_the_conflict() -> None:
    p = make(
        current=[10, 10],
        ub=[10, 10],
        total=100,
        value_slopes=[1.0, 1.0],
        seller=np.array([0, 1], np.int32),
        seller_min=[0, 50],
        seller_max=[NO_MAX, NO_MAX],
    )
    with pytest.raises(InfeasibleProblem) as info:
        solve(p)
    kinds = {(c.kind, c.index) for c in info.value.conflicts}
    assert ("seller_min_above_deal_maximums", 1) in kinds


@BOTH
def test_interacting_limits_are_found_by_the_solver(path: SolvePath) -> None:
    # Each limit alone can be met; together they cannot: channel 0 needs 60 from its only
    # deal, whose seller may take 40 in total.
    p = make(
        current=[0, 0],
        ub=[100, 100],
        total=200,
        value_slopes=[1.0, 1.0],
        seller=np.array([0, 0], np.int32),
        channel=np.array([0, 1], np.int32),
        seller_max=[40],
        channel_min=[60, 0],
        channel_max=[NO_MAX, NO_MAX],
    )
    with pytest.raises(InfeasibleProblem):
        solve(p, path=path)


def test_time_limited_lp_returns_a_flagged_plan_or_says_it_has_none() -> None:
    p = random_problem(20_000, seed=5, money_cap_share=0.5, time_limit=1e-3)
    try:
        result = solve(p)
    except NoFeasiblePlan:
        return
    verify_allocation(p, result.allocation)
    assert result.status in (SolveStatus.TIME_LIMITED, SolveStatus.OPTIMAL)


def test_verify_rejects_every_kind_of_violation() -> None:
    p = make(
        current=[5, 5],
        lb=[1, 0],
        ub=[10, 10],
        total=15,
        value_slopes=[1.0, 1.0],
        seller=np.array([0, 1], np.int32),
        seller_min=[0, 2],
        seller_max=[8, NO_MAX],
        money_cap=60,
        price_num=[10, 1],
    )
    verify_allocation(p, np.array([5, 5], np.int64))
    for bad in ([0, 5], [11, 0], [9, 5], [8, 8], [5, 1]):
        with pytest.raises(PlanVerificationError):
            verify_allocation(p, np.array(bad, np.int64))
    with pytest.raises(PlanVerificationError, match="money"):
        verify_allocation(p, np.array([6, 5], np.int64))


def test_concave_values_required() -> None:
    with pytest.raises(ValueError, match="non-increasing"):
        make(current=[0], ub=[10], total=10, value_slopes=[[1.0, 2.0]], value_breaks=[[5]])


def test_empty_and_zero_budget_problems() -> None:
    empty = np.zeros(0, np.int64)
    p = make(current=empty, ub=empty, total=100, value_slopes=np.zeros((0, 1)))
    assert solve(p).allocation.shape == (0,)
    assert solve(make(current=[5], ub=[9], total=0, value_slopes=[1.0])).allocation.tolist() == [0]


def test_huge_totals_with_many_groups_fall_back_to_the_lp_path() -> None:
    # 2000 sellers x 2**53 units could overflow the flow's int64 node sums: the LP path runs.
    n_s = 2000
    p = make(
        current=[0, 0],
        ub=[2**52, 2**52],
        total=2**53,
        value_slopes=[1.0, 2.0],
        seller=np.array([0, n_s - 1], np.int32),
        seller_min=np.zeros(n_s, np.int64),
        seller_max=np.full(n_s, NO_MAX, np.int64),
    )
    result = solve(p)
    assert result.path is SolvePath.LP
    assert result.allocation.tolist() == [2**52, 2**52]


@BOTH
def test_subnormal_values_count_as_nothing(path: SolvePath) -> None:
    # R / max|slope| overflowed to inf on the flow path (then inf * 0 = NaN costs).
    p = make(current=[0, 0], ub=[5, 5], total=7, value_slopes=[2.2e-311, 0.0], lam_channel=0.0)
    result = solve(p, path=path)
    assert int(result.allocation.sum()) == 7


def _two_by_two(
    data: list[tuple[int, int, int]], total: int, huge: bool, **limits: list[int]
) -> AllocationProblem:
    """Deals of two sellers and two channels from (bound, bound, group) tuples: the smaller
    bound the minimum, the larger the maximum (the first deal's uncapped when `huge`), the
    group's bits the seller and the channel; `limits` the four groups' minimums and maximums."""
    lb = np.array([min(a, b) for a, b, _ in data], dtype=np.int64)
    ub = np.array([max(a, b) for a, b, _ in data], dtype=np.int64)
    if huge and len(ub):
        ub[0] = NO_MAX
    n = len(data)
    return make(
        current=np.zeros(n, np.int64),
        lb=lb,
        ub=ub,
        seller=np.array([k % 2 for *_, k in data], dtype=np.int32),
        channel=np.array([k // 2 for *_, k in data], dtype=np.int32),
        total=total,
        value_slopes=np.ones(n),
        **limits,
    )


@given(
    data=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 3)),
        min_size=0,
        max_size=30,
    ),
    total=st.integers(0, 5 * 10**6),
    huge=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_max_deliverable_without_group_limits_equals_the_network(
    data: list[tuple[int, int, int]], total: int, huge: bool
) -> None:
    """Without seller or channel limits the deliverable total is a sum: the same answer (and
    the same infeasibility) as the flow through channels, pairs and sellers."""
    problem = _two_by_two(
        data,
        total,
        huge,  # no cap on the first deal: sums must not overflow
        seller_min=[0, 0],
        seller_max=[NO_MAX, total],
        channel_min=[0, 0],
        channel_max=[total, NO_MAX],
    )
    try:
        fast: int | None = max_deliverable(problem)
    except InfeasibleProblem:
        fast = None
    try:
        network: int | None = network_max_deliverable(problem)
    except InfeasibleProblem:
        network = None
    assert fast == network


@given(
    data=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 3)),
        min_size=1,
        max_size=20,
    ),
    total=st.integers(0, 3 * 10**6),
    limits=st.lists(st.one_of(st.none(), st.integers(0, 3 * 10**6)), min_size=4, max_size=4),
    huge=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_necessary_conditions_skip_only_groups_that_cannot_conflict(
    data: list[tuple[int, int, int]], total: int, limits: list[int | None], huge: bool
) -> None:
    """A kind of group without a minimum or a maximum below the cap is not summed: the
    conflicts found are those of every condition checked on the sums."""
    from reallocator.core.engine.feasibility import necessary_conflicts
    from reallocator.core.engine.problem import capped_group_sum

    n = len(data)
    s_min, s_max, c_min, c_max = limits
    problem = _two_by_two(
        data,
        total,
        huge,
        seller_min=[s_min or 0, 0],
        seller_max=[NO_MAX, NO_MAX if s_max is None else s_max],
        channel_min=[0, c_min or 0],
        channel_max=[NO_MAX if c_max is None else c_max, NO_MAX],
    )
    cap = np.iinfo(np.int64).max // 2
    want = []
    lb_total = int(capped_group_sum(problem.lb, np.zeros(n, np.int32), 1, cap)[0])
    if lb_total > total:
        want.append(("deal_minimums_above_total", -1))
    for name, codes, lo, hi in (
        ("seller", problem.seller, problem.seller_min, problem.seller_max),
        ("channel", problem.channel, problem.channel_min, problem.channel_max),
    ):
        lb_sum = capped_group_sum(problem.lb, codes, 2, cap)
        ub_sum = capped_group_sum(problem.ub_capped, codes, 2, cap)
        high = np.minimum(hi, cap)
        for kind, need, have in (
            (f"{name}_min_above_max", lo, high),
            (f"{name}_min_above_deal_maximums", lo, ub_sum),
            (f"{name}_deal_minimums_above_max", lb_sum, high),
        ):
            want += [(kind, int(g)) for g in np.flatnonzero(need > have)]
        if int(np.minimum(lo, cap).sum(dtype=np.float64)) > total:
            want.append((f"{name}_minimums_above_total", -1))
    got = [(c.kind, c.index) for c in necessary_conflicts(problem)]
    assert got == want


@pytest.mark.parametrize("lam_channel", [0.0, 0.05])
def test_objective_parts_churn_across_channels(lam_channel: float) -> None:
    from reallocator.core.engine.solve import objective_parts

    problem = random_problem(60, n_sellers=5, n_channels=4, seed=3, lam_channel=lam_channel)
    x = solve(problem).allocation
    moved = np.bincount(problem.channel, x, 4) - np.bincount(problem.channel, problem.current, 4)
    parts = objective_parts(problem, x)
    assert parts.churn_channel == problem.lam_channel * float(np.abs(moved).sum()) * (
        problem.value_unit
    )

"""Diagnosis of infeasible problems: named violations, exact (hand-computed) relaxations, the
relaxed problem solves, priorities, and minimality against an independent PuLP + CBC elastic
model on random instances. Also the re-solve check of LP duals (`marginal_check`).

PuLP is imported here only for the reference model (it breaks OR-Tools' bundled HiGHS in the
same process; the engine never uses HiGHS)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pulp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reallocator.core.engine import (
    AllocationProblem,
    InfeasibleProblem,
    SolvePath,
    solve,
    verify_allocation,
)
from reallocator.core.engine.diagnosis import (
    MAX_PREMIUM,
    Diagnosis,
    RelaxationWeights,
    Violation,
    ViolationKind,
    diagnose,
    is_feasible,
    marginal_check,
    parse_constraint,
    relax_one,
    solve_or_relax,
)
from reallocator.core.engine.problem import NO_MAX, group_sum
from reallocator.core.engine.synthetic import random_problem
from reallocator.core.model import Policy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulp")

W = RelaxationWeights.from_policy(Policy())


def make(**kw: Any) -> AllocationProblem:
    """A small problem: one seller, one channel, no limits, value 1, unless overridden."""
    n = len(kw["current"])
    base: dict[str, Any] = {
        "lb": np.zeros(n, np.int64),
        "seller": np.zeros(n, np.int32),
        "channel": np.zeros(n, np.int32),
        "seller_min": [0],
        "seller_max": [NO_MAX],
        "channel_min": [0],
        "channel_max": [NO_MAX],
        "value_slopes": np.ones(n),
    }
    base.update(kw)
    return AllocationProblem(**base)


def moved(d: Diagnosis) -> set[tuple[str, int]]:
    return {(v.name, v.relaxation) for v in d.violations}


def assert_relaxed_solves(d: Diagnosis) -> None:
    result = solve(d.relaxed_problem)
    verify_allocation(d.relaxed_problem, result.allocation)


def assert_tight(problem: AllocationProblem, d: Diagnosis) -> None:
    """Relaxing any one bound by one unit less than reported leaves the problem infeasible."""
    assert is_feasible(d.relaxed_problem)
    for v in d.violations:
        short = relax_one(d.relaxed_problem, v.name, -1)
        assert not is_feasible(short), f"{v.name} relaxed by {v.relaxation - 1} is enough"
        with pytest.raises(InfeasibleProblem):
            solve(short)


def test_channel_minimum_above_its_deals_maxima_is_found_by_the_sum_checks() -> None:
    p = make(
        current=[0, 0, 0],
        ub=[10, 20, 30],
        total=100,
        channel=np.array([0, 0, 1], np.int32),
        channel_min=[50, 0],
        channel_max=[NO_MAX, NO_MAX],
    )
    d = diagnose(p, W)
    assert d.cheap
    assert moved(d) == {("channel/0/min_total", 20)}
    (v,) = d.violations
    assert (v.kind, v.index, v.bound, v.relaxed_bound) == (ViolationKind.CHANNEL_MIN, 0, 50, 30)
    assert d.cost == 20.0
    assert_tight(p, d)
    assert_relaxed_solves(d)
    elastic = diagnose(p, W, try_cheap=False)
    assert not elastic.cheap and moved(elastic) == moved(d)


def test_seller_minimums_above_the_budget_give_way_largest_first() -> None:
    p = make(
        current=[0, 0, 0],
        ub=[100, 100, 100],
        total=100,
        seller=np.array([0, 1, 2], np.int32),
        seller_min=[40, 50, 30],
        seller_max=[NO_MAX] * 3,
    )
    d = diagnose(p, W)
    assert d.cheap
    assert moved(d) == {("seller/1/min_total", 20)}
    assert_tight(p, d)
    assert_relaxed_solves(d)
    # The elastic LP finds a relaxation of the same (minimal) weight, possibly another seller's.
    elastic = diagnose(p, W, try_cheap=False)
    assert elastic.cost == d.cost == 20.0
    assert_relaxed_solves(elastic)


def test_minimums_that_only_conflict_together_need_the_elastic_lp() -> None:
    # Seller 0 needs 90 from d0 and d1, but channel 0 (d0 alone) may take 40, so d1 (shared
    # with channel 1) must give 50; d2 holds a commitment of 30 in channel 1, whose minimum
    # is 60. Every sum check passes, yet 90 + 30 > 100 = total. Cheapest: lower seller 0's
    # minimum by 20 (1 per unit); lowering d2's commitment costs 10 per unit.
    p = make(
        current=[0, 0, 0],
        lb=[0, 0, 30],
        ub=[50, 50, 100],
        total=100,
        seller=np.array([0, 0, 1], np.int32),
        channel=np.array([0, 1, 1], np.int32),
        seller_min=[90, 0],
        seller_max=[NO_MAX, NO_MAX],
        channel_min=[0, 60],
        channel_max=[40, NO_MAX],
    )
    with pytest.raises(InfeasibleProblem) as info:
        solve(p)
    assert info.value.conflicts == ()  # the sum checks see nothing
    d = diagnose(p, W)
    assert not d.cheap
    assert moved(d) == {("seller/0/min_total", 20)}
    assert_tight(p, d)
    assert_relaxed_solves(d)


def test_symmetric_minimums_tie_and_either_is_minimal() -> None:
    # Seller 0 (d0, channel 0) and channel 1 (d1, seller 1) each need 60 of a budget of 100.
    p = make(
        current=[0, 0],
        ub=[100, 100],
        total=100,
        seller=np.array([0, 1], np.int32),
        channel=np.array([0, 1], np.int32),
        seller_min=[60, 0],
        seller_max=[NO_MAX, NO_MAX],
        channel_min=[0, 60],
        channel_max=[NO_MAX, NO_MAX],
    )
    d = diagnose(p, W)
    assert not d.cheap and d.cost == 20.0
    assert moved(d) in (
        {("seller/0/min_total", 20)},
        {("channel/1/min_total", 20)},
        {("seller/0/min_total", 10), ("channel/1/min_total", 10)},
    )
    assert_relaxed_solves(d)


def _commitments_over_seller_cap() -> AllocationProblem:
    return make(
        current=[0, 0, 0],
        lb=[30, 40, 0],
        ub=[50, 50, 50],
        total=200,
        seller=np.array([0, 0, 1], np.int32),
        seller_min=[0, 0],
        seller_max=[50, NO_MAX],
    )


def test_group_bounds_give_way_before_deal_commitments() -> None:
    p = _commitments_over_seller_cap()
    d = diagnose(p, W)
    assert d.cheap and moved(d) == {("seller/0/max_total", 20)}
    assert_tight(p, d)
    # Priced the other way round, the commitments give way: the largest lb first.
    flipped = RelaxationWeights(group=20.0, commitment=1.0, limit=100.0)
    d = diagnose(p, flipped)
    assert not d.cheap and moved(d) == {("deal/1/min_allocation", 20)}
    assert d.cost == 20.0
    assert_tight(p, d)
    assert_relaxed_solves(d)


def test_deal_maximums_give_way_last_and_go_to_the_largest_deal_of_the_pair() -> None:
    p = make(current=[0, 0], ub=[10, 20], total=100, channel_min=[50])
    assert moved(diagnose(p, W)) == {("channel/0/min_total", 20)}
    dear_groups = RelaxationWeights(group=1000.0, commitment=10.0, limit=100.0)
    d = diagnose(p, dear_groups)
    assert moved(d) == {("deal/1/max_allocation", 20)}
    assert d.violations[0].relaxed_bound == 40
    assert_tight(p, d)
    assert_relaxed_solves(d)


def test_at_equal_weight_a_minimum_gives_way_before_a_maximum() -> None:
    p = make(current=[0], ub=[100], total=100, seller_min=[60], seller_max=[40])
    for try_cheap in (True, False):
        assert moved(diagnose(p, W, try_cheap=try_cheap)) == {("seller/0/min_total", 20)}


def test_commitments_above_the_budget_are_lowered_never_the_budget() -> None:
    p = make(current=[0, 0, 0], lb=[50, 40, 30], ub=[100, 100, 100], total=100)
    d = diagnose(p, W)
    assert d.cost == 200.0  # 20 units of commitment at 10
    assert moved(d) == {("deal/0/min_allocation", 20)}  # one pair: the largest lb gives way
    assert d.relaxed_problem.total == 100
    assert_tight(p, d)
    assert_relaxed_solves(d)


@pytest.mark.parametrize("exponent", [30, 44, 52])
def test_large_amounts_are_relaxed_to_the_unit(exponent: int) -> None:
    # Two commitments of 2**e each (channels 0, 1) against a total of 2**(e+1) - 7, and
    # channel 1 needing 12,345 more than its commitment. Cheapest: channel 1's minimum by
    # 12,345 and 7 units of commitment. (An LP within GLOP's relative tolerance overran the
    # budget by the 7 units and reported no commitment to lower.)
    big = 2**exponent
    p = make(
        current=[0, 0],
        lb=[big, big],
        ub=[NO_MAX, NO_MAX],
        total=2 * big - 7,
        channel=np.array([0, 1], np.int32),
        channel_min=[0, big + 12_345],
        channel_max=[NO_MAX, NO_MAX],
    )
    d = diagnose(p, W)
    assert moved(d) == {("channel/1/min_total", 12_345), ("deal/0/min_allocation", 7)}
    assert d.cost == 12_345 + 70
    assert_tight(p, d)


def test_money_cap_stays_hard_unless_weighted() -> None:
    # The commitment of 10 units at 1 micro each costs 10 micros; the cap is 6.
    p = make(current=[0], lb=[10], ub=[10], total=100, money_cap=6, price_num=[1000])
    p = replace(p, price_den=1000)
    d = diagnose(p, W)
    assert moved(d) == {("deal/0/min_allocation", 4)}
    assert_tight(p, d)
    assert_relaxed_solves(d)
    d = diagnose(p, replace(W, money_cap=0.5))
    assert moved(d) == {("money_cap", 4)}
    assert d.violations[0].kind is ViolationKind.MONEY_CAP
    assert d.relaxed_problem.money_cap == 10
    assert_relaxed_solves(d)


def test_money_cap_conflict_through_group_minimums_uses_the_per_deal_lp() -> None:
    # Channel 0 needs 20 units; its cheap deal (price 1) can give 12, the dear one (price 5)
    # the rest. The cap of 40 micros buys 12 + 5*5 = 37 -> 12 + 5 = 17 units at most.
    p = make(
        current=[0, 0],
        ub=[12, 100],
        total=100,
        channel_min=[20],
        money_cap=40,
        price_num=[1, 5],
    )
    d = diagnose(p, W)
    assert not d.cheap
    assert moved(d) == {("channel/0/min_total", 3)}  # 12 + 5 units for 37 micros
    assert any("per-deal" in note for note in d.notes)
    assert_tight(p, d)
    assert_relaxed_solves(d)


def test_a_feasible_problem_needs_nothing() -> None:
    p = random_problem(500, seed=1)
    d = diagnose(p, W)
    assert d.feasible and d.violations == () and d.relaxed_problem is p and d.cost == 0.0


def test_solve_or_relax_rejects_with_the_diagnosis_or_returns_the_closest_plan() -> None:
    p = _commitments_over_seller_cap()
    with pytest.raises(InfeasibleProblem) as info:
        solve_or_relax(p, W, relax=False)
    exc = info.value
    assert exc.diagnosis is not None and moved(exc.diagnosis) == {("seller/0/max_total", 20)}
    assert {c.kind for c in exc.conflicts} == {"seller_deal_minimums_above_max"}
    assert "seller/0/max_total: 50 -> 70 (by 20)" in str(exc)

    result, diagnosis = solve_or_relax(p, W, relax=True)
    assert diagnosis is not None and moved(diagnosis) == moved(exc.diagnosis)
    verify_allocation(diagnosis.relaxed_problem, result.allocation)
    assert int(result.allocation[:2].sum()) == 70
    assert any("seller/0/max_total" in note for note in result.notes)

    feasible = random_problem(300, seed=2)
    result, diagnosis = solve_or_relax(feasible, W, relax=False)
    assert diagnosis is None
    verify_allocation(feasible, result.allocation)


def test_names_parse_and_read_as_words() -> None:
    v = Violation(ViolationKind.SELLER_MIN, 7, 1_000_000, 976_266)
    assert v.name == "seller/7/min_total" and v.named("S7") == "seller/S7/min_total"
    assert v.describe("S7", "$976,266.61") == "relax seller S7's minimum by $976,266.61"
    for name in ("seller/7/min_total", "channel/2/max_total", "deal/0/max_allocation"):
        kind, index = parse_constraint(name)
        assert Violation(kind, index, 0, 1).name == name
    assert parse_constraint("money_cap") == (ViolationKind.MONEY_CAP, -1)
    with pytest.raises(ValueError):
        parse_constraint("seller/x/min_total")
    with pytest.raises(ValueError):
        RelaxationWeights(group=0.0)


# --- minimality on random instances, against an independent elastic model -----------------


def reference_cost(p: AllocationProblem, w: RelaxationWeights) -> float:
    """Least weighted relaxation, as an integer program written from the problem statement."""
    m = pulp.LpProblem("elastic", pulp.LpMinimize)
    n = p.n_deals
    x = [m.add_variable(f"x{d}", 0, cat="Integer") for d in range(n)]
    terms = []
    for d in range(n):
        lo = m.add_variable(f"lo{d}", 0, int(p.lb[d]), cat="Integer")
        m += x[d] >= int(p.lb[d]) - lo
        terms.append(w.commitment * lo)
        if p.ub[d] != NO_MAX:
            hi = m.add_variable(f"hi{d}", 0, cat="Integer")
            m += x[d] <= int(p.ub[d]) + hi
            terms.append(w.limit * hi)
    for name, codes, mins, maxs in (
        ("s", p.seller, p.seller_min, p.seller_max),
        ("c", p.channel, p.channel_min, p.channel_max),
    ):
        for g in range(mins.shape[0]):
            total_g = pulp.lpSum(x[d] for d in range(n) if codes[d] == g)
            lo = m.add_variable(f"{name}lo{g}", 0, int(mins[g]), cat="Integer")
            m += total_g >= int(mins[g]) - lo
            terms.append(w.group * lo)
            if maxs[g] != NO_MAX:
                hi = m.add_variable(f"{name}hi{g}", 0, cat="Integer")
                m += total_g <= int(maxs[g]) + hi
                terms.append(w.group * (1 + MAX_PREMIUM) * hi)
    m += pulp.lpSum(x) <= p.total
    if p.money_cap is not None and p.price_num is not None:
        cap = p.money_cap * p.price_den
        if w.money_cap is not None:
            more = m.add_variable("money", 0, cat="Integer")  # micros above the cap
            cap += p.price_den * more
            terms.append(w.money_cap * more)
        m += pulp.lpSum(int(p.price_num[d]) * x[d] for d in range(n)) <= cap
    m += pulp.lpSum(terms)
    m.solve(pulp.PULP_CBC_CMD(msg=False))
    assert pulp.LpStatus[m.status] == "Optimal"
    return float(pulp.value(m.objective) or 0.0)


@st.composite
def small_problems(draw: st.DrawFn) -> AllocationProblem:
    n = draw(st.integers(1, 5))
    n_s, n_c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ints = st.integers
    ub = [draw(st.one_of(ints(0, 60), st.just(NO_MAX))) for _ in range(n)]
    lb = [draw(ints(0, min(u, 60))) for u in ub]
    limit = st.one_of(ints(0, 90), st.just(NO_MAX))
    money = draw(st.booleans())
    return AllocationProblem(
        current=[draw(ints(0, 50)) for _ in range(n)],
        lb=lb,
        ub=ub,
        seller=[draw(ints(0, n_s - 1)) for _ in range(n)],
        channel=[draw(ints(0, n_c - 1)) for _ in range(n)],
        seller_min=[draw(ints(0, 70)) for _ in range(n_s)],
        seller_max=[draw(limit) for _ in range(n_s)],
        channel_min=[draw(ints(0, 70)) for _ in range(n_c)],
        channel_max=[draw(limit) for _ in range(n_c)],
        total=draw(ints(0, 120)),
        value_slopes=[draw(st.floats(0.0, 2.0)) for _ in range(n)],
        money_cap=draw(ints(0, 300)) if money else None,
        price_num=[draw(ints(0, 5)) for _ in range(n)] if money else None,
    )


def _changed(before: np.ndarray, after: np.ndarray) -> dict[int, int]:
    idx = np.flatnonzero(before != after)
    return {int(i): abs(int(after[i]) - int(before[i])) for i in idx}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_random_relaxations_are_feasible_exactly_reported_and_minimal(p: AllocationProblem) -> None:
    d = diagnose(p, W)
    event("feasible" if d.feasible else ("cheap" if d.cheap else "elastic"))
    q = d.relaxed_problem
    # The relaxed problem solves, and its plan verifies.
    verify_allocation(q, solve(q).allocation)
    # The violations are exactly the bounds that changed, by exactly the amounts reported.
    reported: dict[str, dict[int, int]] = {}
    for v in d.violations:
        assert v.relaxation > 0
        reported.setdefault(v.kind, {})[v.index] = v.relaxation
    pairs = (
        (ViolationKind.SELLER_MIN, p.seller_min, q.seller_min),
        (ViolationKind.SELLER_MAX, p.seller_max, q.seller_max),
        (ViolationKind.CHANNEL_MIN, p.channel_min, q.channel_min),
        (ViolationKind.CHANNEL_MAX, p.channel_max, q.channel_max),
        (ViolationKind.DEAL_MIN, p.lb, q.lb),
        (ViolationKind.DEAL_MAX, p.ub, q.ub),
    )
    for kind, before, after in pairs:
        assert _changed(before, after) == reported.get(kind, {}), kind
    assert q.total == p.total and q.money_cap == p.money_cap  # never relaxed by default
    # Minimal: the weighted total equals the integer optimum of an independent model (with a
    # money cap the LP slack is rounded up: at most one unit per moved bound above it).
    best = reference_cost(p, W)
    if p.money_cap is None:
        assert d.cost == pytest.approx(best, rel=1e-9, abs=1e-6)
        for v in d.violations:  # and tight: one unit less of any of them is not enough
            assert not is_feasible(relax_one(q, v.name, -1)), v.name
    else:
        slack = sum(W.of(v.kind) for v in d.violations)
        assert best - 1e-6 <= d.cost <= best + slack + 1e-6
    if not d.feasible:
        assert diagnose(p, W, try_cheap=False).cost == pytest.approx(d.cost, rel=1e-9, abs=1e-6)


# --- duals by re-solve ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_lp_duals_of_binding_seller_maximums_match_a_re_solve(seed: int) -> None:
    p = random_problem(300, n_sellers=8, n_channels=3, seed=seed)
    current = group_sum(p.current, p.seller, p.n_sellers)
    committed = group_sum(p.lb, p.seller, p.n_sellers)
    seller_max = np.maximum(committed, (0.9 * current).astype(np.int64))
    seller_max[::2] = NO_MAX
    p = replace(p, seller_max=seller_max)
    result = solve(p, path=SolvePath.LP)
    assert result.duals is not None
    binding = np.flatnonzero(result.binding.seller_at_max)
    assert binding.size > 0
    for q in binding:
        name = f"seller/{q}/max_total"
        right = marginal_check(p, result, name, 1)  # V(b + 1) - V(b)
        left = -marginal_check(p, result, name, -1)  # V(b) - V(b - 1)
        dual = float(result.duals.seller[q])
        assert right - 1e-6 <= dual <= left + 1e-6  # concave V: the dual is a supergradient
        assert dual > 0  # a binding cap holds value back

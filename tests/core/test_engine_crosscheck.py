"""Random instances: every plan is feasible, both paths agree, and both equal an independent
PuLP + CBC model of the same problem (relative 1e-6), or all agree that it is infeasible.

PuLP is imported here only (it breaks OR-Tools' bundled HiGHS in the same process; the engine
never uses HiGHS). The reference model is written from the problem statement, not from the
engine's folded pieces: x_d, value segment variables, |x - c| through auxiliary variables.
"""

from __future__ import annotations

from dataclasses import dataclass

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
)
from reallocator.core.engine.problem import NO_MAX


@dataclass
class Reference:
    feasible: bool
    delivered: float = 0.0
    objective: float = 0.0


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulp")


def pulp_reference(p: AllocationProblem) -> Reference:
    """Lexicographic optimum by two CBC solves: max total, then max value - churn at that total."""
    n, k = p.n_deals, p.n_segments
    ub = np.minimum(p.ub, p.total)

    def model(stage: int, delivered: float = 0.0) -> tuple[pulp.LpProblem, float]:
        m = pulp.LpProblem("ref", pulp.LpMaximize)
        x = [m.add_variable(f"x{d}", int(p.lb[d]), int(max(ub[d], p.lb[d]))) for d in range(n)]
        value = []
        for d in range(n):
            starts = [0, *p.value_breaks[d].tolist()]
            ends = [*p.value_breaks[d].tolist(), int(max(ub[d], p.lb[d]))]
            z = [m.add_variable(f"z{d}_{j}", 0, max(0, ends[j] - starts[j])) for j in range(k)]
            m += pulp.lpSum(z) == x[d]
            value += [float(p.value_slopes[d, j]) * z[j] for j in range(k)]
        u = [m.add_variable(f"u{d}", 0) for d in range(n)]
        for d in range(n):
            m += u[d] >= x[d] - int(p.current[d])
            m += u[d] >= int(p.current[d]) - x[d]
        cur_ch = np.bincount(p.channel, weights=p.current, minlength=p.n_channels)
        w = [m.add_variable(f"w{c}", 0) for c in range(p.n_channels)]
        for c in range(p.n_channels):
            total_c = pulp.lpSum(x[d] for d in range(n) if p.channel[d] == c)
            m += w[c] >= total_c - float(cur_ch[c])
            m += w[c] >= float(cur_ch[c]) - total_c
            m += total_c >= int(p.channel_min[c])
            if p.channel_max[c] != NO_MAX:
                m += total_c <= int(p.channel_max[c])
        for q in range(p.n_sellers):
            total_q = pulp.lpSum(x[d] for d in range(n) if p.seller[d] == q)
            m += total_q >= int(p.seller_min[q])
            if p.seller_max[q] != NO_MAX:
                m += total_q <= int(p.seller_max[q])
        m += pulp.lpSum(x) <= p.total
        if p.money_cap is not None and p.price_num is not None:
            m += pulp.lpSum(int(p.price_num[d]) * x[d] for d in range(n)) <= (
                p.money_cap * p.price_den
            )
        if stage == 1:
            m += pulp.lpSum(x)
        else:
            m += pulp.lpSum(x) >= delivered - 1e-7 * max(1.0, delivered)
            m += pulp.lpSum(value) - p.lam_deal * pulp.lpSum(u) - p.lam_channel * pulp.lpSum(w)
        m.solve(pulp.PULP_CBC_CMD(msg=False))
        return m, float(pulp.value(m.objective) or 0.0)

    m1, delivered = model(1)
    if pulp.LpStatus[m1.status] != "Optimal":
        return Reference(feasible=False)
    m2, objective = model(2, delivered)
    assert pulp.LpStatus[m2.status] == "Optimal"
    return Reference(True, delivered, objective)


def independent_check(p: AllocationProblem, x: np.ndarray) -> None:
    """Constraint satisfaction written again, plainly, without the engine's verify.py."""
    assert x.dtype == np.int64
    assert (x >= p.lb).all() and (x <= p.ub).all()
    assert int(x.sum()) <= p.total
    s = np.array([int(x[p.seller == q].sum()) for q in range(p.n_sellers)])
    c = np.array([int(x[p.channel == g].sum()) for g in range(p.n_channels)])
    assert (s >= p.seller_min).all() and (s <= p.seller_max).all()
    assert (c >= p.channel_min).all() and (c <= p.channel_max).all()
    if p.money_cap is not None and p.price_num is not None:
        assert sum(int(a) * int(b) for a, b in zip(p.price_num, x, strict=True)) <= (
            p.money_cap * p.price_den
        )


@st.composite
def problems(draw: st.DrawFn, money: bool = False) -> AllocationProblem:
    n = draw(st.integers(1, 30))
    n_s = draw(st.integers(1, 4))
    n_c = draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    current = rng.integers(0, 1000, n)
    ub = rng.integers(0, 1500, n)
    lb = np.minimum(ub, rng.integers(0, 400, n) * (rng.random(n) < 0.4))
    seller = rng.integers(0, n_s, n).astype(np.int32)
    channel = rng.integers(0, n_c, n).astype(np.int32)
    s_ub = np.bincount(seller, weights=ub, minlength=n_s).astype(np.int64)
    c_ub = np.bincount(channel, weights=ub, minlength=n_c).astype(np.int64)
    seller_max = (s_ub * rng.uniform(0.3, 1.1, n_s)).astype(np.int64)
    seller_max[rng.random(n_s) < 0.5] = NO_MAX
    seller_min = (np.minimum(s_ub, seller_max) * rng.uniform(0, 0.5, n_s)).astype(np.int64)
    seller_min[rng.random(n_s) < 0.6] = 0
    channel_max = (c_ub * rng.uniform(0.3, 1.1, n_c)).astype(np.int64)
    channel_max[rng.random(n_c) < 0.6] = NO_MAX
    channel_min = (np.minimum(c_ub, channel_max) * rng.uniform(0, 0.5, n_c)).astype(np.int64)
    channel_min[rng.random(n_c) < 0.5] = 0
    total = int(rng.integers(0, int(ub.sum()) + 100))
    slopes = np.sort(rng.uniform(0.5, 3.0, (n, k)), axis=1)[:, ::-1]
    slopes[rng.random((n, k)) < 0.1] = 1.0  # some ties, to exercise tie-breaking
    slopes = np.sort(slopes, axis=1)[:, ::-1]
    breaks = np.sort(rng.integers(0, 1200, (n, k - 1)), axis=1)
    lam_deal = float(rng.choice([0.0, 0.05, 0.3, 1.0]))
    lam_channel = float(rng.choice([0.0, 0.1, 0.5]))
    price = rng.integers(1, 50, n) if money else None
    cap = int(rng.uniform(0.2, 1.2) * float(price @ ub)) if price is not None else None
    return AllocationProblem(
        current=current,
        lb=lb,
        ub=ub,
        seller=seller,
        channel=channel,
        seller_min=seller_min,
        seller_max=seller_max,
        channel_min=channel_min,
        channel_max=channel_max,
        total=total,
        value_slopes=np.ascontiguousarray(slopes),
        value_breaks=breaks,
        lam_deal=lam_deal,
        lam_channel=lam_channel,
        money_cap=cap,
        price_num=price,
        price_den=1,
    )


def _tolerance(reference: Reference) -> float:
    """Relative 1e-6 in the objective's natural scale (value per unit times units delivered)."""
    return 1e-6 * max(1.0, abs(reference.objective), reference.delivered)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(problems())
def test_network_instances_match_cbc_on_both_paths(p: AllocationProblem) -> None:
    ref = pulp_reference(p)
    event("feasible" if ref.feasible else "infeasible")
    if not ref.feasible:
        for path in (SolvePath.FLOW, SolvePath.LP):
            with pytest.raises(InfeasibleProblem):
                solve(p, path=path)
        return
    flow = solve(p, path=SolvePath.FLOW)
    lp = solve(p, path=SolvePath.LP)
    for result in (flow, lp):
        independent_check(p, result.allocation)
        assert result.objective.delivered == round(ref.delivered)  # priority (1), exactly
        assert result.objective.objective == pytest.approx(ref.objective, abs=_tolerance(ref))
    assert flow.objective.objective == pytest.approx(lp.objective.objective, abs=_tolerance(ref))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(problems(money=True))
def test_money_cap_instances_are_feasible_and_near_the_lp_bound(p: AllocationProblem) -> None:
    """With a money cap the LP optimum can be fractional: the integer plan may fall short of the
    LP bound by the value of the few units rounding cannot place, never exceed it."""
    ref = pulp_reference(p)
    if not ref.feasible:
        with pytest.raises(InfeasibleProblem):
            solve(p)
        return
    result = solve(p)
    independent_check(p, result.allocation)
    rows = p.n_sellers + p.n_channels + 2
    assert result.objective.delivered <= ref.delivered + 1e-6
    assert result.objective.delivered >= np.floor(ref.delivered + 1e-6) - rows
    slack = rows * (float(p.value_slopes.max()) + p.lam_deal + p.lam_channel) * 2
    assert result.objective.objective <= ref.objective + _tolerance(ref) + slack

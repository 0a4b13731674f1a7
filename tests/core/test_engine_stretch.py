"""`stretch`: the budget the forecast-capped solve left unallocated, placed on eligible deals in
proportion to their capacity forecasts, within `ratio` x forecast beyond the first allocation,
the open upper bounds, the seller/channel maximums and the total; the first allocation is a
lower bound. Hand-made cases, then a property test against an independent PuLP model of the
most that can be placed under the same bounds.

PuLP is imported inside the property test only (importing it breaks OR-Tools' bundled HiGHS in
the same process; the engine's flow and GLOP paths are unaffected)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from reallocator.core.engine import (
    AllocationProblem,
    AllocationResult,
    InfeasibleProblem,
    solve,
    verify_allocation,
)
from reallocator.core.engine.problem import NO_MAX, group_sum
from reallocator.core.engine.segments import deal_value
from reallocator.core.engine.stretch import LEVELS, stretch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulp")


def make(capacity: list[int], total: int, **kw: Any) -> AllocationProblem:
    """A forecast-capped problem: ub = capacity, one seller and one channel without limits,
    value 1, unless overridden."""
    n = len(capacity)
    base: dict[str, Any] = {
        "current": np.zeros(n, np.int64),
        "lb": np.zeros(n, np.int64),
        "ub": np.asarray(capacity, np.int64),
        "seller": np.zeros(n, np.int32),
        "channel": np.zeros(n, np.int32),
        "seller_min": [0],
        "seller_max": [NO_MAX],
        "channel_min": [0],
        "channel_max": [NO_MAX],
        "total": total,
        "value_slopes": np.ones(n),
    }
    base.update(kw)
    return AllocationProblem(**base)


def run(
    p: AllocationProblem,
    capacity: list[int] | np.ndarray,
    *,
    ratio: float = 1.0,
    eligible: list[bool] | np.ndarray | None = None,
    open_ub: list[int] | np.ndarray | None = None,
    first: AllocationResult | None = None,
) -> tuple[AllocationResult, AllocationResult, np.ndarray] | None:
    """(first, stretched, upper bounds), or None when `stretch` has nothing to do."""
    n = p.n_deals
    first = first if first is not None else solve(p)
    out = stretch(
        p,
        first,
        open_ub=np.full(n, NO_MAX, np.int64) if open_ub is None else np.asarray(open_ub, np.int64),
        capacity=np.asarray(capacity, np.int64),
        eligible=np.ones(n, bool) if eligible is None else np.asarray(eligible, bool),
        ratio=ratio,
    )
    if out is None:
        return None
    result, upper = out
    return first, result, upper


def must_run(p: AllocationProblem, capacity: list[int], **kw: Any) -> tuple[Any, Any, np.ndarray]:
    out = run(p, capacity, **kw)
    assert out is not None
    return out


# --- (a) nothing to do ------------------------------------------------------------------------


def test_nothing_left_to_place_gives_none() -> None:
    # The forecasts absorb the whole budget: nothing is left over.
    p = make([100, 200, 300], total=500)
    assert int(solve(p).allocation.sum()) == 500
    assert run(p, [100, 200, 300]) is None
    # Exactly the sum of the forecasts: still nothing left.
    assert run(make([100, 200, 300], total=600), [100, 200, 300]) is None


def test_no_room_gives_none_even_with_budget_left() -> None:
    p = make([100, 200, 300], total=1_000)
    assert run(p, [100, 200, 300], eligible=[False, False, False]) is None
    assert run(p, [100, 200, 300], ratio=0.0) is None
    assert run(p, [0, 0, 0]) is None  # no forecast, no share
    assert run(p, [100, 200, 300], open_ub=[100, 200, 300]) is None  # at their open bounds
    assert run(p, [100, 200, 300], ratio=0.001) is None  # floor(0.001 x 300) = 0


# --- (b) the proportional split ---------------------------------------------------------------


def assert_levelled(extra: np.ndarray, room: np.ndarray, levels: int = LEVELS) -> None:
    """Every deal is filled to the same level of its room, give or take the level in progress:
    some L with room*L//levels <= extra <= room*(L+1)//levels for every deal."""
    ok = [
        bool(((room * k // levels <= extra) & (extra <= room * (k + 1) // levels)).all())
        for k in range(levels + 1)
    ]
    assert any(ok), (extra.tolist(), room.tolist())


@pytest.mark.parametrize("total", [700, 900, 1_000, 1_001, 1_037, 1_111, 1_199])
def test_extra_is_split_in_proportion_to_the_forecasts(total: int) -> None:
    capacity = [100, 200, 300]
    p = make(capacity, total=total)
    first, result, upper = must_run(p, capacity, ratio=1.0)
    assert first.allocation.tolist() == capacity
    x = result.allocation
    extra = x - first.allocation
    placed = total - 600
    # Everything is placed: the room (1 x forecast each, 600) exceeds what is left.
    assert int(x.sum()) == total
    assert result.objective.delivered == total and result.objective.unspendable == 0
    assert result.binding.total
    # In proportion, within one slice (room / LEVELS) of each deal's exact share.
    room = np.array(capacity)
    share = placed * room / room.sum()
    assert (np.abs(extra - share) <= np.ceil(room / LEVELS) + 1).all(), (extra, share)
    assert_levelled(extra, room)
    assert upper.tolist() == [200, 400, 600]
    assert f"{placed} placed beyond forecasts" in result.notes


def test_whole_levels_split_exactly() -> None:
    # 300 left is exactly 4 of the 8 slices (12.5 + 25 + 37.5 = 75 each): 50 / 100 / 150.
    p = make([100, 200, 300], total=900)
    _, result, _ = must_run(p, [100, 200, 300])
    assert result.allocation.tolist() == [150, 300, 450]


def test_the_split_follows_the_forecast_not_the_first_allocation() -> None:
    # Deal 0's first allocation is held at 10 by its deal maximum, far below its forecast;
    # its room beyond that is still ratio x forecast (within its open bound).
    capacity = [400, 400]
    p = make(capacity, total=1_000, ub=[10, 400])
    first, result, upper = must_run(p, capacity, ratio=0.5)
    assert first.allocation.tolist() == [10, 400]
    assert (result.allocation - first.allocation).tolist() == [200, 200]
    assert upper.tolist() == [210, 600]


def test_within_a_level_the_higher_value_wins() -> None:
    # Two equal forecasts of 80: a slice is 10 each. 10 left fills one slice: the deal worth
    # more per unit takes it.
    p = make([80, 80], total=170, value_slopes=[1.0, 2.0])
    _, result, _ = must_run(p, [80, 80])
    assert result.allocation.tolist() == [80, 90]
    p = make([80, 80], total=170, value_slopes=[2.0, 1.0])
    _, result, _ = must_run(p, [80, 80])
    assert result.allocation.tolist() == [90, 80]


def test_objective_is_on_the_original_problem_terms() -> None:
    p = make([100, 200, 300], total=1_000, value_slopes=[0.5, 1.0, 2.0], lam_deal=0.25)
    first, result, _ = must_run(p, [100, 200, 300])
    x = result.allocation
    assert result.objective.delivered == int(x.sum()) == 1_000
    assert result.objective.value == pytest.approx(float(deal_value(p, x).sum()))
    assert result.objective.churn_deal == pytest.approx(0.25 * float(np.abs(x - p.current).sum()))
    assert result.timings.total >= first.timings.total
    assert result.notes[: len(first.notes)] == first.notes


def test_a_binding_money_cap_reports_the_lp_path_and_no_duals() -> None:
    """The first solve is a flow (the cap is slack there); the stretch hits the money cap, which
    only the LP path honours: the result says so, and carries no duals of the artificial
    second objective."""
    p = make([100, 200, 300], total=1_200, money_cap=1_000, price_num=np.ones(3, np.int64))
    first, result, _ = must_run(p, [100, 200, 300])
    assert str(first.path) == "FLOW"
    assert str(result.path) == "LP" and result.duals is None
    assert result.binding.money and int(result.allocation.sum()) == 1_000
    assert "placed beyond forecasts" in result.notes[-1]


# --- (c) the ratio cap ------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.33, 1.0, 1.7])
def test_extra_never_exceeds_ratio_times_forecast_and_the_rest_stays_unallocated(
    ratio: float,
) -> None:
    capacity = [100, 200, 300]
    p = make(capacity, total=10_000)
    first, result, upper = must_run(p, capacity, ratio=ratio)
    cap = np.floor(np.array(capacity) * ratio).astype(np.int64)
    extra = result.allocation - first.allocation
    # Far more is left than the room: every deal takes all of its room, no more.
    assert extra.tolist() == cap.tolist()
    assert upper.tolist() == (np.array(capacity) + cap).tolist()
    assert result.objective.unspendable == 10_000 - 600 - int(cap.sum()) > 0
    assert not result.binding.total


def test_open_upper_bound_caps_the_stretch() -> None:
    # Deal 1 may take 400 more by the ratio but only 50 more by its open bound (deal max, step).
    capacity = [100, 200, 300]
    p = make(capacity, total=10_000)
    first, result, upper = must_run(p, capacity, ratio=2.0, open_ub=[NO_MAX, 250, 300])
    assert (result.allocation - first.allocation).tolist() == [200, 50, 0]
    assert upper.tolist() == [300, 250, 300]


def test_the_total_caps_the_open_bound() -> None:
    # No open bound: a deal still never gets more room than the whole budget.
    p = make([1_000], total=1_500)
    _, result, upper = must_run(p, [1_000], ratio=5.0)
    assert result.allocation.tolist() == [1_500]
    assert int(upper[0]) <= 1_500


# --- (d) ineligible deals -----------------------------------------------------------------------


def test_ineligible_deals_are_never_changed() -> None:
    capacity = [100, 200, 300, 400]
    p = make(capacity, total=5_000, value_slopes=[3.0, 1.0, 2.0, 0.1])
    eligible = [False, True, False, True]
    first, result, upper = must_run(p, capacity, eligible=eligible, ratio=1.0)
    x0, x = first.allocation, result.allocation
    assert x[0] == x0[0] and x[2] == x0[2]  # even the most valuable ones
    assert (x - x0).tolist() == [0, 200, 0, 400]
    assert upper[0] == p.ub[0] and upper[2] == p.ub[2]


def test_ineligible_deals_do_not_take_budget_even_below_their_own_bound() -> None:
    # A first plan (e.g. time-limited) left deal 0 at 40, below its bound of 100, and budget
    # unplaced. Deal 0 is ineligible: it stays at 40; only deal 1 takes more.
    capacity = [100, 50]
    p = make(capacity, total=1_000)
    given = replace(solve(p), allocation=np.array([40, 50], np.int64))
    _, result, upper = must_run(p, capacity, first=given, eligible=[False, True])
    assert result.allocation.tolist() == [40, 100]
    assert result.objective.unspendable == 860
    assert upper.tolist() == [100, 100]


# --- (e) seller and channel maximums ------------------------------------------------------------


def test_seller_maximum_holds_and_the_rest_flows_to_other_sellers() -> None:
    # Sellers: deals 0, 1 -> seller 0 (max 400); deal 2 -> seller 1. Each deal's forecast 100.
    capacity = [100, 100, 100]
    p = make(
        capacity,
        total=700,
        seller=np.array([0, 0, 1], np.int32),
        seller_min=[0, 0],
        seller_max=[250, NO_MAX],
    )
    first, result, _ = must_run(p, capacity, ratio=3.0)
    x = result.allocation
    assert first.allocation.tolist() == [100, 100, 100]
    assert int(x[:2].sum()) == 250  # at its maximum, split evenly (equal forecasts)
    assert abs(int(x[0]) - int(x[1])) <= 300 // LEVELS + 1
    assert int(x[2]) == 400  # seller 1's deal takes the rest, up to its 3 x forecast
    assert int(x.sum()) == 650 and result.objective.unspendable == 50
    assert result.binding.seller_at_max.tolist() == [True, False]


def test_channel_maximum_holds_and_the_rest_flows_to_other_channels() -> None:
    capacity = [100, 300, 200]
    p = make(
        capacity,
        total=1_000,
        channel=np.array([0, 0, 1], np.int32),
        channel_min=[0, 0],
        channel_max=[500, NO_MAX],
    )
    first, result, _ = must_run(p, capacity, ratio=1.0)
    x = result.allocation
    assert first.allocation.tolist() == capacity
    assert int(x[:2].sum()) == 500  # channel 0 at its maximum: 100 more between its deals
    assert int(x[2]) == 400  # channel 1 takes 1 x its forecast beyond it
    assert int(x.sum()) == 900
    assert result.binding.channel_at_max.tolist() == [True, False]
    # Within channel 0, the 100 still goes in proportion (1 : 3), within a slice.
    extra = x[:2] - first.allocation[:2]
    assert abs(int(extra[0]) - 25) <= 100 // LEVELS + 1
    assert abs(int(extra[1]) - 75) <= 300 // LEVELS + 1


# --- (f) the first allocation is a lower bound ------------------------------------------------


def test_no_deal_goes_down_even_when_a_reshuffle_would_place_more() -> None:
    # Seller 0 (max 100) holds deals 0 and 1; channel 1 (max 100) holds deals 1 and 2. Deal 1
    # is ineligible and the first plan filled it: taking it back would let deals 0 and 2 grow
    # by 100 each (+100 overall), but the first allocation is kept, so nothing more fits.
    capacity = [50, 50, 50]
    p = make(
        capacity,
        total=1_000,
        seller=np.array([0, 0, 1], np.int32),
        channel=np.array([0, 1, 1], np.int32),
        seller_min=[0, 0],
        seller_max=[100, NO_MAX],
        channel_min=[0, 0],
        channel_max=[NO_MAX, 100],
    )
    first, result, _ = must_run(p, capacity, eligible=[True, False, True], ratio=10.0)
    assert first.allocation.tolist() == [50, 50, 50]
    assert result.allocation.tolist() == [50, 50, 50]


def test_a_first_allocation_below_its_bound_is_a_floor_not_a_target() -> None:
    # A hand-given first allocation (e.g. from a relaxed or time-limited solve) below ub.
    capacity = [100, 100]
    p = make(capacity, total=300)
    given = replace(solve(p), allocation=np.array([40, 100], np.int64))
    _, result, _ = must_run(p, capacity, first=given, ratio=1.0)
    x = result.allocation
    assert (x >= [40, 100]).all()
    assert int(x.sum()) == 300
    # Deal 0's room is 1 x its forecast beyond 40: up to 140.
    assert int(x[0]) <= 140 and int(x[1]) <= 200


# --- (g) property: everything that can be placed is placed ------------------------------------


def max_placeable(p: AllocationProblem, lo: np.ndarray, hi: np.ndarray) -> int:
    """Most budget any integer plan within [lo, hi] per deal, the group limits and the total
    can hold: an independent PuLP + CBC model written from the problem statement."""
    import pulp

    m = pulp.LpProblem("most_placed", pulp.LpMaximize)
    n = p.n_deals
    x = [pulp.LpVariable(f"x{d}", int(lo[d]), int(hi[d]), cat="Integer") for d in range(n)]
    for name, codes, mins, maxs in (
        ("s", p.seller, p.seller_min, p.seller_max),
        ("c", p.channel, p.channel_min, p.channel_max),
    ):
        for g in range(mins.shape[0]):
            members = [x[d] for d in range(n) if codes[d] == g]
            if not members:
                continue
            m += pulp.lpSum(members) >= int(mins[g]), f"{name}min{g}"
            if maxs[g] != NO_MAX:
                m += pulp.lpSum(members) <= int(maxs[g]), f"{name}max{g}"
    m += pulp.lpSum(x) <= p.total, "total"
    m += pulp.lpSum(x)
    m.solve(pulp.PULP_CBC_CMD(msg=False))
    assert pulp.LpStatus[m.status] == "Optimal"
    return round(pulp.value(m.objective) or 0)


@st.composite
def stretch_cases(
    draw: st.DrawFn,
) -> tuple[AllocationProblem, np.ndarray, np.ndarray, np.ndarray, float]:
    """A forecast-capped problem (ub = min(open_ub, capacity, deal max)), with its open upper
    bounds, capacities, eligibility and ratio."""
    ints = st.integers
    n = draw(ints(1, 6))
    n_s, n_c = draw(ints(1, 3)), draw(ints(1, 3))
    capacity = np.array([draw(ints(0, 60)) for _ in range(n)], np.int64)
    open_ub = np.array([draw(st.one_of(ints(0, 150), st.just(NO_MAX))) for _ in range(n)], np.int64)
    ub = np.minimum(open_ub, capacity)
    lb = np.array([draw(ints(0, int(u))) if draw(st.booleans()) else 0 for u in ub], np.int64)
    limit = st.one_of(ints(0, 200), st.just(NO_MAX))
    p = AllocationProblem(
        current=[draw(ints(0, 80)) for _ in range(n)],
        lb=lb,
        ub=ub,
        seller=[draw(ints(0, n_s - 1)) for _ in range(n)],
        channel=[draw(ints(0, n_c - 1)) for _ in range(n)],
        seller_min=[draw(st.sampled_from([0, 0, 0, 5])) for _ in range(n_s)],
        seller_max=[draw(limit) for _ in range(n_s)],
        channel_min=[draw(st.sampled_from([0, 0, 0, 5])) for _ in range(n_c)],
        channel_max=[draw(limit) for _ in range(n_c)],
        # Around the forecasts' sum: sometimes below it, mostly above (budget left over).
        total=max(0, int(ub.sum()) + draw(st.one_of(ints(-20, 40), ints(40, 300)))),
        value_slopes=[draw(st.floats(0.0, 3.0)) for _ in range(n)],
        lam_deal=draw(st.sampled_from([0.0, 0.1, 1.0])),
    )
    eligible = np.array([draw(st.booleans()) for _ in range(n)])
    ratio = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.3, 2.0, 10.0]))
    return p, open_ub, capacity, eligible, ratio


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stretch_cases())
def test_random_stretches_are_feasible_and_place_everything_placeable(
    case: tuple[AllocationProblem, np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    p, open_ub, capacity, eligible, ratio = case
    try:
        first = solve(p)
    except InfeasibleProblem:
        assume(False)
        return
    x0 = first.allocation.copy()
    left = p.total - int(x0.sum())
    # The room, written independently: ratio x forecast beyond the first allocation, within
    # the open bound and the total; none for an ineligible deal.
    beyond = np.floor(np.maximum(capacity, 0) * ratio).astype(np.int64)
    reach = np.maximum(np.minimum(open_ub, p.total), x0)
    hi = np.where(eligible, np.minimum(reach, x0 + beyond), x0)
    out = stretch(p, first, open_ub=open_ub, capacity=capacity, eligible=eligible, ratio=ratio)
    assert (first.allocation == x0).all()  # the first result is not modified
    if out is None:
        event("none: nothing left" if left <= 0 else "none: no room")
        assert left <= 0 or (hi == x0).all()
        return
    assert left > 0 and (hi > x0).any()
    result, upper = out
    x = result.allocation
    assert x.dtype == np.int64 and x.shape == x0.shape
    # Bounds: never below the first plan, never beyond the room or the returned bounds.
    assert (x >= x0).all()
    assert (x <= hi).all()
    assert (x <= upper).all()
    assert upper.tolist() == np.maximum(p.ub, hi).tolist()
    assert (x[~eligible] == x0[~eligible]).all()
    # Group limits and the total.
    for codes, mins, maxs in (
        (p.seller, p.seller_min, p.seller_max),
        (p.channel, p.channel_min, p.channel_max),
    ):
        sums = group_sum(x, codes, mins.shape[0])
        assert (sums >= mins).all() and (sums <= maxs).all()
    assert int(x.sum()) <= p.total
    verify_allocation(replace(p, ub=upper), x)
    # Everything that can be placed within those bounds is placed.
    assert int(x.sum()) == max_placeable(p, x0, hi)
    event("stretched: all placed" if int(x.sum()) == p.total else "stretched: some left")
    assert result.objective.delivered == int(x.sum())
    assert result.objective.unspendable == p.total - int(x.sum())


@settings(max_examples=60, deadline=None)
@given(
    rooms=st.lists(st.integers(0, 10_000), min_size=1, max_size=30),
    values=st.lists(st.floats(0.0, 5.0), min_size=30, max_size=30),
    share=st.floats(0.0, 1.2),
)
def test_the_closed_form_fill_matches_the_flow(
    rooms: list[int], values: list[float], share: float
) -> None:
    """Without a binding group maximum the split is computed in closed form (level_fill); the
    flow it replaces places exactly the same total, and each deal within two slices of it."""
    from reallocator.core.engine.stretch import VALUE_TILT, _flow_fill, level_fill

    n = len(rooms)
    room = np.asarray(rooms, np.int64)
    left = int(room.sum() * share) + 1
    v = np.asarray(values[:n])
    spread = float(v.max() - v.min())
    tie = VALUE_TILT * (v - v.min()) / spread if spread > 0 else np.zeros(n)
    added = level_fill(room, tie, left, LEVELS)
    assert added is not None
    assert (added >= 0).all() and (added <= room).all()
    assert int(added.sum()) == min(left, int(room.sum()))
    x = np.zeros(n, np.int64)
    p = make([0] * n, total=left, value_slopes=v)
    bounds = replace(p, lb=x, ub=room)
    flow, _ = _flow_fill(bounds, x, room, tie, LEVELS)
    assert int(flow.allocation.sum()) == int(added.sum())
    slice_ = -(-room // LEVELS)
    assert (np.abs(flow.allocation - added) <= 2 * slice_ + 2).all()

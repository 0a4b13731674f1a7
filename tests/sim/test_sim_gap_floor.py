"""The hindsight gap floor (sim/gap_floor.py): the LP against an independent PuLP model, closed
forms, and the lower-bound property on simulated runs."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from builders import TINY_SCENARIO

from reallocator.sim import gap_floor
from reallocator.sim.args import STRATEGIES
from reallocator.sim.gap_floor import FloorNotSolved, keeps_maximums, solve_floor, world_floor
from reallocator.sim.metrics import worst_cumulative_gap
from reallocator.sim.run import run_world
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.world import build_world

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulp")

FloatArray = npt.NDArray[np.float64]


def pulp_floor(
    supply: FloatArray,
    planned: FloatArray,
    budget: float,
    deal_max: FloatArray,
    groupings: list[tuple[npt.NDArray[np.int64], FloatArray]],
) -> float:
    """The floor written out directly: a variable per deal and step, every cumulative sum
    spelled in full, money in currency units, solved by CBC."""
    import pulp

    n, T = supply.shape
    m = pulp.LpProblem("gap_floor", pulp.LpMinimize)
    g = pulp.LpVariable("g", 0)
    s = [
        [pulp.LpVariable(f"s_{d}_{t}", 0, float(supply[d, t])) for t in range(T)] for d in range(n)
    ]
    m += g
    for t in range(T):
        spent = pulp.lpSum(s[d][tau] for d in range(n) for tau in range(t + 1))
        plan = float(planned[: t + 1].sum())
        m += spent - plan <= budget * g
        m += plan - spent <= budget * g
    for d in range(n):
        if math.isfinite(deal_max[d]):
            m += pulp.lpSum(s[d]) <= float(deal_max[d])
    for codes, maxima in groupings:
        for q, cap in enumerate(maxima):
            if math.isfinite(cap):
                m += (
                    pulp.lpSum(s[d][t] for d in np.flatnonzero(codes == q) for t in range(T)) <= cap
                )
    m += pulp.lpSum(s[d][t] for d in range(n) for t in range(T)) <= budget
    assert m.solve(pulp.PULP_CBC_CMD(msg=False)) == pulp.LpStatusOptimal
    return float(g.value())


def random_instance(
    rng: np.random.Generator,
) -> tuple[
    FloatArray, FloatArray, float, FloatArray, list[tuple[npt.NDArray[np.int64], FloatArray]]
]:
    n, T = int(rng.integers(2, 7)), int(rng.integers(4, 25))
    budget = 1_000.0 * float(rng.uniform(0.5, 3.0))
    supply = rng.exponential(1.5 * budget / (n * T), (n, T))
    supply[rng.random((n, T)) < 0.3] = 0.0  # holes
    a = int(rng.integers(0, T))
    supply[:, a : a + int(rng.integers(0, T // 2 + 1))] *= rng.uniform(0.0, 0.2)  # an outage
    planned = rng.uniform(0.2, 1.0, T)
    planned *= budget / planned.sum()
    deal_max = np.where(rng.random(n) < 0.5, rng.uniform(0.05, 0.6, n) * budget, math.inf)
    groupings = []
    for size in (int(rng.integers(1, 4)), int(rng.integers(1, 3))):
        codes = rng.integers(0, size, n).astype(np.int64)
        maxima = np.where(rng.random(size) < 0.6, rng.uniform(0.1, 0.7, size) * budget, math.inf)
        groupings.append((codes, maxima))
    return supply, planned, budget, deal_max, groupings


def test_the_lp_matches_an_independent_pulp_model_on_random_worlds() -> None:
    rng = np.random.default_rng(17)
    gaps = []
    for _ in range(12):
        supply, planned, budget, deal_max, groupings = random_instance(rng)
        expected = pulp_floor(supply, planned, budget, deal_max, groupings)
        lp = solve_floor(supply, planned, budget, deal_max, groupings)
        per_deal = solve_floor(supply, planned, budget, deal_max, groupings, aggregate=False)
        assert lp.gap == pytest.approx(expected, abs=1e-7)
        assert per_deal.gap == pytest.approx(expected, abs=1e-7)
        # Coarser blocks relax the rows: never above the exact floor.
        assert solve_floor(supply, planned, budget, deal_max, groupings, block=3).gap <= (
            lp.gap + 1e-9
        )
        gaps.append(expected)
    assert max(gaps) > 0.05 and min(gaps) < max(gaps)  # the instances are not all trivial


def test_an_outage_at_the_end_costs_half_its_planned_share() -> None:
    # Uniform plan over T steps, ample supply but none in the last k: the best is to run
    # g ahead before the outage and end g behind, so g = (k / T) / 2.
    T, k, budget = 40, 6, 1_000.0
    supply = np.full((3, T), budget)
    supply[:, T - k :] = 0.0
    planned = np.full(T, budget / T)
    lp = solve_floor(supply, planned, budget)
    assert lp.gap == pytest.approx(k / T / 2, abs=1e-9)
    assert lp.classes == 1
    path = lp.cumulative
    assert worst_cumulative_gap(np.diff(path, prepend=0.0), planned, budget) == pytest.approx(
        lp.gap, abs=1e-9
    )
    # Supply that cannot run ahead (exactly the plan until the outage) leaves the whole share.
    tight = np.where(supply > 0, budget / T / 3, 0.0)
    assert solve_floor(tight, planned, budget).gap == pytest.approx(k / T, abs=1e-9)


def test_maximums_that_leave_a_fifth_of_the_budget_unspendable() -> None:
    T, budget = 24, 1_000.0
    supply = np.full((4, T), budget)
    planned = np.full(T, budget / T)
    assert solve_floor(supply, planned, budget).gap == pytest.approx(0.0, abs=1e-9)
    # Deal maximums summing to 80 % of the budget: the final gap is 20 %, no less and no more.
    deal_max = np.full(4, 0.2 * budget)
    assert solve_floor(supply, planned, budget, deal_max).gap == pytest.approx(0.2, abs=1e-9)
    # A channel holding deals 0-1 at 10 %, the other unlimited, at most 30 % per deal: 70 %.
    channel = np.array([0, 0, 1, 1])
    groupings = [(channel, np.array([0.1 * budget, math.inf]))]
    deal_max = np.full(4, 0.3 * budget)
    assert solve_floor(supply, planned, budget, deal_max, groupings).gap == pytest.approx(
        0.3, abs=1e-9
    )


TINY = {
    **TINY_SCENARIO,
    "name": "tiny_floor",
    "stalls": {"events": [{"select": {"channels": ["display"]}, "start_hour": 14, "hours": 6}]},
}
LIMITED = {
    **TINY,
    "name": "tiny_floor_limits",
    "constraints": {
        "deals": [{"select": {"deal_type": "non_pg"}, "max_share_of_booked": 1.05}],
        "channels": {"display": {"max_share": 0.45}},
    },
}
"""Display's maximum is below its booking: the runs that keep the booking break it (and may then
go below `GapFloor.floor`, which does not bound them; `GapFloor.supply` does)."""


@pytest.mark.parametrize("spec", [TINY, LIMITED], ids=["outage", "limits"])
def test_no_strategy_beats_the_floor(spec: dict[str, object]) -> None:
    world = build_world(scenario_from_dict(spec), 0)
    result = run_world(world, STRATEGIES)
    floor = result.floor
    assert floor is not None and floor.lp.block == 1
    again = world_floor(world)  # deterministic
    assert (again.floor, again.supply) == (floor.floor, floor.supply)
    assert 0.0 < floor.supply <= floor.floor + 1e-12
    kept, broke = [], []
    for name, run in result.runs.items():
        spend = run.state.spend_hist
        assert (spend <= world.full_spend * (1 + 1e-12) + 1e-9).all(), name  # the LP's premise
        gap = worst_cumulative_gap(spend.sum(axis=0), world.planned, world.budget)
        assert gap >= floor.supply - 1e-9, name
        if keeps_maximums(world, run.state.spent):
            assert gap >= floor.floor - 1e-9, name
            kept.append(name)
        else:
            broke.append(name)
    assert "reallocator" in kept
    if spec is LIMITED:  # the booking holds 73 % on display, over its 45 %: static breaks it
        assert "static" in broke


def test_the_limits_raise_the_floor_only_where_they_bind() -> None:
    free = world_floor(build_world(scenario_from_dict(TINY), 0))
    assert free.floor == free.supply and free.lp.classes == 1
    tight = {
        **TINY,
        "name": "tiny_floor",  # the same draws as TINY
        "constraints": {"channels": {"video": {"max_share": 0.05}, "display": {"max_share": 0.5}}},
    }
    world = build_world(scenario_from_dict(tight), 0)
    bound = world_floor(world)
    assert bound.supply == pytest.approx(free.supply, abs=1e-9)
    # 55 % of the budget at most: the final gap alone is 45 %.
    assert bound.floor >= 0.45 - 1e-9 and bound.lp.classes == 2


def test_an_exact_lp_that_does_not_finish_falls_back_to_hourly_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = build_world(scenario_from_dict(LIMITED), 0)
    exact = world_floor(world)
    solve = gap_floor.solve_floor

    def slow_exact(*args: object, block: int = 1, **kwargs: object) -> gap_floor.FloorLp:
        if block == 1:
            raise FloorNotSolved("time limit")
        return solve(*args, block=block, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gap_floor, "solve_floor", slow_exact)
    hourly = world_floor(world)
    assert hourly.lp.block == world.scenario.steps_per_hour == 4
    assert 0.0 < hourly.floor <= exact.floor + 1e-9
    assert 0.0 < hourly.supply <= min(exact.supply, hourly.floor) + 1e-9

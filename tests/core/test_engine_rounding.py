"""Rounding an LP solution: floor, largest remainder with ties to the lower index, repairs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reallocator.core.engine import AllocationProblem, verify_allocation
from reallocator.core.engine import lp as lp_module
from reallocator.core.engine.problem import NO_MAX
from reallocator.core.engine.rounding import largest_remainder, round_plan, round_plan_noted
from reallocator.core.engine.synthetic import random_problem


def problem(n: int, seller: list[int], **kw: Any) -> AllocationProblem:
    n_s = max(seller) + 1
    base: dict[str, Any] = {
        "current": np.zeros(n, np.int64),
        "lb": np.zeros(n, np.int64),
        "ub": np.full(n, 10, np.int64),
        "seller": np.array(seller, np.int32),
        "channel": np.zeros(n, np.int32),
        "seller_min": np.zeros(n_s, np.int64),
        "seller_max": np.full(n_s, NO_MAX, np.int64),
        "channel_min": [0],
        "channel_max": [NO_MAX],
        "total": 100,
        "value_slopes": np.ones(n),
    }
    base.update(kw)
    return AllocationProblem(**base)


def test_largest_remainder_breaks_ties_by_lower_index() -> None:
    key = np.array([0.5, 0.7, 0.5, 0.5])
    eligible = np.array([True, True, True, True])
    assert largest_remainder(key, eligible, 3).tolist() == [1, 0, 2]
    assert largest_remainder(key, ~eligible, 3).tolist() == []


def test_floor_then_hand_back_the_leftover() -> None:
    p = problem(3, [0, 0, 0])
    x = round_plan(p, np.array([1.5, 1.5, 1.0]), target=4)
    assert x.tolist() == [2, 1, 1]
    assert x.dtype == np.int64


def test_solver_noise_is_snapped_not_floored() -> None:
    p = problem(2, [0, 0])
    assert round_plan(p, np.array([2.9999999996, 1.0000000003]), 4).tolist() == [3, 1]


def test_leftover_never_breaks_a_group_maximum() -> None:
    # The three largest remainders tie at 0.5; the first two share seller 0, already at max 3
    # once either is rounded up, so the second unit goes to deal 4 instead.
    p = problem(5, [0, 0, 1, 1, 1], seller_max=np.array([3, NO_MAX]))
    x = round_plan(p, np.array([1.5, 1.5, 0.2, 0.3, 0.5]), target=4)
    assert x.tolist() == [2, 1, 0, 0, 1]
    verify_allocation(p, x)


def test_group_minimum_broken_by_flooring_is_restored_first() -> None:
    p = problem(4, [0, 0, 1, 1], seller_min=np.array([3, 0]))
    x = round_plan(p, np.array([1.5, 1.5, 0.6, 0.6]), target=4)
    assert x.tolist() == [2, 1, 1, 0]
    verify_allocation(p, x)


def test_overshoot_of_a_limit_is_shaved() -> None:
    p = problem(2, [0, 0], seller_max=np.array([5]))
    x = round_plan(p, np.array([3.0000001, 2.0000001]), target=5)
    assert int(x.sum()) == 5
    verify_allocation(p, x)


def test_lp_stopped_in_stage_two_returns_the_stage_one_plan_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GLOP returns no point on a time limit; simulate stage 2 stopping."""
    import math

    from ortools.linear_solver.python import model_builder_helper as mbh

    from reallocator.core.engine import SolveStatus, solve

    real = lp_module.run_glop
    calls = {"n": 0}

    def stop_second(model: Any, time_limit: float) -> lp_module.GlopRun:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(model, time_limit)
        return lp_module.GlopRun(mbh.SolveStatus.NOT_SOLVED, None, None, math.nan, 0.0)

    monkeypatch.setattr(lp_module, "run_glop", stop_second)
    p = random_problem(500, seed=2, money_cap_share=0.5)
    result = solve(p)
    assert result.status is SolveStatus.TIME_LIMITED
    assert result.duals is None
    verify_allocation(p, result.allocation)


def test_money_overshoot_from_snapping_is_shaved_from_the_dearest() -> None:
    p = problem(2, [0, 0], money_cap=49, price_num=np.array([10, 1]))
    x = round_plan(p, np.array([4.9999999, 0.0]), target=4)
    assert x.tolist() == [4, 0]
    verify_allocation(p, x)


def test_a_swap_the_greedy_pass_cannot_make_is_found_by_the_flow_repair() -> None:
    # The LP point [1.5, 0.5] overruns the cap of 7 (as GLOP's tolerance can): flooring leaves
    # the channel one unit short, and adding a unit of either deal breaks the cap; moving the
    # dear deal's unit to the cheap one meets both.
    p = problem(2, [0, 0], channel_min=[2], money_cap=7, price_num=np.array([5, 3]))
    x, note = round_plan_noted(p, np.array([1.5, 0.5]), target=2)
    assert x.tolist() == [0, 2]
    assert note is not None and "fractional deals" in note
    verify_allocation(p, x)


def test_when_nothing_near_the_lp_point_fits_the_least_money_plan_is_taken_and_said() -> None:
    # Deal 0 sits at an integral 2 (not in the repair window); only moving it helps.
    p = problem(
        3,
        [0, 0, 0],
        channel_min=[3],
        money_cap=10,
        price_num=np.array([10, 2, 2]),
        price_den=2,
    )
    x, note = round_plan_noted(p, np.array([2.0, 0.9, 0.1]), target=3)
    assert int(x.sum()) == 3 and x[0] == 0
    assert note is not None and "least-money plan" in note
    verify_allocation(p, x)

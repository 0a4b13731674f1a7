"""Metric definitions on hand-computed series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reallocator.sim.metrics import (
    allocation_moves,
    bat_rmse,
    early_exhaustion,
    hourly,
    minutes_before_exhaustion,
    moved_share,
    reversals_per_deal,
    reversed_by_class,
    reversed_share,
    smart_pacing_rmse,
    worst_cumulative_gap,
)


def test_smart_pacing_rmse_is_the_rms_of_slot_gaps() -> None:
    # gaps -1, 0, +1  ->  sqrt((1 + 0 + 1) / 3)
    assert smart_pacing_rmse([1, 2, 3], [2, 2, 2]) == pytest.approx(math.sqrt(2 / 3))
    assert smart_pacing_rmse([5, 5], [5, 5]) == 0.0


def test_bat_rmse_normalises_by_budget_over_hours() -> None:
    # budget 40 over 2 hours, shares 1:1 -> ideal 20, 20; spend 10, 30 -> gaps -10, +10
    # each / (40 / 2) = -0.5, +0.5 -> RMSE 0.5
    assert bat_rmse([10, 30], 40, [1, 1]) == pytest.approx(0.5)
    # shares need not be normalised; a perfect follower scores 0
    assert bat_rmse([10, 30], 40, [0.25, 0.75]) == pytest.approx(0.0)
    # 4 hours, shares .1 .2 .3 .4 of 100; spend 25 each: gaps -15, -5, 5, 15 over 25
    expected = math.sqrt(np.mean(np.array([15, 5, 5, 15]) ** 2 / 25.0**2))
    assert bat_rmse([25] * 4, 100, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(expected)


def test_early_exhaustion_is_over_90_percent_in_the_first_half() -> None:
    assert early_exhaustion([50, 45, 5, 0], 100)  # 95 in the first half
    assert not early_exhaustion([50, 40, 10, 0], 100)  # exactly 90 is not more than 90
    assert not early_exhaustion([25, 25, 25, 25], 100)


def test_minutes_before_exhaustion() -> None:
    # budget reached at the end of step 2 of 4 (15 min each): 2 steps = 30 min before the end
    assert minutes_before_exhaustion([50, 50, 0, 0], 100, 15) == 30.0
    assert minutes_before_exhaustion([25, 25, 25, 25], 100, 15) == 0.0  # at the very end
    assert minutes_before_exhaustion([20, 20, 20, 20], 100, 15) == 0.0  # never


def test_worst_cumulative_gap() -> None:
    # cumulative actual 10, 40, 60 vs planned 20, 40, 60: worst |gap| 10 of 100
    assert worst_cumulative_gap([10, 30, 20], [20, 20, 20], 100) == pytest.approx(0.10)


def test_hourly_sums_steps() -> None:
    assert hourly(np.arange(8.0), 4).tolist() == [6.0, 22.0]
    assert hourly(np.arange(6.0), 4).tolist() == [6.0, 9.0]  # a trailing partial hour


def test_reversed_share_counts_movement_that_cancels_within_a_deal() -> None:
    booked = np.array([100.0, 100.0])
    # deal 0: cut by 40 at step 1, restored by 40 at step 3 (both moves wasted);
    # deal 1: raised by 20 then by 20 more (all one way).
    hist = np.array([[100.0, 60.0, 60.0, 100.0], [100.0, 120.0, 120.0, 140.0]])
    moves = allocation_moves(booked, hist)
    assert moves.tolist() == [[0, -40, 0, 40], [0, 20, 0, 20]]
    # movement 80 + 40 = 120; net |0| + |40| -> (80 + 40 - 40) / 120
    assert reversed_share(moves) == pytest.approx(80 / 120)
    assert reversals_per_deal(moves) == pytest.approx(0.5)  # one reversal over two deals
    assert reversed_share(np.zeros((2, 3))) == 0.0
    # moves below the tolerance are noise, not reversals
    assert reversals_per_deal(np.array([[5.0, -0.5, 5.0]])) == 0.0
    assert reversed_share(np.array([[5.0, -0.5, 5.0]])) == 0.0


def test_churn_is_what_moved_each_move_once() -> None:
    booked = np.array([100.0, 100.0])
    # deal 0 cut by 40 and restored (80 moved); deal 1 raised by 20 twice (40): 120 of 200
    hist = np.array([[100.0, 60.0, 60.0, 100.0], [100.0, 120.0, 120.0, 140.0]])
    assert moved_share(allocation_moves(booked, hist), 200.0) == pytest.approx(0.6)
    # a guaranteed deal whose ask waits three replans for the seller moves once, when the
    # commitment does: the effective allocation is flat until then
    hist = np.array([[100.0, 100.0, 100.0, 150.0]])
    assert moved_share(allocation_moves(np.array([100.0]), hist), 100.0) == pytest.approx(0.5)
    assert moved_share(np.array([[0.5, -0.5]]), 100.0) == 0.0  # below the tolerance: noise
    assert moved_share(np.zeros((1, 2)), 0.0) == 0.0


def test_greedy_moves_budget_from_projected_underspenders_to_valuable_headroom() -> None:
    from reallocator.sim.strategies import greedy_moves

    alloc = np.array([100.0, 100.0, 100.0, 100.0])
    spent = np.array([10.0, 10.0, 10.0, 10.0])
    projected = np.array([40.0, 100.0, 100.0, 100.0])  # deal 0 will end 60 short
    supply = np.array([40.0, 130.0, 200.0, 200.0])
    value = np.array([1.0, 3.0, 2.0, 1.0])
    can_take = np.ones(4, dtype=bool)
    floor = np.zeros(4)
    ceiling = np.full(4, np.inf)
    new = greedy_moves(alloc, spent, projected, supply, value, can_take, floor, ceiling, 0.0, 0.1)
    assert new.sum() == pytest.approx(alloc.sum())  # budget conserved
    assert new[0] == pytest.approx(40.0)
    # deals 1 and 2 (value >= the median of those with headroom) share by headroom 30:100,
    # capped at their headroom; deal 3, the least valuable, gets nothing
    assert new[1] == pytest.approx(100 + 60 * 30 / 130)
    assert new[2] == pytest.approx(100 + 60 * 100 / 130)
    assert new[3] == 100.0


def test_greedy_hands_out_no_budget_a_seller_still_holds() -> None:
    from reallocator.sim.strategies import greedy_moves

    alloc = np.array([100.0, 100.0])
    spent = np.zeros(2)
    # deal 0 (guaranteed: cannot take) is projected 60 short: it is asked for less, but its
    # budget is the seller's until it agrees, so deal 1 gets nothing yet
    new = greedy_moves(
        alloc,
        spent,
        np.array([40.0, 100.0]),
        np.array([40.0, 500.0]),
        np.array([1.0, 1.0]),
        np.array([False, True]),
        np.zeros(2),
        np.full(2, np.inf),
        0.0,
        0.1,
    )
    assert new.tolist() == [40.0, 100.0]


def test_reversed_movement_splits_by_class_and_the_partition_adds_up() -> None:
    moves = np.array(
        [
            [50.0, -30.0, 0.0],  # moved 80, net 20: 60 undone
            [10.0, 10.0, 0.0],  # moved 20, all one way
            [-5.0, 5.0, 0.4],  # moved 10 (0.4 is noise), all undone
        ]
    )
    first = np.array([True, False, False])
    split = reversed_by_class(moves, {"a": first, "b": ~first, "all": np.ones(3, bool)})
    assert split["a"] == pytest.approx(60 / 110)
    assert split["b"] == pytest.approx(10 / 110)
    assert split["a"] + split["b"] == pytest.approx(reversed_share(moves)) == split["all"]
    assert reversed_by_class(np.zeros((2, 2)), {"a": np.ones(2, bool)}) == {"a": 0.0}

"""The rules baseline moves exactly as described: pairs independent, 30% cap, < $100 dropped."""

from __future__ import annotations

import numpy as np
import pytest

from reallocator.sim.strategies import Move, RulesConfig, rules_moves

M = 1_000_000.0  # micros per dollar


def test_hand_computed_moves() -> None:
    # Channels: G1, T1, T2, G2, N, T3 (budgets sum to the campaign budget, $251,000).
    # At 80% of the flight, expected = 0.8 x budget:
    #   G1 150,000 spent      0: expected 120,000 -> 100% under, gives (underspend 120,000)
    #   T1  60,000 spent 140,000: expected  48,000 -> takes (overspend 92,000)
    #   T2   1,000 spent     890: expected     800 -> 890 > 880, takes (overspend 90)
    #   G2  10,000 spent   7,000: expected   8,000 -> 7,000 < 7,200, gives (underspend 1,000)
    #   N   20,000 spent  16,500: expected  16,000 -> within 10%: neither
    #   T3  10,000 spent   9,200: expected   8,000 -> 9,200 > 8,800, takes (overspend 1,200)
    # Pair moves = min(underspend, overspend, 30% x 251,000 = 75,300), dropped under $100:
    #   G1->T1 75,300 (the cap)   G1->T2 90 dropped   G1->T3 1,200
    #   G2->T1  1,000             G2->T2 90 dropped   G2->T3 1,000
    # G2 gives 2,000 in total, twice its underspend: pairs are not netted.
    budgets = np.array([150_000, 60_000, 1_000, 10_000, 20_000, 10_000]) * M
    spent = np.array([0, 140_000, 890, 7_000, 16_500, 9_200]) * M
    moves, after = rules_moves(budgets, spent, 0.8, 251_000 * M)
    got = sorted((m.giver, m.taker, round(m.amount / M, 6)) for m in moves)
    assert got == [(0, 1, 75_300.0), (0, 5, 1_200.0), (3, 1, 1_000.0), (3, 5, 1_000.0)]
    assert (after / M).tolist() == pytest.approx([73_500, 136_300, 1_000, 8_000, 20_000, 12_200])
    assert after.sum() == pytest.approx(budgets.sum())  # moves conserve the total


def test_no_pairs_without_both_sides() -> None:
    budgets = np.array([100.0, 100.0]) * M
    # both under by more than 10%: two givers and no taker, nothing moves
    moves, after = rules_moves(budgets, np.array([10.0, 20.0]) * M, 0.5, 200 * M)
    assert moves == [] and np.array_equal(after, budgets)


def test_threshold_and_minimum_are_configurable() -> None:
    budgets = np.array([1_000.0, 1_000.0])
    spent = np.array([400.0, 560.0])  # expected 500: 20% under, 12% over
    moves, _ = rules_moves(budgets, spent, 0.5, 2_000.0, RulesConfig(min_move=10.0))
    assert moves == [Move(0, 1, 60.0)]
    moves, _ = rules_moves(budgets, spent, 0.5, 2_000.0, RulesConfig(threshold=0.15, min_move=10))
    assert moves == []  # 12% over is no longer a taker


def test_deviation_is_compared_after_rounding_to_two_decimals() -> None:
    # expected 1,000,000 each; +10.004% rounds to +10.00 (on pace), +10.006% to +10.01 (over).
    budgets = np.array([2_000_000.0, 2_000_000.0, 2_000_000.0])
    spent = np.array([500_000.0, 1_100_040.0, 1_100_060.0])
    moves, _ = rules_moves(budgets, spent, 0.5, budgets.sum(), RulesConfig(min_move=1.0))
    assert [(m.giver, m.taker) for m in moves] == [(0, 2)]
    # -10.004% is on pace too: no giver left, nothing moves.
    spent = np.array([899_960.0, 1_100_060.0, 1_000_000.0])
    moves, _ = rules_moves(budgets, spent, 0.5, budgets.sum(), RulesConfig(min_move=1.0))
    assert moves == []


def test_channels_without_budget_are_skipped() -> None:
    # A channel with no (or a negative) budget that spent anyway is no taker, and one with a
    # negative budget is no giver.
    budgets = np.array([1_000.0, 0.0, -50.0, 1_000.0])
    spent = np.array([100.0, 300.0, 0.0, 800.0])  # expected 500, 0, -25, 500
    moves, after = rules_moves(budgets, spent, 0.5, 2_000.0, RulesConfig(min_move=1.0))
    assert moves == [Move(0, 3, 300.0)]
    assert after.tolist() == [700.0, 0.0, -50.0, 1_300.0]

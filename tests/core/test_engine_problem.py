"""The problem's validation and the folded concave pieces both solver paths optimise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.engine import AllocationProblem
from reallocator.core.engine.problem import MAX_TOTAL, NO_MAX
from reallocator.core.engine.segments import deal_value, fold_pieces


def one_deal(**kw: Any) -> AllocationProblem:
    base: dict[str, Any] = {
        "current": [0],
        "lb": [0],
        "ub": [10],
        "seller": [0],
        "channel": [0],
        "seller_min": [0],
        "seller_max": [NO_MAX],
        "channel_min": [0],
        "channel_max": [NO_MAX],
        "total": 10,
        "value_slopes": [1.0],
    }
    base.update(kw)
    return AllocationProblem(**base)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lb": [11]}, "lb <= ub"),
        ({"seller": [1]}, "seller codes"),
        ({"value_slopes": [[1.0, 2.0]], "value_breaks": [[5]]}, "non-increasing"),
        ({"value_slopes": [[2.0, 1.0]], "value_breaks": [[]]}, "value_breaks"),
        ({"lam_deal": -1.0}, "lam_deal"),
        ({"money_cap": 5}, "price_num"),
        ({"total": MAX_TOTAL + 1}, "MAX_TOTAL"),
        ({"time_limit": 0.0}, "time_limit"),
    ],
)
def test_malformed_problems_are_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        one_deal(**change)


@pytest.mark.parametrize(
    ("lb", "ub", "total", "message"),
    [
        ([11], [10], None, "lb <= ub"),
        ([-1], [10], None, "lb <= ub"),
        ([0, 0], [10, 10], None, "shape"),
        ([0], [10], -1, "total must be >= 0"),
        ([0], [10], MAX_TOTAL + 1, "MAX_TOTAL"),
    ],
)
def test_new_bounds_are_checked_as_a_new_problem_would_be(
    lb: list[int], ub: list[int], total: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        one_deal().with_bounds(np.array(lb), np.array(ub), total)
    with pytest.raises(ValueError, match=message):
        one_deal(lb=lb, ub=ub, **({} if total is None else {"total": total}))


def test_new_bounds_give_the_problem_replace_gives() -> None:
    problem = one_deal(current=[4], lam_deal=0.5, value_slopes=[[3.0, 1.0]], value_breaks=[[6]])
    ours = problem.with_bounds(np.array([2]), np.array([7]), 9)
    theirs = replace(problem, lb=[2], ub=[7], total=9)
    for name in ("current", "lb", "ub", "value_slopes", "value_breaks", "seller", "channel"):
        assert np.array_equal(getattr(ours, name), getattr(theirs, name))
        assert getattr(ours, name).dtype == getattr(theirs, name).dtype
    assert (ours.total, ours.lam_deal, ours.value_unit) == (9, 0.5, theirs.value_unit)
    assert problem.lb.tolist() == [0] and problem.total == 10  # the original is unchanged


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.lists(st.floats(-3, 3), min_size=k, max_size=k),
            st.lists(st.integers(0, 60), min_size=k - 1, max_size=k - 1),
            st.integers(0, 80),  # current
            st.integers(0, 80),  # ub
            st.integers(0, 80),  # lb (clipped to ub)
            st.sampled_from([0.0, 0.25, 2.0]),
        )
    )
)
def test_folded_pieces_are_the_concave_curve_with_churn(case: tuple[Any, ...]) -> None:
    """Filling the pieces in order up to x gives f(x) - lam |x - c| + lam c, slopes never rise,
    and the piece minimums add up to lb."""
    slopes, breaks, current, ub, lb, lam = case
    p = one_deal(
        current=[current],
        ub=[ub],
        lb=[min(lb, ub)],
        total=100,
        value_slopes=[sorted(slopes, reverse=True)],
        value_breaks=[sorted(breaks)],
        lam_deal=lam,
    )
    pieces = fold_pieces(p)
    assert int(pieces.width.sum()) == ub
    assert int(pieces.lower.sum()) == min(lb, ub)
    live = pieces.width[0] > 0
    assert (np.diff(pieces.slope[0][live]) <= 1e-12).all()
    for x in range(ub + 1):
        filled = np.clip(x - pieces.start[0], 0, pieces.width[0])
        folded = float(filled @ pieces.slope[0])
        direct = float(deal_value(p, np.array([x]))[0]) - lam * abs(x - current) + lam * current
        assert folded == pytest.approx(direct, abs=1e-9)

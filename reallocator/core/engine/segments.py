"""Each deal's objective as one concave piecewise-linear curve over [0, ub_d], churn folded in.

Both solver paths read these pieces, so they optimise literally the same function.

    g_d(x) = f_d(x) - lam_deal * |x - c_d| - a_d (x - c_d)+ - b_d (c_d - x)+

f_d has slopes v_k between its breaks; |x - c_d| adds a break at c_d. Merging the K-1 value breaks
with c_d gives K+1 pieces; piece i spans [start_i, start_i + width_i] with slope

    v_{k(i)} + lam_deal + b_d   if the piece lies below c_d   (restoring budget the deal had)
    v_{k(i)} - lam_deal - a_d   if it lies above c_d          (moving new budget in)

which stays non-increasing, so g_d is concave and a maximiser fills pieces in order. That order
also places lower bounds: lb_d is laid on the first pieces (lower_i = clip(lb_d - start_i, 0,
width_i)); an optimum that fills in order meets lb_d exactly when these piece minimums hold.
The constant -lam_deal * c_d is left out of the pieces and added back when reporting.

Slopes, churn and values here are in the problem's `value_unit` (problem.py), where no sum of
them can overflow; `objective_parts` turns them into plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reallocator.core.engine.problem import AllocationProblem, FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class Pieces:
    """Dense (n, K+1) piece arrays; zero-width pieces are kept so the layout stays regular."""

    start: IntArray
    width: IntArray
    lower: IntArray
    slope: FloatArray


def fold_pieces(problem: AllocationProblem) -> Pieces:
    """Merge value breaks and the current amount into one sorted break list per deal (one
    np.sort over axis 1) and derive widths, slopes and lower-bound shares per piece.

    Written to allocate each (n, K+1) array once and fill it in place: at a million deals
    every fresh 32 MB array costs tens of milliseconds in first-touch page faults."""
    n, k = problem.n_deals, problem.n_segments
    ub = problem.ub_capped
    current = problem.current
    breaks = np.concatenate([problem.value_breaks, current[:, None]], axis=1)
    breaks.sort(axis=1)
    np.minimum(breaks, ub[:, None], out=breaks)
    start = np.empty((n, k + 1), np.int64)
    start[:, 0] = 0
    start[:, 1:] = breaks
    width = np.empty((n, k + 1), np.int64)
    np.subtract(breaks, start[:, :k], out=width[:, :k])
    np.subtract(ub, breaks[:, k - 1], out=width[:, k])
    del breaks
    # How many value breaks lie strictly below c_d: pieces 0..pos lie below c_d and use value
    # segment i; pieces after it use segment i - 1 (the extra break was c_d itself).
    pos = (problem.value_breaks < current[:, None]).sum(axis=1)
    slope = np.empty((n, k + 1), np.float64)
    lam_below, lam_above = _churn(problem)
    for i in range(k + 1):  # over the K+1 piece columns, each a vectorised step
        below = i <= pos
        same = problem.value_slopes[:, min(i, k - 1)]
        prev = problem.value_slopes[:, max(i - 1, 0)]
        np.copyto(slope[:, i], np.where(below, same + lam_below, prev - lam_above))
    lower = problem.lb[:, None] - start
    # clip(lower, 0, width) in two passes: np.clip with an array bound costs ~3 us at 50 deals.
    np.maximum(lower, 0, out=lower)
    np.minimum(lower, width, out=lower)
    return Pieces(start=start, width=width, lower=lower, slope=slope)


def _churn(problem: AllocationProblem) -> tuple[float | FloatArray, float | FloatArray]:
    """Churn weight per unit below and above c_d: lam_deal plus the per-deal extras."""
    lam = problem.lam_deal
    below = lam if problem.lam_below is None else lam + problem.lam_below
    above = lam if problem.lam_above is None else lam + problem.lam_above
    return below, above


def churn_cost(problem: AllocationProblem, x: IntArray) -> float:
    """The deal churn term of the objective for `x`: lam_deal |x - c| plus the extras (in
    multiples of `problem.value_unit`)."""
    below, above = _churn(problem)
    moved = x.astype(np.float64) - problem.current
    cost = np.where(moved > 0, above * moved, -below * moved)
    return float(np.sum(cost, dtype=np.float64))


def marginal_churn(problem: AllocationProblem, x: IntArray) -> FloatArray:
    """Churn on the next unit of each deal: -(weight above c_d) at or above it, +(below) under
    (in multiples of `problem.value_unit`)."""
    below, above = _churn(problem)
    out: FloatArray = np.where(x >= problem.current, -np.broadcast_to(above, x.shape), below)
    return out


def deal_value(problem: AllocationProblem, x: IntArray) -> FloatArray:
    """f_d(x_d) per deal, straight from the value segments (independent of the folding), in
    multiples of `problem.value_unit`."""
    if problem.n_segments == 1:
        # One segment (the usual problem): slope x amount filled, what the clip below gives
        # (x within [0, INT64_MAX]) without its four (n, 1) arrays.
        filled = np.maximum(x, 0).astype(np.float64)
        value: FloatArray = filled * problem.value_slopes[:, 0]
        return value
    n = problem.n_deals
    start = np.concatenate([np.zeros((n, 1), np.int64), problem.value_breaks], axis=1)
    end = np.concatenate(
        [problem.value_breaks, np.full((n, 1), np.iinfo(np.int64).max, np.int64)], axis=1
    )
    filled = np.clip(x[:, None] - start, 0, end - start).astype(np.float64)
    out: FloatArray = (filled * problem.value_slopes).sum(axis=1)
    return out

"""Budget beyond the forecasts: what the capacity forecasts cannot absorb, handed out anyway.

The optimisation treats each deal's forecast as a cap, so when the forecasts add up to less than
the budget the rest would stay unallocated. Budget no deal holds is certain not to spend, while
a forecast is an estimate: biased low for a deal we throttle, read from a bid-shading pacer's
shaded pace, blind to supply that returns. `stretch` gives the remainder to the deals that can
take it within every limit except the forecast (deal max, step, seller and channel limits, the
budget), in proportion to their forecasts and at most `ratio` x forecast beyond it, so their
pacers run at full speed; whatever still does not fit stays unspendable, as before.

The proportional split is a second min-cost flow on the same network. Each eligible deal gets
`levels` equal slices of room (ratio x forecast / levels); slice k is worth `levels - k` plus up
to VALUE_TILT for the deal's value per unit, so the flow fills slices level by level, the most
valuable deals up to VALUE_TILT levels ahead, within the group limits. The first allocation is
kept as a lower bound: the stretch only adds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reallocator.core.engine.problem import AllocationProblem, BoolArray, IntArray
from reallocator.core.engine.result import AllocationResult, SolvePath, SolveStatus, Timings
from reallocator.core.engine.solve import objective_parts, solve

LEVELS = 8
"""Slices of room per deal: among deals of equal value the split is proportional to the
forecasts within 1/LEVELS (VALUE_TILT leans it toward value otherwise)."""

VALUE_TILT = 3.0
"""How many levels ahead the most valuable deal fills, compared with the least valuable one: the
split leans toward value (measured on the simulator's suite: +0.2 to +2 points of value, the same
utilisation as a plain proportional split)."""


def stretch_room(
    x: IntArray, open_ub: IntArray, capacity: IntArray, eligible: BoolArray, ratio: float
) -> IntArray:
    """Per deal: how much it may take beyond `x` (0 where not eligible)."""
    extra = np.floor(np.maximum(capacity, 0).astype(np.float64) * max(ratio, 0.0))
    extra = np.minimum(extra, 2.0**62).astype(np.int64)
    room = np.minimum(np.maximum(open_ub - x, 0), extra)
    out: IntArray = np.where(eligible, room, 0).astype(np.int64)
    return out


def stretch(
    problem: AllocationProblem,
    first: AllocationResult,
    *,
    open_ub: IntArray,
    capacity: IntArray,
    eligible: BoolArray,
    ratio: float,
    levels: int = LEVELS,
) -> tuple[AllocationResult, IntArray] | None:
    """`first` plus the budget it left unallocated, spread over eligible deals (see the module).

    `problem` is the one `first` solves; `open_ub` its upper bounds without the capacity term.
    The result is verified against `problem` with `open_ub` in place of its upper bounds: its
    objective parts are on `problem`'s terms, its timings add the second solve; beside it, the
    upper bounds it meets (`problem.ub`, or more where a deal may take budget beyond its
    forecast). None when nothing is left to place or no deal has room.
    """
    x = first.allocation
    left = problem.total - int(x.sum())
    room = stretch_room(x, np.minimum(open_ub, problem.total), capacity, eligible, ratio)
    if left <= 0 or not room.any():
        return None
    k = np.arange(1, levels, dtype=np.int64)
    breaks = x[:, None] + (room[:, None] * k[None, :]) // levels  # (n, levels - 1)
    breaks = np.concatenate([x[:, None], breaks], axis=1)  # below x: forced by lb
    value = np.nan_to_num(problem.value_slopes[:, 0], nan=0.0)
    spread = float(value.max() - value.min()) if value.size else 0.0
    tie = VALUE_TILT * (value - value.min()) / spread if spread > 0 else np.zeros_like(value)
    level_worth = np.arange(levels, 0, -1, dtype=np.float64)  # levels .. 1
    slopes = np.concatenate(
        [np.full((x.size, 1), levels + VALUE_TILT + 1.0), level_worth[None, :] + tie[:, None]],
        axis=1,
    )
    second = replace(
        problem,
        lb=x,
        ub=x + room,
        value_slopes=slopes,
        value_breaks=breaks,
        lam_deal=0.0,
        lam_channel=0.0,
    )
    extra = solve(second)
    t = first.timings
    limited = SolveStatus.TIME_LIMITED
    result = replace(
        first,
        allocation=extra.allocation,
        # The second solve's path and status where they matter (a money cap sends it to the
        # LP); no duals: its artificial slopes price nothing a caller could use.
        path=extra.path if extra.path is SolvePath.LP else first.path,
        status=limited if limited in (first.status, extra.status) else first.status,
        duals=None,
        objective=objective_parts(problem, extra.allocation),
        binding=extra.binding,
        timings=Timings(
            build=t.build + extra.timings.build,
            solve=t.solve + extra.timings.solve,
            verify=t.verify + extra.timings.verify,
            total=t.total + extra.timings.total,
        ),
        notes=(
            *first.notes,
            *extra.notes,
            f"{int(extra.allocation.sum() - x.sum())} placed beyond forecasts",
        ),
    )
    return result, np.maximum(problem.ub, second.ub)

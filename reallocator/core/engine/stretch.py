"""Budget beyond the forecasts: what the capacity forecasts cannot absorb, handed out anyway.

The optimisation treats each deal's forecast as a cap, so when the forecasts add up to less than
the budget the rest would stay unallocated. Budget no deal holds is certain not to spend, while
a forecast is an estimate: biased low for a deal we throttle, read from a bid-shading pacer's
shaded pace, blind to supply that returns. `stretch` gives the remainder to the deals that can
take it within every limit except the forecast (deal max, step, seller and channel limits, the
budget), in proportion to their forecasts and at most `ratio` x forecast beyond it, so their
pacers run at full speed; whatever still does not fit stays unspendable, as before.

The split fills every eligible deal's room level by level: `levels` equal slices of room
(ratio x forecast / levels), slice k worth `levels - k` plus up to VALUE_TILT for the deal's value
per unit, so the most valuable deals run up to VALUE_TILT levels ahead. Without a binding seller
or channel maximum (or money cap) that is a closed form: one threshold found by bisection, then
largest remainders to land on the unit (`level_fill`, O(n)); otherwise the same slices go into a
second min-cost flow on the network, which honours the limits. The first allocation is kept as a
lower bound: the stretch only adds.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from reallocator.core.engine.problem import (
    AllocationProblem,
    BoolArray,
    FloatArray,
    IntArray,
    group_sum,
)
from reallocator.core.engine.result import AllocationResult, SolvePath, SolveStatus, Timings
from reallocator.core.engine.solve import objective_parts, solve
from reallocator.core.engine.verify import verify_allocation
from reallocator.core.model import UNITS_LIMIT

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
    extra = np.minimum(extra, UNITS_LIMIT).astype(np.int64)
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
    value = np.nan_to_num(problem.value_slopes[:, 0], nan=0.0)
    spread = float(value.max() - value.min()) if value.size else 0.0
    tie = VALUE_TILT * (value - value.min()) / spread if spread > 0 else np.zeros_like(value)
    bounds = replace(
        problem,
        lb=x,
        ub=x + room,
        lam_deal=0.0,
        lam_channel=0.0,
        lam_above=None,
        lam_below=None,
    )
    extra = None if problem.money_cap is not None else _closed_form(bounds, room, tie, left, levels)
    second = bounds
    if extra is None:
        extra, second = _flow_fill(bounds, x, room, tie, levels)
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


def level_fill(room: IntArray, tie: FloatArray, left: int, levels: int) -> IntArray | None:
    """The level-by-level split in closed form: deal d filled to the share
    clip(levels + tie_d - theta, 0, levels) / levels of its room, theta found by bisection so
    the amounts add up to what is left (all the room when it is not enough), then made integer
    by largest remainders. None if rounding cannot land exactly (the flow decides then)."""
    total_room = int(room.sum())
    if total_room <= left:
        return room.copy()
    r = room.astype(np.float64)

    def placed(theta: float) -> float:
        return float((r * np.clip(levels + tie - theta, 0.0, levels)).sum()) / levels

    lo, hi = 0.0, float(levels + (tie.max() if tie.size else 0.0))  # placed(lo) = all room
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        if placed(mid) > left:
            lo = mid
        else:
            hi = mid
    amount = r * np.clip(levels + tie - hi, 0.0, levels) / levels  # sums to <= left
    base = np.minimum(np.floor(amount).astype(np.int64), room)
    short = left - int(base.sum())
    headroom = base < room
    if short < 0 or short > int(headroom.sum()):
        return None
    fraction = np.where(headroom, amount - base, -1.0)
    order = np.argsort(-fraction, kind="stable")[:short]
    base[order] += 1
    return base


def _closed_form(
    bounds: AllocationProblem, room: IntArray, tie: FloatArray, left: int, levels: int
) -> AllocationResult | None:
    """`level_fill` on `bounds` (lb = the first allocation), verified; None when a seller or
    channel maximum would be crossed (the flow honours them)."""
    started = time.perf_counter()
    added = level_fill(room, tie, left, levels)
    if added is None:
        return None
    x = bounds.lb + added
    sellers = group_sum(x, bounds.seller, bounds.n_sellers)
    channels = group_sum(x, bounds.channel, bounds.n_channels)
    if (sellers > bounds.seller_max).any() or (channels > bounds.channel_max).any():
        return None
    t0 = time.perf_counter()
    binding = verify_allocation(bounds, x)
    done = time.perf_counter()
    return AllocationResult(
        allocation=x,
        status=SolveStatus.OPTIMAL,
        path=SolvePath.FLOW,
        objective=objective_parts(bounds, x),
        binding=binding,
        timings=Timings(build=0.0, solve=t0 - started, verify=done - t0, total=done - started),
        notes=("beyond forecasts: closed-form split",),
    )


def _flow_fill(
    bounds: AllocationProblem, x: IntArray, room: IntArray, tie: FloatArray, levels: int
) -> tuple[AllocationResult, AllocationProblem]:
    """The same split as a min-cost flow, for when seller/channel maximums or a money cap bind."""
    k = np.arange(1, levels, dtype=np.int64)
    breaks = x[:, None] + (room[:, None] * k[None, :]) // levels  # (n, levels - 1)
    breaks = np.concatenate([x[:, None], breaks], axis=1)  # below x: forced by lb
    level_worth = np.arange(levels, 0, -1, dtype=np.float64)  # levels .. 1
    slopes = np.concatenate(
        [np.full((x.size, 1), levels + VALUE_TILT + 1.0), level_worth[None, :] + tie[:, None]],
        axis=1,
    )
    second = replace(bounds, value_slopes=slopes, value_breaks=breaks)
    result = solve(second)
    return replace(result, notes=(*result.notes, "beyond forecasts: split by flow")), second

"""The hindsight gap floor: the least worst cumulative gap (metrics.worst_cumulative_gap) any
strategy could reach in a world, knowing all of its supply in advance - so a scenario's miss of
the 3 % target can be told apart from what its world allows at all.

    min  g
    s.t. -g <= sum_{tau <= t} (sum_d s[d, tau] - planned[tau]) / B <= g     every step t
         0 <= s[d, t] <= full_spend[d, t]                                    every deal and step
         sum_t s[d, t] <= max_d                                              deal maximums
         sum_{d in q} sum_t s[d, t] <= max_q                 seller and channel maximums
         sum_{d, t} s[d, t] <= B

on the metric's own grid: the world's steps and `World.planned`, the series `run_metrics` uses.

Why it is a lower bound. Every run of `run.simulate` spends s[d, t] <= full_spend[d, t] at
every step, PG deals included (a seller delivers min(target x noise, full_spend); buyer-paced
deals a delivery share <= 1 of it - the probabilistic pacer clips its share to 1, the discount
pacer's m ** bid_elasticity is <= 1 for m <= 1 as long as bid_elasticity >= 0, which the
scenario format does not check - then capped by what they may still spend and, with the
platform cap, scaled down; tests assert it on every run they make). So a run's spends are a
feasible point of the LP *without* the limit rows, and its worst gap is >= that LP's optimum:
`GapFloor.supply`, a bound for every run.
A run whose final spends also keep the deal, seller and channel maximums is a feasible point of
the whole LP, and its worst gap is >= `GapFloor.floor`. The reallocator plans within them (it
kept them in every conflicting_limits run checked); static, rules and greedy need not: static
keeps the booking, which may hold more than a maximum (conflicting_limits books 21-35 % on
display, whose maximum is 12 %), rules moves budget with no limits, greedy bounds only its
increases. Hence two figures, equal where no maximum binds (every shipped scenario but
conflicting_limits, where they differ by ~0.01 point); `keeps_maximums` tells which applies.

Left out, and why the bound stays valid: minimums (deal, seller, channel) only shrink the
feasible set, so dropping them lowers the optimum; rounding of group maximums to whole units
(the looser, unrounded share x budget is used). The budget row changes nothing: clipping any
feasible cumulative path at B (C'_t = min(C_t, B), taking the cut from the last steps' spends)
keeps every bound and never widens |C_t - P_t|, since P_t <= B; so the floor holds for a run
that overspends too. Nothing about pacers, sellers, forecasts or replanning enters: the floor is
what perfect foresight and perfect control could do.

Grid. The cumulative rows are imposed at every step, as the metric takes its maximum there.
Imposing them only at coarser block ends (and summing supply per block) would still give a
lower bound - every per-step path maps to a block path with the same cumulative values at block
ends - but a weaker one (spend could shift within a block). `world_floor` falls back to hourly
blocks only when the exact LP does not finish in its time limit (`FloorLp.block` says which).

Size. Deals that no binding maximum tells apart are merged into one class per step (a class's
supply is the sum of its deals'; any class path splits back into per-deal paths within each
deal's supply), so with no binding maximum the LP has one spend variable per step. Exact, and
checked against the per-deal formulation (`aggregate=False`) and an independent PuLP model in
tests. Cumulative spend is a variable per step (C_t = C_{t-1} + sum_k s[k, t]), so the matrix
has O(classes x steps) non-zeros, not O(deals x steps^2). Solved with GLOP (GLOP_PARAMETERS),
money in units of the mean planned step (budget / T). The optimum is GLOP's primal value, not a
certified bound: it may sit a tolerance (~1e-9 of the budget here) off the exact optimum.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse  # type: ignore[import-untyped]
from ortools.linear_solver.python import model_builder_helper as mbh

from reallocator.core.engine.lp import sparse_model
from reallocator.sim.world import FloatArray, IntArray, World

GLOP_PARAMETERS = (
    "use_dual_simplex: false use_preprocessing: true change_status_to_imprecise: false"
)
"""Primal simplex with presolve. Not the engine's dual simplex without presolve: on the per-deal
formulation of portfolio_500 (336k spend variables, `aggregate=False`) that one did not finish
in 60 s; primal with presolve took 0.5 s, dual with presolve 0.7 s, primal without it 0.8 s."""

Grouping = tuple[npt.ArrayLike, npt.ArrayLike]
"""(group code per deal, maximum per group in budget units; inf or NaN: none)."""


class FloorNotSolved(RuntimeError):
    """GLOP did not prove an optimum (in the time limit)."""


@dataclass(frozen=True)
class FloorLp:
    """One solve: the optimum g (share of the budget) and the LP's size and time."""

    gap: float
    block: int  # steps per block of the cumulative rows: 1 = every step (exact)
    classes: int  # spend classes (deals merged where no binding maximum tells them apart)
    variables: int
    rows: int
    nonzeros: int
    build_seconds: float
    solve_seconds: float
    status: str
    cumulative: FloatArray = field(repr=False)  # (T,) an optimal cumulative path, budget units


@dataclass(frozen=True)
class GapFloor:
    """A world's floors: `floor` with the maximums (for runs that keep them), `supply` with the
    supply alone (for every run). supply <= floor."""

    floor: float
    supply: float
    lp: FloorLp  # the solve behind `floor`

    @property
    def seconds(self) -> float:
        return self.lp.build_seconds + self.lp.solve_seconds


def solve_floor(
    full_spend: npt.ArrayLike,
    planned: npt.ArrayLike,
    budget: float,
    deal_max: npt.ArrayLike | None = None,
    groupings: Sequence[Grouping] = (),
    *,
    aggregate: bool = True,
    block: int = 1,
    time_limit: float = 60.0,
) -> FloorLp:
    """The LP of the module docstring. `full_spend` (n, T) and `planned` (T,) per step, `deal_max`
    (n,) and group maximums in the same units as `budget` (inf or NaN: no maximum)."""
    t0 = time.perf_counter()
    budget = float(budget)
    supply = np.maximum(np.asarray(full_spend, np.float64), 0.0)
    if supply.ndim != 2:
        raise ValueError("full_spend must be (deals, steps)")
    n, steps_in = supply.shape
    plan_cum = np.cumsum(np.asarray(planned, np.float64))
    if plan_cum.shape != (steps_in,):
        raise ValueError("planned must have one value per step")
    # Money in units of the mean planned step (budget / T): spends and bounds near 1, not 1e-6,
    # well above GLOP's absolute tolerances.
    unit = budget / steps_in
    supply, plan_cum = supply / unit, plan_cum / unit
    if block > 1:  # a relaxation: cumulative rows at block ends only (module docstring)
        pad = (-steps_in) % block
        supply = np.pad(supply, ((0, 0), (0, pad))).reshape(n, -1, block).sum(axis=2)
        ends = np.minimum(np.arange(1, supply.shape[1] + 1) * block, steps_in) - 1
        plan_cum = plan_cum[ends]
    T = supply.shape[1]
    capacity = supply.sum(axis=1)

    # Which maximums can bind: a deal's below its capacity, a group's below its members'.
    dmax = _maxima(deal_max, n) / unit
    deal_binds = dmax < capacity
    keys = [np.where(deal_binds | (not aggregate), np.arange(n), -1)]
    group_rows: list[tuple[IntArray, FloatArray]] = []  # (code per deal or -1, max per group)
    for codes_like, maxima_like in groupings:
        codes = np.asarray(codes_like, np.int64)
        gmax = _maxima(maxima_like, int(np.max(codes, initial=-1)) + 1) / unit
        gcap = np.bincount(codes, weights=capacity, minlength=gmax.size)
        binds = gmax < gcap
        member = np.where(binds[codes], codes, -1)
        keys.append(member)
        group_rows.append((member, gmax))
    _, cls = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    cls = np.asarray(cls, np.int64).ravel()
    k = int(cls.max()) + 1 if n else 0
    indicator = scipy.sparse.csr_matrix(
        (np.ones(n), (cls, np.arange(n))), shape=(k, n), dtype=np.float64
    )
    class_supply = np.asarray(indicator @ supply)  # (K, T)

    # Columns: s[k, t] where the class has supply at t (row-major), C_0..C_{T-1}, g.
    ks, ts = np.nonzero(class_supply > 0)
    m = ks.size
    c_col = m + np.arange(T)
    g_col = m + T
    var_lb = np.zeros(m + T + 1)
    total = budget / unit  # C_t <= C_T <= B
    var_ub = np.concatenate([class_supply[ks, ts], np.full(T, total), [math.inf]])
    objective = np.zeros(m + T + 1)
    objective[g_col] = 1.0

    rows: list[IntArray] = []
    cols: list[IntArray] = []
    coefs: list[FloatArray] = []
    row_lb: list[FloatArray] = []
    row_ub: list[FloatArray] = []

    def add(r: IntArray, c: IntArray, v: FloatArray | float, lo: FloatArray, hi: FloatArray) -> int:
        base = sum(x.size for x in row_lb)
        rows.append(base + np.asarray(r, np.int64))
        cols.append(np.asarray(c, np.int64))
        coefs.append(np.broadcast_to(np.asarray(v, np.float64), np.shape(r)).copy())
        row_lb.append(np.asarray(lo, np.float64))
        row_ub.append(np.asarray(hi, np.float64))
        return base

    zeros, infs = np.zeros(T), np.full(T, math.inf)
    # Flow: sum_k s[k, t] + C_{t-1} - C_t = 0.
    steps = np.arange(T)
    add(
        np.concatenate([ts, steps, steps[1:]]),
        np.concatenate([np.arange(m), c_col, c_col[:-1]]),
        np.concatenate([np.ones(m), -np.ones(T), np.ones(T - 1)]),
        zeros,
        zeros,
    )
    # Gap: C_t - g <= P_t and C_t + g >= P_t.
    add(
        np.concatenate([steps, steps]),
        np.concatenate([c_col, np.full(T, g_col)]),
        np.concatenate([np.ones(T), -np.ones(T)]),
        -infs,
        plan_cum,
    )
    add(
        np.concatenate([steps, steps]),
        np.concatenate([c_col, np.full(T, g_col)]),
        np.ones(2 * T),
        plan_cum,
        infs,
    )

    def at_most(row_of_class: IntArray, caps: FloatArray) -> None:
        """One row per cap: the spend of the classes mapped to it (-1: none), at most it."""
        take = row_of_class[ks] >= 0
        add(row_of_class[ks][take], np.flatnonzero(take), 1.0, np.full(caps.size, -math.inf), caps)

    # Deal maximums: one row per binding deal (its own class).
    bound_deals = np.flatnonzero(deal_binds)
    if bound_deals.size:
        row_of_class = np.full(k, -1, np.int64)
        row_of_class[cls[bound_deals]] = np.arange(bound_deals.size)
        at_most(row_of_class, dmax[bound_deals])
    # Group maximums: one row per binding group.
    for member, gmax in group_rows:
        bound = np.flatnonzero(np.bincount(member[member >= 0], minlength=gmax.size) > 0)
        if not bound.size:
            continue
        row_of_group = np.full(gmax.size, -1, np.int64)
        row_of_group[bound] = np.arange(bound.size)
        class_group = np.full(k, -1, np.int64)
        class_group[cls] = np.where(member >= 0, row_of_group[np.maximum(member, 0)], -1)
        at_most(class_group, gmax[bound])

    row, col, coef = np.concatenate(rows), np.concatenate(cols), np.concatenate(coefs)
    model = sparse_model(
        var_lb,
        var_ub,
        objective,
        np.concatenate(row_lb),
        np.concatenate(row_ub),
        (row, col, coef),
        maximize=False,
    )
    built = time.perf_counter() - t0
    solver = mbh.ModelSolverHelper("glop")
    solver.set_solver_specific_parameters(GLOP_PARAMETERS)
    solver.set_time_limit_in_seconds(time_limit)
    t1 = time.perf_counter()
    solver.solve(model.helper)
    solved = time.perf_counter() - t1
    status = solver.status()
    if status != mbh.SolveStatus.OPTIMAL or not solver.has_solution():
        raise FloorNotSolved(f"gap floor LP: GLOP status {status.name} (block {block})")
    values = np.asarray(solver.variable_values(), np.float64)
    return FloorLp(
        gap=max(float(values[g_col]) * unit / budget, 0.0),
        block=block,
        classes=k,
        variables=m + T + 1,
        rows=int(sum(x.size for x in row_lb)),
        nonzeros=int(row.size),
        build_seconds=built,
        solve_seconds=solved,
        status=status.name,
        cumulative=values[c_col] * unit,
    )


def _maxima(values: npt.ArrayLike | None, size: int) -> FloatArray:
    """Maximums as floats, +inf where there is none (None, NaN, inf or INT64_MAX)."""
    if values is None:
        return np.full(size, math.inf)
    out = np.asarray(values, np.float64).copy()
    out[np.isnan(out) | (out >= float(np.iinfo(np.int64).max) / 2)] = math.inf
    return out


def group_maxima(table: pd.DataFrame, ids: Sequence[str], budget: float) -> FloatArray:
    """Per group: the tighter of its absolute maximum and its share of the budget, unrounded
    (inf: none) - what `metrics.limit_violation` holds spends to, never tighter."""
    frame = table.reindex(list(ids))
    share = frame["max_share"].to_numpy(np.float64) * float(budget)
    out: FloatArray = np.fmin(frame["max_total"].to_numpy(np.float64), share)
    return np.where(np.isnan(out), math.inf, out)


def world_floor(world: World, *, aggregate: bool = True, time_limit: float = 30.0) -> GapFloor:
    """Both floors of a world, on the metric's grid and plan (`World.planned`). Should the exact
    LP not finish in `time_limit` (every shipped scenario takes under 0.2 s; 460 binding deal
    maximums on portfolio_500 took over a minute), the hourly relaxation - still a lower bound,
    `lp.block` says so - is returned instead."""
    groupings: list[Grouping] = [
        (world.seller, group_maxima(world.seller_limits, world.seller_ids, world.budget)),
        (world.channel, group_maxima(world.channel_limits, world.channel_ids, world.budget)),
    ]

    def solve(limits: bool, block: int, limit: float) -> FloorLp:
        return solve_floor(
            world.full_spend,
            world.planned,
            world.budget,
            world.max_allocation if limits else None,
            groupings if limits else (),
            aggregate=aggregate or not limits,
            block=block,
            time_limit=limit,
        )

    def exact_or_hourly(limits: bool) -> FloorLp:
        try:
            return solve(limits, 1, time_limit)
        except FloorNotSolved:
            return solve(limits, world.scenario.steps_per_hour, 4.0 * time_limit)

    limited = exact_or_hourly(True)
    binds = limited.classes > 1 or not aggregate
    supply = exact_or_hourly(False).gap if binds else limited.gap
    return GapFloor(floor=limited.gap, supply=min(supply, limited.gap), lp=limited)


def keeps_maximums(world: World, spend: IntArray | FloatArray, tolerance: float = 1e-6) -> bool:
    """Whether final spends per deal keep every deal, seller and channel maximum (within
    `tolerance` x the budget): the runs `GapFloor.floor` bounds."""
    b = float(world.budget)
    x = np.asarray(spend, np.float64)
    if np.any(x > _maxima(world.max_allocation, x.size) + tolerance * b):
        return False
    for table, codes, ids in (
        (world.seller_limits, world.seller, world.seller_ids),
        (world.channel_limits, world.channel, world.channel_ids),
    ):
        totals = np.bincount(codes, weights=x, minlength=len(ids))
        if np.any(totals > group_maxima(table, ids, b) + tolerance * b):
            return False
    return True

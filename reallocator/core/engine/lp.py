"""The general path: the same problem as an LP, for constraints that are not a network (a money
cap beside a unit goal) and for duals. Solved by GLOP dual simplex through OR-Tools' model
builder (`ModelBuilder` filled from sparse arrays, `ModelSolverHelper("glop")`).

Variables: y_i per deal piece (segments.py) with lower_i <= y_i <= width_i, and per channel
a_c in [low_a, cap_a], b_c in [low_b, cap_b] (its total below / above the current channel total).

    stage 1:  max  sum_i y_i
    stage 2:  max  sum_i slope_i y_i + lam_channel * sum_c (a_c - b_c)
    s.t.      sum_{i in c} y_i - a_c - b_c = 0                 every channel c
              smin_q <= sum_{i in q} y_i <= smax_q             every seller q
              sum_i (price_num_d / price_den) y_i <= money_cap (when there is a money cap)
              D_lo <= sum_c (a_c + b_c) <= total               (stage 1: D_lo = 0)

Rows are laid out in that order (channels, sellers, money, total), so the duals come back as
one array sliced the same way.

Priority (1) is lexicographic in two solves: stage 1 finds D1 = max deliverable (on a network it
is the exact flow value and the LP is skipped), stage 2 keeps the total at D_lo = floor(D1) (the
best any integer plan can do) and maximises value. Lower bounds sit on the pieces, as on the flow
path (valid because every curve is concave), so there is no per-deal row.

The model goes in as arrays: variable bounds and objective as float64 vectors, the rows as one
scipy CSR matrix, through `ModelBuilderHelper.fill_model_from_sparse_data` (no per-variable
Python objects). Solutions come back the same way: `ModelSolverHelper.variable_values()` and
`dual_values()` are numpy arrays. (`model_builder.Solver.values()` builds a pandas Series one
variable at a time: 0.31 s for the 350k variables of stage 2 at 100k deals, plus 0.15 s for
`get_variables()`, against 0.3 ms for the arrays; `Solver` keeps its helper private, so the
helper is used directly.)

GLOP parameters, measured on the benchmark family at 100k deals: dual simplex (100x faster than
primal, see NOTES); cost perturbation, because stage 1's all-ones objective is massively
degenerate (4.0 s -> 0.15 s; GLOP removes the perturbation before it reports); no presolve
(0.45 s -> 0.21 s on stage 2: the model is already lean); `change_status_to_imprecise: false` so
a solution with a 1e-6 residual on a large model is returned rather than withheld (the plan is
rounded and verified in integers anyway). On a time limit GLOP returns no point: if stage 2
stops, the stage-1 plan (feasible, delivering the most) is returned, flagged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse  # type: ignore[import-untyped]
from ortools.linear_solver.python import model_builder as mb
from ortools.linear_solver.python import model_builder_helper as mbh

from reallocator.core.engine.errors import InfeasibleProblem, NoFeasiblePlan
from reallocator.core.engine.flow import fits_network, max_deliverable
from reallocator.core.engine.problem import (
    NO_MAX,
    AllocationProblem,
    FloatArray,
    IntArray,
    from_unit_array,
)
from reallocator.core.engine.result import LpDuals
from reallocator.core.engine.segments import Pieces, fold_pieces

GLOP_PARAMETERS = (
    "use_dual_simplex: true change_status_to_imprecise: false "
    "perturb_costs_in_dual_simplex: true use_preprocessing: false"
)

_WITH_POINT = (mbh.SolveStatus.OPTIMAL, mbh.SolveStatus.FEASIBLE)


@dataclass(frozen=True, eq=False)
class LpSolution:
    values: FloatArray  # fractional allocation per deal
    delivered_floor: int  # D_lo: the integer total the plan should reach
    duals: LpDuals | None
    time_limited: bool  # stage 2 did not finish: values are the stage-1 solution
    build_seconds: float
    solve_seconds: float


@dataclass(frozen=True, eq=False)
class GlopRun:
    """One GLOP solve, read back as arrays. `values`/`duals` are None without a point."""

    status: mbh.SolveStatus
    values: FloatArray | None
    duals: FloatArray | None
    objective: float
    seconds: float

    @property
    def optimal(self) -> bool:
        return bool(self.status == mbh.SolveStatus.OPTIMAL)

    @property
    def infeasible(self) -> bool:
        return bool(self.status == mbh.SolveStatus.INFEASIBLE)


def as_float_bound(values: IntArray) -> FloatArray:
    """Integer limits as LP bounds: INT64_MAX ("no maximum") becomes +inf."""
    out = values.astype(np.float64)
    out[values == NO_MAX] = math.inf
    return out


def sparse_model(
    var_lb: FloatArray,
    var_ub: FloatArray,
    objective: FloatArray,
    row_lb: FloatArray,
    row_ub: FloatArray,
    entries: tuple[IntArray, IntArray, FloatArray],
    *,
    maximize: bool,
) -> mb.ModelBuilder:
    """A ModelBuilder model from arrays: `entries` are the (row, column, coefficient) triplets of
    the constraint matrix, in any order (duplicates add up)."""
    row, col, coef = entries
    matrix = scipy.sparse.csr_matrix(
        (coef, (row, col)), shape=(row_lb.shape[0], var_lb.shape[0]), dtype=np.float64
    )
    model = mb.ModelBuilder()  # type: ignore[no-untyped-call]
    # The binding's stub spells the arrays as ndarray[float64[m, 1]]: plain 1-D float64 is what
    # it takes (pybind11 Eigen vectors).
    fill = model.helper.fill_model_from_sparse_data
    fill(var_lb, var_ub, objective, row_lb, row_ub, matrix)  # type: ignore[arg-type]
    model.helper.set_maximize(maximize)
    return model


def run_glop(model: mb.ModelBuilder, time_limit: float) -> GlopRun:
    """Solve with GLOP (GLOP_PARAMETERS) and read the primal and dual solution vectorised."""
    solver = mbh.ModelSolverHelper("glop")
    solver.set_solver_specific_parameters(GLOP_PARAMETERS)
    solver.set_time_limit_in_seconds(max(time_limit, 1e-3))
    t = time.perf_counter()
    solver.solve(model.helper)
    seconds = time.perf_counter() - t
    status = solver.status()
    if status in _WITH_POINT and solver.has_solution():
        values = np.asarray(solver.variable_values(), dtype=np.float64)
        duals = np.asarray(solver.dual_values(), dtype=np.float64)
        return GlopRun(status, values, duals, float(solver.objective_value()), seconds)
    return GlopRun(status, None, None, math.nan, seconds)


@dataclass(frozen=True, eq=False)
class _Model:
    """One stage's model and its layout."""

    model: mb.ModelBuilder
    mask: npt.NDArray[np.bool_]
    pieces: Pieces
    n_y: int
    total_row: int


def _deal_pieces(problem: AllocationProblem) -> Pieces:
    """One piece per deal, [lb, ub]: stage 1 counts units, not value, so pieces would only
    multiply the variables."""
    n = problem.n_deals
    zero = np.zeros((n, 1), np.int64)
    ub = problem.ub_capped[:, None]
    return Pieces(start=zero, width=ub, lower=problem.lb[:, None], slope=np.zeros((n, 1)))


def _build(problem: AllocationProblem, pieces: Pieces, objective: str, d_lo: float) -> _Model:
    """The LP of the module docstring over `pieces`; `objective` is "units" (stage 1) or
    "value" (stage 2)."""
    mask = pieces.width > 0
    n_y = int(mask.sum())
    c, s, total = problem.n_channels, problem.n_sellers, problem.total
    cmin = np.minimum(problem.channel_min, total)
    cmax = np.minimum(problem.channel_max, total)
    cap_a = np.minimum(problem.current_channel_totals(), cmax)
    low_a = np.minimum(cmin, cap_a)
    var_lb = np.concatenate([pieces.lower[mask], low_a, cmin - low_a]).astype(np.float64)
    var_ub = np.concatenate([pieces.width[mask], cap_a, cmax - cap_a]).astype(np.float64)
    if objective == "units":
        obj = np.concatenate([np.ones(n_y), np.zeros(2 * c)])
    else:
        lam = problem.lam_channel
        obj = np.concatenate([pieces.slope[mask], np.full(c, lam), np.full(c, -lam)])

    # Triplets: each piece is +1 in its channel and seller rows (and priced in the money row);
    # a_c and b_c are -1 in their channel row and +1 in the total row.
    deal_of = np.nonzero(mask)[0]
    y_col = np.arange(n_y, dtype=np.int64)
    ab_col = n_y + np.arange(2 * c, dtype=np.int64)
    ab_channel = np.tile(np.arange(c, dtype=np.int64), 2)
    has_money = problem.money_cap is not None and problem.price_num is not None
    total_row = c + s + int(has_money)
    rows: list[IntArray] = [
        problem.channel[deal_of].astype(np.int64),
        c + problem.seller[deal_of].astype(np.int64),
        ab_channel,
    ]
    cols: list[IntArray] = [y_col, y_col, ab_col]
    coefs: list[FloatArray] = [np.ones(n_y), np.ones(n_y), np.full(2 * c, -1.0)]
    row_lb: list[FloatArray] = [np.zeros(c), problem.seller_min.astype(np.float64)]
    row_ub: list[FloatArray] = [np.zeros(c), as_float_bound(problem.seller_max)]
    if has_money and problem.price_num is not None and problem.money_cap is not None:
        rows.append(np.full(n_y, c + s, np.int64))
        cols.append(y_col)
        coefs.append((problem.price_num / problem.price_den)[deal_of])
        row_lb.append(np.array([-math.inf]))
        row_ub.append(np.array([float(problem.money_cap)]))
    rows.append(np.full(2 * c, total_row, np.int64))
    cols.append(ab_col)
    coefs.append(np.ones(2 * c))
    row_lb.append(np.array([d_lo]))
    row_ub.append(np.array([float(total)]))
    model = sparse_model(
        var_lb,
        var_ub,
        obj,
        np.concatenate(row_lb),
        np.concatenate(row_ub),
        (np.concatenate(rows), np.concatenate(cols), np.concatenate(coefs)),
        maximize=True,
    )
    return _Model(model, mask, pieces, n_y, total_row)


def _per_deal(model: _Model, values: FloatArray) -> FloatArray:
    dense = model.pieces.lower.astype(np.float64)
    dense[model.mask] = values[: model.n_y]
    out: FloatArray = dense.sum(axis=1)
    return out


def _duals(problem: AllocationProblem, dv: FloatArray) -> LpDuals:
    """The row duals in plain values (the model's costs are in `problem.value_unit`)."""
    c, s = problem.n_channels, problem.n_sellers
    dv = from_unit_array(dv, problem.value_unit)
    return LpDuals(
        channel=dv[:c],
        seller=dv[c : c + s],
        money=float(dv[c + s]) if problem.money_cap is not None else None,
        total=float(dv[-1]),
    )


def _stage1(problem: AllocationProblem, deadline: float) -> tuple[_Model, GlopRun, float]:
    """max sum x over one variable per deal; the model, the run, its build seconds."""
    t = time.perf_counter()
    model = _build(problem, _deal_pieces(problem), "units", 0.0)
    build = time.perf_counter() - t
    run = run_glop(model.model, deadline - time.perf_counter())
    if run.infeasible:
        raise InfeasibleProblem("the LP has no feasible point")
    if run.values is None:
        raise NoFeasiblePlan(f"GLOP stage 1 ended with status {run.status.name}")
    return model, run, build


def deliverable_lp(problem: AllocationProblem, time_limit: float | None = None) -> float:
    """Stage 1 alone: the LP's max deliverable total, money cap included. Raises
    InfeasibleProblem when the LP has no feasible point (a feasibility check for problems the
    flow cannot decide)."""
    limit = problem.time_limit if time_limit is None else time_limit
    return _stage1(problem, time.perf_counter() + limit)[1].objective


@dataclass(frozen=True, eq=False)
class ValueStage:
    objective: float  # sum_i slope_i y_i + lam_channel * sum_c (a_c - b_c): value - churn + const,
    # in multiples of problem.value_unit (marginal_check turns a difference of two into value)
    duals: LpDuals | None
    values: FloatArray  # fractional allocation per deal


def value_stage(
    problem: AllocationProblem, delivered: int, time_limit: float | None = None
) -> ValueStage:
    """Stage 2 alone with the total held at `delivered` or more: for re-solve checks of duals.
    The objective leaves out constants that depend only on the current plan, so differences
    between problems with the same current plan are differences of value minus churn."""
    limit = problem.time_limit if time_limit is None else time_limit
    model = _build(problem, fold_pieces(problem), "value", float(delivered))
    run = run_glop(model.model, limit)
    if run.infeasible:
        raise InfeasibleProblem(f"no feasible point delivers {delivered}")
    if run.values is None or run.duals is None or not run.optimal:
        raise NoFeasiblePlan(f"GLOP value stage ended with status {run.status.name}")
    return ValueStage(run.objective, _duals(problem, run.duals), _per_deal(model, run.values))


def solve_lp(problem: AllocationProblem, time_limit: float | None = None) -> LpSolution:
    """Two-stage lexicographic LP; values are fractional and still to be rounded.

    `time_limit` (seconds, default the problem's) bounds both GLOP solves together."""
    t0 = time.perf_counter()
    deadline = t0 + (problem.time_limit if time_limit is None else time_limit)
    first: tuple[_Model, FloatArray] | None = None
    build = 0.0
    if problem.money_cap is None and fits_network(problem):
        d1 = float(max_deliverable(problem))
    else:
        first_model, first_run, build = _stage1(problem, deadline)
        assert first_run.values is not None  # _stage1 raises without a point
        first = (first_model, first_run.values)
        d1 = first_run.objective
    stage1_seconds = time.perf_counter() - t0 - build
    d_lo = math.floor(d1 + 1e-6)  # exact when d1 came from the flow; snaps GLOP's x.9999999

    t = time.perf_counter()
    model = _build(problem, fold_pieces(problem), "value", float(d_lo))
    build += time.perf_counter() - t
    solve_time = stage1_seconds
    for attempt in range(2):
        second = run_glop(model.model, deadline - time.perf_counter())
        solve_time += second.seconds
        if not second.infeasible or attempt:
            break
        # GLOP's stage-1 value can overshoot by its tolerance: give up one part in a million.
        d_lo = math.floor(d1 * (1 - 1e-6)) - 1
        model.model.helper.set_constraint_lower_bound(model.total_row, float(d_lo))

    if second.values is not None:
        duals = _duals(problem, second.duals) if second.duals is not None else None
        values = _per_deal(model, second.values)
        return LpSolution(values, d_lo, duals, not second.optimal, build, solve_time)
    if first is not None:
        # Stage 2 stopped early: the stage-1 plan is feasible and delivers the most.
        first_model, first_values = first
        values = _per_deal(first_model, first_values)
        return LpSolution(values, d_lo, None, True, build, solve_time)
    if second.infeasible:
        raise InfeasibleProblem("the LP has no feasible point")
    raise NoFeasiblePlan(f"GLOP stage 2 ended with status {second.status.name}")

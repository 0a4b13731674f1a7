"""The general path: the same problem as an LP, for constraints that are not a network (a money
cap beside a unit goal) and for duals. Solved by GLOP dual simplex through OR-Tools' model
builder solver (`ModelSolverHelper`).

Variables: y_i per deal piece (segments.py) with lower_i <= y_i <= width_i, and per channel
a_c in [low_a, cap_a], b_c in [low_b, cap_b] (its total below / above the current channel total).

    stage 1:  max  sum_i y_i
    stage 2:  max  sum_i slope_i y_i + lam_channel * sum_c (a_c - b_c)
    s.t.      sum_{i in c} y_i - a_c - b_c = 0                 every channel c
              smin_q <= sum_{i in q} y_i <= smax_q             every seller q
              D_lo <= sum_c (a_c + b_c) <= total               (stage 1: D_lo = 0)
              sum_i (price_num_d / price_den) y_i <= money_cap (when there is a money cap)

Priority (1) is lexicographic in two solves: stage 1 finds D1 = max deliverable (on a network it
is the exact flow value and the LP is skipped), stage 2 keeps the total at D_lo = floor(D1) (the
best any integer plan can do) and maximises value. Lower bounds sit on the pieces, as on the flow
path (valid because every curve is concave), so there is no per-deal row.

The model is handed to the solver as a serialized MPModelRequest assembled with numpy: each
variable is a fixed 29-byte MPVariableProto record (a structured array), each row's packed
indices are varint-encoded in one vectorised pass. That keeps building free of per-variable
Python objects (ModelBuilder's vectorised `fill_model_from_sparse_data` needs scipy, which the
project does not depend on) and costs about as much as writing the arrays once.

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
import ortools.linear_solver.linear_solver_pb2 as mp
from ortools.linear_solver.python import model_builder_helper as mbh

from reallocator.core.engine.errors import InfeasibleProblem, NoFeasiblePlan
from reallocator.core.engine.flow import fits_network, max_deliverable
from reallocator.core.engine.problem import NO_MAX, AllocationProblem, FloatArray, IntArray
from reallocator.core.engine.result import LpDuals
from reallocator.core.engine.segments import Pieces, fold_pieces

GLOP_PARAMETERS = (
    "use_dual_simplex: true change_status_to_imprecise: false "
    "perturb_costs_in_dual_simplex: true use_preprocessing: false"
)

_VAR_RECORD = np.dtype(
    [
        ("field", "u1"),
        ("size", "u1"),
        ("lb_tag", "u1"),
        ("lb", "<f8"),
        ("ub_tag", "u1"),
        ("ub", "<f8"),
        ("obj_tag", "u1"),
        ("obj", "<f8"),
    ]
)  # packed: itemsize 29 = 2 + 27


@dataclass(frozen=True, eq=False)
class LpSolution:
    values: FloatArray  # fractional allocation per deal
    delivered_floor: int  # D_lo: the integer total the plan should reach
    duals: LpDuals | None
    time_limited: bool  # stage 2 did not finish: values are the stage-1 solution
    build_seconds: float
    solve_seconds: float


def _varints(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Protobuf varint encoding of non-negative ints, all at once: the bytes in order and the
    byte length of each value."""
    v = values.astype(np.uint64)
    top = int(v.max()) if v.size else 0
    width = max(1, (top.bit_length() + 6) // 7)
    shifts = (7 * np.arange(width, dtype=np.uint64))[None, :]
    groups = ((v[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    lengths = np.ones(v.shape[0], dtype=np.int64)
    for k in range(1, width):
        lengths += v >= np.uint64(1 << (7 * k))
    keep = np.arange(width)[None, :] < lengths[:, None]
    more = np.arange(width)[None, :] < (lengths - 1)[:, None]
    groups |= np.where(more, np.uint8(0x80), np.uint8(0))
    return groups[keep], lengths


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _double(tag: int, value: float) -> bytes:
    return bytes([tag]) + np.array([value], "<f8").tobytes()


def _variables(lb: FloatArray, ub: FloatArray, obj: FloatArray) -> bytes:
    """MPModelProto.variable (field 3) records: lower_bound(1), upper_bound(2), objective(3)."""
    rec = np.empty(lb.shape[0], dtype=_VAR_RECORD)
    rec["field"], rec["size"] = 0x1A, 27
    rec["lb_tag"], rec["ub_tag"], rec["obj_tag"] = 0x09, 0x11, 0x19
    rec["lb"], rec["ub"], rec["obj"] = lb, ub, obj
    return rec.tobytes()


def _rows(
    var: npt.NDArray[np.int64],
    coef: FloatArray,
    counts: npt.NDArray[np.int64],
    lower: FloatArray,
    upper: FloatArray,
) -> bytes:
    """MPModelProto.constraint (field 4) records for rows whose terms are laid out row after
    row (`counts` terms each): var_index(6, packed), coefficient(7, packed), bounds(2, 3)."""
    data, lengths = _varints(var)
    term_end = np.cumsum(counts)
    byte_end = np.concatenate([[0], np.cumsum(lengths)])[term_end]
    byte_start = np.concatenate([[0], byte_end[:-1]])
    term_start = term_end - counts
    coef_bytes = coef.astype("<f8").tobytes()
    out = []
    for r in range(counts.shape[0]):  # rows are groups (sellers, channels), never deals
        body = (
            _delimited(0x32, data[byte_start[r] : byte_end[r]].tobytes())
            + _delimited(0x3A, coef_bytes[8 * term_start[r] : 8 * term_end[r]])
            + _double(0x11, float(lower[r]))
            + _double(0x19, float(upper[r]))
        )
        out.append(_delimited(0x22, body))
    return b"".join(out)


def _as_float_bound(values: IntArray) -> FloatArray:
    out = values.astype(np.float64)
    out[values == NO_MAX] = math.inf
    return out


@dataclass(frozen=True, eq=False)
class _Model:
    """The byte pieces that do not change between the two stages, and the layout."""

    mask: npt.NDArray[np.bool_]
    pieces: Pieces
    n_y: int
    constraint_bytes: bytes  # channel, seller and money rows
    var_lb: FloatArray
    var_ub: FloatArray
    n_channels: int


def _deal_pieces(problem: AllocationProblem) -> Pieces:
    """One piece per deal, [lb, ub]: stage 1 counts units, not value, so pieces would only
    multiply the variables."""
    n = problem.n_deals
    zero = np.zeros((n, 1), np.int64)
    ub = problem.ub_capped[:, None]
    return Pieces(start=zero, width=ub, lower=problem.lb[:, None], slope=np.zeros((n, 1)))


def _build(problem: AllocationProblem, pieces: Pieces) -> _Model:
    mask = pieces.width > 0
    n_y = int(mask.sum())
    c, s, total = problem.n_channels, problem.n_sellers, problem.total
    cmin = np.minimum(problem.channel_min, total)
    cmax = np.minimum(problem.channel_max, total)
    cap_a = np.minimum(problem.current_channel_totals(), cmax)
    low_a = np.minimum(cmin, cap_a)
    var_lb = np.concatenate([pieces.lower[mask], low_a, cmin - low_a]).astype(np.float64)
    var_ub = np.concatenate([pieces.width[mask], cap_a, cmax - cap_a]).astype(np.float64)

    # Column index of each piece, -1 where the piece has no width.
    n_cols = int(pieces.width.shape[1])
    column = np.full(pieces.width.shape, -1, dtype=np.int64)
    column[mask] = np.arange(n_y)
    a_col = n_y + np.arange(c)
    b_col = n_y + c + np.arange(c)

    def grouped(codes: npt.NDArray[np.int32], n: int) -> tuple[IntArray, IntArray]:
        order = np.argsort(codes, kind="stable")
        cols = column[order].ravel()
        keep = cols >= 0
        deal_of = np.repeat(codes[order], n_cols)[keep]
        return cols[keep], np.bincount(deal_of, minlength=n).astype(np.int64)

    # Channel rows: its pieces (+1), then a_c and b_c (-1); "= 0".
    ch_cols, ch_counts = grouped(problem.channel, c)
    ch_start = np.concatenate([[0], np.cumsum(ch_counts)[:-1]])
    at = np.repeat(ch_start + ch_counts, 2)
    ch_var = np.insert(ch_cols, at, np.stack([a_col, b_col], 1).ravel())
    ch_coef = np.insert(np.ones(ch_cols.shape[0]), at, -1.0)
    rows = _rows(ch_var, ch_coef, ch_counts + 2, np.zeros(c), np.zeros(c))

    q_cols, q_counts = grouped(problem.seller, s)
    rows += _rows(
        q_cols,
        np.ones(q_cols.shape[0]),
        q_counts,
        problem.seller_min.astype(np.float64),
        _as_float_bound(problem.seller_max),
    )
    if problem.money_cap is not None and problem.price_num is not None:
        price = np.broadcast_to(
            (problem.price_num / problem.price_den)[:, None], pieces.width.shape
        )[mask]
        rows += _rows(
            np.arange(n_y, dtype=np.int64),
            price,
            np.array([n_y]),
            np.array([-math.inf]),
            np.array([float(problem.money_cap)]),
        )
    return _Model(mask, pieces, n_y, rows, var_lb, var_ub, c)


def _request(model: _Model, objective: FloatArray, d_lo: float, total: int, limit: float) -> bytes:
    c = model.n_channels
    cols = np.arange(model.n_y, model.n_y + 2 * c, dtype=np.int64)
    total_row = _rows(cols, np.ones(2 * c), np.array([2 * c]), np.array([d_lo]), np.array([total]))
    body = (
        bytes([0x08, 0x01])  # maximize: true
        + _variables(model.var_lb, model.var_ub, objective)
        + model.constraint_bytes
        + total_row
    )
    options = mp.MPModelRequest(
        solver_type=mp.MPModelRequest.GLOP_LINEAR_PROGRAMMING,
        solver_time_limit_seconds=max(limit, 1e-3),
        solver_specific_parameters=GLOP_PARAMETERS,
    ).SerializeToString()
    return _delimited(0x0A, body) + bytes(options)


def _solve(request: bytes) -> mp.MPSolutionResponse:
    solver = mbh.ModelSolverHelper("glop")
    # The binding takes the request as a C++ std::string: bytes pass through unchanged.
    raw = solver.solve_serialized_request(request)  # type: ignore[arg-type]
    return mp.MPSolutionResponse.FromString(raw)


def _has_solution(response: mp.MPSolutionResponse) -> bool:
    ok = (mp.MPSOLVER_OPTIMAL, mp.MPSOLVER_FEASIBLE)
    return response.status in ok and len(response.variable_value) > 0


def _per_deal(model: _Model, response: mp.MPSolutionResponse) -> FloatArray:
    y = np.array(response.variable_value, dtype=np.float64)[: model.n_y]
    dense = model.pieces.lower.astype(np.float64)
    dense[model.mask] = y
    out: FloatArray = dense.sum(axis=1)
    return out


def _stage1(
    problem: AllocationProblem, deadline: float
) -> tuple[_Model, mp.MPSolutionResponse, float]:
    """max sum x over one variable per deal; the model, the response, its build seconds."""
    t = time.perf_counter()
    model = _build(problem, _deal_pieces(problem))
    objective = np.concatenate([np.ones(model.n_y), np.zeros(2 * problem.n_channels)])
    request = _request(model, objective, 0.0, problem.total, deadline - time.perf_counter())
    build = time.perf_counter() - t
    response = _solve(request)
    if response.status == mp.MPSOLVER_INFEASIBLE:
        raise InfeasibleProblem("the LP has no feasible point")
    if not _has_solution(response):
        raise NoFeasiblePlan(f"GLOP stage 1 ended with status {response.status}")
    return model, response, build


def solve_lp(problem: AllocationProblem, time_limit: float | None = None) -> LpSolution:
    """Two-stage lexicographic LP; values are fractional and still to be rounded.

    `time_limit` (seconds, default the problem's) bounds both GLOP solves together."""
    t0 = time.perf_counter()
    deadline = t0 + (problem.time_limit if time_limit is None else time_limit)
    first: tuple[_Model, mp.MPSolutionResponse] | None = None
    build = 0.0
    if problem.money_cap is None and fits_network(problem):
        d1 = float(max_deliverable(problem))
    else:
        first_model, first_response, build = _stage1(problem, deadline)
        first = (first_model, first_response)
        d1 = float(first_response.objective_value)
    stage1_seconds = time.perf_counter() - t0 - build
    d_lo = math.floor(d1 + 1e-6)  # exact when d1 came from the flow; snaps GLOP's x.9999999

    t = time.perf_counter()
    model = _build(problem, fold_pieces(problem))
    c = problem.n_channels
    lam = problem.lam_channel
    stage2 = np.concatenate([model.pieces.slope[model.mask], np.full(c, lam), np.full(c, -lam)])
    build += time.perf_counter() - t
    solve_time = stage1_seconds
    for attempt in range(2):
        t = time.perf_counter()
        req = _request(model, stage2, float(d_lo), problem.total, deadline - t)
        build += time.perf_counter() - t
        t = time.perf_counter()
        second = _solve(req)
        solve_time += time.perf_counter() - t
        if second.status != mp.MPSOLVER_INFEASIBLE or attempt:
            break
        # GLOP's stage-1 value can overshoot by its tolerance: give up one part in a million.
        d_lo = math.floor(d1 * (1 - 1e-6)) - 1

    if _has_solution(second):
        duals = None
        if len(second.dual_value):
            dv = np.array(second.dual_value, dtype=np.float64)
            s = problem.n_sellers
            duals = LpDuals(
                channel=dv[:c],
                seller=dv[c : c + s],
                money=float(dv[c + s]) if problem.money_cap is not None else None,
                total=float(dv[-1]),
            )
        values = _per_deal(model, second)
        limited = second.status != mp.MPSOLVER_OPTIMAL
        return LpSolution(values, d_lo, duals, limited, build, solve_time)
    if first is not None:
        # Stage 2 stopped early: the stage-1 plan is feasible and delivers the most.
        first_model, first_response = first
        values = _per_deal(first_model, first_response)
        return LpSolution(values, d_lo, None, True, build, solve_time)
    if second.status == mp.MPSOLVER_INFEASIBLE:
        raise InfeasibleProblem("the LP has no feasible point")
    raise NoFeasiblePlan(f"GLOP stage 2 ended with status {second.status}")

"""Step 2: the elastic model (package docstring, step 2): every relaxable bound gets a priced
slack; a min-cost flow on (channel, seller) pairs, exact in integers, or GLOP's LP where a money
cap is part of the conflict or the totals are too large for int64 flow sums."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from reallocator.core.engine.diagnosis.outcome import MAX_PREMIUM, RelaxationWeights
from reallocator.core.engine.diagnosis.relaxation import Relaxation
from reallocator.core.engine.errors import NoFeasiblePlan
from reallocator.core.engine.flow import cost_resolution
from reallocator.core.engine.lp import run_glop, sparse_model
from reallocator.core.engine.problem import (
    NO_MAX,
    AllocationProblem,
    FloatArray,
    IntArray,
    capped_group_sum,
)

_SMCF = min_cost_flow.SimpleMinCostFlow

_SNAP = 1e-6


def flow_fits(p: AllocationProblem) -> bool:
    """Every node's arcs (three per neighbour, each up to the total) stay within int64."""
    return p.total * 3 * (max(p.n_channels, p.n_sellers) + 2) < 2**63


def _penalty_arcs(
    lo: IntArray, hi: IntArray, total: int, cost_min: int, cost_max: int
) -> tuple[IntArray, IntArray]:
    """A group total's elastic penalty as three parallel arcs (capacities, costs), convex:
    up to min(lo, hi) each unit lowers the minimum's slack (-cost_min); between lo and hi
    nothing moves (0), or, when lo > hi, one slack trades for the other; above both the
    maximum's slack grows (+cost_max, nothing when the maximum cannot bind)."""
    hi_e = np.minimum(hi, total)
    a, b = np.minimum(lo, hi_e), np.maximum(lo, hi_e)
    n = lo.shape[0]
    middle = np.where(lo > hi_e, cost_max - cost_min, 0)
    top = np.where(hi < total, cost_max, 0)
    caps = np.concatenate([a, b - a, total - b])
    costs = np.concatenate([np.full(n, -cost_min), middle, top])
    return caps.astype(np.int64), costs.astype(np.int64)


def elastic_flow(p: AllocationProblem, w: RelaxationWeights) -> Relaxation:
    """The elastic problem on (channel, seller) pairs as a min-cost flow, exact in integers:

        source --3 penalty arcs--> channel --3 arcs per pair--> seller --3 penalty arcs--> sink
        source ------------------------- unspent (cost 0) --------------------------> sink

    with supply `total`; a pair's arcs are its commitments (-commitment per unit kept), the
    rest up to its deals' maxima (0) and beyond them (+limit). Weights become integer costs
    at a resolution of 2**30 for the largest (relative error below 1e-9 of it)."""
    total = p.total
    c, s = p.n_channels, p.n_sellers
    r = Relaxation.zeros(p)
    lb = np.minimum(p.lb, total)  # forced parts first, as in the LP
    cmin, smin = np.minimum(p.channel_min, total), np.minimum(p.seller_min, total)
    r.deal_min = p.lb - lb
    r.channel_min, r.seller_min = p.channel_min - cmin, p.seller_min - smin
    u = _pair_units(p, lb)
    m = u.lb.shape[0]
    sink = 1 + c + s
    wmax = w.group * (1 + MAX_PREMIUM)
    scale = cost_resolution(sink + 1) / max(w.group, wmax, w.commitment, w.limit)

    def cost(weight: float) -> int:
        return round(weight * scale)

    ch_caps, ch_costs = _penalty_arcs(cmin, p.channel_max, total, cost(w.group), cost(wmax))
    se_caps, se_costs = _penalty_arcs(smin, p.seller_max, total, cost(w.group), cost(wmax))
    i32 = np.int32
    tail = np.concatenate(
        [np.zeros(3 * c, i32), np.tile(1 + u.channel, 3), np.tile(1 + c + np.arange(s), 3), [0]]
    ).astype(i32)
    head = np.concatenate(
        [np.tile(1 + np.arange(c), 3), np.tile(1 + c + u.seller, 3), np.full(3 * s + 1, sink)]
    ).astype(i32)
    caps = np.concatenate([ch_caps, u.lb, u.ub - u.lb, u.room, se_caps, [total]])
    costs = np.concatenate(
        [
            ch_costs,
            np.full(m, -cost(w.commitment)),
            np.zeros(m),
            np.full(m, cost(w.limit)),
            se_costs,
            [0],
        ]
    )
    smcf = _SMCF()
    index = smcf.add_arcs_with_capacity_and_unit_cost(
        tail, head, caps.astype(np.int64), costs.astype(np.int64)
    )
    supply = np.zeros(sink + 1, np.int64)
    supply[0], supply[sink] = total, -total
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=i32), supply)
    status = smcf.solve()
    if status != _SMCF.OPTIMAL:
        raise NoFeasiblePlan(f"elastic flow ended with status {status.name}")
    flow = smcf.flows(np.asarray(index))
    x_channel = flow[:c] + flow[c : 2 * c] + flow[2 * c : 3 * c]
    k = 3 * c
    x_pair = flow[k : k + m] + flow[k + m : k + 2 * m] + flow[k + 2 * m : k + 3 * m]
    k += 3 * m
    x_seller = flow[k : k + s] + flow[k + s : k + 2 * s] + flow[k + 2 * s : k + 3 * s]
    r.channel_min += np.maximum(cmin - x_channel, 0)
    r.channel_max = np.where(p.channel_max < total, np.maximum(x_channel - p.channel_max, 0), 0)
    r.seller_min += np.maximum(smin - x_seller, 0)
    r.seller_max = np.where(p.seller_max < total, np.maximum(x_seller - p.seller_max, 0), 0)
    assert u.pair is not None
    r.deal_min += _spread(lb, u.pair, np.maximum(u.lb_full - x_pair, 0))
    r.deal_max = _first_of_pair(p.ub_capped, u.pair, np.maximum(x_pair - u.ub, 0))
    return r


@dataclass(frozen=True, eq=False)
class _Units:
    """What the elastic model allocates to: deals, or (channel, seller) pairs of deals."""

    channel: IntArray
    seller: IntArray
    lb_full: IntArray  # commitments in full
    lb: IntArray  # min(commitments, total): the part the LP can keep
    ub: IntArray  # min(sum of ub, total) >= lb
    room: IntArray  # how far ub may be raised (up to the total)
    price: FloatArray | None  # money per unit (per-deal units only)
    pair: IntArray | None  # pair code of each deal (pair units only)


def _pair_units(p: AllocationProblem, lb: IntArray) -> _Units:
    s, total = p.n_sellers, p.total
    keys, code = np.unique(p.channel.astype(np.int64) * s + p.seller, return_inverse=True)
    n_pairs = keys.shape[0]
    lb_sum = capped_group_sum(lb, code.astype(np.int32), n_pairs, NO_MAX // 2)
    ub_sum = capped_group_sum(p.ub_capped, code.astype(np.int32), n_pairs, total)
    kept = np.minimum(lb_sum, total)
    return _Units(
        channel=keys // s,
        seller=keys % s,
        lb_full=lb_sum,
        lb=kept,
        ub=np.maximum(ub_sum, kept),
        room=total - ub_sum,
        price=None,
        pair=code.astype(np.int64),
    )


def _deal_units(p: AllocationProblem, lb: IntArray) -> _Units:
    ub = p.ub_capped
    price = None if p.price_num is None else p.price_num / p.price_den
    ch, se = p.channel.astype(np.int64), p.seller.astype(np.int64)
    return _Units(ch, se, lb, lb, ub, p.total - ub, price, None)


def _tolerance(v: FloatArray) -> FloatArray:
    out: FloatArray = _SNAP * np.maximum(1.0, 1e-8 * np.abs(v))
    return out


def _snap_up(v: FloatArray) -> IntArray:
    """Round up, except values within solver noise of an integer, which snap to it."""
    near = np.rint(v)
    out = np.where(np.abs(v - near) <= _tolerance(v), near, np.ceil(v))
    return np.maximum(out, 0).astype(np.int64)


def _snap_down(v: FloatArray) -> IntArray:
    near = np.rint(v)
    out = np.where(np.abs(v - near) <= _tolerance(v), near, np.floor(v))
    return np.maximum(out, 0).astype(np.int64)


def _plain_up(v: FloatArray) -> IntArray:
    return np.maximum(np.ceil(v), 0).astype(np.int64)


def _plain_down(v: FloatArray) -> IntArray:
    return np.maximum(np.floor(v), 0).astype(np.int64)


def _no_max(bound: IntArray, total: int) -> FloatArray:
    out = bound.astype(np.float64)
    out[bound >= total] = math.inf  # never binding: the units sum to at most the total
    return out


def elastic_lp(
    p: AllocationProblem, w: RelaxationWeights, per_deal: bool, plain: bool
) -> Relaxation:
    """Minimise weighted slack (package docstring, step 2); `plain` rounds every slack up
    without snapping.

    Columns: per unit its committed part k in [0, lb] (cost -commitment: each unit of lb not
    kept costs `commitment`), its free part in [0, ub - lb] (cost 0) and its part above ub in
    [0, room] (cost `limit`); per group the slack of its minimum (cost group) and of its
    maximum (cost group * 1.0001); the money slack when the money cap is weighted.
    Rows: per channel "X + slack >= min" and "X - slack <= max", the same per seller, the
    total "sum <= total" (hard), and the money cap (hard unless weighted) on per-deal units."""
    total = p.total
    c, s = p.n_channels, p.n_sellers
    r = Relaxation.zeros(p)
    # Forced parts first, so the LP sees numbers <= total only: no deal keeps a minimum above
    # the budget, nor a group.
    lb = np.minimum(p.lb, total)
    cmin = np.minimum(p.channel_min, total)
    smin = np.minimum(p.seller_min, total)
    r.deal_min = p.lb - lb
    r.channel_min = p.channel_min - cmin
    r.seller_min = p.seller_min - smin
    u = _deal_units(p, lb) if per_deal else _pair_units(p, lb)
    m = u.lb.shape[0]
    priced = p.money_cap is not None and u.price is not None
    money_slack = priced and w.money_cap is not None

    g = 2 * (c + s)  # group rows: channel min, channel max, seller min, seller max
    col_ub = np.concatenate(
        [
            u.lb,
            u.ub - u.lb,
            u.room,
            cmin,
            np.where(p.channel_max < total, total - p.channel_max, 0),
            smin,
            np.where(p.seller_max < total, total - p.seller_max, 0),
            [math.inf if money_slack else 0.0],
        ]
    ).astype(np.float64)
    wmax = w.group * (1 + MAX_PREMIUM)
    cost = np.concatenate(
        [
            np.full(m, -w.commitment),
            np.zeros(m),
            np.full(m, w.limit),
            np.full(c, w.group),
            np.full(c, wmax),
            np.full(s, w.group),
            np.full(s, wmax),
            [w.money_cap or 0.0],
        ]
    )
    unit_col = np.arange(3 * m, dtype=np.int64)
    ch, se = np.tile(u.channel, 3), np.tile(u.seller, 3)
    slack_col = 3 * m + np.arange(g, dtype=np.int64)
    rows: list[IntArray] = [ch, c + ch, 2 * c + se, 2 * c + s + se, np.full(3 * m, g)]
    cols: list[IntArray] = [unit_col] * 5 + [slack_col]
    coefs: list[FloatArray] = [np.ones(3 * m)] * 5
    rows.append(np.arange(g, dtype=np.int64))  # each group slack sits in its own row
    coefs.append(np.repeat([1.0, -1.0, 1.0, -1.0], [c, c, s, s]))
    inf = np.full(c + s, math.inf)
    row_lb = np.concatenate([cmin, -inf[:c], smin, -inf[:s], [-math.inf]])
    row_ub = np.concatenate(
        [inf[:c], _no_max(p.channel_max, total), inf[:s], _no_max(p.seller_max, total), [total]]
    )
    if priced and u.price is not None and p.money_cap is not None:
        rows += [np.full(3 * m, g + 1), np.array([g + 1])]
        cols += [unit_col, np.array([3 * m + g])]
        coefs += [np.tile(u.price, 3), np.array([-1.0])]
        row_lb = np.append(row_lb, -math.inf)
        row_ub = np.append(row_ub, float(p.money_cap))
    row_i, col_i, coef = np.concatenate(rows), np.concatenate(cols), np.concatenate(coefs)
    keep = col_ub > 0  # empty columns never reach the solver: the kept ones are renumbered
    renumber = np.cumsum(keep) - 1
    entry = keep[col_i]
    model = sparse_model(
        np.zeros(int(keep.sum())),
        col_ub[keep],
        cost[keep],
        row_lb.astype(np.float64),
        row_ub.astype(np.float64),
        (row_i[entry], renumber[col_i[entry]], coef[entry]),
        maximize=False,
    )
    run = run_glop(model, p.time_limit)
    if run.values is None or not run.optimal:
        raise NoFeasiblePlan(f"elastic LP ended with status {run.status.name}")
    v = np.zeros(col_ub.shape[0])
    v[keep] = run.values

    up, down = (_plain_up, _plain_down) if plain else (_snap_up, _snap_down)
    short = u.lb_full - np.minimum(down(v[:m]), u.lb)  # commitment not kept, rounded up
    above = np.minimum(up(v[2 * m : 3 * m]), u.room)
    k = 3 * m
    r.channel_min += up(v[k : k + c])
    r.channel_max = up(v[k + c : k + 2 * c])
    r.seller_min += up(v[k + 2 * c : k + 2 * c + s])
    r.seller_max = up(v[k + 2 * c + s : k + g])
    r.money = int(up(v[-1:])[0]) if money_slack else 0
    if u.pair is None:
        r.deal_min += short
        r.deal_max = above
    else:
        r.deal_min += _spread(lb, u.pair, short)
        r.deal_max = _first_of_pair(p.ub_capped, u.pair, above)
    return r


def _spread(lb: IntArray, pair: IntArray, short: IntArray) -> IntArray:
    """Each pair's lowered commitment taken from its deals, largest lb first (ties to the lower
    index), vectorised: a grouped running sum over deals sorted by (pair, -lb, index)."""
    n = lb.shape[0]
    order = np.lexsort((np.arange(n), -lb, pair))
    sorted_lb = lb[order]
    running = np.cumsum(sorted_lb) - sorted_lb  # before each deal, over all pairs
    first = np.searchsorted(pair[order], pair[order], side="left")
    before = running - running[first]  # before each deal, within its pair
    take = np.clip(short[pair[order]] - before, 0, sorted_lb)
    out = np.zeros(n, np.int64)
    out[order] = take
    return out


def _first_of_pair(ub: IntArray, pair: IntArray, above: IntArray) -> IntArray:
    """Each pair's raised maximum given to its deal with the largest ub (ties: lower index)."""
    n = ub.shape[0]
    out = np.zeros(n, np.int64)
    if not (above > 0).any():
        return out
    order = np.lexsort((np.arange(n), -ub, pair))
    lead = order[np.searchsorted(pair[order], np.arange(above.shape[0]), side="left")]
    out[lead] = above
    return out

"""Why each deal got what it got: the binding constraint, the reason code and the marginal value
(`explain`, vectorised over deals), and the one-line rationale with the numbers, rendered from
the plan's deals table alone for the rows asked (`render_deal_rationales`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.engine import AllocationProblem, AllocationResult, BoundsReport
from reallocator.core.engine.problem import NO_MAX, from_unit_array, group_sum, power_of_two_unit
from reallocator.core.engine.segments import marginal_churn
from reallocator.core.model import TEXT_DTYPE, BudgetType, select, values_of
from reallocator.core.plan.model import BindingKind, ReasonCode
from reallocator.core.plan.sentences import (
    ANSWER_NONE,
    ANSWER_WORDS,
    ARROW_FROM,
    STOP,
    deal_rationale_column,
    kept_beyond,
    reason_words,
)
from reallocator.core.plan.text import amounts, rates, where

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


_BINDING_NAMES = np.array([str(kind) for kind in BindingKind])
"""Each BindingKind's name at its code (its position in the enum): the codes are compared and
picked as small integers, the names looked up once at the end. Comparing and picking text
arrays (and reading an enum member, ~1 us in Python 3.11) cost most of `explain`."""
_BINDING_CODE = {kind: code for code, kind in enumerate(BindingKind)}
_NONE = _BINDING_CODE[BindingKind.NONE]
_DEAL_MIN = _BINDING_CODE[BindingKind.DEAL_MIN]
_DEAL_MAX = _BINDING_CODE[BindingKind.DEAL_MAX]
_CAPACITY = _BINDING_CODE[BindingKind.CAPACITY]
_STEP = _BINDING_CODE[BindingKind.STEP]
_LOCKED = _BINDING_CODE[BindingKind.LOCKED]
_SELLER = _BINDING_CODE[BindingKind.SELLER]
_CHANNEL = _BINDING_CODE[BindingKind.CHANNEL]
_BUDGET = _BINDING_CODE[BindingKind.BUDGET]
_ZERO = _BINDING_CODE[BindingKind.ZERO]


def binding_codes(
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    locked: npt.NDArray[np.bool_],
) -> IntArray:
    """The constraint that stopped each deal, as a code (`_BINDING_NAMES`): its own bound if it
    sits on one (and which term of the bound formula set it), else a group limit it belongs
    to, else the budget."""
    x = result.allocation
    cur, step = report.current, report.step
    at_ub = (x >= problem.ub) & (x > problem.lb)
    at_lb = (x <= problem.lb) & (x < problem.ub)
    fixed = problem.lb == problem.ub
    grow = np.where(cur > NO_MAX - step, NO_MAX, cur + step)
    has_min = report.min_remaining > 0
    ub_term = select(
        [
            (problem.ub == report.min_remaining) & has_min,
            problem.ub == report.capacity,
            problem.ub == report.max_remaining,
            problem.ub == grow,
        ],
        [_DEAL_MIN, _CAPACITY, _DEAL_MAX, _STEP],
        default=_CAPACITY,
    )
    # At its lower bound: its commitment, else the step limit - or, where the step would go
    # below nothing, the zero floor (a deal cut to 0 was not stopped by the step).
    lb_term = select(
        [(problem.lb == report.min_remaining) & has_min, problem.lb <= 0],
        [_DEAL_MIN, _ZERO],
        default=_STEP,
    )
    b = result.binding
    seller_bound = (b.seller_at_max | b.seller_at_min)[problem.seller]
    channel_bound = (b.channel_at_max | b.channel_at_min)[problem.channel]
    inside = select(
        [seller_bound, channel_bound, np.full(len(x), b.total or b.money)],
        [_SELLER, _CHANNEL, _BUDGET],
        default=_NONE,
    )
    out = select(
        [locked, fixed & (problem.lb == report.min_remaining) & has_min, fixed, at_ub, at_lb],
        [_LOCKED, _DEAL_MIN, ub_term, ub_term, lb_term],
        default=inside,
    )
    # Beyond its forecast the forecast no longer stops a deal: a seller or channel limit does,
    # the budget (all placed), or else the room the policy allows beyond forecasts.
    room = np.where(inside == _NONE, _CAPACITY, inside)
    codes: IntArray = np.where(beyond_forecast(problem, report, x), room, out)
    return codes


def beyond_forecast(
    problem: AllocationProblem, report: BoundsReport, x: IntArray
) -> npt.NDArray[np.bool_]:
    """Deals the plan placed beyond their forecast and their bounds (engine/stretch.py)."""
    out: npt.NDArray[np.bool_] = x > np.maximum(problem.ub, report.capacity)
    return out


def marginal_slopes(problem: AllocationProblem, x: IntArray) -> FloatArray:
    """Value of the next unit on each deal, churn included (slope of its folded curve at x+), in
    multiples of `problem.value_unit`."""
    slopes = problem.value_slopes
    if slopes.shape[1] > 1:
        segment = (problem.value_breaks <= x[:, None]).sum(axis=1)
        value = slopes[np.arange(len(x)), np.minimum(segment, slopes.shape[1] - 1)]
    else:
        value = slopes[:, 0]
    out: FloatArray = value + marginal_churn(problem, x)
    return out


def budget_price(problem: AllocationProblem, x: IntArray) -> float:
    """What one more unit of total budget is worth: the best next-unit value among deals that
    can still grow (0 when none can, i.e. the extra unit would be unspendable), in multiples of
    `problem.value_unit`."""
    room = x < problem.ub_capped
    if not room.any():
        return 0.0
    return float(max(0.0, marginal_slopes(problem, x)[room].max()))


@dataclass(frozen=True, eq=False)
class Explanation:
    # BindingKind and ReasonCode values: str objects, or a long table's "str" column (`_picked`)
    binding: Any
    reason: Any
    marginal_value: FloatArray
    group_at_max: npt.NDArray[np.bool_]  # the binding seller/channel is at its maximum


def _weighted_mean(values: FloatArray, weights: IntArray) -> float:
    """`np.average(values, weights=weights)` of float values and positive integer weights, by
    its own steps (the products and the weights summed in float64) without its checks and
    broadcasting (~25 us a plan)."""
    total = np.multiply(values, weights, dtype=np.float64).sum()
    return float(total / weights.sum(dtype=np.float64))


def explain(
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    frame: Mapping[str, npt.NDArray[Any]],
) -> Explanation:
    """Binding constraint, reason code and marginal value per deal: numbers and codes only (the
    words are rendered later from the plan's table, `render_deal_rationales`). `frame` carries
    per deal (arrays): locked, status (assessment, text), value_per_unit, capped_by_response."""
    x = result.allocation
    old = report.current
    delta = x - old
    kind = binding_codes(problem, report, result, np.asarray(frame["locked"], bool))
    status = np.asarray(frame["status"], dtype=object)
    value = np.asarray(frame["value_per_unit"], np.float64)
    # On a power-of-two scale (exact; 1 for every realistic value): value x amount in the
    # average would overflow near the float limit.
    value = value / power_of_two_unit(float(np.abs(value).max(initial=0.0)))
    givers = delta < 0
    # Nobody gave: budget no deal held is being placed, and no deal is "worth more" than a
    # giver there is not.
    giver_value = _weighted_mean(value[givers], -delta[givers]) if givers.any() else np.inf
    by_response = np.asarray(frame["capped_by_response"], bool)
    beyond = beyond_forecast(problem, report, x)
    b = problem
    seller_at_max = (group_sum(x, b.seller, b.n_sellers) >= b.seller_max)[b.seller]
    channel_at_max = (group_sum(x, b.channel, b.n_channels) >= b.channel_max)[b.channel]
    by_seller, by_channel = kind == _SELLER, kind == _CHANNEL
    group_at_max = np.where(by_seller, seller_at_max, channel_at_max)
    capped = (kind == _DEAL_MAX) | ((by_seller | by_channel) & group_at_max)
    # Each code says why this deal moved, in words its own verdict cannot contradict: a deal
    # is UNDER_/OVER_DELIVERY only when it gives budget away and its verdict says so.
    reason = select(
        [
            delta == 0,
            beyond,
            (status == "STALLED") & givers,
            by_response,
            # The shortfall is most of the cut (no less than the part below the forecast): a
            # deal cut well below its forecast was cut for another reason (a low-value deal's
            # 600 cut to nothing on a forecast of 540 read "capacity shortfall").
            givers & (old - report.capacity >= report.capacity - x),
            givers & (status == "OVER"),
            givers & (status == "UNDER"),
            givers & capped,
            givers,
            (delta > 0) & (x <= problem.lb) & (problem.lb == report.min_remaining),
            (delta > 0) & (value > giver_value),
        ],
        [
            _UNCHANGED,
            _BEYOND_FORECAST,
            _STALLED,
            _SELLER_RESPONSE,
            _CAPACITY_SHORTFALL,
            _OVER_DELIVERY,
            _UNDER_DELIVERY,
            _MAXIMUM_REACHED,
            _LOWER_VALUE,
            _MINIMUM_REQUIRED,
            _HIGHER_VALUE,
        ],
        default=_REDISTRIBUTED,
    )
    # Marginal value of the binding constraint: for a deal held at its upper bound, what one more
    # unit there would add beyond the budget's price; at a lower bound, what one unit less saves.
    price = budget_price(problem, x)
    slope = marginal_slopes(problem, x)
    upper = (kind == _CAPACITY) | (kind == _DEAL_MAX) | (kind == _STEP)
    marginal = np.where(
        upper,
        np.maximum(slope - price, 0.0),
        np.where(kind == _DEAL_MIN, np.maximum(price - slope, 0.0), 0.0),
    )
    marginal = from_unit_array(marginal, problem.value_unit)  # the duals are plain values
    if result.duals is not None:
        group_dual = result.duals.seller[problem.seller] * by_seller
        group_dual += result.duals.channel[problem.channel] * by_channel
        marginal = np.where(group_dual != 0, np.abs(group_dual), marginal)

    binding = _picked(_BINDING_LABELS, _BINDING_TEXT, kind)
    return Explanation(
        binding, _picked(_REASON_LABELS, _REASON_TEXT, reason), marginal, group_at_max
    )


def _picked(labels: npt.NDArray[np.object_], text: Any, codes: IntArray) -> Any:
    """The labels of `codes`: for a long column the plan table's "str" array, taken by Arrow
    from the few labels (100k deals ~0.8 ms a column, where picking the str objects and then
    converting them to Arrow cost ~3.2 ms); a short one's str objects (there Arrow's take
    costs more than the conversion)."""
    if codes.size <= _SMALL_LABELS:
        return labels[codes]
    return text.take(codes)


_REASON_NAMES = np.array([str(code) for code in ReasonCode])
"""Each ReasonCode's name at its code (its position in the enum), as `_BINDING_NAMES`."""
_BINDING_LABELS = _BINDING_NAMES.astype(object)
_REASON_LABELS = _REASON_NAMES.astype(object)
_BINDING_TEXT = pd.array(_BINDING_LABELS, dtype=TEXT_DTYPE)
_REASON_TEXT = pd.array(_REASON_LABELS, dtype=TEXT_DTYPE)
_SMALL_LABELS = 128
"""The names as str objects, picked by reference: the plan's table converts the columns to
Arrow strings, from a numpy unicode array ~6.8 ms a column at 100k deals (a str made per
value), from objects ~2.2 ms."""
_REASON_CODE = {code: i for i, code in enumerate(ReasonCode)}
_UNCHANGED = _REASON_CODE[ReasonCode.UNCHANGED]
_BEYOND_FORECAST = _REASON_CODE[ReasonCode.BEYOND_FORECAST]
_STALLED = _REASON_CODE[ReasonCode.STALLED]
_SELLER_RESPONSE = _REASON_CODE[ReasonCode.SELLER_RESPONSE]
_CAPACITY_SHORTFALL = _REASON_CODE[ReasonCode.CAPACITY_SHORTFALL]
_OVER_DELIVERY = _REASON_CODE[ReasonCode.OVER_DELIVERY]
_UNDER_DELIVERY = _REASON_CODE[ReasonCode.UNDER_DELIVERY]
_MAXIMUM_REACHED = _REASON_CODE[ReasonCode.MAXIMUM_REACHED]
_LOWER_VALUE = _REASON_CODE[ReasonCode.LOWER_VALUE]
_MINIMUM_REQUIRED = _REASON_CODE[ReasonCode.MINIMUM_REQUIRED]
_HIGHER_VALUE = _REASON_CODE[ReasonCode.HIGHER_VALUE]
_REDISTRIBUTED = _REASON_CODE[ReasonCode.REDISTRIBUTED]


def answer_words(share: float) -> str:
    """What limits a guaranteed deal's capacity while its seller has yet to answer (`share`: of
    its supply beyond its present pace, what is left once it has; capacity.answer_limited)."""
    if share <= 0:
        return ANSWER_NONE
    head, tail = ANSWER_WORDS
    return f"{head}{share:.0%}{tail}"


_STOP_TEXT = {str(k): v for k, v in STOP.items()}
"""The stop templates keyed by plain strings (the table's binding column)."""

RATIONALE_COLUMNS: dict[str, str] = {
    "step": "int64",  # the step limit the bounds used
    "pacing_ratio": "float64",  # the assessment's verdict on the deal
    "pacing_status": "str",
    "recent_rate": "float64",  # budget units per opportunity hour
    "required_rate": "float64",  # ... needed on its old allocation
    "group_at_max": "bool",  # the seller/channel that binds is at its maximum (else minimum)
    "stall_outlook": "float64",  # share of its forecast a confident stall keeps (NaN: none)
    "answer_share": "float64",  # of a guaranteed deal's further supply, left once answered
}
"""Columns of the plan's deals table that only the rationale reads: with them the words are
rendered from the table alone (after the NO_CHANGE gate, for the rows a view returns)."""


def render_deal_rationales(
    deals: pd.DataFrame,
    budget_type: BudgetType,
    currency: str,
    rows: npt.NDArray[np.int64] | None = None,
) -> list[str]:
    """One sentence per deal of `rows` (every deal when None), in that order, from the plan's
    deals table alone: the move and its reason, the pacing verdict, and what stopped it ("unchanged"
    for a deal that did not move and is held by nothing). Figures are formatted column-wise (one
    comprehension per column): at 100k deals the per-value calls, not the joining, cost. From
    `ARROW_FROM` rows the same words come from `sentences` (column-wise, by Arrow)."""
    picked = np.arange(len(deals)) if rows is None else np.asarray(rows, dtype=np.int64)
    if picked.size >= ARROW_FROM:
        words: list[str] = deal_rationale_column(deals, budget_type, currency, picked).to_pylist()
        return words
    return deal_rationales_by_row(deals, budget_type, currency, picked)


def deal_rationales_by_row(
    deals: pd.DataFrame, budget_type: BudgetType, currency: str, picked: npt.NDArray[np.int64]
) -> list[str]:
    """`render_deal_rationales` a row at a time (short plans; the reference `sentences` is
    tested against)."""
    old_all = values_of(deals, "old_allocation", np.int64)[picked]
    x_all = values_of(deals, "new_allocation", np.int64)[picked]
    binding_all = values_of(deals, "binding", object)[picked].astype(str)
    out = ["unchanged"] * picked.size
    told = np.flatnonzero((x_all != old_all) | (binding_all != BindingKind.NONE))
    if told.size == 0:
        return out
    idx = picked[told]
    bt, cur = budget_type, currency
    old, x, kinds = old_all[told], x_all[told], binding_all[told]
    reason = values_of(deals, "reason", object)[idx].astype(str)
    ratio = values_of(deals, "pacing_ratio", np.float64)[idx]
    status = values_of(deals, "pacing_status", object)[idx].astype(str)
    delta = x - old
    moved = delta != 0
    beyond_forecast = reason == ReasonCode.BEYOND_FORECAST
    beyond_forecast |= kept_beyond(deals, idx, x, kinds)
    # Paced: a verdict to report (not before the start or after the end).
    paced_rows = np.isfinite(ratio) & ~np.isin(status, ["NOT_STARTED", "COMPLETED"])
    # Each figure formatted only for the sentences that show it.
    old_t = amounts(old, bt, cur)
    new_t = where(amounts, x, moved, bt, cur)
    delta_t = where(amounts, np.abs(delta), moved, bt, cur)
    cap_t = where(
        amounts,
        values_of(deals, "capacity", np.int64)[idx],
        beyond_forecast | (kinds == BindingKind.CAPACITY),
        bt,
        cur,
    )
    step_t = where(
        amounts, values_of(deals, "step", np.int64)[idx], kinds == BindingKind.STEP, bt, cur
    )
    recent_t = where(rates, values_of(deals, "recent_rate", np.float64)[idx], paced_rows, bt, cur)
    need_t = where(rates, values_of(deals, "required_rate", np.float64)[idx], paced_rows, bt, cur)
    why = [reason_words(r) for r in reason.tolist()]
    at_max = values_of(deals, "group_at_max", bool)[idx].tolist()
    sellers = values_of(deals, "seller_id", object)[idx].astype(str).tolist()
    channels = values_of(deals, "channel_id", object)[idx].astype(str).tolist()
    # Plain Python values per row (no numpy scalars, no enum calls): the loop is what costs.
    paced = paced_rows.tolist()
    ratio_l, status_l, delta_l = ratio.tolist(), status.tolist(), delta.tolist()
    beyond = beyond_forecast.tolist()
    # Plans stored before the stall outlook have no such column: nothing to say there.
    kept = (
        values_of(deals, "stall_outlook", np.float64)[idx]
        if "stall_outlook" in deals.columns
        else np.full(idx.size, np.nan)
    )
    outlook = [
        f": the {k:.0%} of its forecast a stall this long is expected to leave" if has else ""
        for k, has in zip(kept.tolist(), np.isfinite(kept).tolist(), strict=True)
    ]
    # Plans stored before the answer time have no such column either.
    answered = (
        values_of(deals, "answer_share", np.float64)[idx]
        if "answer_share" in deals.columns
        else np.full(idx.size, np.nan)
    )
    if np.isfinite(answered).any():
        outlook = [
            o + answer_words(a) if np.isfinite(a) else o
            for o, a in zip(outlook, answered.tolist(), strict=True)
        ]
    for j, (i, kind) in enumerate(zip(told.tolist(), kinds.tolist(), strict=True)):
        if beyond[j]:
            stop = (
                f"beyond its capacity forecast of {cap_t[j]}, as the forecasts cannot absorb "
                "the budget"
            )
        elif kind == BindingKind.SELLER:
            stop = f"seller {sellers[j]} at its {'maximum' if at_max[j] else 'minimum'}"
        elif kind == BindingKind.CHANNEL:
            stop = f"channel {channels[j]} at its {'maximum' if at_max[j] else 'minimum'}"
        else:
            template = _STOP_TEXT.get(kind)
            if template is None:  # not a BindingKind: raises ValueError, as it always did
                template = STOP.get(BindingKind(kind), "")
            stop = template.format(cap=cap_t[j], step=step_t[j]) if template else ""
            if kind == BindingKind.CAPACITY:
                stop += outlook[j]
        pace = ""
        if paced[j]:
            pace = (
                f"; pacing {ratio_l[j]:.0%} of its curve to date ({status_l[j]}), lately "
                f"{recent_t[j]} where its old allocation needs {need_t[j]}"
            )
        if delta_l[j]:
            sign = "+" if delta_l[j] > 0 else "-"
            move = f"{sign}{delta_t[j]} ({old_t[j]} -> {new_t[j]} remaining)"
        else:
            move = f"unchanged at {old_t[j]} remaining"
        text = f"{move}: {why[j]}{pace}"
        out[i] = f"{text}; {stop}" if stop else text
    return out

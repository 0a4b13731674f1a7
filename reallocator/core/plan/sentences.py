"""A long plan's rationale sentences assembled column-wise by Arrow: the same words as
`explain.render_deal_rationales` and `schedule_text.render_schedule_rationales`, byte for byte,
as one Arrow string array instead of a Python str per row.

At 100k deals a FULL answer spent ~0.9 s of its ~1.3 s of encoding on words: ~40 ms per figure
column formatted value by value, then an f-string per row. Here the figures are formatted by
`figures` (numpy) and each sentence's pieces are chosen (`if_else`) and joined
(`binary_join_element_wise`) by Arrow for all rows at once; the wire takes the array as it is.
Short plans keep the Python renderers (Arrow's fixed cost per call is the larger below
`ARROW_FROM` rows): a test holds the two to the same words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reallocator.core.figures import amount_column, formatted, rate_column
from reallocator.core.model import BudgetType, is_text_array, text_column, values_of
from reallocator.core.plan.model import BindingKind, DealPacing, ReasonCode, ScheduleTable

ARROW_FROM = 500
"""Rows from which `render_deal_rationales` and `render_schedule_rationales` assemble their
words here (measured: 300 rows 1.5 -> 2.2 ms for deals and 0.9 -> 1.3 ms for schedules, 1,000
rows 4.4 -> 3.2 and 2.7 -> 1.8 ms; 3,000 rows 11.5 -> 5.5 and 7.6 -> 3.4 ms)."""

_TEXT = pa.large_string()
_EMPTY = pa.scalar("", _TEXT)
Strings: TypeAlias = pa.Array | str
"""A piece of a sentence: a column of strings, or one string every row shares."""


def _join(*pieces: Strings) -> pa.Array:
    """The pieces joined row by row (at least one a column)."""
    return pc.binary_join_element_wise(*(_scalar(p) for p in pieces), _EMPTY)


def _choose(condition: npt.NDArray[np.bool_], yes: Strings, no: Strings) -> pa.Array:
    """`yes` where `condition` holds, else `no` (either a column or one string)."""
    return pc.if_else(pa.array(condition), _scalar(yes), _scalar(no))


def _scalar(piece: Strings) -> Any:
    return pa.scalar(piece, _TEXT) if isinstance(piece, str) else piece


def _strings(values: Any, rows: npt.NDArray[np.int64]) -> pa.Array:
    """A label column's values at `rows` as Arrow strings, as `.astype(str)` of its objects
    reads them: a table's "str" column taken by Arrow, anything else through str()."""
    if is_text_array(values):
        strings = pa.array(values)
        if strings.null_count == 0:
            taken = strings.take(pa.array(rows, pa.int64())).cast(_TEXT)
            return taken.combine_chunks() if isinstance(taken, pa.ChunkedArray) else taken
    objects = np.asarray(values, dtype=object)[rows]
    return pa.array(objects.astype(str).tolist(), _TEXT)


def _column(table: pd.DataFrame, name: str, rows: npt.NDArray[np.int64]) -> pa.Array:
    return _strings(text_column(table, name), rows)


def _by_code(codes: pa.Array, words: Callable[[str], str]) -> pa.Array:
    """Each code's words, made once per distinct code."""
    encoded = codes.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    return pa.array([words(n) for n in names], _TEXT).take(encoded.indices)


STOP = {
    BindingKind.CAPACITY: "capped by its capacity forecast of {cap}",
    BindingKind.DEAL_MAX: "capped by its maximum allocation",
    BindingKind.STEP: "moved no further: the step limit of {step} per plan",
    BindingKind.LOCKED: "locked: not moved",
    BindingKind.DEAL_MIN: "held at its minimum allocation (a commitment)",
    BindingKind.BUDGET: "the remaining budget is fully placed",
    BindingKind.ZERO: "cut to nothing",
    BindingKind.NONE: "",
}
"""What stopped a deal, per binding constraint (a seller's and a channel's name the group and
its end; beyond-forecast placement has its own words)."""

_WHY = {
    ReasonCode.REDISTRIBUTED.value: "takes budget other deals cannot deliver or did not hold",
    ReasonCode.LOWER_VALUE.value: "moved to deals worth more per unit",
    ReasonCode.ROLLBACK.value: "back towards its allocation before the rolled-back plan",
}
"""Reason codes whose words are not simply the code's name."""


def reason_words(code: str) -> str:
    """A reason code's words: `_WHY`'s, else the code's name in lower case."""
    return _WHY.get(code) or code.lower().replace("_", " ")


def _fixed_stop(kind: str) -> str:
    """A binding's words without a figure or an id ("" where a row's own are filled in); not a
    BindingKind: ValueError, as the row-wise renderer raises."""
    template = STOP.get(BindingKind(kind), "")
    return "" if "{" in template else template


def kept_beyond(
    deals: pd.DataFrame,
    idx: npt.NDArray[np.int64],
    x: npt.NDArray[np.int64],
    kinds: npt.NDArray[Any],
) -> npt.NDArray[np.bool_]:
    """Rows `idx` (their binding `kinds`) stopped at their capacity, or by the budget (all of
    it placed), yet holding more than their forecast (a guaranteed deal keeping its
    commitment, a deal that keeps what it holds beyond its forecast): beyond it, whatever
    their reason, not "capped by" it nor merely "the remaining budget is fully placed"."""
    stopped = (kinds == BindingKind.CAPACITY) | (kinds == BindingKind.BUDGET)
    out: npt.NDArray[np.bool_] = stopped & (x > values_of(deals, "capacity", np.int64)[idx])
    return out


def deal_rationale_column(
    deals: pd.DataFrame,
    budget_type: BudgetType,
    currency: str,
    rows: npt.NDArray[np.int64] | None = None,
) -> pa.Array:
    """`render_deal_rationales` of `rows` (every deal when None) as one Arrow string array."""
    picked = np.arange(len(deals)) if rows is None else np.asarray(rows, dtype=np.int64)
    old_all = values_of(deals, "old_allocation", np.int64)[picked]
    x_all = values_of(deals, "new_allocation", np.int64)[picked]
    kinds_all = _column(deals, "binding", picked)
    told = np.flatnonzero(
        (x_all != old_all) | ~np.asarray(pc.equal(kinds_all, str(BindingKind.NONE)), dtype=bool)
    )
    if told.size == 0:
        return pa.array(["unchanged"] * picked.size, _TEXT)
    idx = picked[told]
    bt, cur = budget_type, currency
    old, x = old_all[told], x_all[told]
    kinds = kinds_all.take(pa.array(told))
    kind_names = np.asarray(kinds.to_numpy(zero_copy_only=False), dtype=object)
    reason = _column(deals, "reason", idx)
    ratio = values_of(deals, "pacing_ratio", np.float64)[idx]
    status = _column(deals, "pacing_status", idx)
    delta = x - old
    moved = delta != 0
    beyond = np.asarray(pc.equal(reason, ReasonCode.BEYOND_FORECAST.value), dtype=bool)
    beyond |= kept_beyond(deals, idx, x, kind_names)
    status_names = np.asarray(status.to_numpy(zero_copy_only=False), dtype=object)
    paced = np.isfinite(ratio) & ~np.isin(status_names, ["NOT_STARTED", "COMPLETED"])
    old_t = amount_column(old, bt, cur)
    move = _choose(
        moved,
        _join(
            pa.array(np.where(delta > 0, "+", "-").astype(object), _TEXT),
            amount_column(np.abs(delta), bt, cur),
            " (",
            old_t,
            " -> ",
            amount_column(x, bt, cur),
            " remaining)",
        ),
        _join("unchanged at ", old_t, " remaining"),
    )
    why = _by_code(reason, reason_words)
    pace = _choose(
        paced,
        _join(
            "; pacing ",
            formatted(ratio, 0, grouping=False, percent=True),
            " of its curve to date (",
            status,
            "), lately ",
            rate_column(values_of(deals, "recent_rate", np.float64)[idx], bt, cur),
            " where its old allocation needs ",
            rate_column(values_of(deals, "required_rate", np.float64)[idx], bt, cur),
        ),
        "",
    )
    stop = _stop(deals, idx, kinds, kind_names, beyond, bt, cur)
    text = _join(move, ": ", why, pace)
    has_stop = np.asarray(pc.greater(pc.binary_length(stop), 0), dtype=bool)
    told_text = _choose(has_stop, _join(text, "; ", stop), text)
    if told.size == picked.size:
        return told_text
    # Every other row "unchanged": scattered in by index, as the row-wise renderer does.
    where = np.full(picked.size, -1, np.int64)
    where[told] = np.arange(told.size)
    return pc.if_else(
        pa.array(where >= 0),
        told_text.take(pa.array(np.maximum(where, 0))),
        pa.scalar("unchanged", _TEXT),
    )


def _stop(
    deals: pd.DataFrame,
    idx: npt.NDArray[np.int64],
    kinds: pa.Array,
    kind_names: npt.NDArray[np.object_],
    beyond: npt.NDArray[np.bool_],
    bt: BudgetType,
    cur: str,
) -> pa.Array:
    """What stopped each told deal (the row-wise renderer's branches, in its order)."""
    stop = _by_code(kinds, _fixed_stop)
    is_kind = {k: kind_names == str(k) for k in (
        BindingKind.CAPACITY, BindingKind.STEP, BindingKind.SELLER, BindingKind.CHANNEL
    )}  # fmt: skip
    capacity = is_kind[BindingKind.CAPACITY]
    if (capacity | beyond).any():
        cap_t = amount_column(values_of(deals, "capacity", np.int64)[idx], bt, cur)
        if capacity.any():
            stop = _choose(
                capacity,
                _join("capped by its capacity forecast of ", cap_t, _outlook(deals, idx),
                      _answer(deals, idx)),
                stop,
            )  # fmt: skip
    step = is_kind[BindingKind.STEP]
    if step.any():
        step_t = amount_column(values_of(deals, "step", np.int64)[idx], bt, cur)
        stop = _choose(
            step, _join("moved no further: the step limit of ", step_t, " per plan"), stop
        )
    group = is_kind[BindingKind.SELLER] | is_kind[BindingKind.CHANNEL]
    if group.any():
        at_max = values_of(deals, "group_at_max", bool)[idx]
        end = pa.array(np.where(at_max, " at its maximum", " at its minimum").astype(object), _TEXT)
        for kind, word, column in (
            (BindingKind.SELLER, "seller ", "seller_id"),
            (BindingKind.CHANNEL, "channel ", "channel_id"),
        ):
            if is_kind[kind].any():
                stop = _choose(is_kind[kind], _join(word, _column(deals, column, idx), end), stop)
    if beyond.any():
        stop = _choose(
            beyond,
            _join(
                "beyond its capacity forecast of ",
                cap_t,
                ", as the forecasts cannot absorb the budget",
            ),
            stop,
        )
    return stop


def _share_clause(
    deals: pd.DataFrame, idx: npt.NDArray[np.int64], column: str, head: str, tail: str
) -> tuple[Strings, npt.NDArray[np.float64] | None]:
    """`head`, a share column's percent, `tail`: the clauses after a capacity cap, for the rows
    where the column is set ("" elsewhere, and for plans stored before it had the column);
    beside them the shares read (None: none set)."""
    if column not in deals.columns:
        return "", None
    share = values_of(deals, column, np.float64)[idx]
    has = np.isfinite(share)
    if not has.any():
        return "", None
    words = _join(head, formatted(np.where(has, share, 0.0), 0, grouping=False, percent=True), tail)
    return _choose(has, words, ""), share


def _outlook(deals: pd.DataFrame, idx: npt.NDArray[np.int64]) -> Strings:
    """The stall outlook's words after a capacity cap, where the deal has one."""
    head, tail = ": the ", " of its forecast a stall this long is expected to leave"
    return _share_clause(deals, idx, "stall_outlook", head, tail)[0]


def _answer(deals: pd.DataFrame, idx: npt.NDArray[np.int64]) -> Strings:
    """`explain.answer_words` after a capacity cap, where the time a seller takes to answer
    limited the deal's capacity."""
    words, share = _share_clause(deals, idx, "answer_share", *ANSWER_WORDS)
    if share is None:
        return words
    return _choose(share <= 0, ANSWER_NONE, words)  # NaN: not <= 0, its words ("")


ANSWER_WORDS = (
    ", its present pace and the ",
    " of its further supply left once its seller answers",
)
"""The words around the share `capacity.answer_limited` left a guaranteed deal (`_answer`)."""
ANSWER_NONE = ", its present pace: its seller could not answer an increase before the end"
"""... where no answer could come in time (share 0)."""


def schedule_rationale_column(
    table: ScheduleTable, rows: npt.NDArray[np.int64] | None = None
) -> pa.Array:
    """`render_schedule_rationales` of `rows` (all when None) as one Arrow string array."""
    idx = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    if idx.size == 0:
        return pa.array([], _TEXT)
    bt, cur = table.budget_type, table.currency
    observed = table.current_rate[idx]
    new = table.new_allocation[idx]
    old = table.old_allocation[idx]
    part = table.participation[idx].astype(float)
    seen, changed = np.isfinite(observed), new != old
    new_t = amount_column(new, bt, cur)
    now = _choose(
        seen, _join("is delivering ", rate_column(observed, bt, cur)), "has no recent delivery rate"
    )
    change = _choose(
        changed,
        _join("its allocation moves from ", amount_column(old, bt, cur), " to ", new_t),
        _join("its allocation stays at ", new_t),
    )
    known_part = np.isfinite(part)
    was = _choose(
        known_part,
        _join(", was ", formatted(np.where(known_part, part, 0.0), 2, grouping=False)),
        "",
    )
    ahead = table.pacing[idx] == DealPacing.AHEAD.value
    pace = _choose(ahead, f"paced ahead up to {table.pace_ahead:.3g}x, ", "")
    return _join(
        "Deal ",
        _ids(table, idx),
        " (seller ",
        _strings(table.seller_id, idx),
        ") ",
        now,
        " and needs ",
        rate_column(table.horizon_rate[idx], bt, cur),
        f" to finish by {table.deadline}; ",
        change,
        ": target ",
        amount_column(table.hourly_target[idx].sum(axis=1), bt, cur),
        f" over the next {table.window_hours:.3g} h, ",
        pace,
        "throttle ",
        formatted(table.throttle[idx].astype(float), 2, grouping=False),
        was,
        ".",
    )


def _ids(table: ScheduleTable, idx: npt.NDArray[np.int64]) -> pa.Array:
    """The schedules' deal ids: from the snapshot's Arrow column where the table carries it."""
    if table.deal_ids is not None and is_text_array(table.deal_ids):
        return _strings(table.deal_ids, table.deal_index[idx])
    return _strings(table.deal_id, idx)


__all__ = [
    "ARROW_FROM",
    "STOP",
    "deal_rationale_column",
    "reason_words",
    "schedule_rationale_column",
]

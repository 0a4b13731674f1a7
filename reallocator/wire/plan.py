"""Plan (core) -> Plan message."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from reallocator.core.model import BudgetType, is_text_array, text_column, values_of
from reallocator.core.plan.explain import render_deal_rationales
from reallocator.core.plan.model import (
    AdjustmentRequest,
    BindingKind,
    DealPacing,
    DeliverySchedule,
    GroupTotals,
    Plan,
    PlanStatus,
    ReasonCode,
    RequestKind,
    ScheduleTable,
    SellerResponse,
)
from reallocator.core.plan.schedule_text import render_schedule_rationales
from reallocator.core.plan.sentences import deal_rationale_column, schedule_rationale_column
from reallocator.v1 import common_pb2, plan_pb2
from reallocator.wire.assessment import BUDGET_TYPE, SEVERITY, timestamp
from reallocator.wire.assessment import STATUS as PACING_STATUS
from reallocator.wire.columnar import framed, framed_head, merge_repeated, repeated_view
from reallocator.wire.encode import arrow_buffer, arrow_stream

COLUMNAR_FROM = 1_000
"""Rows from which deals and schedules are serialised from columns (`wire/columnar.py`):
below it a message per row is cheaper (2k rows: 3.1 -> 2.2 ms for deals, 3.9 -> 2.1 ms for
schedules; 200 rows: 0.36 -> 0.96 ms), above it ~0.3 s less at 100k."""


@dataclass
class Rows:
    """A long plan's deals and schedules as wire bytes kept out of its message (`encode_plan`'s
    `rows`): the answer is the message's bytes and these (`plan_bytes`), where merging them
    into the message made upb parse 63 MB of rows that serialising then wrote again (a FULL
    100k-deal plan: encode ~0.44 -> ~0.35 s, serialise ~65 -> ~18 ms, thread CPU in process).
    The elements carry their zero fields, which a message drops: ~2 % more bytes."""

    parts: list[bytes | memoryview] = field(default_factory=list)
    deals: int = 0  # DealAllocation rows among `parts`

    def add(self, msg: plan_pb2.Plan, name: str, columns: dict[str, Any], count: int = 0) -> None:
        self.parts.append(repeated_view(type(msg), name, columns))
        self.deals += count

    def add_stream(self, msg: plan_pb2.Plan, name: str, data: pa.Buffer) -> None:
        """A bytes field of the plan (a TABLE view's Arrow stream) from Arrow's buffer: setting
        it copied the stream into the message and serialising copied it again (2 x 32 MB at
        100k deals, besides the copy out of Arrow's buffer)."""
        self.parts += framed_head(type(msg), name, data.size), memoryview(data)


def _merge(
    msg: plan_pb2.Plan, name: str, columns: dict[str, Any], rows: Rows | None, count: int = 0
) -> None:
    """Rows serialised from columns: into the message, or kept apart in `rows`."""
    if rows is None:
        merge_repeated(msg, name, columns)
    else:
        rows.add(msg, name, columns, count)


def plan_bytes(container: Message, name: str, rows: Rows) -> bytes:
    """`container` serialised with `rows` in its plan field `name` (a ReplanResponse's or
    GetPlan's answer), as a parser reads the message they were kept from: its other fields
    first, if it has any, then the plan framed with its rows."""
    plan = framed(
        type(container), name, [getattr(container, name).SerializeToString(), *rows.parts]
    )
    if [f.name for f, _ in container.ListFields()] == [name]:
        return plan
    others = type(container)()
    others.CopyFrom(container)
    others.ClearField(name)
    return others.SerializeToString() + plan


STATUS = {
    PlanStatus.OPTIMAL: plan_pb2.PLAN_STATUS_OPTIMAL,
    PlanStatus.RELAXED: plan_pb2.PLAN_STATUS_RELAXED,
    PlanStatus.NO_CHANGE: plan_pb2.PLAN_STATUS_NO_CHANGE,
    PlanStatus.TIME_LIMITED: plan_pb2.PLAN_STATUS_TIME_LIMITED,
}
BINDING = {kind: getattr(plan_pb2, f"BINDING_CONSTRAINT_{kind.value}") for kind in BindingKind}
REASON = {code: getattr(plan_pb2, f"REASON_CODE_{code.value}") for code in ReasonCode}
PACING = {mode: getattr(plan_pb2, f"DEAL_PACING_{mode.value}") for mode in DealPacing}
REQUEST_KIND = {kind: getattr(plan_pb2, f"REQUEST_KIND_{kind.value}") for kind in RequestKind}
RESPONSE = {r: getattr(plan_pb2, f"SELLER_RESPONSE_KIND_{r.value}") for r in SellerResponse}
PATH = {
    "FLOW": plan_pb2.SOLVER_PATH_MIN_COST_FLOW,
    "LP": plan_pb2.SOLVER_PATH_LINEAR_PROGRAM,
}
ENTITY = {
    "DEAL": common_pb2.ENTITY_KIND_DEAL,
    "SELLER": common_pb2.ENTITY_KIND_SELLER,
    "CHANNEL": common_pb2.ENTITY_KIND_CHANNEL,
    "CAMPAIGN": common_pb2.ENTITY_KIND_CAMPAIGN,
}


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def encode_request(r: AdjustmentRequest) -> plan_pb2.AdjustmentRequest:
    msg = plan_pb2.AdjustmentRequest(
        request_id=r.request_id,
        deal_id=r.deal_id,
        seller_id=r.seller_id,
        seller_order_id=r.order_id,
        kind=REQUEST_KIND[r.kind],
        severity=SEVERITY[str(r.severity)],
        target_total=r.target_total,
        target_rate_per_hour=_finite(r.target_rate),
        current_rate_per_hour=_finite(r.current_rate),
        required_rate_per_hour=_finite(r.required_rate),
        window_start_time=timestamp(r.window_start),
        window_end_time=timestamp(r.window_end),
        reason=REASON[r.reason],
        rationale=r.rationale,
        idempotency_key=r.idempotency_key,
        response=RESPONSE[r.response],
    )
    change = struct_pb2.Struct()
    change.update(r.change_request)
    msg.seller_change_request.CopyFrom(change)
    return msg


def encode_schedule(s: DeliverySchedule) -> plan_pb2.DeliverySchedule:
    return plan_pb2.DeliverySchedule(
        deal_id=s.deal_id,
        window_start_time=timestamp(s.window_start),
        hourly_spend_micros=s.hourly_spend_micros.tolist(),
        hourly_target=s.hourly_target.tolist(),
        throttle=_finite(s.throttle),
        reason=REASON[s.reason],
        rationale=s.rationale,
        pacing=PACING[s.pacing],
        hourly_ceiling=(s.hourly_target if s.hourly_ceiling is None else s.hourly_ceiling).tolist(),
    )


def _numbers(table: dict[Any, int]) -> dict[str, int]:
    """An enum table keyed by its codes' strings, as `_codes` and `_code_array` read it."""
    return {str(k): v for k, v in table.items()}


BINDING_NUMBERS = _numbers(BINDING)
REASON_NUMBERS = _numbers(REASON)
PACING_NUMBERS = _numbers(PACING)
_REASON_BY_POSITION = np.array([REASON[code] for code in ReasonCode], dtype=np.int32)
_PACING_BY_POSITION = np.array([PACING[mode] for mode in DealPacing], dtype=np.int32)
"""Enum numbers by position in ReasonCode and DealPacing (ScheduleTable.reason_code and
pacing_code)."""


def _codes(values: Any, numbers: dict[str, int]) -> list[int]:
    """Enum numbers of a column of code strings (a list, or an array), as the ints a message's
    fields take. `numbers`: the enum's table by `_numbers`, built once."""
    if len(values) < 256:
        listed = values if isinstance(values, list) else np.asarray(values, dtype=object).tolist()
        try:  # codes are strings already, as a plan's table holds them: no str() per value
            return [numbers[v] for v in listed]
        except KeyError:
            return [numbers[str(v)] for v in listed]
    out: list[int] = _code_array(np.asarray(values, dtype=object), numbers).tolist()
    return out


def _code_array(values: Any, numbers: dict[str, int]) -> pa.Array:
    """Enum numbers of a column of code strings (an object array, or a table's Arrow-backed
    column as it is) as an int32 Arrow array: one dict lookup per distinct code (at 100k deals
    a string cast and 100k lookups cost ~20 ms a column, and a plan has six such columns; an
    Arrow column is factorised by Arrow, without objects; the numbers go to Arrow as an array,
    not as 100k ints). `numbers`: the enum's table by `_numbers`.

    Strings are looked up among the enum's names by Arrow (`index_in`), without factorising:
    at 100k deals ~1.0 ms an Arrow column where pandas' factorize cost ~1.6 ms, and ~3.2 ms an
    object column (converted to Arrow first) where factorize cost ~5 ms. A value that is not
    a name (or not a str) takes pandas' path, and its KeyError."""
    strings = _arrow_strings(values)
    if strings is not None:
        names, lookup = _enum_arrow(numbers)
        found = pc.index_in(strings, value_set=names)
        if found.null_count == 0:
            out = lookup.take(found)
            return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
    codes, uniques = pd.factorize(values, use_na_sentinel=False)  # a missing code: KeyError
    lookup = np.array([numbers[str(c)] for c in uniques], dtype=np.int32)
    return pa.array(lookup[codes], pa.int32())


def _schedule_codes(table: ScheduleTable) -> tuple[pa.Array, pa.Array]:
    """The schedules' reason and pacing enum numbers as int32 Arrow arrays: looked up by the
    table's positions where it has them (~0.2 ms at 100k schedules, where the labels' objects
    converted and looked up cost ~6.5 ms), else from its labels (`_code_array`)."""
    if table.reason_code is not None:
        reason = pa.array(_REASON_BY_POSITION[table.reason_code])
    else:
        reason = _code_array(table.reason, REASON_NUMBERS)
    if table.pacing_code is not None:
        pacing = pa.array(_PACING_BY_POSITION[table.pacing_code])
    else:
        pacing = _code_array(table.pacing, PACING_NUMBERS)
    return reason, pacing


def _schedule_ids(table: ScheduleTable) -> pa.Array:
    """The schedules' deal ids as Arrow strings: taken at `deal_index` from the plan's own
    column when it carries one without missing values (~0.4 ms at 100k deals, where the str
    objects' conversion cost ~2.9 ms), else converted from `deal_id`. The same strings."""
    if table.deal_ids is not None:
        strings = pa.array(table.deal_ids)
        if strings.null_count == 0:
            out = strings.take(pa.array(table.deal_index, pa.int64())).cast(pa.string())
            return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
    return pa.array(table.deal_id.astype(object), pa.string())


def _arrow_strings(values: Any) -> pa.Array | pa.ChunkedArray | None:
    """A table's "str" column as its own Arrow strings, an object array of str converted to
    Arrow; None for anything else (a value Arrow will not take as a string)."""
    if is_text_array(values):
        return pa.array(values)
    if not (isinstance(values, np.ndarray) and values.dtype == object):
        return None
    try:
        return pa.array(values, pa.large_string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return None


_ENUM_ARROW: dict[int, tuple[dict[str, int], pa.Array, pa.Array]] = {}
"""Per enum table (`_numbers`, by id, the table kept): its names as Arrow strings and its
numbers as int32, in one order."""


def _enum_arrow(numbers: dict[str, int]) -> tuple[pa.Array, pa.Array]:
    """The enum's names (a value set for `index_in`) and their numbers, built once a table."""
    found = _ENUM_ARROW.get(id(numbers))
    if found is None or found[0] is not numbers:
        names = pa.array(list(numbers), pa.large_string())
        found = (numbers, names, pa.array(list(numbers.values()), pa.int32()))
        _ENUM_ARROW[id(numbers)] = found
    return found[1], found[2]


def _texts(values: np.ndarray) -> list[str]:
    """A column of strings as a list of str: no cast through a fixed-width unicode array (at
    100k rationales of ~300 characters that is a 120 MB copy)."""
    return [v if isinstance(v, str) else str(v) for v in values.tolist()]


def _schedule_messages(msg: plan_pb2.Plan, table: ScheduleTable, kept: Rows | None = None) -> None:
    """Every schedule of the table as a message, straight from its columns (no objects); from
    COLUMNAR_FROM rows up kept in `kept` when given."""
    if len(table) == 0:
        return
    throttle = np.where(np.isfinite(table.throttle), table.throttle, 0.0)
    if len(table) >= COLUMNAR_FROM:
        reason, pacing = _schedule_codes(table)
        words: Any = (
            table.rationale if table.rationale is not None else schedule_rationale_column(table)
        )  # Arrow strings, as merge_repeated takes them
        _merge(
            msg,
            "schedules",
            {
                "deal_id": table.deal_id,
                "window_start_time": timestamp(table.window_start).SerializeToString(),
                "hourly_spend_micros": table.hourly_spend_micros,
                "hourly_target": table.hourly_target,
                "throttle": throttle,
                "reason": reason.to_numpy(),
                "rationale": words,
                "pacing": pacing.to_numpy(),
                "hourly_ceiling": table.hourly_ceiling,
            },
            kept,
        )
        return
    # The one window start every schedule shares, merged from its bytes: ~35 % cheaper than
    # passing the Timestamp to each add (a submessage copied per row; 100k rows ~0.09 s).
    start = plan_pb2.DeliverySchedule(
        window_start_time=timestamp(table.window_start)
    ).SerializeToString()
    texts = (
        _texts(table.rationale)
        if table.rationale is not None
        else render_schedule_rationales(table)
    )
    ids = _texts(table.deal_id)
    targets = table.hourly_target.tolist()
    spend = table.hourly_spend_micros.tolist()
    ceiling = table.hourly_ceiling.tolist()
    reasons = _codes(table.reason, REASON_NUMBERS)
    pacing = _codes(table.pacing, PACING_NUMBERS)
    throttles = throttle.tolist()
    add = msg.schedules.add
    rows = zip(ids, spend, targets, throttles, reasons, texts, pacing, ceiling, strict=True)
    for deal, spent, target, throttled, reason, text, paced, ceiling_row in rows:
        add(
            deal_id=deal,
            hourly_spend_micros=spent,
            hourly_target=target,
            throttle=throttled,
            reason=reason,
            rationale=text,
            pacing=paced,
            hourly_ceiling=ceiling_row,
        ).MergeFromString(start)


def _arrow(table: pa.Table) -> bytes:
    """zstd from 32 MiB up, plain below (`arrow_stream`): a 50-deal table costs 0.36 ms to
    compress here and 0.30 ms to inflate at the caller, for 6 KB saved."""
    return arrow_stream(table, "auto")


_CODE_COLUMNS = (
    ("binding", BINDING_NUMBERS),
    ("reason", REASON_NUMBERS),
    ("pacing", PACING_NUMBERS),
)
"""The deals table's code columns and their enums' numbers."""

DEAL_TABLE_COLUMNS: dict[str, str] = {
    "deal_id": "deal_id",
    "seller_id": "seller_id",
    "channel_id": "channel_id",
    "old_allocation": "old_allocation",
    "new_allocation": "new_allocation",
    "delta": "delta",
    "lower_bound": "lower_bound",
    "upper_bound": "upper_bound",
    "capacity_forecast": "capacity",
    "marginal_value": "marginal_value",
    "new_total": "new_total",
}
"""Columns of Plan.deals_arrow (wire name -> the plan table's column), before the codes."""


def deals_arrow(plan: Plan | pd.DataFrame) -> bytes:
    """The plan's deals as the Arrow stream of Plan.deals_arrow (numbers and codes only)."""
    return _arrow(_deals_table(plan.deals if isinstance(plan, Plan) else plan))


def _deals_table(d: pd.DataFrame) -> pa.Table:
    columns: dict[str, Any] = {}
    for wire, col in DEAL_TABLE_COLUMNS.items():
        if wire.endswith("_id"):  # the table's Arrow strings as they are (no objects between)
            columns[wire] = pa.array(text_column(d, col), pa.string())
            continue
        values = values_of(d, col)  # no Series per column (~20 us each at 50 deals)
        if wire == "marginal_value":
            values = np.where(np.isfinite(values), values, 0.0)
        columns[wire] = pa.array(values)
    for wire, codes in _CODE_COLUMNS:
        columns[wire] = _code_array(text_column(d, wire), codes)
    return pa.table(columns)


def schedules_arrow(plan: Plan | ScheduleTable | None) -> bytes:
    """The plan's schedules as the Arrow stream of Plan.schedules_arrow."""
    return _arrow(_schedules_table(plan.schedule_table if isinstance(plan, Plan) else plan))


def _schedules_table(table: ScheduleTable | None) -> pa.Table:
    n = 0 if table is None else len(table)
    hours = 0 if table is None else table.n_hours

    def matrix(values: np.ndarray | None) -> pa.Array:
        flat = np.zeros(0, np.int64) if values is None else values.reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.int64()), max(hours, 1))

    if table is None or n == 0:
        empty = pa.array(np.zeros(0, np.int64))
        lists = pa.FixedSizeListArray.from_arrays(empty, 1)
        out = pa.table(
            {
                "deal_id": pa.array([], pa.string()),
                "window_start_unix_seconds": empty,
                "hourly_target": lists,
                "hourly_spend_micros": lists,
                "hourly_ceiling": lists,
                "throttle": pa.array([], pa.float64()),
                "reason": pa.array([], pa.int32()),
                "pacing": pa.array([], pa.int32()),
            }
        )
        return out
    start = int(table.window_start.timestamp())
    reason, pacing = _schedule_codes(table)
    out = pa.table(
        {
            "deal_id": _schedule_ids(table),
            "window_start_unix_seconds": pa.array(np.full(n, start, dtype=np.int64)),
            "hourly_target": matrix(table.hourly_target),
            "hourly_spend_micros": matrix(table.hourly_spend_micros),
            "hourly_ceiling": matrix(table.hourly_ceiling),
            "throttle": pa.array(np.where(np.isfinite(table.throttle), table.throttle, 0.0)),
            "reason": reason,
            "pacing": pacing,
        }
    )
    return out


def _listed(table: pd.DataFrame, name: str, rows: np.ndarray | None) -> list[Any]:
    """A column's values in `rows` (None: all) as a list of plain values. A "str" column
    without missing values is read by Arrow (~2 us at 50 rows where its object array then the
    list cost ~6 us); any other column as `values_of` reads it."""
    values = text_column(table, name)
    if is_text_array(values):
        strings = pa.array(values)  # the column's own Arrow strings, not copied
        if strings.null_count == 0:
            listed: list[Any] = strings.to_pylist()
            return listed if rows is None else [listed[i] for i in rows.tolist()]
    column = values if isinstance(values, np.ndarray) else values_of(table, name)
    return (column if rows is None else column[rows]).tolist()  # type: ignore[no-any-return]


def _deal_messages(
    msg: plan_pb2.Plan,
    table: pd.DataFrame,
    bt: BudgetType,
    currency: str,
    rows: np.ndarray,
    kept: Rows | None = None,
) -> None:
    """One DealAllocation per row of `rows`, columns read once; missing words rendered. From
    COLUMNAR_FROM rows up kept in `kept` when given."""
    if rows.size >= COLUMNAR_FROM:
        _deal_columns(msg, table, rows, _deal_words(table, bt, currency, rows), kept)
        return
    texts = deal_rationales(table, bt, currency, rows)
    picked = None if rows.size == len(table) else rows  # rows are ascending: all, or fewer
    c = {k: _listed(table, k, picked) for k in _DEAL_FIELDS}  # no Series per column
    text = _texts(texts)
    binding, reason, pacing = (
        _codes(_listed(table, wire, picked), numbers) for wire, numbers in _CODE_COLUMNS
    )
    marginal_value = values_of(table, "marginal_value", np.float64)
    if picked is not None:
        marginal_value = marginal_value[picked]
    marginal = np.where(np.isfinite(marginal_value), marginal_value, 0.0).tolist()
    rows_of = zip(
        *(c[k] for k in ("deal_id", "seller_id", "channel_id", "old_allocation",
                         "new_allocation", "delta", "lower_bound", "upper_bound", "capacity",
                         "new_total")),
        binding, reason, text, marginal, pacing,
        strict=True,
    )  # fmt: skip
    add = msg.deals.add
    for deal, seller, channel, old, new, delta, low, high, cap, total, b, r, t, m, p in rows_of:
        add(
            deal_id=deal,
            seller_id=seller,
            channel_id=channel,
            old_allocation=old,
            new_allocation=new,
            delta=delta,
            lower_bound=low,
            upper_bound=high,
            binding=b,
            capacity_forecast=cap,
            reason=r,
            rationale=t,
            marginal_value=m,
            new_total=total,
            pacing=p,
        )


def deal_rationales(
    table: pd.DataFrame, bt: BudgetType, currency: str, rows: np.ndarray
) -> np.ndarray:
    """The words of the deals in `rows` (an object array): the table's own where it has them
    (a plan built with its words), rendered from its numbers where not."""
    texts: np.ndarray = values_of(table, "rationale", object)[rows]
    missing = np.flatnonzero(texts == "")
    if missing.size:
        texts = texts.copy()
        rendered = render_deal_rationales(table, bt, currency, rows[missing])
        texts[missing] = np.asarray(rendered, dtype=object)
    return texts


def _deal_words(
    table: pd.DataFrame, bt: BudgetType, currency: str, rows: np.ndarray
) -> np.ndarray | pa.Array:
    """`deal_rationales` for many rows: a plan built without words (the servicer's) gets them
    as one Arrow string array (`sentences`), with no str per row."""
    if not (values_of(table, "rationale", object)[rows] == "").all():
        return deal_rationales(table, bt, currency, rows)
    return deal_rationale_column(table, bt, currency, rows)


def _deal_columns(
    msg: plan_pb2.Plan,
    table: pd.DataFrame,
    rows: np.ndarray,
    texts: np.ndarray | pa.Array,
    kept: Rows | None = None,
) -> None:
    """`_deal_messages` for many rows: the same fields, serialised from columns."""
    every = rows.size == len(table)

    def picked(values: Any) -> Any:
        return values if every else values.take(rows)

    columns: dict[str, Any] = {
        wire: picked(pa.array(text_column(table, wire), pa.large_string()))
        for wire in ("deal_id", "seller_id", "channel_id")
    }
    for wire, col in _DEAL_NUMBERS.items():
        columns[wire] = values_of(table, col)[rows]
    for wire, codes in _CODE_COLUMNS:
        columns[wire] = picked(_code_array(text_column(table, wire), codes)).to_numpy()
    columns["rationale"] = texts
    columns["marginal_value"] = np.nan_to_num(
        values_of(table, "marginal_value", np.float64)[rows], nan=0.0, posinf=0.0, neginf=0.0
    )
    _merge(msg, "deals", columns, kept, rows.size)


_DEAL_NUMBERS = {
    wire: col
    for wire, col in DEAL_TABLE_COLUMNS.items()
    if not wire.endswith("_id") and wire != "marginal_value"
}
"""Integer fields of DealAllocation (wire name -> the plan table's column)."""

_DEAL_FIELDS = (
    *(c for w, c in DEAL_TABLE_COLUMNS.items() if w.endswith("_id")),
    *_DEAL_NUMBERS.values(),
)
"""The plan table's columns a DealAllocation reads as they are (ids and integers)."""


def _group_rows(totals: GroupTotals) -> list[dict[str, Any]]:
    """A GroupTotal per row as the dict a message's constructor takes (it builds every one in C:
    half the cost of adding them one by one), from the plan's arrays (not its frame, which is
    built only for a reader that asks for it)."""
    # Plain values per row, one list per column, converted column-wise (a row ~1.5 us so).
    marginal = totals.marginal_value
    rows = zip(
        [str(gid) for gid in totals.ids.tolist()],
        _plain(totals.delivered, int),
        _plain(totals.old_allocation, int),
        _plain(totals.new_allocation, int),
        _plain(totals.binding, bool),
        np.where(np.isfinite(marginal), marginal, 0.0).tolist(),
        totals.min_total.tolist(),
        totals.max_total.tolist(),
        strict=True,
    )
    out = []
    for gid, total, old_total, new_total, binds, value, min_total, max_total in rows:
        row = {
            "id": gid,
            "delivered": total,
            "old_allocation": old_total,
            "new_allocation": new_total,
            "binding": binds,
            "marginal_value": value,
        }
        if not math.isnan(min_total):  # the usual group has no limits
            row["min_total"] = int(min_total)
        if not math.isnan(max_total):
            row["max_total"] = int(max_total)
        out.append(row)
    return out


def _plain(values: np.ndarray, kind: type) -> list[Any]:
    """A column as a list of `kind` values: numpy's own conversion where its dtype is that
    kind already (integers, booleans), `kind()` of each value where not."""
    listed: list[Any] = values.tolist()
    native = values.dtype.kind in ("iu" if kind is int else "b")
    return listed if native else [kind(v) for v in listed]


def add_rows(
    msg: plan_pb2.Plan,
    deals: pd.DataFrame,
    schedules: ScheduleTable | None,
    budget_type: BudgetType,
    currency: str,
    view: str,
    kept: Rows | None = None,
) -> None:
    """The per-deal part of a plan message in `view` (see `encode_plan`), from the plan's two
    tables alone: the audit store keeps those tables, not the messages, and fills a stored
    summary in with this on reading, so a plan read back equals the one Replan returned.
    Long row lists go to `kept` when given (`Rows`)."""
    rows = np.arange(len(deals))
    if view == "changed":
        moved = values_of(deals, "delta") != 0
        ahead = values_of(deals, "pacing", object) == DealPacing.AHEAD.value
        rows = np.flatnonzero(moved | ahead)
    elif view in ("none", "table"):
        rows = rows[:0]
    if rows.size:
        _deal_messages(msg, deals, budget_type, currency, rows, kept)
    if view == "table" and kept is not None:  # Arrow's buffers as they are
        kept.add_stream(msg, "deals_arrow", arrow_buffer(_deals_table(deals), "auto"))
        kept.add_stream(msg, "schedules_arrow", arrow_buffer(_schedules_table(schedules), "auto"))
    elif view == "table":
        msg.deals_arrow = deals_arrow(deals)
        msg.schedules_arrow = schedules_arrow(schedules)
    if view in ("all", "changed") and schedules is not None:
        _schedule_messages(msg, schedules, kept)


VIEWS = ("all", "changed", "none", "table")
_PLAN: Any = plan_pb2.Plan
"""Its constructor takes dicts for sub-messages, as upb does (the stubs say messages only)."""


def encode_plan(
    plan: Plan,
    *,
    name: str = "",
    deals: str = "all",
    out: plan_pb2.Plan | None = None,
    rows: Rows | None = None,
) -> plan_pb2.Plan:
    """The plan as a message (filled into `out` when given, so a response is not copied); with
    `rows`, a long plan's deal and schedule rows are kept there as bytes instead of merged
    (`plan_bytes` serialises the answer with them).

    `deals`: "all" rows and schedules; "changed": the rows of the deals whose allocation moves
    or that are paced AHEAD (an instruction either way) and every schedule (each one is a change
    to the buyer's pacer); "none": neither; "table": neither as messages, both as Arrow streams
    (deals_arrow, schedules_arrow). Words missing from the plan (build_plan(text=False)) are
    rendered here, for the rows returned only."""
    if deals not in VIEWS:
        raise ValueError(f"deals must be one of {VIEWS}, got {deals!r}")
    msg = plan_pb2.Plan() if out is None else out
    msg.name = name
    msg.campaign_id = plan.campaign_id
    msg.as_of.CopyFrom(timestamp(plan.as_of))
    msg.status = STATUS[plan.status]
    msg.no_change_reason = plan.no_change_reason
    msg.budget_type = BUDGET_TYPE[plan.budget_type]
    msg.currency_code = plan.currency
    msg.remaining_budget = plan.remaining_budget
    msg.allocated = plan.allocated
    msg.unspendable = plan.unspendable
    msg.max_severity = (
        SEVERITY[str(plan.max_severity)] if plan.max_severity else common_pb2.SEVERITY_UNSPECIFIED
    )
    add_rows(msg, plan.deals, plan.schedule_table, plan.budget_type, plan.currency, deals, rows)
    groups = _PLAN(
        sellers=_group_rows(plan.seller_totals), channels=_group_rows(plan.channel_totals)
    )
    msg.MergeFrom(groups)  # appended, as to a new message
    for u in plan.unspendable_reasons:
        msg.unspendable_reasons.add(
            amount=u.amount,
            reason_code=u.reason_code,
            entity=common_pb2.EntityRef(kind=ENTITY[u.entity_kind], id=u.entity_id),
            message=u.message,
        )
    msg.seller_requests.extend(encode_request(r) for r in plan.requests)
    created = timestamp(plan.as_of)
    for alert in plan.alerts:
        msg.alerts.add(
            entity=common_pb2.EntityRef(kind=ENTITY[str(alert.entity_kind)], id=alert.entity_id),
            status=PACING_STATUS[str(alert.status)],
            severity=SEVERITY[str(alert.severity)],
            reason_code=str(alert.reason),
            message=alert.message,
            confidence=alert.confidence,
            create_time=created,
        )
    for v in plan.violations:
        msg.violations.add(
            constraint=v.constraint,
            entity=common_pb2.EntityRef(
                kind=ENTITY.get(v.entity_kind, common_pb2.ENTITY_KIND_UNSPECIFIED), id=v.entity_id
            ),
            bound=v.bound,
            relaxation=v.relaxation,
            message=v.message,
        )
    record = plan.rationale
    msg.rationale.summary = record.summary
    for f in record.factors:
        msg.rationale.factors.add(
            name=f.name, value=_finite(f.value), display_value=f.display, explanation=f.explanation
        )
    msg.rationale.references.extend(record.references)
    s = plan.solver
    msg.solver.CopyFrom(
        plan_pb2.SolverReport(
            path=PATH.get(s.path, plan_pb2.SOLVER_PATH_UNSPECIFIED),
            build_duration=_duration(s.build_seconds),
            solve_duration=_duration(s.solve_seconds),
            verify_duration=_duration(s.verify_seconds),
            total_duration=_duration(s.total_seconds),
            time_limited=s.time_limited,
            objective_allocated=s.objective_allocated,
            objective_value=_finite(s.objective_value),
        )
    )
    return msg


__all__ = [
    "Rows",
    "add_rows",
    "deal_rationales",
    "deals_arrow",
    "encode_plan",
    "encode_request",
    "encode_schedule",
    "plan_bytes",
    "schedules_arrow",
]

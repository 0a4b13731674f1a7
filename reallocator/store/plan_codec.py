"""A plan as the audit store keeps it: numbers, not words.

Three parts per plan:

- the summary: the Plan message without its per-deal rows and schedules (totals, groups,
  seller requests, alerts, violations, the decision record), life-cycle fields cleared;
- the deals table (`Plan.deals`: allocations, bounds, codes and the inputs of each rationale)
  as an Arrow IPC stream (zstd-compressed from `STORE_COMPRESS_FROM_BYTES` up);
- the schedule table (`ScheduleTable`: the deals x hours matrices and the inputs of each
  rationale) likewise, its scalars in the Arrow schema's metadata.

Rationale text is not stored: `render` fills the summary in with `wire.plan.add_rows`, the same
function `encode_plan` uses, so a plan read back in any view is byte for byte the message Replan
returned in that view (life cycle apart). At 100k deals the FULL message is ~65 MB, mostly text;
the tables are a few MB.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from reallocator.core.model import BudgetType, arrow_text, table_of
from reallocator.core.plan.model import PLAN_DEAL_COLUMNS, Plan, ScheduleTable
from reallocator.v1 import plan_pb2
from reallocator.wire.assessment import BUDGET_TYPE
from reallocator.wire.encode import arrow_stream
from reallocator.wire.messages import copy_except
from reallocator.wire.plan import Rows, add_rows

LIFE_CYCLE = ("name", "state", "etag", "create_time", "history", "previous_plan")
"""Plan fields the store owns: cleared before storing, filled in on reading."""

_BUDGET_TYPE = {number: bt for bt, number in BUDGET_TYPE.items()}

_CODES = frozenset({"binding", "reason", "pacing", "pacing_status", "seller_id", "channel_id"})
"""Deal columns with few distinct values."""

_SCHEDULE_VECTORS = (
    "deal_index",
    "deal_id",
    "seller_id",
    "throttle",
    "reason",
    "pacing",
    "current_rate",
    "horizon_rate",
    "old_allocation",
    "new_allocation",
    "participation",
)
_SCHEDULE_MATRICES = ("hourly_target", "hourly_spend_micros", "hourly_ceiling")


@dataclass(frozen=True)
class PlanParts:
    """What the store writes for one plan (`summary` is the serialised Plan message)."""

    summary: bytes
    deals: bytes
    schedules: bytes
    deal_count: int
    moved: bytes | None = None  # MOVED_COLUMNS of the deals it changes (delta != 0)


MOVED_COLUMNS = ("deal_id", "delta", "delivered", "old_allocation", "pacing")
"""What later Replans read of a plan once it is applied: the moves the hysteresis looks back
on and the application a snapshot may leave out (`SqlStore.campaign_past`). Kept apart from the
deals table, for the deals the plan changes only: a 100k-deal plan's table is ~6 MB, and a
Replan looks back on every plan applied in the last day."""


STORE_COMPRESS_FROM_BYTES = 64 << 10
"""Stored tables are zstd-compressed when their plain IPC stream is this long or longer (about
200 deals), plain below. pyarrow compresses each buffer apart with ~5 us of set-up each, so a
50-deal plan's two tables cost ~1.2 ms of a recorded Replan's ~10 to compress, and saved ~13 KB
of a record whose snapshot alone is ~43 KB. Readers take either form (the IPC stream says, per
buffer)."""

_SURELY_LONG_ROWS = 4096
"""From this many rows a table's fixed-width columns alone may make its stream long enough to
compress: then counted, so a large table is not written plain first for nothing."""


_PLAIN = pa.ipc.IpcWriteOptions()
"""The plain stream's options, built once: `pa.ipc.new_stream` builds them per call from two
environment variables (~10 us of a 50-deal table's ~30 us)."""


def _ipc(table: pa.Table) -> bytes:
    """The stored stream: written plain (one pass into a growing buffer: for the small tables
    of most plans, ~20 us where measuring `table.nbytes` first cost ~37 us and a sized
    two-pass write ~40), and written again compressed when that is STORE_COMPRESS_FROM_BYTES
    or longer, unless the fixed-width columns alone say so first."""
    if table.num_rows < _SURELY_LONG_ROWS or _fixed_bytes(table) < STORE_COMPRESS_FROM_BYTES:
        sink = pa.BufferOutputStream()
        with pa.ipc.RecordBatchStreamWriter(sink, table.schema, options=_PLAIN) as writer:
            writer.write_table(table)
        plain = sink.getvalue()
        if plain.size < STORE_COMPRESS_FROM_BYTES:
            return bytes(plain.to_pybytes())
    return arrow_stream(table, "zstd")


def _fixed_bytes(table: pa.Table) -> int:
    """A lower bound of the plain stream's length: the data of its fixed-width columns (a
    dictionary column's indices), which the stream holds in full."""
    bits = 0
    for field in table.schema:
        kind = field.type
        if pa.types.is_dictionary(kind):
            kind = kind.index_type
        with contextlib.suppress(ValueError):  # variable width (text), nested: counted as 0
            bits += kind.bit_width
    return bits * int(table.num_rows) // 8


def _read_ipc(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


_NOT_IN_SUMMARY = frozenset((*LIFE_CYCLE, "deals", "schedules", "deals_arrow", "schedules_arrow"))

_COPY_ROWS = 1000
"""A message with fewer per-deal rows and schedules than this is copied whole and they are
cleared after (one call in C: ~18 us at 50 deals); one with more has the fields the summary
keeps copied one by one, its rows never (a repeated field is copied an element at a time,
~0.35 us each, but copying a 100k-deal FULL answer whole cost ~40 ms)."""


def _summary(msg: plan_pb2.Plan) -> bytes:
    """The message without its life cycle and per-deal rows."""
    out = plan_pb2.Plan()
    if len(msg.deals) + len(msg.schedules) < _COPY_ROWS:
        out.CopyFrom(msg)
        for name in _NOT_IN_SUMMARY:
            out.ClearField(name)  # type: ignore[arg-type]
    else:
        copy_except(msg, out, _NOT_IN_SUMMARY)
    data: bytes = out.SerializeToString(deterministic=True)
    return data


def _schedule_ipc(table: ScheduleTable | None) -> bytes:
    if table is None:
        return b""
    hours = table.n_hours
    columns: dict[str, pa.Array] = {}
    for name in _SCHEDULE_VECTORS:
        values = getattr(table, name)
        if values.dtype == object:
            columns[name] = pa.array(values, pa.string())
        else:
            columns[name] = pa.array(values)
    target = np.asarray(table.hourly_target, dtype=np.int64)
    for name in _SCHEDULE_MATRICES:
        values = np.asarray(getattr(table, name), dtype=np.int64)
        if name != "hourly_target":  # mostly equal to the target: store the difference
            values = values - target
        columns[name] = pa.FixedSizeListArray.from_arrays(
            pa.array(values.reshape(-1)), max(hours, 1)
        )
    meta = {
        "window_start_us": round(table.window_start.timestamp() * 1e6),
        "hours": hours,
        "window_hours": table.window_hours,
        "deadline": table.deadline,
        "pace_ahead": table.pace_ahead,
        "budget_type": table.budget_type.value,
        "currency": table.currency,
    }
    schema = pa.schema([(k, v.type) for k, v in columns.items()])
    schema = schema.with_metadata({"reallocator": json.dumps(meta)})
    return _ipc(pa.Table.from_arrays(list(columns.values()), schema=schema))


def schedule_table(data: bytes) -> ScheduleTable | None:
    if not data:
        return None
    table = _read_ipc(data)
    meta = json.loads(table.schema.metadata[b"reallocator"])
    hours = int(meta["hours"])
    n = table.num_rows
    vectors: dict[str, np.ndarray] = {}
    for name in _SCHEDULE_VECTORS:
        column = table.column(name)
        if pa.types.is_string(column.type):
            vectors[name] = column.to_numpy(zero_copy_only=False).astype(object)
        else:
            vectors[name] = column.to_numpy()
    matrices = {
        name: table.column(name).combine_chunks().flatten().to_numpy().reshape(n, hours)
        if hours
        else np.zeros((n, 0), np.int64)
        for name in _SCHEDULE_MATRICES
    }
    for name in _SCHEDULE_MATRICES:
        if name != "hourly_target":
            matrices[name] = matrices[name] + matrices["hourly_target"]
    start = datetime.fromtimestamp(int(meta["window_start_us"]) / 1e6, UTC)
    return ScheduleTable(
        window_start=start,
        **vectors,
        **matrices,
        window_hours=float(meta["window_hours"]),
        deadline=str(meta["deadline"]),
        pace_ahead=float(meta["pace_ahead"]),
        budget_type=BudgetType(meta["budget_type"]),
        currency=str(meta["currency"]),
    )


def split(plan: Plan, msg: plan_pb2.Plan) -> PlanParts:
    """The parts to store of `plan`, whose message (any view) Replan encoded as `msg`."""
    deals = _deals_table(plan.deals)
    return PlanParts(
        summary=_summary(msg),
        deals=_ipc(deals),
        schedules=_schedule_ipc(plan.schedule_table),
        deal_count=len(plan.deals),
        moved=_ipc(moved_rows(deals)),
    )


def moved_rows(deals: pa.Table) -> pa.Table:
    """MOVED_COLUMNS of the rows of a stored deals table whose delta is not 0."""
    table = deals.select(list(MOVED_COLUMNS))
    return table.filter(pa.array(table.column("delta").to_numpy() != 0))


def _stored(table: pa.Table) -> pa.Table:
    """The deals table as stored: code columns dictionary-encoded (a few distinct values, a
    byte or so a row), the rationale emptied (rendered again on reading, from the numbers)."""
    for i, name in enumerate(table.column_names):
        if name in _CODES:
            table = table.set_column(i, name, table.column(name).dictionary_encode())
        elif name == "rationale":
            words = table.schema.field(i).type
            table = table.set_column(i, name, pa.array(np.full(len(table), ""), type=words))
    return table


_STORED: dict[tuple[tuple[str, ...], tuple[object, ...]], pa.Schema] = {}
"""The stored deals table's schema (`_stored` of `pa.Table.from_pandas`, pandas metadata
included) per column names and dtypes: found once, then the table is made from the columns as
they are, straight in its stored form (~0.25 ms of a 50-deal plan's ~0.5 ms of storing went to
finding the dtypes, converting columns and replacing seven of them one table at a time)."""


def _columns(frame: pd.DataFrame) -> tuple[tuple[str, ...], list[Any]] | None:
    """The frame's column names and arrays, read without building a Series each (None: a frame
    without pandas' column accessor, or with a repeated name)."""
    get = getattr(frame, "_get_column_array", None)
    names = tuple(frame.columns.tolist())  # iterating pandas' Arrow strings is ~0.5 us a name
    if get is None or len(set(names)) < len(names):
        return None
    return names, [get(i) for i in range(len(names))]


def _columns_key(frame: pd.DataFrame) -> tuple[tuple[str, ...], tuple[object, ...]] | None:
    """Column names and dtypes, from the columns themselves: `frame.dtypes` builds a Series and
    naming each dtype costs ~1.5 us (~30 us a frame), more than writing an empty stream."""
    columns = _columns(frame)
    if columns is None:
        return None
    names, arrays = columns
    return names, tuple(values.dtype for values in arrays)


def _deals_table(frame: pd.DataFrame) -> pa.Table:
    """`_stored(pa.Table.from_pandas(frame, preserve_index=False))`, the same table."""
    read = _columns(frame)
    if read is None or not isinstance(frame.index, pd.RangeIndex):
        return _stored(pa.Table.from_pandas(frame, preserve_index=False))
    names, arrays = read
    key = (names, tuple(values.dtype for values in arrays))
    schema = _STORED.get(key)
    if schema is None:
        table = _stored(pa.Table.from_pandas(frame, preserve_index=False))
        if all(str(dtype) in ("str", "int64", "float64", "bool") for dtype in key[1]):
            _STORED[key] = table.schema
        return table
    n = len(frame)
    columns: list[pa.ChunkedArray | pa.Array] = []
    for name, values, field in zip(names, arrays, schema, strict=True):
        if name == "rationale":
            columns.append(pa.array(np.full(n, ""), type=field.type))
        elif isinstance(values, np.ndarray):
            columns.append(pa.array(values, field.type, from_pandas=True))  # NaN: null
        else:  # a "str" column: its Arrow strings as they are
            chunked = values._pa_array
            columns.append(chunked.dictionary_encode() if name in _CODES else chunked)
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass(frozen=True, eq=False)
class StoredInputs:
    """What the service supplied a plan beyond the caller's snapshot: the seller history it
    read from the store, and per deal (snapshot order) the last plan applied it filled in and
    the rolling windows' starts (NaN: none)."""

    history: pd.DataFrame  # RequestHistory.requests
    deals: pd.DataFrame  # deal_id, plan_applied_at, delivered_at_plan, window_hour, window_day
    moves: pd.DataFrame | None = None  # RequestHistory.moves (None: not recorded)


def inputs_parts(inputs: StoredInputs) -> tuple[bytes, bytes, bytes | None]:
    """The Arrow streams the store keeps for `inputs` (history, per-deal, moves)."""
    moves = None if inputs.moves is None else _frame_ipc(inputs.moves)
    return _frame_ipc(inputs.history), _frame_ipc(inputs.deals), moves


_EMPTY: dict[object, bytes] = {}
"""The stream of an empty frame, per column names and dtypes: most plans have no history,
moves or filled-in inputs, and writing an empty stream costs as much as a small one."""


_SHARED: dict[int, tuple[pd.DataFrame, pd.Index, bytes]] = {}
"""The stream of an empty frame seen before, per frame (kept, so its id is not reused): the
store's and the life cycle's shared empty frames come back on most plans, and reading a
frame's column names and dtypes for `_EMPTY` cost ~35 us of the three a plan stores."""


_FRAMES: dict[tuple[tuple[str, ...], tuple[object, ...]], pa.Schema] = {}
"""`pa.Table.from_pandas`'s schema of a stored inputs frame (pandas metadata included) per
column names and dtypes: found once, then the table is made from the columns as they are
(from_pandas cost ~0.3 ms a frame, and a Replan of a campaign with a past stores three)."""


def _frame_table(frame: pd.DataFrame) -> pa.Table:
    """`pa.Table.from_pandas(frame, preserve_index=False)`, the same table, whatever the index
    (left out: a frame of rows picked out of another, as `RequestHistory.deciding` makes,
    took pandas' way, ~0.4 ms of an hourly campaign's Replan)."""
    read = _columns(frame)
    if read is None:
        return pa.Table.from_pandas(frame, preserve_index=False)
    names, arrays = read
    key = (names, tuple(values.dtype for values in arrays))
    schema = _FRAMES.get(key)
    if schema is None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if all(str(dtype) in ("str", "int64", "float64", "bool") for dtype in key[1]):
            if len(_FRAMES) >= 64:
                _FRAMES.clear()
            _FRAMES[key] = table.schema
        return table
    columns = [
        pa.array(values, field.type, from_pandas=True)  # NaN: null, as from_pandas
        if isinstance(values, np.ndarray)
        else values._pa_array  # a "str" column: its Arrow strings as they are
        for values, field in zip(arrays, schema, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _frame_ipc(frame: pd.DataFrame) -> bytes:
    if len(frame):
        return _ipc(_frame_table(frame))
    seen = _SHARED.get(id(frame))
    if seen is not None and seen[0] is frame and seen[1] is frame.columns:
        return seen[2]
    key: object = _columns_key(frame)
    if key is None:
        key = tuple((str(name), str(dtype)) for name, dtype in frame.dtypes.items())
    if key not in _EMPTY:
        _EMPTY[key] = _ipc(pa.Table.from_pandas(frame, preserve_index=False))
    if len(_SHARED) >= 64:  # frames made per call: no use keeping them
        _SHARED.clear()
    _SHARED[id(frame)] = (frame, frame.columns, _EMPTY[key])
    return _EMPTY[key]


def inputs_frames(history: bytes, deals: bytes, moves: bytes | None = None) -> StoredInputs:
    return StoredInputs(
        _read_ipc(history).to_pandas(),
        _read_ipc(deals).to_pandas(),
        None if moves is None else _read_ipc(moves).to_pandas(),
    )


_DEAL_NAMES = list(PLAN_DEAL_COLUMNS)


def deals_frame(data: bytes) -> pd.DataFrame:
    """The stored deals table (`Plan.deals` columns and dtypes). A table with today's columns
    is made from its Arrow columns as they are (labels shared, numbers one copy: ~0.75 ms at
    50 deals where Arrow's pandas conversion, then casting the categoricals it makes of the
    dictionary columns back to text, cost ~5 ms, most of a GetPlan or a ReviewPlan); one
    stored before a column was added goes through pandas' conversion."""
    table = _read_ipc(data)
    if table.column_names != _DEAL_NAMES:
        frame: pd.DataFrame = table.to_pandas()
        for name in _CODES.intersection(frame.columns):
            frame[name] = frame[name].astype(PLAN_DEAL_COLUMNS[name])  # type: ignore[call-overload]
        return frame
    columns: dict[str, Any] = {}
    for name, column in zip(_DEAL_NAMES, table.columns, strict=True):
        if PLAN_DEAL_COLUMNS[name] == "str":
            columns[name] = arrow_text(column)
        else:  # a float's null is the NaN it was stored from
            columns[name] = column.to_numpy()
    return table_of(columns, PLAN_DEAL_COLUMNS)


_READ_WHOLE_BYTES = 1 << 16
"""Below this length `deals_columns` reads a stored table whole (decompressing columns it does
not need costs less than opening the stream twice)."""


def deals_columns(data: bytes, names: Sequence[str]) -> pa.Table:
    """Some columns of a stored deals table, as Arrow: the others are neither decompressed nor
    converted. A Replan reads four columns of every plan applied in the last day (the moves the
    hysteresis reads, the rolling windows): whole, 100k deals cost ~0.1 s a plan. A short
    table (a plan's moved rows, mostly) is read whole, in one pass: opening it twice cost more
    (an hourly campaign's Replan reads ~24 of them)."""
    if len(data) < _READ_WHOLE_BYTES:
        table = _read_ipc(data)
        return table.select([n for n in names if table.schema.get_field_index(n) >= 0])
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        schema = reader.schema
    fields = [schema.get_field_index(name) for name in names]
    if min(fields, default=0) < 0:  # a column this table lacks: read what it has
        return _read_ipc(data).select([n for n in names if schema.get_field_index(n) >= 0])
    options = pa.ipc.IpcReadOptions(included_fields=fields)
    with pa.ipc.open_stream(pa.py_buffer(data), options=options) as reader:
        return reader.read_all().select(list(names))


def render(
    summary: bytes,
    deals: bytes | None,
    schedules: bytes | None,
    view: str,
    rows: Rows | None = None,
) -> plan_pb2.Plan:
    """The stored plan as a message in `view` ("all", "changed", "none", "table"), life cycle
    unset; with `rows`, a long plan's rows kept there as bytes (`wire.plan.Rows`). A plan
    stored whole (before the tables existed: `deals` None) is cut to the view."""
    msg = plan_pb2.Plan.FromString(summary)
    if deals is None:
        return _cut(msg, view)
    if view == "none":
        return msg
    add_rows(
        msg,
        deals_frame(deals),
        schedule_table(schedules or b""),
        _BUDGET_TYPE[msg.budget_type],
        msg.currency_code,
        view,
        rows,
    )
    return msg


def _cut(msg: plan_pb2.Plan, view: str) -> plan_pb2.Plan:
    """A whole stored message cut to a view (the Arrow streams cannot be made from it)."""
    if view in ("none", "table"):
        msg.ClearField("deals")
        msg.ClearField("schedules")
    elif view == "changed":
        keep = [d for d in msg.deals if d.delta != 0 or d.pacing == plan_pb2.DEAL_PACING_AHEAD]
        del msg.deals[:]
        msg.deals.extend(keep)
    return msg


__all__ = [
    "LIFE_CYCLE",
    "PlanParts",
    "StoredInputs",
    "deals_frame",
    "inputs_frames",
    "inputs_parts",
    "render",
    "schedule_table",
    "split",
]

"""The three wire forms of deals (messages, packed columns, Arrow IPC) -> one canonical table.

Each decoder only reshapes; `check_deals` then validates the table once, vectorised, and names
bad rows with the field path of the form the caller used (so both forms get the same checks).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reallocator.core.model import (
    DEAL_COLUMNS,
    INT64_MAX,
    TEXT_DTYPE,
    DealStatus,
    PriceKind,
    is_text_array,
    table_of,
    text_array,
)
from reallocator.v1 import snapshot_pb2
from reallocator.wire.arrow_guard import (
    THREADED_BYTES,
    CheckedStream,
    StreamReading,
    StreamRejected,
    compressed_stream,
    read_stream,
)
from reallocator.wire.limits import (
    DEFAULT_LIMITS,
    MAX_AMOUNT,
    MAX_PRICE_MICROS,
    MAX_VALUE_PER_UNIT,
    WireLimits,
)
from reallocator.wire.timefields import to_datetime, to_timedelta
from reallocator.wire.violations import Violations

# Columns of DealColumns (and of the Arrow table) -> canonical column.
_RENAMED = {
    "seller_order_id": "order_id",
    "plan_apply_unix_seconds": "plan_applied_at",
    "delivered_at_apply": "delivered_at_plan",
}
# Canonical column -> its path inside a Deal message.
_DEAL_PATHS = {
    "order_id": "seller_order_id",
    "spend_micros": "delivered.spend_micros",
    "impressions": "delivered.impressions",
    "clicks": "delivered.clicks",
    "completes": "delivered.completes",
    "requests": "delivered.requests",
    "price_micros": "ecpm_micros",
    "avails": "supply.avails",
    "bids": "supply.bids",
    "wins": "supply.wins",
    "participation_rate": "supply.participation_rate",
    "available_inventory": "supply.available_inventory",
    "capacity_forecast": "supply.capacity_forecast",
    "plan_applied_at": "last_plan_application.apply_time",
    "delivered_at_plan": "last_plan_application.delivered_at_apply",
}
_COLUMN_NAMES = {v: k for k, v in _RENAMED.items()} | {"price_micros": "ecpm_micros"}
SERIES_MEASURES = ("spend_micros", "impressions", "avails", "wins")
_MEASURES_OF = operator.attrgetter(*SERIES_MEASURES)
"""A DeliverySeries' measures, in SERIES_MEASURES order, in one call."""


def _fmt(template: str, *columns: npt.NDArray[np.generic]) -> Callable[[int], str]:
    """A row-description callback: the template filled with the row's values."""
    return lambda i: template.format(*(c[i] for c in columns))


@dataclass(frozen=True)
class DealsForm:
    """Where a caller's deal fields live, so a violation names the caller's own path."""

    prefix: str  # e.g. "snapshot.deals" or "snapshot.deals_table.columns"
    per_message: bool

    def path(self, column: str) -> Callable[[int], str]:
        if self.per_message:
            suffix = _DEAL_PATHS.get(column, column)
            return lambda i: f"{self.prefix}[{i}].{suffix}"
        name = _COLUMN_NAMES.get(column, column)
        return lambda i: f"{self.prefix}.{name}[{i}]"


@dataclass(frozen=True)
class RawDeals:
    """A decoded table before validation, with which optional fields were set. The columns are
    numpy arrays; strings are objects, or, from the Arrow form, the stream's own strings
    (pandas "str", no objects: validation reads them with Arrow and the canonical table keeps
    them). The canonical DataFrame is built once, at the end of `check_deals`."""

    table: dict[str, Any]
    form: DealsForm
    has_min: npt.NDArray[np.bool_]
    has_max: npt.NDArray[np.bool_]
    has_participation: npt.NDArray[np.bool_]
    has_inventory: npt.NDArray[np.bool_]
    has_forecast: npt.NDArray[np.bool_]
    bad_apply_time: npt.NDArray[np.bool_] | None = None  # malformed Timestamps (message form)

    @property
    def n(self) -> int:
        return len(self.table["deal_id"])


def _ints(values: Sequence[int] | npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64) if n else np.zeros(0, np.int64)


_MESSAGE_FIELDS = (
    ("deal_id", object), ("seller_id", object), ("channel_id", object), ("order_id", object),
    ("deal_type", np.int64), ("premium", np.bool_), ("status", np.int64), ("locked", np.bool_),
    ("allocation", np.int64), ("min_allocation", np.int64), ("max_allocation", np.int64),
    ("has_min", np.bool_), ("has_max", np.bool_),
    ("spend_micros", np.int64), ("impressions", np.int64), ("clicks", np.int64),
    ("completes", np.int64), ("requests", np.int64),
    ("per_unit", np.bool_), ("ecpm_micros", np.int64), ("cost_per_unit_micros", np.int64),
    ("value_per_unit", np.float64), ("has_value", np.bool_),
    ("avails", np.int64), ("bids", np.int64), ("wins", np.int64),
    ("participation_rate", np.float64), ("has_participation", np.bool_),
    ("available_inventory", np.int64), ("has_inventory", np.bool_),
    ("capacity_forecast", np.int64), ("has_forecast", np.bool_),
    ("apply_seconds", np.int64), ("apply_nanos", np.int64), ("has_apply", np.bool_),
    ("delivered_at_plan", np.int64),
)  # fmt: skip


def from_messages(deals: Sequence[snapshot_pb2.Deal], prefix: str) -> RawDeals:
    """Per-deal messages (the form small campaigns use): one pass reading every field of a deal,
    which is about twice as fast as one pass per field."""
    rows: list[tuple[object, ...]] = []
    add = rows.append
    for d in deals:
        x, s, a = d.delivered, d.supply, d.last_plan_application
        add((
            d.deal_id, d.seller_id, d.channel_id, d.seller_order_id, d.deal_type, d.premium,
            d.status, d.locked, d.allocation, d.min_allocation, d.max_allocation,
            d.HasField("min_allocation"), d.HasField("max_allocation"),
            x.spend_micros, x.impressions, x.clicks, x.completes, x.requests,
            d.WhichOneof("price") == "cost_per_unit_micros", d.ecpm_micros, d.cost_per_unit_micros,
            d.value_per_unit, d.HasField("value_per_unit"),
            s.avails, s.bids, s.wins, s.participation_rate, s.HasField("participation_rate"),
            s.available_inventory, s.HasField("available_inventory"),
            s.capacity_forecast, s.HasField("capacity_forecast"),
            a.apply_time.seconds, a.apply_time.nanos, a.HasField("apply_time"),
            a.delivered_at_apply,
        ))  # fmt: skip
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if n else [() for _ in _MESSAGE_FIELDS]
    c: dict[str, npt.NDArray[Any]] = {
        name: np.array(values, dtype=dtype) if n else np.zeros(0, dtype=dtype)
        for (name, dtype), values in zip(_MESSAGE_FIELDS, columns, strict=True)
    }
    per_unit = c["per_unit"]
    data = {
        name: c[name]
        for name in ("deal_id", "seller_id", "channel_id", "order_id", "deal_type", "premium",
                     "status", "locked", "allocation", "min_allocation", "max_allocation",
                     "spend_micros", "impressions", "clicks", "completes", "requests")
    }  # fmt: skip
    data["price_kind"] = np.where(per_unit, PriceKind.PER_UNIT, PriceKind.ECPM).astype(np.int8)
    data["price_micros"] = np.where(per_unit, c["cost_per_unit_micros"], c["ecpm_micros"])
    data["value_per_unit"] = np.where(c["has_value"], c["value_per_unit"], 1.0)
    for name in ("avails", "bids", "wins", "participation_rate", "available_inventory",
                 "capacity_forecast", "delivered_at_plan"):  # fmt: skip
        data[name] = c[name]
    data["plan_applied_at"] = np.where(c["has_apply"], c["apply_seconds"], -1)
    nanos = c["apply_nanos"]
    return RawDeals(
        bad_apply_time=c["has_apply"] & ((nanos < 0) | (nanos >= 1_000_000_000)),
        table=data,
        form=DealsForm(prefix, per_message=True),
        has_min=c["has_min"],
        has_max=c["has_max"],
        has_participation=c["has_participation"],
        has_inventory=c["has_inventory"],
        has_forecast=c["has_forecast"],
    )


_COLUMN_DTYPES: dict[str, type[np.generic]] = {
    f.name: (
        np.bool_ if f.type == f.TYPE_BOOL else np.float64 if f.type == f.TYPE_DOUBLE else np.int64
    )
    for f in snapshot_pb2.DealColumns.DESCRIPTOR.fields
}
_REQUIRED_COLUMNS = ("deal_id", "seller_id", "channel_id", "deal_type", "allocation")
_ALL_COLUMNS = [f.name for f in snapshot_pb2.DealColumns.DESCRIPTOR.fields]


def _column_lengths(lengths: dict[str, int], prefix: str, errors: Violations) -> int:
    """All non-empty columns share deal_id's length; required columns are non-empty."""
    n = lengths.get("deal_id", 0)
    for name in _REQUIRED_COLUMNS:
        if lengths.get(name, 0) == 0 and n > 0:
            errors.add(f"{prefix}.{name}", f"required column is empty (expected {n} values)")
    for name, length in lengths.items():
        if length not in (0, n):
            errors.add(f"{prefix}.{name}", f"has {length} values but deal_id has {n}")
    return n


def _from_columns(
    get: Callable[[str], npt.NDArray[np.generic] | None],
    n: int,
    prefix: str,
    has: Callable[[str, str], npt.NDArray[np.bool_]],
) -> RawDeals:
    def col(name: str, dtype: npt.DTypeLike, default: object) -> npt.NDArray[np.generic]:
        values = get(name)
        if values is None or len(values) == 0:
            return np.full(n, default, dtype=dtype)
        if dtype is object and is_text_array(values):
            return values  # type: ignore[no-any-return]
        return np.asarray(values, dtype=dtype)

    cost_per_unit = col("cost_per_unit_micros", np.int64, 0)
    per_unit = cost_per_unit.astype(np.int64) != 0
    participation = col("participation_rate", np.float64, np.nan)
    data = {
        "deal_id": col("deal_id", object, ""),
        "seller_id": col("seller_id", object, ""),
        "channel_id": col("channel_id", object, ""),
        "order_id": col("seller_order_id", object, ""),
        "deal_type": col("deal_type", np.int64, 0),
        "premium": col("premium", bool, False),
        "status": col("status", np.int64, 0),
        "locked": col("locked", bool, False),
        "allocation": col("allocation", np.int64, 0),
        "min_allocation": col("min_allocation", np.int64, 0),
        "max_allocation": col("max_allocation", np.int64, 0),
        "spend_micros": col("spend_micros", np.int64, 0),
        "impressions": col("impressions", np.int64, 0),
        "clicks": col("clicks", np.int64, 0),
        "completes": col("completes", np.int64, 0),
        "requests": col("requests", np.int64, 0),
        # Plain ints: numpy reads an enum member as an object (~10 us).
        "price_kind": np.where(per_unit, int(PriceKind.PER_UNIT), int(PriceKind.ECPM)).astype(
            np.int8
        ),
        "price_micros": np.where(per_unit, cost_per_unit, col("ecpm_micros", np.int64, 0)),
        "value_per_unit": col("value_per_unit", np.float64, 1.0),
        "avails": col("avails", np.int64, 0),
        "bids": col("bids", np.int64, 0),
        "wins": col("wins", np.int64, 0),
        "participation_rate": participation,
        "available_inventory": col("available_inventory", np.int64, 0),
        "capacity_forecast": col("capacity_forecast", np.int64, 0),
        "plan_applied_at": col("plan_apply_unix_seconds", np.int64, 0),
        "delivered_at_plan": col("delivered_at_apply", np.int64, 0),
    }
    # 0 means "never applied" in columns (an unset int64); the canonical table says -1.
    applied = data["plan_applied_at"]
    data["plan_applied_at"] = np.where(applied == 0, -1, applied)
    return RawDeals(
        table=data,
        form=DealsForm(prefix, per_message=False),
        has_min=has("min_allocation", "has_min_allocation"),
        has_max=has("max_allocation", "has_max_allocation"),
        has_participation=~np.isnan(participation),
        has_inventory=has("available_inventory", "has_available_inventory"),
        has_forecast=has("capacity_forecast", "has_capacity_forecast"),
    )


def from_columns(
    cols: snapshot_pb2.DealColumns, prefix: str, errors: Violations
) -> RawDeals | None:
    """Packed columns: each column converts to numpy in one call."""
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for name in _ALL_COLUMNS:
        values = getattr(cols, name)
        if len(values) == 0:
            continue
        if name in ("deal_id", "seller_id", "channel_id", "seller_order_id"):
            arrays[name] = np.array(list(values), dtype=object)
        else:
            dtype = _COLUMN_DTYPES[name]
            arrays[name] = np.fromiter(values, dtype=dtype, count=len(values))
    mark = errors.mark()
    n = _column_lengths({k: len(v) for k, v in arrays.items()}, prefix, errors)
    if errors.since(mark):
        return None

    def has(value_column: str, flag_column: str) -> npt.NDArray[np.bool_]:
        flags = arrays.get(flag_column)
        if flags is None:
            return np.zeros(n, dtype=bool)
        return flags.astype(bool)

    return _from_columns(arrays.get, n, prefix, has)


ARROW_TEXT_FROM = 1_000
"""Rows from which the Arrow form's strings stay Arrow strings (module note in from_arrow_table)."""
_STRING_COLUMNS = frozenset({"deal_id", "seller_id", "channel_id", "seller_order_id"})


def _arrow_kind_ok(name: str, kind: pa.DataType) -> bool:
    """Whether an Arrow type can carry a DealColumns field without losing meaning."""
    if name in _STRING_COLUMNS:
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
    dtype = _COLUMN_DTYPES[name]
    if dtype is np.bool_:
        return bool(pa.types.is_boolean(kind))
    if dtype is np.float64:
        return bool(pa.types.is_floating(kind) or pa.types.is_integer(kind))
    return bool(pa.types.is_integer(kind))  # int64 and enum columns: floats would truncate


_ARROW_TYPES: dict[str, pa.DataType] = {
    name: pa.bool_() if dtype is np.bool_ else pa.float64() if dtype is np.float64 else pa.int64()
    for name, dtype in _COLUMN_DTYPES.items()
    if name not in _STRING_COLUMNS
}


def read_arrow_stream(
    data: bytes, prefix: str, errors: Violations, *, max_bytes: int = DEFAULT_LIMITS.max_arrow_bytes
) -> pa.Table | None:
    """The table of an Arrow IPC stream, or None with a violation at `prefix`. The stream is
    checked before anything is converted (wire/arrow_guard.py): every buffer inside its body,
    at most `max_bytes` declared once decompressed (checked before inflating), every batch
    validated in full (offsets, lengths, UTF-8)."""
    stream = _read_stream(data, prefix, errors, max_bytes)
    return None if stream is None else stream.table


def _read_stream(
    data: bytes,
    prefix: str,
    errors: Violations,
    max_bytes: int,
    reading: StreamReading | None = None,
) -> CheckedStream | None:
    """`read_arrow_stream`'s table with its schema key (arrow_guard.CheckedStream); `reading`:
    the same read of `data`, started earlier on a thread."""
    try:
        return reading.result() if reading is not None else read_stream(data, max_bytes)
    except (StreamRejected, pa.ArrowException, OSError, ValueError) as exc:
        errors.add(prefix, f"not a readable Arrow IPC stream: {exc}")
        return None


def from_arrow(
    data: bytes, prefix: str, errors: Violations, *, max_bytes: int = DEFAULT_LIMITS.max_arrow_bytes
) -> RawDeals | None:
    """An Arrow IPC stream: nulls mean unset, so no has_ columns are needed."""
    stream = _read_stream(data, prefix, errors, max_bytes)
    if stream is None:
        return None
    return from_arrow_table(
        stream.table, prefix, errors, validated=True, schema_key=stream.schema_key
    )


def _numpy_widens(kind: pa.DataType, target: pa.DataType) -> bool:
    """Whether numpy's astype converts an Arrow column of `kind` to `target` exactly, so no
    Arrow cast is needed (~5 us a column): signed or narrow unsigned integers into int64."""
    return bool(target == pa.int64() and pa.types.is_integer(kind) and not pa.types.is_uint64(kind))


@dataclass(frozen=True)
class _ArrowStep:
    """What `from_arrow_table` does with one column of the table, in the table's order."""

    name: str
    index: int
    decode: bool  # dictionary-encoded (pandas categoricals): cast to its values first
    cast: pa.DataType | None = None  # then to one Arrow type (None: numpy reads them as sent)
    violation: str | None = None  # the column is not read: this is said of it instead


_Steps = tuple[tuple[_ArrowStep, ...], tuple[str, ...]]
"""`from_arrow_table`'s step for each column and the DealColumns names the table holds."""


def _arrow_steps(schema: pa.Schema, small: bool) -> _Steps:
    """`from_arrow_table`'s step for each column of a table of `schema`, and the DealColumns
    names it holds: decided by the names and types alone."""
    known = set(_ALL_COLUMNS)
    seen: dict[str, None] = {}
    steps: list[_ArrowStep] = []
    for i, (name, kind) in enumerate(zip(schema.names, schema.types, strict=True)):
        if name not in known or name.startswith("has_"):
            bad = "unknown column (expected DealColumns field names)"
            steps.append(_ArrowStep(name, i, decode=False, violation=bad))
            continue
        if name in seen:
            steps.append(_ArrowStep(name, i, decode=False, violation="column given twice"))
            continue
        seen[name] = None
        decode = pa.types.is_dictionary(kind)
        if decode:
            kind = kind.value_type
        if not _arrow_kind_ok(name, kind):
            expected = "string" if name in _STRING_COLUMNS else _COLUMN_DTYPES[name].__name__
            bad = f"Arrow type {kind} cannot carry {expected} values"
            steps.append(_ArrowStep(name, i, decode, violation=bad))
            continue
        target = _ARROW_TYPES.get(name, pa.large_string())
        # A small table's strings become objects and narrow integers widen in numpy: no cast.
        keep = kind == target or (
            (small and pa.types.is_string(kind)) or _numpy_widens(kind, target)
        )
        steps.append(_ArrowStep(name, i, decode, None if keep else target))
    return tuple(steps), tuple(seen)


_STEPS: dict[tuple[str | bytes, bool], tuple[pa.Schema | None, _Steps]] = {}
"""`_arrow_steps` per schema (callers send the same one call after call: deciding again cost
~2 us a column), a bounded handful: keyed by a stream's schema message (equal bytes, equal
schema), or else by the schema's text and checked equal."""


def _steps_of(schema: pa.Schema, small: bool, schema_key: bytes | None = None) -> _Steps:
    if schema_key is not None:
        key: tuple[str | bytes, bool] = (schema_key, small)
        kept = _STEPS.get(key)
        if kept is not None:
            return kept[1]
    else:
        key = (schema.to_string(show_field_metadata=False, show_schema_metadata=False), small)
        kept = _STEPS.get(key)
        if kept is not None and kept[0] is not None and kept[0].equals(schema):
            return kept[1]
    steps = _arrow_steps(schema, small)
    if len(_STEPS) >= 64:
        _STEPS.clear()
    _STEPS[key] = (None if schema_key is not None else schema, steps)
    return steps


def from_arrow_table(
    table: pa.Table,
    prefix: str,
    errors: Violations,
    *,
    validated: bool = False,
    schema_key: bytes | None = None,
) -> RawDeals | None:
    """An Arrow table whose columns are DealColumns field names (nulls mean unset): the one
    decoder of the Arrow form, for the wire's IPC stream and for batch jobs' Parquet/CSV files.
    `validated`: the table was already validated in full (`read_checked` did it);
    `schema_key`: its stream's (arrow_guard.CheckedStream)."""
    mark = errors.mark()
    try:  # a table from a file or another library: converting an invalid one can crash
        if not validated:
            table.validate(full=True)
    except pa.ArrowException as exc:
        errors.add(prefix, f"not a valid Arrow table: {exc}")
        return None
    n_rows = table.num_rows
    small = n_rows < ARROW_TEXT_FROM
    steps, seen = _steps_of(table.schema, small, schema_key)
    columns: dict[str, pa.ChunkedArray] = {}
    for step in steps:
        name = step.name
        column = table.column(step.index)
        if step.decode:  # before any violation, as a categorical that cannot be decoded fails
            try:  # Arrow decodes no dictionary of lists or structs: said of the column, no crash
                column = column.cast(column.type.value_type)
            except pa.ArrowException as exc:
                errors.add(f"{prefix}.{name}", f"dictionary values cannot be decoded: {exc}")
                continue
        if step.violation is not None:
            errors.add(f"{prefix}.{name}", step.violation)
            continue
        if step.cast is not None:
            try:  # one Arrow type per column: a uint64 above int64's range is an error, no wrap
                column = column.cast(step.cast, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                errors.add(
                    f"{prefix}.{name}", f"values out of range for {_ARROW_TYPES.get(name)}: {exc}"
                )
                continue
        columns[name] = column
    n = _column_lengths(dict.fromkeys(seen, n_rows), prefix, errors)
    if errors.since(mark):
        return None
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    nulls: dict[str, npt.NDArray[np.bool_]] = {}
    no_nulls = np.zeros(n, dtype=bool)  # shared: the masks are only read
    for name, column in columns.items():
        # Columns without nulls (the usual case) skip the mask and the fill: ~30 Arrow calls
        # fewer for a 50-deal table.
        null_count = column.null_count
        some = null_count > 0
        if name not in _STRING_COLUMNS and null_count == n:
            # An optional column sent all null (an encoder's unset): the defaults, no Arrow call.
            dtype = _COLUMN_DTYPES[name]
            nulls[name] = np.ones(n, dtype=bool)
            arrays[name] = np.full(n, np.nan if dtype is np.float64 else 0, dtype=dtype)
            continue
        nulls[name] = (
            np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            if some
            else no_nulls
        )
        if name in _STRING_COLUMNS:
            text = column.fill_null("") if some else column
            # Large tables keep the stream's strings (as the canonical table holds them): no
            # objects made and converted back (1k deals: 1.8 ms less; 100k: ~35 ms). Small ones
            # read as objects, whose per-call overhead is smaller (~0.2 ms less at 50 deals).
            arrays[name] = (
                pd.array(text, dtype=TEXT_DTYPE)
                if not small
                else np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
            )
            continue
        dtype = _COLUMN_DTYPES[name]
        fill = np.nan if dtype is np.float64 else (False if dtype is np.bool_ else 0)
        values = (column.fill_null(fill) if some else column).to_numpy(zero_copy_only=False)
        arrays[name] = values.astype(dtype, copy=False)
    if "allocation" in nulls and nulls["allocation"].any():
        errors.rows(lambda i: f"{prefix}.allocation[{i}]", nulls["allocation"], "required")
        return None

    def has(value_column: str, _flag: str) -> npt.NDArray[np.bool_]:
        if value_column not in arrays:
            return np.zeros(n, dtype=bool)
        return ~nulls[value_column]

    if "value_per_unit" in arrays:
        arrays["value_per_unit"] = np.where(nulls["value_per_unit"], 1.0, arrays["value_per_unit"])
    return _from_columns(arrays.get, n, prefix, has)


_AMOUNT_COLUMNS = (
    "allocation", "spend_micros", "impressions", "clicks", "completes", "requests",
    "avails", "bids", "wins", "delivered_at_plan",
)  # fmt: skip
_OPTIONAL_AMOUNTS = (  # max_allocation may be anything: it only ever caps
    ("min_allocation", "has_min"),
    ("available_inventory", "has_inventory"),
    ("capacity_forecast", "has_forecast"),
)


def _lengths(values: Any, n: int) -> npt.NDArray[np.float64]:
    """Characters per string (Arrow counts them without objects)."""
    if is_text_array(values):
        return np.asarray(pd.Series(values, copy=False).str.len(), dtype=np.float64)
    return np.fromiter(map(len, values.tolist()), dtype=np.float64, count=n)


def _bytes_at_most(values: Any, limit: int) -> bool:
    """Whether every string of an Arrow "str" column has at most `limit` bytes (so at most as
    many characters), from its offsets: ~0.1 ms a column at 100k deals where counting the
    characters cost ~0.7 ms. False for anything else (or a longer one): count them."""
    if not is_text_array(values) or len(values) == 0:
        return False
    strings = pa.array(values)
    longest = pc.max(pc.binary_length(strings)).as_py()
    return longest is not None and longest <= limit


def _duplicated(values: Any) -> npt.NDArray[np.bool_]:
    """Whether each value appeared in an earlier row (one hash pass, Arrow's for its strings;
    a set first for a table of objects, where a hash table of pandas costs ~50 us). Arrow
    strings without a missing value are first counted by Arrow's `unique`: every one distinct
    (the usual case) costs ~4.3 ms at 100k deals where factorizing them cost ~5.5 ms; a
    repeated one is found by pandas, as before."""
    if isinstance(values, np.ndarray) and len(set(values.tolist())) == len(values):
        return np.zeros(len(values), dtype=bool)
    if is_text_array(values):
        strings = pa.array(values)
        if strings.null_count == 0 and len(pc.unique(strings)) == len(strings):
            return np.zeros(len(strings), dtype=bool)
    codes, uniques = pd.factorize(values)
    if len(uniques) == len(codes):  # every value distinct (the usual case): no sort of the codes
        return np.zeros(len(codes), dtype=bool)  # (np.unique's cost ~4 ms at 100k deals)
    out = np.ones(len(codes), dtype=bool)
    out[np.unique(codes, return_index=True)[1]] = False
    return out


def _isin(values: Any, known: pd.Index) -> npt.NDArray[np.bool_]:
    """Whether each value is in `known`: the few distinct values looked up, not every row (a
    small table of objects: each row in a set, ~10x cheaper than pandas' hashing there)."""
    if isinstance(values, np.ndarray) and len(values) < ARROW_TEXT_FROM:
        names = set(known.tolist())
        return np.fromiter((v in names for v in values.tolist()), dtype=bool, count=len(values))
    if is_text_array(values):
        by_arrow = _arrow_isin(values, known)
        if by_arrow is not None:
            return by_arrow
    codes, uniques = pd.factorize(values)
    found: npt.NDArray[np.bool_] = np.asarray(pd.Index(uniques, dtype=object).isin(known))[codes]
    return found


def _arrow_isin(values: Any, known: pd.Index) -> npt.NDArray[np.bool_] | None:
    """`_isin` of a "str" column by Arrow's `is_in` among the known names (~0.4 ms at 100k
    deals where factorizing the column cost ~1.4 ms); None where a value is missing or a name
    is not a str (pandas' way, as before)."""
    strings = pa.array(values)
    if strings.null_count:
        return None
    try:
        names = pa.array(known.tolist(), strings.type)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return None
    if names.null_count:
        return None
    found: npt.NDArray[np.bool_] = np.asarray(pc.is_in(strings, value_set=names))
    return found


def _amounts(raw: RawDeals) -> npt.NDArray[np.int64]:
    """The _AMOUNT_COLUMNS as one matrix (a row each): each check is one comparison for all of
    them, and a column's rows are named only where it has a bad one (~0.1 ms less at 50 deals
    than column by column)."""
    # One array from the list (~2 us; np.stack checks and copies each row first, ~5 us).
    return np.array([raw.table[column] for column in _AMOUNT_COLUMNS], dtype=np.int64)


def _sums_beyond(amounts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Whether each row's amounts, clipped to [0, MAX_AMOUNT], sum (in float64, numpy's order)
    beyond MAX_AMOUNT. Amounts all in that range whose exact integer sums are within it
    (the usual table) sum exactly in float64 too, every partial sum being a whole number
    within 2**53: the integer sums say it without the clipped float copy (~2.0 -> ~0.6 ms at
    100k deals). Anything else is summed as before."""
    n = amounts.shape[1] if amounts.ndim == 2 else 0
    if amounts.size and int(amounts.min()) >= 0:
        high = int(amounts.max())
        if high <= MAX_AMOUNT and high * n <= INT64_MAX:  # no clip, no overflow
            totals = amounts.sum(axis=1)
            if bool((totals <= MAX_AMOUNT).all()):
                return np.zeros(amounts.shape[0], dtype=bool)
    # np.clip's own dispatch costs ~2 us more than the two ufuncs it stands for.
    sums = np.minimum(np.maximum(amounts, 0), MAX_AMOUNT).astype(np.float64).sum(axis=1)
    out: npt.NDArray[np.bool_] = sums > MAX_AMOUNT
    return out


def _check_ranges(
    raw: RawDeals, amounts: npt.NDArray[np.int64], errors: Violations, limits: WireLimits
) -> None:
    """What later arithmetic relies on: every amount and each column's sum within MAX_AMOUNT
    (the solver's exact range; sums of a few stay inside int64), prices within
    MAX_PRICE_MICROS. `amounts`: `_amounts(raw)`."""
    t, form = raw.table, raw.form
    too_big = amounts > MAX_AMOUNT
    beyond = _sums_beyond(amounts)
    for k in np.flatnonzero(too_big.any(axis=1) | beyond).tolist():
        column = _AMOUNT_COLUMNS[k]
        errors.rows(form.path(column), too_big[k], f"must be at most 2**53 ({MAX_AMOUNT})")
        if beyond[k]:
            errors.add(
                form.path(column)(0).replace("[0]", "[*]"),
                f"the sum over all deals must be at most 2**53 ({MAX_AMOUNT})",
            )
    for column, flag in _OPTIONAL_AMOUNTS:
        ints = t[column]
        errors.rows(
            form.path(column),
            getattr(raw, flag) & (ints > MAX_AMOUNT),
            f"must be at most 2**53 ({MAX_AMOUNT})",
        )
    price, kind = t["price_micros"], t["price_kind"]
    ecpm_path, unit_path = form.path("price_micros"), form.path("cost_per_unit_micros")
    errors.rows(
        lambda i: unit_path(i) if kind[i] == PriceKind.PER_UNIT else ecpm_path(i),
        price > MAX_PRICE_MICROS,
        f"must be at most {MAX_PRICE_MICROS} micros",
    )


def check_deals(
    raw: RawDeals,
    sellers: pd.Index,
    channels: pd.Index,
    as_of: datetime | None,
    errors: Violations,
    limits: WireLimits = DEFAULT_LIMITS,
) -> pd.DataFrame:
    """Validates the table (vectorised) and returns it in canonical form (DEAL_COLUMNS dtypes)."""
    t, form = raw.table, raw.form
    key = _text_key(raw, sellers, channels, limits)
    text = _PASSED_TEXT.get(key) if key is not None else None
    text_failed = False
    amounts = _amounts(raw)
    if text is None:  # checked ids are not checked again: they would pass again
        mark = errors.mark()
        _check_id_lengths(raw, errors, limits)
        text_failed = errors.since(mark)
    _check_ranges(raw, amounts, errors, limits)
    if text is None:
        mark = errors.mark()
        _check_ids(raw, sellers, channels, errors)
        text_failed = text_failed or errors.since(mark)
    deal_type = t["deal_type"]
    errors.rows(
        form.path("deal_type"),
        (deal_type < 1) | (deal_type > 4),
        lambda i: f"must be a DealType other than UNSPECIFIED (got {deal_type[i]})",
    )
    status = t["status"]
    errors.rows(
        form.path("status"),
        (status < 0) | (status > 3),
        lambda i: f"unknown DealStatus {status[i]}",
    )

    negative = amounts < 0
    for k in np.flatnonzero(negative.any(axis=1)).tolist():
        column = _AMOUNT_COLUMNS[k]
        errors.rows(
            form.path(column), negative[k], _fmt("must not be negative (got {})", amounts[k])
        )
    price, kind = t["price_micros"], t["price_kind"]
    ecpm_path, unit_path = form.path("price_micros"), form.path("cost_per_unit_micros")
    errors.rows(
        lambda i: unit_path(i) if kind[i] == PriceKind.PER_UNIT else ecpm_path(i),
        price < 0,
        _fmt("must not be negative (got {})", price),
    )
    mins, maxs = t["min_allocation"], t["max_allocation"]
    errors.rows(
        form.path("min_allocation"),
        raw.has_min & (mins < 0),
        lambda i: f"must not be negative (got {mins[i]})",
    )
    errors.rows(
        form.path("max_allocation"),
        raw.has_max & (maxs < 0),
        lambda i: f"must not be negative (got {maxs[i]})",
    )
    errors.rows(
        form.path("max_allocation"),
        raw.has_min & raw.has_max & (maxs < mins) & (mins >= 0),
        lambda i: f"must be >= min_allocation ({maxs[i]} < {mins[i]})",
    )
    value = t["value_per_unit"]
    errors.rows(
        form.path("value_per_unit"),
        ~np.isfinite(value) | (value < 0) | (value > MAX_VALUE_PER_UNIT),
        lambda i: f"must be finite and non-negative, at most 1e100 (got {value[i]})",
    )
    rate = t["participation_rate"]
    bad_rate = raw.has_participation & (~np.isfinite(rate) | (rate <= 0) | (rate > 1))
    errors.rows(
        form.path("participation_rate"), bad_rate, lambda i: f"must be in (0, 1] (got {rate[i]})"
    )
    inventory = t["available_inventory"]
    errors.rows(
        form.path("available_inventory"),
        raw.has_inventory & (inventory < 0),
        lambda i: f"must not be negative (got {inventory[i]})",
    )
    forecast = t["capacity_forecast"]
    errors.rows(
        form.path("capacity_forecast"),
        raw.has_forecast & (forecast < 0),
        lambda i: f"must not be negative (got {forecast[i]})",
    )
    if as_of is not None:
        applied = t["plan_applied_at"]
        if raw.bad_apply_time is not None:
            errors.rows(form.path("plan_applied_at"), raw.bad_apply_time,
                        "timestamp out of range (nanos must be in [0, 1e9))")  # fmt: skip
        errors.rows(form.path("plan_applied_at"), applied < -1, "must not be before 1970")
        limit = as_of.timestamp()
        errors.rows(
            form.path("plan_applied_at"), applied > limit, "must not be after the snapshot's as_of"
        )

    out = dict(t)
    out["status"] = np.where(status == 0, int(DealStatus.ACTIVE), status)
    out["min_allocation"] = np.where(raw.has_min, mins, 0)
    out["max_allocation"] = np.where(raw.has_max, maxs, INT64_MAX)
    out["available_inventory"] = np.where(raw.has_inventory, inventory, -1)
    out["capacity_forecast"] = np.where(raw.has_forecast, forecast, -1)
    out["participation_rate"] = np.where(raw.has_participation, rate, np.nan)
    if text is None:
        text = tuple(_text_of(t[name]) for name in _TEXT_COLUMNS)
        if key is not None and not text_failed:
            _keep_text(key, text)
    out.update(zip(_TEXT_COLUMNS, text, strict=True))
    return _canonical(out)


def _check_id_lengths(raw: RawDeals, errors: Violations, limits: WireLimits) -> None:
    """Identifiers of bounded length (each is logged, used as a key and stored)."""
    for column in _TEXT_COLUMNS:
        values = raw.table[column]
        if _bytes_at_most(values, limits.max_id_length):
            continue  # no more characters than bytes: none is too long
        lengths = _lengths(values, raw.n)
        errors.rows(
            raw.form.path(column),
            lengths > limits.max_id_length,
            _fmt(f"longer than {limits.max_id_length} characters ({{:.0f}})", lengths),
        )


def _check_ids(raw: RawDeals, sellers: pd.Index, channels: pd.Index, errors: Violations) -> None:
    """Deal ids set and unique; seller and channel ids set and listed in the snapshot."""
    t, form = raw.table, raw.form
    ids = t["deal_id"]
    errors.rows(form.path("deal_id"), ids == "", "required")
    dup = _duplicated(ids) & (ids != "")
    if dup.any():
        first_at = pd.Series(np.arange(raw.n)).groupby(ids).transform("first").to_numpy()
        errors.rows(
            form.path("deal_id"),
            dup,
            lambda i: f"duplicate deal_id {ids[i]!r} (first at row {first_at[i]})",
        )
    for column, known, what in (
        ("seller_id", sellers, "seller"),
        ("channel_id", channels, "channel"),
    ):
        values = t[column]
        empty = values == ""
        errors.rows(form.path(column), empty, "required")
        unknown = ~_isin(values, known) & ~empty
        errors.rows(
            form.path(column),
            unknown,
            _fmt(f"unknown {what} {{!r}}: not listed in the snapshot's {what}s", values),
        )


_TEXT_COLUMNS = ("deal_id", "seller_id", "channel_id", "order_id")
KEPT_TEXT_ROWS = 1_000
"""Most deals whose checked ids are kept (`_PASSED_TEXT`), and most sellers plus channels."""
KEPT_TEXT_CHARACTERS = 1 << 16
"""Most characters of a kept key's ids, so no caller pins much memory in the cache."""

_TextKey = tuple[int, tuple[tuple[str, ...], ...]]
"""The id length limit, then the seller ids, the channel ids and the table's id columns."""
_PASSED_TEXT: dict[_TextKey, tuple[Any, ...]] = {}
"""The canonical "str" arrays of the id columns of tables whose id checks passed (lengths;
deal ids set and unique; seller and channel ids set and listed), per the ids themselves, the
snapshot's seller and channel ids and the length limit: all those checks read. A campaign
sends the same ids call after call; checking them again and converting them to Arrow strings
cost ~65 us of a 50-deal decode, where the key costs ~10 us. Only passes are kept (a failure is
checked and named every time); small tables of objects only; a bounded handful. The arrays are
never edited: the table gets copies (`_canonical`)."""


def _text_key(
    raw: RawDeals, sellers: pd.Index, channels: pd.Index, limits: WireLimits
) -> _TextKey | None:
    """`_PASSED_TEXT`'s key of the table's ids, or None where none is kept (a large table, or
    one whose ids are Arrow strings)."""
    columns = [raw.table[name] for name in _TEXT_COLUMNS]
    if raw.n > KEPT_TEXT_ROWS or len(sellers) + len(channels) > KEPT_TEXT_ROWS:
        return None
    if not all(isinstance(c, np.ndarray) and c.dtype == object for c in columns):
        return None
    ids = (tuple(sellers.tolist()), tuple(channels.tolist()), *(tuple(c.tolist()) for c in columns))
    return limits.max_id_length, ids


def _keep_text(key: _TextKey, text: tuple[Any, ...]) -> None:
    """Keeps the checked ids' arrays, unless their characters would pin too much memory."""
    characters = sum(len(v) for part in key[1] for v in part)
    if characters > KEPT_TEXT_CHARACTERS:
        return
    if len(_PASSED_TEXT) >= 16:
        _PASSED_TEXT.clear()
    _PASSED_TEXT[key] = text


def _text_of(values: Any) -> Any:
    """A text column as the canonical table's "str" array (an Arrow one as it is)."""
    return values if is_text_array(values) else text_array(values)


def _canonical(columns: dict[str, Any]) -> pd.DataFrame:
    """The DEAL_COLUMNS table the decoders agree on (`table_of`: built from its blocks, owning
    its data, so an edit of the table reaches none of the decoded arrays)."""
    return table_of(columns, DEAL_COLUMNS)


@dataclass(frozen=True)
class Grid:
    window_start: datetime
    bucket: timedelta
    n_buckets: int


def _check_grid(
    start: datetime,
    bucket: timedelta,
    n_buckets: int,
    as_of: datetime | None,
    path: str,
    errors: Violations,
    limits: WireLimits,
) -> None:
    span = bucket * max(n_buckets - 1, 0)
    if span > timedelta(days=limits.max_span_days):
        errors.add(
            f"{path}.bucket_width",
            f"the series spans {span.days} days, more than {limits.max_span_days} (max_span_days)",
        )
        return
    if as_of is not None and start + span > as_of:
        errors.add(
            f"{path}.window_start",
            "the series must end at or before as_of (only the last bucket may be in progress)",
        )


def series_from_messages(
    deals: Sequence[snapshot_pb2.Deal],
    prefix: str,
    as_of: datetime | None,
    errors: Violations,
    limits: WireLimits = DEFAULT_LIMITS,
) -> tuple[Grid, dict[str, npt.NDArray[np.float64]]] | None:
    """Per-deal series onto one grid; deals without a series get a row of NaN (unknown)."""
    rows = [i for i, d in enumerate(deals) if d.HasField("recent_delivery")]
    if not rows:
        return None
    mark = errors.mark()
    first = deals[rows[0]].recent_delivery
    p0 = f"{prefix}[{rows[0]}].recent_delivery"
    start = to_datetime(first.window_start, f"{p0}.window_start", errors)
    width = to_timedelta(first.bucket_width, f"{p0}.bucket_width", errors, positive=True)
    n_buckets = len(first.spend_micros)
    if n_buckets > limits.max_buckets:
        errors.add(
            f"{p0}.spend_micros",
            f"at most {limits.max_buckets} buckets (max_buckets), got {n_buckets}",
        )
        return None
    key = (first.window_start.seconds, first.window_start.nanos,
           first.bucket_width.seconds, first.bucket_width.nanos)  # fmt: skip
    sequences: list[Sequence[int]] = []  # the kept rows' measures, row by row
    kept: list[int] = []
    lengths = (n_buckets,) * len(SERIES_MEASURES)
    for i in rows:
        s = deals[i].recent_delivery
        series = _MEASURES_OF(s)
        ws, bw = s.window_start, s.bucket_width
        same_grid = (ws.seconds, ws.nanos, bw.seconds, bw.nanos) == key
        if same_grid and tuple(map(len, series)) == lengths:  # the usual row: no path built
            kept.append(i)
            sequences += series
            continue
        p = f"{prefix}[{i}].recent_delivery"
        for k, v in zip(SERIES_MEASURES, series, strict=True):
            if len(v) != n_buckets:
                errors.add(f"{p}.{k}", f"has {len(v)} buckets, expected {n_buckets} "
                                       f"(the length of {p0}.spend_micros)")  # fmt: skip
        if not same_grid:
            errors.add(p, f"every deal's series must share window_start and bucket_width with {p0}")
    if start is None or width is None or errors.since(mark):
        return None
    _check_grid(start, width, n_buckets, as_of, p0, errors, limits)
    if errors.since(mark):
        return None
    # All measures of all rows in one pass (each value read once from its message: ~30 ns
    # apiece, most of the form's cost), as integers (exact), then per measure.
    count = len(kept) * len(SERIES_MEASURES) * n_buckets
    values = np.fromiter(itertools.chain.from_iterable(sequences), np.int64, count)
    blocks = values.reshape(len(kept), len(SERIES_MEASURES), n_buckets)
    arrays: dict[str, npt.NDArray[np.float64]] = {}
    index = np.asarray(kept)
    for m, k in enumerate(SERIES_MEASURES):
        block = blocks[:, m]
        negative: npt.NDArray[np.bool_] = np.asarray((block < 0).any(axis=1))
        errors.rows(lambda r, k=k: f"{prefix}[{index[r]}].recent_delivery.{k}", negative,  # type: ignore[misc,arg-type]
                    "must not be negative")  # fmt: skip
        full = np.full((len(deals), n_buckets), np.nan)
        full[index] = block  # as float64: int64 to double rounds as Python's float(int) does
        arrays[k] = full
    if errors.since(mark):
        return None
    return Grid(start, width, n_buckets), arrays


def _matrix_arrow(
    data: bytes, path: str, errors: Violations, max_bytes: int, reading: StreamReading | None
) -> dict[str, npt.NDArray[Any]] | None:
    stream = _read_stream(data, path, errors, max_bytes, reading)
    if stream is None:
        return None
    table = stream.table
    out: dict[str, npt.NDArray[Any]] = {}
    names = table.schema.names  # once: each `column_names` wraps every field (~10 us)
    for k in SERIES_MEASURES:
        if k not in names:
            errors.add(f"{path}.{k}", "missing column")
            continue
        column = table.column(k)
        if not pa.types.is_integer(column.type) or column.null_count:
            errors.add(f"{path}.{k}", f"must be a non-null integer column (got {column.type})")
            continue
        if column.type == pa.uint64():  # the one width a signed 64-bit count does not hold
            try:
                column = column.cast(pa.int64(), safe=True)
            except pa.ArrowInvalid as exc:
                errors.add(f"{path}.{k}", f"values out of range for int64: {exc}")
                continue
        # Kept in the width sent (narrowest writes 8-32 bits): widening 4.8M values per measure
        # at 100k deals was a pass of its own; the consumers widen what they read.
        out[k] = column.to_numpy()
    return out


def read_matrix_ahead(
    m: snapshot_pb2.DeliveryMatrix, data: bytes, limits: WireLimits = DEFAULT_LIMITS
) -> StreamReading | None:
    """The read `series_from_matrix(m, ...)` will make of the matrix's Arrow stream (`data`:
    its arrow_ipc), started on a thread now, or None where it would read none (no stream; a
    bucket count it rejects first), the stream is small (a thread's start-up would cost more
    than it hides) or plain (nothing to inflate outside the GIL: `compressed_stream`)."""
    if not 0 <= m.bucket_count <= limits.max_buckets or len(data) <= THREADED_BYTES:
        return None
    if not compressed_stream(data):
        return None
    return StreamReading(data, limits.max_arrow_bytes)


def series_from_matrix(
    m: snapshot_pb2.DeliveryMatrix,
    n_deals: int,
    path: str,
    as_of: datetime | None,
    errors: Violations,
    limits: WireLimits = DEFAULT_LIMITS,
    *,
    arrow: bytes | StreamReading | None = None,
) -> tuple[Grid, dict[str, npt.NDArray[Any]]] | None:
    """The matrix form's series, as integers in the width sent (no deal lacks a series here).
    `arrow`: the matrix's arrow_ipc as the caller read it, or `read_matrix_ahead`'s read of it."""
    mark = errors.mark()
    if m.bucket_count < 0:
        errors.add(f"{path}.bucket_count", "must not be negative")
        return None
    if m.bucket_count > limits.max_buckets:
        errors.add(
            f"{path}.bucket_count",
            f"at most {limits.max_buckets} buckets (max_buckets), got {m.bucket_count}",
        )
        return None
    start = to_datetime(m.window_start, f"{path}.window_start", errors)
    width = to_timedelta(m.bucket_width, f"{path}.bucket_width", errors, positive=True)
    source: dict[str, npt.NDArray[Any]] | None
    # Read once: each read of a bytes field copies it (40 MB at 100k deals).
    reading: StreamReading | None = None
    if isinstance(arrow, StreamReading):
        reading, data = arrow, arrow.data
    else:
        data = m.arrow_ipc if arrow is None else arrow
    if data:
        packed = [k for k in SERIES_MEASURES if len(getattr(m, k))]
        for k in packed:
            errors.add(f"{path}.{k}", "must be empty when arrow_ipc is set")
        source = _matrix_arrow(data, f"{path}.arrow_ipc", errors, limits.max_arrow_bytes, reading)
        sub = f"{path}.arrow_ipc"
    else:
        source = {k: np.asarray(getattr(m, k), dtype=np.int64) for k in SERIES_MEASURES}
        sub = path
    arrays: dict[str, npt.NDArray[Any]] = {}
    for k, values in (source or {}).items():
        if values.size != n_deals * m.bucket_count:
            errors.add(
                f"{sub}.{k}",
                f"has {values.size} values, expected deal count x bucket_count = "
                f"{n_deals} x {m.bucket_count}",
            )
            continue
        signed = values.dtype.kind == "i"
        if signed and values.size and values.min() < 0:  # one pass, no 4.8M-entry mask at 100k
            errors.add(f"{sub}.{k}[{int(np.flatnonzero(values < 0)[0])}]", "must not be negative")
        arrays[k] = values.reshape(n_deals, m.bucket_count)
    if start is None or width is None or errors.since(mark):
        return None
    _check_grid(start, width, m.bucket_count, as_of, path, errors, limits)
    if errors.since(mark):
        return None
    return Grid(start, width, m.bucket_count), arrays


def unix_seconds(dt: datetime) -> int:
    return int(dt.astimezone(UTC).timestamp())


__all__ = [
    "DealsForm",
    "Grid",
    "RawDeals",
    "check_deals",
    "from_arrow",
    "from_arrow_table",
    "from_columns",
    "from_messages",
    "read_arrow_stream",
    "read_matrix_ahead",
    "series_from_matrix",
    "series_from_messages",
]

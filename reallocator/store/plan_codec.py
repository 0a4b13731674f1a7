"""The one place a core `Plan` becomes stored bytes and back.

Layout: a short JSON header naming the parts, then the parts. The per-deal table, the seller and
channel tables and the schedules are Arrow IPC streams compressed with zstd (numbers stay numbers;
a 100k-deal plan's rationale column compresses well); the small parts (totals, requests,
violations, decision record, solver report) are JSON. When rationale text comes to be rendered on
read from the numbers, only `_DROPPED_COLUMNS` / `_render` here change.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from reallocator.core.model import BudgetType, Severity
from reallocator.core.plan.model import (
    PLAN_DEAL_COLUMNS,
    AdjustmentRequest,
    ConstraintViolation,
    DealPacing,
    DecisionRecord,
    DeliverySchedule,
    Plan,
    PlanStatus,
    ReasonCode,
    SolverReport,
    Unspendable,
)

MAGIC = b"RPLAN1\n"
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")
MAX_PART_BYTES = 2 * 1024**3  # refuse a header that claims more (corrupt or hostile bytes)


class PlanCodecError(ValueError):
    """Stored plan bytes that cannot be read back."""


_CODES = ("seller_id", "channel_id", "binding", "reason", "pacing")
"""Low-cardinality text columns, stored dictionary-encoded (each distinct value once)."""


def _write(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _read(data: bytes) -> pa.Table:
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    table.validate(full=True)
    return table


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _table_bytes(frame: pd.DataFrame, index: bool) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=index)
    for name in _CODES:
        at = table.schema.get_field_index(name)
        if at >= 0 and _is_text(table.schema.field(name).type):
            table = table.set_column(at, name, table.column(name).dictionary_encode())
    return _write(table)


def _table(data: bytes) -> pd.DataFrame:
    table = _read(data)
    for at, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(at, field.name, table.column(at).cast(pa.string()))
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _ints(arrays: list[Any]) -> pa.Array:
    """One list<int64> column from per-schedule arrays (None stays null), built from one
    concatenation rather than per-row conversions."""
    valid = np.array([a is not None for a in arrays], dtype=bool)
    sizes = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int32)
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    present = [np.asarray(a, np.int64) for a in arrays if a is not None]
    values = np.concatenate(present) if present else np.zeros(0, np.int64)
    mask = pa.array(~valid) if not valid.all() else None
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=mask)


def _unless_same(s: DeliverySchedule) -> Any:
    same = np.array_equal(s.hourly_spend_micros, s.hourly_target)
    return (
        None
        if same and s.hourly_spend_micros.dtype == s.hourly_target.dtype
        else (s.hourly_spend_micros)
    )


def _schedules_bytes(schedules: tuple[DeliverySchedule, ...]) -> bytes:
    table = pa.table(
        {
            "deal_id": pa.array([s.deal_id for s in schedules], pa.string()),
            "window_start": pa.array(
                [s.window_start.isoformat() for s in schedules], pa.string()
            ).dictionary_encode(),
            "hourly_target": _ints([s.hourly_target for s in schedules]),
            # null where equal to hourly_target (a spend budget in micros): 1.6 MB at 100k deals
            "hourly_spend_micros": _ints([_unless_same(s) for s in schedules]),
            "throttle": pa.array([s.throttle for s in schedules], pa.float64()),
            "reason": pa.array([s.reason.value for s in schedules]).dictionary_encode(),
            "rationale": pa.array([s.rationale for s in schedules], pa.string()),
            "pacing": pa.array([s.pacing.value for s in schedules]).dictionary_encode(),
            "hourly_ceiling": _ints([s.hourly_ceiling for s in schedules]),
        }
    )
    return _write(table)


def _split_ints(column: pa.ChunkedArray) -> list[Any]:
    """Per-row int64 arrays (None for nulls) as views of one numpy buffer."""
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    start = offsets[0]
    rows = np.split(values, offsets[1:-1] - start) if len(array) else []
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return [r if ok else None for r, ok in zip(rows, valid, strict=True)]


def _or(value: Any, default: Any) -> Any:
    return default.copy() if value is None else value


def _schedules(data: bytes) -> tuple[DeliverySchedule, ...]:
    table = _read(data)
    text = {
        name: table.column(name).cast(pa.string()).to_pylist()
        for name in ("deal_id", "window_start", "reason", "rationale", "pacing")
    }
    ints = {
        name: _split_ints(table.column(name))
        for name in ("hourly_target", "hourly_spend_micros", "hourly_ceiling")
    }
    throttle = table.column("throttle").to_pylist()
    starts = {v: datetime.fromisoformat(v) for v in set(text["window_start"])}
    return tuple(
        DeliverySchedule(
            deal_id=text["deal_id"][i],
            window_start=starts[text["window_start"][i]],
            hourly_target=ints["hourly_target"][i],
            hourly_spend_micros=_or(ints["hourly_spend_micros"][i], ints["hourly_target"][i]),
            throttle=throttle[i],
            reason=ReasonCode(text["reason"][i]),
            rationale=text["rationale"][i],
            pacing=DealPacing(text["pacing"][i]),
            hourly_ceiling=ints["hourly_ceiling"][i],
        )
        for i in range(table.num_rows)
    )


def _plain(value: Any) -> Any:
    """JSON-ready form of the small dataclasses (datetimes as ISO text, enums by value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _typed(kind: Any, value: Any) -> Any:
    """The inverse of `_plain` for a value of the annotated type `kind`."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _typed(inner[0], value)
    if origin is tuple:
        return tuple(_typed(typing.get_args(kind)[0], v) for v in value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{k: _typed(hints[k], v) for k, v in value.items()})
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if kind is datetime:
        return datetime.fromisoformat(value)
    return value


_SMALL = (
    "campaign_id", "as_of", "status", "budget_type", "currency", "remaining_budget", "allocated",
    "unspendable", "unspendable_reasons", "requests", "violations", "rationale", "solver",
    "no_change_reason", "max_severity",
)  # fmt: skip


def encode_plan(plan: Plan) -> bytes:
    """The plan as stored bytes (deterministic: the same plan gives the same bytes)."""
    small = {name: _plain(getattr(plan, name)) for name in _SMALL}
    parts = {  # what a summary needs first: a summary reads a prefix (`summary_length`)
        "small": json.dumps(small, sort_keys=True, separators=(",", ":")).encode(),
        "sellers": _table_bytes(plan.sellers, index=True),
        "channels": _table_bytes(plan.channels, index=True),
        "deals": _table_bytes(plan.deals, index=False),
        "schedules": _schedules_bytes(plan.schedules),
    }
    header = json.dumps([[k, len(v)] for k, v in parts.items()]).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(parts.values())


def _layout(data: bytes) -> tuple[int, list[tuple[str, int]]]:
    if not data.startswith(MAGIC):
        raise PlanCodecError("not a stored plan (bad magic)")
    at = len(MAGIC)
    try:
        (size,) = struct.unpack_from("<I", data, at)
        header = json.loads(data[at + 4 : at + 4 + size])
        parts = [(str(name), int(length)) for name, length in header]
    except (struct.error, ValueError, TypeError) as exc:
        raise PlanCodecError(f"stored plan header unreadable: {exc}") from exc
    return at + 4 + size, parts


def summary_length(data: bytes) -> int:
    """How many leading bytes `decode_summary` needs (the store reads only those)."""
    at, parts = _layout(data)
    for name, length in parts:
        at += length
        if name == "channels":
            return at
    raise PlanCodecError("stored plan has no channels part")


def _split(data: bytes, needed: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The parts (only `needed` ones must be present: a summary is a prefix)."""
    at, layout = _layout(data)
    parts: dict[str, bytes] = {}
    for name, length in layout:
        if not 0 <= length <= MAX_PART_BYTES or at + length > len(data):
            if needed and name not in needed:
                break
            raise PlanCodecError(f"stored plan part {name!r} truncated")
        parts[name] = data[at : at + length]
        at += length
    return parts


def decode_plan(data: bytes) -> Plan:
    """The core plan from `encode_plan`'s bytes."""
    parts = _split(data)
    try:
        small = json.loads(parts["small"])
        hints = typing.get_type_hints(Plan)
        fields = {name: _typed(hints[name], small[name]) for name in _SMALL}
        return Plan(
            **fields,
            deals=_table(parts["deals"]),
            sellers=_table(parts["sellers"]),
            channels=_table(parts["channels"]),
            schedules=_schedules(parts["schedules"]),
        )
    except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        raise PlanCodecError(f"stored plan unreadable: {exc}") from exc


def decode_summary(data: bytes) -> Plan:
    """The plan without per-deal rows and schedules (PLAN_VIEW_SUMMARY), from the whole bytes or
    their first `summary_length` bytes."""
    parts = _split(data, ("small", "sellers", "channels"))
    small = json.loads(parts["small"])
    hints = typing.get_type_hints(Plan)
    fields = {name: _typed(hints[name], small[name]) for name in _SMALL}
    deals = pd.DataFrame({k: pd.Series(dtype=v) for k, v in PLAN_DEAL_COLUMNS.items()})
    return Plan(
        **fields,
        deals=deals,
        sellers=_table(parts["sellers"]),
        channels=_table(parts["channels"]),
    )


__all__ = [
    "AdjustmentRequest",
    "BudgetType",
    "ConstraintViolation",
    "DecisionRecord",
    "PlanCodecError",
    "PlanStatus",
    "Severity",
    "SolverReport",
    "Unspendable",
    "decode_plan",
    "decode_summary",
    "encode_plan",
    "summary_length",
]

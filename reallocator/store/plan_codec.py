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


def _table_bytes(frame: pd.DataFrame, index: bool) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=index)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _table(data: bytes) -> pd.DataFrame:
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    table.validate(full=True)
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _schedules_bytes(schedules: tuple[DeliverySchedule, ...]) -> bytes:
    def ints(arrays: list[Any]) -> pa.Array:
        return pa.array(
            [None if a is None else np.asarray(a, np.int64) for a in arrays],
            type=pa.list_(pa.int64()),
        )

    table = pa.table(
        {
            "deal_id": pa.array([s.deal_id for s in schedules], pa.string()),
            "window_start": pa.array([s.window_start.isoformat() for s in schedules], pa.string()),
            "hourly_target": ints([s.hourly_target for s in schedules]),
            "hourly_spend_micros": ints([s.hourly_spend_micros for s in schedules]),
            "throttle": pa.array([s.throttle for s in schedules], pa.float64()),
            "reason": pa.array([s.reason.value for s in schedules], pa.string()),
            "rationale": pa.array([s.rationale for s in schedules], pa.string()),
            "pacing": pa.array([s.pacing.value for s in schedules], pa.string()),
            "hourly_ceiling": ints([s.hourly_ceiling for s in schedules]),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _schedules(data: bytes) -> tuple[DeliverySchedule, ...]:
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    table.validate(full=True)
    cols = {name: table.column(name) for name in table.column_names}

    def ints(name: str, i: int) -> Any:
        value = cols[name][i]
        return (
            None
            if not value.is_valid
            else value.values.to_numpy(zero_copy_only=False).astype(np.int64)
        )

    return tuple(
        DeliverySchedule(
            deal_id=cols["deal_id"][i].as_py(),
            window_start=datetime.fromisoformat(cols["window_start"][i].as_py()),
            hourly_target=ints("hourly_target", i),
            hourly_spend_micros=ints("hourly_spend_micros", i),
            throttle=cols["throttle"][i].as_py(),
            reason=ReasonCode(cols["reason"][i].as_py()),
            rationale=cols["rationale"][i].as_py(),
            pacing=DealPacing(cols["pacing"][i].as_py()),
            hourly_ceiling=ints("hourly_ceiling", i),
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
    parts = {
        "small": json.dumps(small, sort_keys=True, separators=(",", ":")).encode(),
        "deals": _table_bytes(plan.deals, index=False),
        "sellers": _table_bytes(plan.sellers, index=True),
        "channels": _table_bytes(plan.channels, index=True),
        "schedules": _schedules_bytes(plan.schedules),
    }
    header = json.dumps([[k, len(v)] for k, v in parts.items()]).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(parts.values())


def _split(data: bytes) -> dict[str, bytes]:
    if not data.startswith(MAGIC):
        raise PlanCodecError("not a stored plan (bad magic)")
    at = len(MAGIC)
    try:
        (size,) = struct.unpack_from("<I", data, at)
        header = json.loads(data[at + 4 : at + 4 + size])
    except (struct.error, ValueError) as exc:
        raise PlanCodecError(f"stored plan header unreadable: {exc}") from exc
    at += 4 + size
    parts: dict[str, bytes] = {}
    for name, length in header:
        if not 0 <= length <= MAX_PART_BYTES or at + length > len(data):
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
    """The plan without per-deal rows and schedules (PLAN_VIEW_SUMMARY): skips the big parts."""
    parts = _split(data)
    small = json.loads(parts["small"])
    hints = typing.get_type_hints(Plan)
    fields = {name: _typed(hints[name], small[name]) for name in _SMALL}
    deals = _empty_deals(parts["deals"])
    return Plan(
        **fields,
        deals=deals,
        sellers=_table(parts["sellers"]),
        channels=_table(parts["channels"]),
    )


def _empty_deals(data: bytes) -> pd.DataFrame:
    reader = pa.ipc.open_stream(pa.py_buffer(data))
    frame: pd.DataFrame = reader.schema.empty_table().to_pandas()
    return frame


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
]

"""The stored form of a core `Plan`: numbers in compressed columns, small parts as JSON.

One module owns the format so that swapping the stored rationale text for text rendered from the
numbers on read is one change here. Layout: magic, then length-prefixed parts -- a JSON header
(scalars, requests, violations, the decision record, solver report) and Arrow IPC streams (zstd)
for the deal table, the seller and channel tables and the schedules (hours as list columns).
Each IPC stream is validated before use (see ../shared NOTES: a corrupt stream can crash pandas).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from reallocator.core.model import BudgetType, Severity
from reallocator.core.plan.model import (
    PLAN_DEAL_COLUMNS,
    PLAN_GROUP_COLUMNS,
    AdjustmentRequest,
    ConstraintViolation,
    DealPacing,
    DecisionFactor,
    DecisionRecord,
    DeliverySchedule,
    Plan,
    PlanStatus,
    ReasonCode,
    RequestKind,
    SellerResponse,
    SolverReport,
    Unspendable,
)

MAGIC = b"RPLN\x01"
MAX_DECOMPRESSED = 2 * 1024**3  # a stored part never inflates beyond 2 GiB
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")


class PlanCodecError(ValueError):
    """Stored plan bytes are not a plan this codec wrote."""


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _read_ipc(data: bytes) -> pa.Table:
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        batches = []
        size = 0
        for batch in reader:
            batch.validate(full=True)
            size += batch.nbytes
            if size > MAX_DECOMPRESSED:
                raise PlanCodecError("stored plan part inflates beyond the limit")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except pa.ArrowException as exc:
        raise PlanCodecError(f"stored plan part is not a valid Arrow stream: {exc}") from exc


def _deals_table(deals: pd.DataFrame) -> pa.Table:
    arrays = {}
    for name, dtype in PLAN_DEAL_COLUMNS.items():
        values = deals[name]
        if dtype == "str":
            arrays[name] = pa.array(values.astype(object).tolist(), type=pa.string())
        else:
            arrays[name] = pa.array(values.to_numpy(dtype=dtype))
    return pa.table(arrays)


def _group_table(groups: pd.DataFrame) -> pa.Table:
    arrays: dict[str, pa.Array] = {
        "id": pa.array([str(i) for i in groups.index.tolist()], type=pa.string())
    }
    for name, dtype in PLAN_GROUP_COLUMNS.items():
        arrays[name] = pa.array(groups[name].to_numpy(dtype=dtype))
    return pa.table(arrays).replace_schema_metadata({"index": str(groups.index.name or "")})


def _schedules_table(schedules: tuple[DeliverySchedule, ...]) -> pa.Table:
    def hours(values: list[Any]) -> pa.Array:
        return pa.array(
            [None if v is None else np.asarray(v, dtype=np.int64) for v in values],
            type=pa.list_(pa.int64()),
        )

    return pa.table(
        {
            "deal_id": pa.array([s.deal_id for s in schedules], type=pa.string()),
            "window_start": pa.array([s.window_start.isoformat() for s in schedules], pa.string()),
            "hourly_target": hours([s.hourly_target for s in schedules]),
            "hourly_spend_micros": hours([s.hourly_spend_micros for s in schedules]),
            "hourly_ceiling": hours([s.hourly_ceiling for s in schedules]),
            "throttle": pa.array([s.throttle for s in schedules], type=pa.float64()),
            "reason": pa.array([str(s.reason) for s in schedules], type=pa.string()),
            "rationale": pa.array([s.rationale for s in schedules], type=pa.string()),
            "pacing": pa.array([str(s.pacing) for s in schedules], type=pa.string()),
        }
    )


def _request_json(r: AdjustmentRequest) -> dict[str, Any]:
    out = asdict(r)
    out["window_start"] = r.window_start.isoformat()
    out["window_end"] = r.window_end.isoformat()
    for key in ("kind", "severity", "reason", "response"):
        out[key] = str(out[key])
    return out


def encode_plan(plan: Plan) -> bytes:
    """The plan's stored bytes (deterministic: the same plan gives the same bytes)."""
    header = {
        "campaign_id": plan.campaign_id,
        "as_of": plan.as_of.isoformat(),
        "status": str(plan.status),
        "budget_type": str(plan.budget_type),
        "currency": plan.currency,
        "remaining_budget": int(plan.remaining_budget),
        "allocated": int(plan.allocated),
        "unspendable": int(plan.unspendable),
        "no_change_reason": plan.no_change_reason,
        "max_severity": None if plan.max_severity is None else str(plan.max_severity),
        "unspendable_reasons": [asdict(u) for u in plan.unspendable_reasons],
        "requests": [_request_json(r) for r in plan.requests],
        "violations": [asdict(v) for v in plan.violations],
        "rationale": asdict(plan.rationale),
        "solver": asdict(plan.solver),
    }
    parts = [
        json.dumps(header, sort_keys=True, separators=(",", ":")).encode(),
        _ipc(_deals_table(plan.deals)),
        _ipc(_group_table(plan.sellers)),
        _ipc(_group_table(plan.channels)),
        _ipc(_schedules_table(plan.schedules)),
    ]
    return MAGIC + b"".join(struct.pack("<Q", len(p)) + p for p in parts)


def encode_summary(plan: Plan) -> bytes:
    """The stored bytes of `plan` without deal rows and schedules (what SUMMARY shows)."""
    return encode_plan(dataclasses.replace(plan, deals=plan.deals.iloc[:0], schedules=()))


def _split(data: bytes) -> list[bytes]:
    if not data.startswith(MAGIC):
        raise PlanCodecError("stored plan bytes do not start with the plan codec's magic")
    parts, pos = [], len(MAGIC)
    while pos < len(data):
        if pos + 8 > len(data):
            raise PlanCodecError("stored plan bytes are truncated")
        (size,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + size > len(data):
            raise PlanCodecError("stored plan bytes are truncated")
        parts.append(data[pos : pos + size])
        pos += size
    if len(parts) != 5:
        raise PlanCodecError(f"stored plan has {len(parts)} parts, expected 5")
    return parts


def _deals_frame(table: pa.Table) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    for name, dtype in PLAN_DEAL_COLUMNS.items():
        column = table.column(name)
        if dtype == "str":
            cols[name] = pd.Series(column.to_pylist(), dtype="str")
        else:
            cols[name] = pd.Series(column.to_numpy(), dtype=dtype)
    return pd.DataFrame(cols)


def _group_frame(table: pa.Table) -> pd.DataFrame:
    meta = table.schema.metadata or {}
    index = pd.Index(table.column("id").to_pylist(), dtype="str")
    index.name = meta.get(b"index", b"").decode() or None
    return pd.DataFrame(
        {n: table.column(n).to_numpy() for n in PLAN_GROUP_COLUMNS}, index=index
    ).astype(PLAN_GROUP_COLUMNS)


def _hours(value: Any) -> Any:
    return None if value is None else np.asarray(value, dtype=np.int64)


def decode_plan(data: bytes, *, summary: bool = False) -> Plan:
    """The `Plan` that `encode_plan` stored; PlanCodecError for bytes it did not write.
    `summary` skips the per-deal table and the schedules (an empty table, no schedules): what
    PLAN_VIEW_SUMMARY shows, without inflating 100k rows."""
    head, deals, sellers, channels, schedules = _split(data)
    if summary:
        deals = _ipc(_deals_table(pd.DataFrame({c: [] for c in PLAN_DEAL_COLUMNS})))
        schedules = _ipc(_schedules_table(()))
    try:
        h = json.loads(head)
    except ValueError as exc:
        raise PlanCodecError(f"stored plan header is not JSON: {exc}") from exc
    s = _read_ipc(schedules).to_pydict()
    rationale = h["rationale"]
    return Plan(
        campaign_id=h["campaign_id"],
        as_of=datetime.fromisoformat(h["as_of"]),
        status=PlanStatus(h["status"]),
        budget_type=BudgetType(h["budget_type"]),
        currency=h["currency"],
        remaining_budget=h["remaining_budget"],
        allocated=h["allocated"],
        unspendable=h["unspendable"],
        deals=_deals_frame(_read_ipc(deals)),
        sellers=_group_frame(_read_ipc(sellers)),
        channels=_group_frame(_read_ipc(channels)),
        unspendable_reasons=tuple(Unspendable(**u) for u in h["unspendable_reasons"]),
        requests=tuple(
            AdjustmentRequest(
                **{
                    **r,
                    "kind": RequestKind(r["kind"]),
                    "severity": Severity(r["severity"]),
                    "reason": ReasonCode(r["reason"]),
                    "response": SellerResponse(r["response"]),
                    "window_start": datetime.fromisoformat(r["window_start"]),
                    "window_end": datetime.fromisoformat(r["window_end"]),
                }
            )
            for r in h["requests"]
        ),
        schedules=tuple(
            DeliverySchedule(
                deal_id=s["deal_id"][i],
                window_start=datetime.fromisoformat(s["window_start"][i]),
                hourly_target=_hours(s["hourly_target"][i]),
                hourly_spend_micros=_hours(s["hourly_spend_micros"][i]),
                throttle=s["throttle"][i],
                reason=ReasonCode(s["reason"][i]),
                rationale=s["rationale"][i],
                pacing=DealPacing(s["pacing"][i]),
                hourly_ceiling=_hours(s["hourly_ceiling"][i]),
            )
            for i in range(len(s["deal_id"]))
        ),
        violations=tuple(ConstraintViolation(**v) for v in h["violations"]),
        rationale=DecisionRecord(
            summary=rationale["summary"],
            factors=tuple(DecisionFactor(**f) for f in rationale["factors"]),
            references=tuple(rationale["references"]),
        ),
        solver=SolverReport(**h["solver"]),
        no_change_reason=h["no_change_reason"],
        max_severity=None if h["max_severity"] is None else Severity(h["max_severity"]),
    )

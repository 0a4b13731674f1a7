"""Recorded snapshots to replay: JSON lines or a Parquet/Arrow file, decoded and validated by the
same wire code as the API, so a snapshot the service would refuse is refused here too, naming
the line and the field.

One record per replan, oldest first, each either a `ReplanRequest` in the proto JSON mapping
(`{"snapshot": {...}, "policy": {...}}`) or a bare `CampaignSnapshot`. A record may carry
`"history"`: the seller requests and answers known at that instant (rows with deal_id,
requested_at (unix s), kind, target_total, response, accepted_total), so a replan under the
recorded policy sees what the recorded one saw. In Parquet/Arrow files, the column `request`
holds serialised `ReplanRequest` bytes (or `snapshot`, serialised `CampaignSnapshot` bytes), and
an optional `history` column holds that JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.model import RequestHistory
from reallocator.core.plan.rolling import WindowStarts
from reallocator.v1 import reallocator_service_pb2 as service_pb2
from reallocator.v1 import snapshot_pb2
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

HISTORY_COLUMNS = ("deal_id", "requested_at", "kind", "target_total", "response", "accepted_total")
ANSWERED_AT = "answered_at"
"""When each seller answered (unix s; null until it did): optional, read where recorded (a
record made before it replays each seller at the policy's answer_time)."""
MOVES_COLUMNS = ("deal_id", "planned_at", "delta")
"""What earlier plans changed per deal (RequestHistory.moves), the optional "moves" key/column."""


class ReplaySourceError(ValueError):
    """A record cannot be replayed; the message names the record and the field."""


@dataclass(frozen=True, eq=False)
class Recorded:
    """One recorded replan: the snapshot (with the policy it was planned under) and the seller
    history known then."""

    snapshot: CampaignSnapshot
    history: RequestHistory = field(default_factory=RequestHistory)
    windows: WindowStarts | None = None  # rolling step windows' starts, as recorded
    plan: str = ""  # the recorded plan's name (audit store records)


def history_frame(rows: Sequence[dict[str, Any]]) -> RequestHistory:
    """Rows of seller requests and answers as the RequestHistory the plan builder reads."""
    if not rows:
        return RequestHistory()
    frame = pd.DataFrame(list(rows))
    missing = [c for c in HISTORY_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"history rows need the columns {', '.join(missing)}")
    kept = [*HISTORY_COLUMNS, *([ANSWERED_AT] if ANSWERED_AT in frame else [])]
    frame = frame[kept].astype(
        {
            "deal_id": "str",
            "requested_at": "float64",
            "kind": "str",
            "target_total": "int64",
            "response": "str",
            "accepted_total": "int64",
        }
        | ({ANSWERED_AT: "float64"} if ANSWERED_AT in frame else {})
    )
    return RequestHistory(requests=frame.reset_index(drop=True))


def history_rows(history: RequestHistory) -> list[dict[str, Any]]:
    frame = history.requests
    names = [*HISTORY_COLUMNS, *([ANSWERED_AT] if ANSWERED_AT in frame else [])]
    columns = {c: frame[c].tolist() for c in names}
    kinds: dict[str, Any] = {
        "requested_at": float,
        "target_total": int,
        "accepted_total": int,
        ANSWERED_AT: lambda v: None if v != v else float(v),  # NaN: not answered (null)
    }
    return [{c: kinds.get(c, str)(columns[c][i]) for c in names} for i in range(len(frame))]


def moves_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows of earlier plans' moves as RequestHistory.moves."""
    if not rows:
        return RequestHistory().moves
    frame = pd.DataFrame(list(rows))
    missing = [c for c in MOVES_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"moves rows need the columns {', '.join(missing)}")
    frame = frame[list(MOVES_COLUMNS)].astype(
        {"deal_id": "str", "planned_at": "float64", "delta": "int64"}
    )
    return frame.reset_index(drop=True)


def moves_rows(history: RequestHistory) -> list[dict[str, Any]]:
    frame = history.moves
    return [
        {"deal_id": str(d), "planned_at": float(t), "delta": int(x)}
        for d, t, x in zip(frame["deal_id"], frame["planned_at"], frame["delta"], strict=True)
    ]


def _with_moves(history: RequestHistory, raw: Any, where: str) -> RequestHistory:
    if raw is None:
        return history
    if isinstance(raw, str):
        raw = json.loads(raw) if raw else []
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ReplaySourceError(f"{where}: moves: expected a list of move rows")
    try:
        return replace(history, moves=moves_frame(raw))
    except (ValueError, TypeError) as exc:
        raise ReplaySourceError(f"{where}: moves: {exc}") from exc


def _decode(request: service_pb2.ReplanRequest, defaults: Policy, where: str) -> CampaignSnapshot:
    errors = Violations()
    policy = decode_policy(request.policy, defaults, errors)
    if not request.HasField("snapshot"):
        errors.add("snapshot", "required")
    snapshot = decode_snapshot(request.snapshot, policy, errors) if not errors else None
    if errors or snapshot is None:
        first = errors.items[0]
        more = f" (and {len(errors.items) - 1} more)" if len(errors.items) > 1 else ""
        raise ReplaySourceError(f"{where}: {first.field}: {first.description}{more}")
    return snapshot


def _request_from_json(data: dict[str, Any], where: str) -> service_pb2.ReplanRequest:
    body = {k: v for k, v in data.items() if k not in ("history", "moves")}
    try:
        if "snapshot" in body:
            return json_format.ParseDict(body, service_pb2.ReplanRequest())
        snapshot = json_format.ParseDict(body, snapshot_pb2.CampaignSnapshot())
    except json_format.ParseError as exc:
        raise ReplaySourceError(f"{where}: {exc}") from exc
    return service_pb2.ReplanRequest(snapshot=snapshot)


def _history(raw: Any, where: str) -> RequestHistory:
    if raw is None:
        return RequestHistory()
    if isinstance(raw, str):
        raw = json.loads(raw) if raw else []
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ReplaySourceError(f"{where}: history: expected a list of request rows")
    try:
        return history_frame(raw)
    except (ValueError, TypeError) as exc:
        raise ReplaySourceError(f"{where}: history: {exc}") from exc


def _json_lines(path: Path, defaults: Policy) -> Iterator[Recorded]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplaySourceError(f"{where}: not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ReplaySourceError(f"{where}: expected a JSON object")
            request = _request_from_json(data, where)
            history = _with_moves(_history(data.get("history"), where), data.get("moves"), where)
            yield Recorded(_decode(request, defaults, where), history)


def _table(path: Path, defaults: Policy) -> Iterator[Recorded]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException) as exc:
        raise ReplaySourceError(f"{path.name}: not a readable Parquet/Arrow file: {exc}") from exc
    column = "request" if "request" in table.column_names else "snapshot"
    if column not in table.column_names:
        raise ReplaySourceError(f"{path.name}: needs a 'request' or 'snapshot' binary column")
    payloads = table.column(column).to_pylist()
    histories = (
        table.column("history").to_pylist()
        if "history" in table.column_names
        else [None] * len(payloads)
    )
    moves = (
        table.column("moves").to_pylist()
        if "moves" in table.column_names
        else [None] * len(payloads)
    )
    for row, (payload, raw, moved) in enumerate(zip(payloads, histories, moves, strict=True)):
        where = f"{path.name} row {row}"
        if not isinstance(payload, bytes | bytearray):
            raise ReplaySourceError(f"{where}: {column}: expected serialised protobuf bytes")
        try:
            if column == "request":
                request = service_pb2.ReplanRequest.FromString(bytes(payload))
            else:
                snap = snapshot_pb2.CampaignSnapshot.FromString(bytes(payload))
                request = service_pb2.ReplanRequest(snapshot=snap)
        except DecodeError as exc:
            raise ReplaySourceError(f"{where}: {column}: not a valid message: {exc}") from exc
        history = _with_moves(_history(raw, where), moved, where)
        yield Recorded(_decode(request, defaults, where), history)


def read_recorded(
    path: Path,
    defaults: Policy | None = None,
    *,
    campaign: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Recorded]:
    """The records of `path` (JSON lines, or Parquet/Arrow by suffix) for one campaign within
    [start, end), oldest first. Fails on a record that does not decode or a file holding several
    campaigns when none is chosen."""
    policy = defaults or Policy()
    suffix = path.suffix.lower()
    reader = _table if suffix in (".parquet", ".pq", ".arrow", ".feather") else _json_lines
    records = [
        r
        for r in reader(path, policy)
        if (campaign is None or r.snapshot.campaign_id == campaign)
        and (start is None or r.snapshot.as_of >= start)
        and (end is None or r.snapshot.as_of < end)
    ]
    campaigns = sorted({r.snapshot.campaign_id for r in records})
    if len(campaigns) > 1:
        raise ReplaySourceError(
            f"{path.name} holds {len(campaigns)} campaigns ({', '.join(campaigns[:5])}): "
            "choose one with --campaign"
        )
    if not records:
        raise ReplaySourceError(f"{path.name}: no snapshot to replay in the chosen range")
    records.sort(key=lambda r: r.snapshot.as_of)
    return records


def read_store(
    url: str,
    campaign: str,
    defaults: Policy | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Recorded]:
    """The campaign's Replan calls recorded by the audit store at `url`, oldest first: each
    snapshot under the policy and options it was planned with, with what the service supplied
    it (the seller history, the last plan applied, the rolling windows), so the planner re-run
    on it makes the recorded plan."""
    import numpy as np

    from reallocator.store.sql import SqlStore

    policy = defaults or Policy()
    store = SqlStore.open(url)
    try:
        rows = store.recorded_replans(
            campaign,
            int(start.timestamp() * 1e6) if start else None,
            int(end.timestamp() * 1e6) if end else None,
        )
    finally:
        store.close()
    out = []
    for snapshot, options, supplied, name in rows:
        request = service_pb2.ReplanRequest.FromString(options)
        request.snapshot.ParseFromString(snapshot)
        decoded = _decode(request, policy, name)
        history = RequestHistory()
        windows = None
        if supplied is not None:
            if len(supplied.history):
                history = history_frame(supplied.history.to_dict("records"))  # type: ignore[arg-type]
            if supplied.moves is not None and len(supplied.moves):
                history = replace(history, moves=moves_frame(supplied.moves.to_dict("records")))  # type: ignore[arg-type]
            per_deal = supplied.deals
            if len(per_deal):
                ids = decoded.deals["deal_id"].astype(str).to_numpy()
                by_id = per_deal.set_index(per_deal["deal_id"].astype(str)).reindex(ids)
                known = by_id["plan_applied_at"].notna().to_numpy()
                deals = decoded.deals.assign(
                    plan_applied_at=np.where(
                        known, by_id["plan_applied_at"].fillna(-1).to_numpy(np.int64),
                        decoded.deals["plan_applied_at"].to_numpy(np.int64),
                    ),
                    delivered_at_plan=np.where(
                        known, by_id["delivered_at_plan"].fillna(0).to_numpy(np.int64),
                        decoded.deals["delivered_at_plan"].to_numpy(np.int64),
                    ),
                )  # fmt: skip
                if "available_inventory" in by_id:
                    deals = deals.assign(available_inventory=np.where(
                        known, by_id["available_inventory"].fillna(-1).to_numpy(np.int64),
                        deals["available_inventory"].to_numpy(np.int64),
                    ))  # fmt: skip
                decoded = replace(decoded, deals=deals)
                if bool(per_deal["windows"].any()):
                    windows = WindowStarts(
                        hour=by_id["window_hour"].to_numpy(np.float64),
                        day=by_id["window_day"].to_numpy(np.float64),
                    )
        out.append(Recorded(decoded, history, windows, name))
    if not out:
        raise ReplaySourceError(f"the audit store holds no Replan of {campaign!r} in that range")
    return out


def write_json_lines(path: Path, records: Iterable[Recorded]) -> int:
    """Writes records as JSON lines (ReplanRequest JSON with the snapshot's policy, and the
    history): the format `read_recorded` reads. Returns the count."""
    from reallocator.wire.encode import encode_snapshot
    from reallocator.wire.policy import encode_policy

    count = 0
    with path.open("w", encoding="utf-8") as out:
        for r in records:
            request = service_pb2.ReplanRequest(
                snapshot=encode_snapshot(r.snapshot, "columns"),
                policy=encode_policy(r.snapshot.policy),
            )
            data = json_format.MessageToDict(request)
            data["history"] = history_rows(r.history)
            if len(r.history.moves):
                data["moves"] = moves_rows(r.history)
            out.write(json.dumps(data, separators=(",", ":")) + "\n")
            count += 1
    return count


__all__ = [
    "Recorded",
    "ReplaySourceError",
    "history_frame",
    "history_rows",
    "moves_frame",
    "moves_rows",
    "read_recorded",
    "read_store",
    "write_json_lines",
]

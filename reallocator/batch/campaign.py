"""The pure per-campaign function: one campaign's deal rows and campaign row in, plan rows out.

`plan_campaign` is two steps: `decode` (the wire's own code: `from_arrow_table` + `check_deals`,
the proto JSON mapping for nested fields) and `plan_decoded` (`build_plan`, the function the gRPC
servicer calls), so batch and `Replan` agree. pandas/Spark `applyInPandas` calls `plan_campaign`;
the local and Dask runners decode a chunk of campaigns at once (`batch.chunk.decode_chunk`, which
gives what `decode` gives for each campaign) and call `plan_decoded` for each.

A result holds its rows as columns (numpy arrays, lists); `tables` joins the results of many
campaigns into one Arrow table per output part, so a runner builds one table per chunk of
campaigns, not one DataFrame per campaign and part (at 20 deals a campaign, the per-campaign
frames cost as much as the plan)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from google.protobuf import json_format

from reallocator.core.model import CampaignSnapshot, Policy, values_of
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import PLAN_DEAL_COLUMNS, Plan, RequestHistory
from reallocator.core.plan.rolling import WindowStarts
from reallocator.v1 import pacing_pb2, policy_pb2, snapshot_pb2
from reallocator.wire import deals as wire_deals
from reallocator.wire.limits import DEFAULT_LIMITS
from reallocator.wire.pacing import decode_pacing
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import _CURRENCY, _groups, _time_zone
from reallocator.wire.violations import Violations

CAMPAIGN_COLUMNS: dict[str, str] = {
    "campaign_id": "str",
    "as_of": "datetime64[us, UTC]",
    "time_zone": "str",  # IANA name; empty: UTC
    "currency_code": "str",  # ISO 4217
    "pacing": "str",  # PacingTarget in the proto JSON mapping (budget type, mode, dates, budgets)
    "sellers": "str",  # JSON list of Seller (proto JSON mapping); empty: none
    "channels": "str",  # JSON list of Channel; empty: none
    "policy": "str",  # Policy overrides (proto JSON mapping); empty: the defaults
    "on_infeasible": "str",  # "REJECT" (default) or "RELAX"
}
"""Columns of the campaign table, one row per campaign (pandas dtypes)."""

_STR, _I64, _F64, _TS = pa.string(), pa.int64(), pa.float64(), pa.timestamp("us", tz="UTC")
_ARROW = {"str": _STR, "int64": _I64, "float64": _F64, "bool": pa.bool_()}

STATUS_SCHEMA = pa.schema(
    [
        ("campaign_id", _STR),
        ("status", _STR),  # OPTIMAL, RELAXED, NO_CHANGE, TIME_LIMITED, REJECTED, INVALID
        ("reason", _STR),  # why REJECTED / NO_CHANGE; the error count when INVALID
        ("deals", _I64),
        ("remaining_budget", _I64),
        ("allocated", _I64),
        ("unspendable", _I64),
        ("violations", _STR),  # JSON list of the constraints relaxed (RELAXED) or in conflict
        ("errors", _I64),
    ]
)
ERROR_SCHEMA = pa.schema([("campaign_id", _STR), ("deal_id", _STR), ("column", _STR),
                          ("why", _STR)])  # fmt: skip
SCHEDULE_SCHEMA = pa.schema(
    [
        ("campaign_id", _STR),
        ("deal_id", _STR),
        ("hour", _TS),
        ("hourly_target", _I64),
        ("hourly_spend_micros", _I64),
        ("hourly_ceiling", _I64),
        ("throttle", _F64),
        ("pacing", _STR),
        ("reason", _STR),
    ]
)
REQUEST_SCHEMA = pa.schema(
    [
        ("campaign_id", _STR),
        ("request_id", _STR),
        ("deal_id", _STR),
        ("seller_id", _STR),
        ("order_id", _STR),
        ("kind", _STR),
        ("severity", _STR),
        ("target_total", _I64),
        ("target_rate", _F64),
        ("current_rate", _F64),
        ("required_rate", _F64),
        ("window_start", _TS),
        ("window_end", _TS),
        ("reason", _STR),
        ("idempotency_key", _STR),
        ("change_request", _STR),  # IAB Tech Lab seller-agent change request, JSON
    ]
)
STATUS_COLUMNS = tuple(STATUS_SCHEMA.names)
ERROR_COLUMNS = tuple(ERROR_SCHEMA.names)
SCHEDULE_COLUMNS = tuple(SCHEDULE_SCHEMA.names)
REQUEST_COLUMNS = tuple(REQUEST_SCHEMA.names)

PARTS = ("deals", "requests", "schedules", "status", "errors")


def _deal_columns(rationale: bool) -> list[str]:
    return [c for c in PLAN_DEAL_COLUMNS if rationale or c != "rationale"]


def part_schema(part: str, rationale: bool) -> pa.Schema:
    """The Arrow schema of one output part (the `rationale` column only with --rationale)."""
    text = [pa.field("rationale", _STR)] if rationale else []
    if part == "deals":
        cols = [(c, _ARROW[PLAN_DEAL_COLUMNS[c]]) for c in _deal_columns(rationale)]
        return pa.schema([("campaign_id", _STR), *cols])
    if part == "requests":
        return pa.schema([*REQUEST_SCHEMA, *text])
    if part == "schedules":
        return pa.schema([*SCHEDULE_SCHEMA, *text])
    return {"status": STATUS_SCHEMA, "errors": ERROR_SCHEMA}[part]


@dataclass(frozen=True)
class Options:
    """What every campaign of a job shares."""

    rationale: bool = False
    default_policy: Policy = field(default_factory=Policy)
    time_limit: float | None = None


Columns = dict[str, "Sequence[Any] | npt.NDArray[Any]"]
"""One part's rows as columns of equal length (numpy arrays or lists)."""


@dataclass(frozen=True)
class CampaignResult:
    """One campaign's rows of every output part, as columns (`tables` joins many results);
    the parts as DataFrames on demand, for a caller that plans one campaign at a time."""

    campaign_id: str
    status: str
    parts: dict[str, Columns]
    rationale: bool
    plan: Plan | None = None  # for recording in the audit store; None unless planned
    snapshot: CampaignSnapshot | None = None

    def frame(self, part: str) -> pd.DataFrame:
        out: pd.DataFrame = tables([self], self.rationale)[part].to_pandas()
        return out

    @cached_property
    def deals(self) -> pd.DataFrame:
        return self.frame("deals")

    @cached_property
    def requests(self) -> pd.DataFrame:
        return self.frame("requests")

    @cached_property
    def schedules(self) -> pd.DataFrame:
        return self.frame("schedules")

    @cached_property
    def status_table(self) -> pd.DataFrame:
        return self.frame("status")

    @cached_property
    def errors(self) -> pd.DataFrame:
        return self.frame("errors")


def tables(results: Sequence[CampaignResult], rationale: bool) -> dict[str, pa.Table]:
    """One Arrow table per part for many campaigns, in the order given: each column joined once
    (np.concatenate) and converted once, with the part's fixed schema (so every part file of a
    job has the same schema, empty or not)."""
    out = {}
    for part in PARTS:
        schema = part_schema(part, rationale)
        pieces = [r.parts[part] for r in results if part in r.parts]
        arrays = []
        for f in schema:
            chunks = [p[f.name] for p in pieces]
            if chunks and all(isinstance(c, np.ndarray) for c in chunks):
                values: Any = np.concatenate(chunks)
            else:
                values = [v for c in chunks for v in c]
            arrays.append(pa.array(values, type=f.type))
        out[part] = pa.Table.from_arrays(arrays, schema=schema)
    return out


def _parse(text: object, message: Any, path: str, errors: Violations) -> Any:
    if text is None or (isinstance(text, float) and pd.isna(text)) or text == "":
        return message
    try:
        json_format.Parse(str(text), message)
    except json_format.ParseError as exc:
        errors.add(path, f"not a valid proto JSON value: {exc}")
    return message


def _parse_list(text: object, factory: Any, path: str, errors: Violations) -> list[Any]:
    if text is None or (isinstance(text, float) and pd.isna(text)) or text == "":
        return []
    try:
        items = json.loads(str(text))
    except json.JSONDecodeError as exc:
        errors.add(path, f"not valid JSON: {exc}")
        return []
    if not isinstance(items, list):
        errors.add(path, "must be a JSON list")
        return []
    out = []
    for i, item in enumerate(items):
        try:
            out.append(json_format.ParseDict(item, factory()))
        except json_format.ParseError as exc:
            errors.add(f"{path}[{i}]", f"not a valid proto JSON value: {exc}")
    return out


@dataclass(frozen=True)
class CampaignFields:
    """The campaign row decoded and validated; its deal rows are checked apart (`attach`)."""

    campaign_id: str
    as_of: datetime | None
    timezone: Any
    currency: str
    pacing: Any
    sellers: pd.DataFrame
    channels: pd.DataFrame
    policy: Policy


def decode_fields(
    campaign: Mapping[str, Any], default_policy: Policy, errors: Violations
) -> CampaignFields:
    """The campaign row's fields, validated as the API validates a snapshot's."""
    cid = str(campaign.get("campaign_id") or "")
    if not cid:
        errors.add("campaign.campaign_id", "required")
    policy = decode_policy(
        _parse(campaign.get("policy"), policy_pb2.Policy(), "campaign.policy", errors),
        default_policy,
        errors,
        "campaign.policy",
    )
    as_of_value = campaign.get("as_of")
    as_of = None
    if as_of_value is None or pd.isna(as_of_value):
        errors.add("campaign.as_of", "required")
    else:
        stamp = pd.Timestamp(as_of_value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        as_of = stamp.to_pydatetime()
    currency = str(campaign.get("currency_code") or "")
    if not currency:
        errors.add("campaign.currency_code", "required (ISO 4217, one currency per campaign)")
    elif not _CURRENCY.fullmatch(currency):
        errors.add(
            "campaign.currency_code", f"must be an ISO 4217 code like 'USD' (got {currency!r})"
        )
    tz = _time_zone(str(campaign.get("time_zone") or ""), "campaign.time_zone", errors)
    pacing_msg = _parse(
        campaign.get("pacing"), pacing_pb2.PacingTarget(), "campaign.pacing", errors
    )
    pacing = decode_pacing(pacing_msg, "campaign.pacing", as_of, errors)
    sellers = _groups(
        _parse_list(campaign.get("sellers"), snapshot_pb2.Seller, "campaign.sellers", errors),
        "seller_id",
        "campaign.sellers",
        errors,
        DEFAULT_LIMITS,
    )
    channels = _groups(
        _parse_list(campaign.get("channels"), snapshot_pb2.Channel, "campaign.channels", errors),
        "channel_id",
        "campaign.channels",
        errors,
        DEFAULT_LIMITS,
    )
    return CampaignFields(cid, as_of, tz, currency, pacing, sellers, channels, policy)


def check_campaign_deals(
    fields: CampaignFields, deals: pa.Table, errors: Violations
) -> pd.DataFrame | None:
    """The campaign's deal rows decoded by the wire's Arrow decoder and checked by the API's
    `check_deals` against its own sellers, channels and as_of (canonical DEAL_COLUMNS form)."""
    if deals.num_rows == 0:
        errors.add("deals", "at least one deal is required")
        return None
    raw = wire_deals.from_arrow_table(deals, "deals", errors)
    if raw is None:
        return None
    return wire_deals.check_deals(
        raw, fields.sellers.index, fields.channels.index, fields.as_of, errors
    )


def attach(fields: CampaignFields, table: pd.DataFrame | None, errors: Violations) -> (
    CampaignSnapshot | None
):  # fmt: skip
    """The snapshot, or None when anything was wrong (then `errors` says what)."""
    if errors or table is None or fields.as_of is None:
        return None
    return CampaignSnapshot(
        campaign_id=fields.campaign_id,
        as_of=fields.as_of,
        timezone=fields.timezone,
        currency=fields.currency,
        deals=table.reset_index(drop=True),
        sellers=fields.sellers,
        channels=fields.channels,
        pacing=fields.pacing,
        delivery=None,
        policy=fields.policy,
    )


def decode_campaign(
    campaign: Mapping[str, Any], deals: pa.Table, default_policy: Policy, errors: Violations
) -> CampaignSnapshot | None:
    """The campaign's snapshot, validated as the API validates it; None (and `errors`) if bad."""
    fields = decode_fields(campaign, default_policy, errors)
    return attach(fields, check_campaign_deals(fields, deals, errors), errors)


@dataclass(frozen=True)
class Decoded:
    """One campaign decoded: its snapshot, or None with the errors that say why."""

    snapshot: CampaignSnapshot | None
    errors: Violations
    deals: pa.Table  # the campaign's deal rows as given (for the errors table's deal ids)
    relax: bool = False


def on_infeasible(campaign: Mapping[str, Any], errors: Violations) -> bool:
    """The campaign's on_infeasible: True for RELAX; REJECT (the default) otherwise."""
    mode = str(campaign.get("on_infeasible") or "REJECT").upper()
    if mode not in ("REJECT", "RELAX"):
        errors.add("campaign.on_infeasible", f"must be REJECT or RELAX (got {mode!r})")
    return mode == "RELAX"


def decode(campaign: Mapping[str, Any], deals: pd.DataFrame | pa.Table, options: Options) -> (
    Decoded
):  # fmt: skip
    """`plan_campaign`'s first step: the campaign row and its deal rows decoded and validated."""
    table = _deal_table(deals)
    errors = Violations()
    relax = on_infeasible(campaign, errors)
    snapshot = decode_campaign(campaign, table, options.default_policy, errors)
    return Decoded(snapshot, errors, table, relax)


_PATH = re.compile(r"^deals\.(?P<column>\w+)(?:\[(?P<row>\d+)\])?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_US = 3_600_000_000


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _error_columns(cid: str, deal_ids: Sequence[str], errors: Violations) -> Columns:
    rows = []
    for v in errors.items:
        match = _PATH.match(v.field)
        deal, column = "", v.field
        if match:
            column = match["column"]
            if match["row"] is not None and int(match["row"]) < len(deal_ids):
                deal = str(deal_ids[int(match["row"])])
        elif v.field.startswith("campaign."):
            column = v.field.removeprefix("campaign.")
        rows.append((cid, deal, column, v.description))
    return {name: [r[i] for r in rows] for i, name in enumerate(ERROR_COLUMNS)}


def _status(
    cid: str, status: str, reason: str, plan: Plan | None, n_errors: int, violations: str = "[]"
) -> Columns:
    if plan is not None:
        violations = json.dumps([dataclasses.asdict(v) for v in plan.violations])
    return {
        "campaign_id": [cid],
        "status": [status],
        "reason": [reason],
        "deals": [len(plan.deals) if plan is not None else 0],
        "remaining_budget": [plan.remaining_budget if plan is not None else 0],
        "allocated": [plan.allocated if plan is not None else 0],
        "unspendable": [plan.unspendable if plan is not None else 0],
        "violations": [violations],
        "errors": [n_errors],
    }


def _requests(cid: str, plan: Plan, rationale: bool) -> Columns:
    rs = plan.requests
    cols: Columns = {
        "campaign_id": [cid] * len(rs),
        "request_id": [r.request_id for r in rs],
        "deal_id": [r.deal_id for r in rs],
        "seller_id": [r.seller_id for r in rs],
        "order_id": [r.order_id for r in rs],
        "kind": [str(r.kind) for r in rs],
        "severity": [str(r.severity) for r in rs],
        "target_total": [r.target_total for r in rs],
        "target_rate": [r.target_rate for r in rs],
        "current_rate": [r.current_rate for r in rs],
        "required_rate": [r.required_rate for r in rs],
        "window_start": [_micros(r.window_start) for r in rs],
        "window_end": [_micros(r.window_end) for r in rs],
        "reason": [str(r.reason) for r in rs],
        "idempotency_key": [r.idempotency_key for r in rs],
        "change_request": [json.dumps(r.change_request, sort_keys=True, default=str) for r in rs],
    }
    if rationale:
        cols["rationale"] = [r.rationale for r in rs]
    return cols


def _schedules(cid: str, plan: Plan, rationale: bool) -> Columns | None:
    """One row per scheduled deal and hour, straight from the plan's schedule matrix."""
    st = plan.schedule_table
    if st is None or len(st) == 0 or st.n_hours == 0:
        return None
    n, h = len(st), st.n_hours
    start = _micros(st.window_start)
    cols: Columns = {
        "campaign_id": np.full(n * h, cid, dtype=object),
        "deal_id": np.repeat(st.deal_id.astype(object), h),
        "hour": np.tile(start + _HOUR_US * np.arange(h, dtype=np.int64), n),
        "hourly_target": st.hourly_target.reshape(-1),
        "hourly_spend_micros": st.hourly_spend_micros.reshape(-1),
        "hourly_ceiling": st.hourly_ceiling.reshape(-1),
        "throttle": np.repeat(st.throttle, h),
        "pacing": np.repeat(np.asarray([str(p) for p in st.pacing], dtype=object), h),
        "reason": np.repeat(np.asarray([str(r) for r in st.reason], dtype=object), h),
    }
    if rationale:
        words = st.rationale if st.rationale is not None else np.full(n, "", dtype=object)
        cols["rationale"] = np.repeat(words.astype(object), h)
    return cols


def _deals(cid: str, plan: Plan, rationale: bool) -> Columns:
    frame = plan.deals
    cols: Columns = {"campaign_id": np.full(len(frame), cid, dtype=object)}
    for c in _deal_columns(rationale):
        cols[c] = values_of(frame, c)  # the column's array, no Series built per column
    return cols


def _deal_table(deals: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(deals, pa.Table):
        names = [n for n in deals.column_names if n != "campaign_id"]
        return deals.select(names)
    rows = deals.drop(columns=["campaign_id"], errors="ignore").reset_index(drop=True)
    return pa.Table.from_pandas(rows, preserve_index=False)


def plan_campaign(
    campaign: Mapping[str, Any],
    deals: pd.DataFrame | pa.Table,
    options: Options,
    *,
    history: RequestHistory | None = None,
) -> CampaignResult:
    """One campaign's plan rows. Pure: a bad campaign gives INVALID with its errors, an
    infeasible one REJECTED with the reason (or RELAXED when its row says on_infeasible RELAX);
    it never raises for bad input. `campaign` is the campaign row (a dict or a pandas Series),
    `deals` its deal rows (pandas or Arrow; a campaign_id column is ignored). `history`: the
    audit store's earlier requests, as Replan passes them."""
    return plan_decoded(str(campaign.get("campaign_id") or ""), decode(campaign, deals, options),
                        options, history=history)  # fmt: skip


def plan_decoded(
    cid: str,
    decoded: Decoded,
    options: Options,
    *,
    history: RequestHistory | None = None,
    windows: WindowStarts | None = None,
) -> CampaignResult:
    """`plan_campaign`'s second step: the plan rows of a decoded campaign (runners that decode
    many campaigns at once, `batch.chunk.decode_chunk`, call this with their decodings)."""
    snapshot, errors = decoded.snapshot, decoded.errors
    if snapshot is None or errors:
        table = decoded.deals
        ids = table.column("deal_id").to_pylist() if "deal_id" in table.column_names else []
        n = len(errors.items)
        return CampaignResult(
            cid,
            "INVALID",
            {
                "status": _status(cid, "INVALID", f"{n} error(s)", None, n),
                "errors": _error_columns(cid, ids, errors),
            },
            options.rationale,
        )
    try:
        plan = build_plan(
            snapshot,
            relax=decoded.relax,
            time_limit=options.time_limit,
            text=options.rationale,
            history=history,
            windows=windows,
        )
    except PlanRejected as exc:
        violations = json.dumps([dataclasses.asdict(v) for v in exc.violations])
        status = _status(cid, "REJECTED", str(exc), None, 0, violations)
        return CampaignResult(cid, "REJECTED", {"status": status}, options.rationale)
    parts = {
        "deals": _deals(cid, plan, options.rationale),
        "requests": _requests(cid, plan, options.rationale),
        "status": _status(cid, str(plan.status), plan.no_change_reason, plan, 0),
    }
    schedules = _schedules(cid, plan, options.rationale)
    if schedules is not None:
        parts["schedules"] = schedules
    return CampaignResult(cid, str(plan.status), parts, options.rationale, plan, snapshot)

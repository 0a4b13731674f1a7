"""The pure per-campaign function: one campaign's deal rows and campaign row in, plan tables out.

Every runner (local processes, pandas/Spark `applyInPandas`) calls `plan_campaign`; it decodes with
the wire's own code (`from_arrow_table` + `check_deals`, the proto JSON mapping for nested fields)
and plans with `build_plan`, the function the gRPC servicer calls, so batch and `Replan` agree."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from google.protobuf import json_format

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import PLAN_DEAL_COLUMNS, Plan
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

STATUS_COLUMNS = (
    "campaign_id",
    "status",
    "reason",
    "deals",
    "remaining_budget",
    "allocated",
    "unspendable",
    "violations",
    "errors",
)
ERROR_COLUMNS = ("campaign_id", "deal_id", "column", "why")
SCHEDULE_COLUMNS = (
    "campaign_id",
    "deal_id",
    "hour",
    "hourly_target",
    "hourly_spend_micros",
    "hourly_ceiling",
    "throttle",
    "pacing",
    "reason",
)
REQUEST_COLUMNS = (
    "campaign_id",
    "request_id",
    "deal_id",
    "seller_id",
    "order_id",
    "kind",
    "severity",
    "target_total",
    "target_rate",
    "current_rate",
    "required_rate",
    "window_start",
    "window_end",
    "reason",
    "idempotency_key",
    "change_request",  # IAB Tech Lab seller-agent change request, JSON
)

PARTS = ("deals", "requests", "schedules", "status", "errors")


@dataclass(frozen=True)
class Options:
    """What every campaign of a job shares."""

    rationale: bool = False
    default_policy: Policy = field(default_factory=Policy)
    time_limit: float | None = None


@dataclass(frozen=True)
class CampaignResult:
    """The plan tables of one campaign (empty frames where there is nothing)."""

    deals: pd.DataFrame
    requests: pd.DataFrame
    schedules: pd.DataFrame
    status: pd.DataFrame
    errors: pd.DataFrame

    def part(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame


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


def decode_campaign(
    campaign: pd.Series, deals: pa.Table, default_policy: Policy, errors: Violations
) -> CampaignSnapshot | None:
    """The campaign's snapshot, validated as the API validates it; None (and `errors`) if bad."""
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
    if deals.num_rows == 0:
        errors.add("deals", "at least one deal is required")
        return None
    raw = wire_deals.from_arrow_table(deals, "deals", errors)
    if raw is None:
        return None
    table = wire_deals.check_deals(raw, sellers.index, channels.index, as_of, errors)
    if errors or as_of is None:
        return None
    return CampaignSnapshot(
        campaign_id=cid,
        as_of=as_of,
        timezone=tz,
        currency=currency,
        deals=table.reset_index(drop=True),
        sellers=sellers,
        channels=channels,
        pacing=pacing,
        delivery=None,
        policy=policy,
    )


_PATH = re.compile(r"^deals\.(?P<column>\w+)(?:\[(?P<row>\d+)\])?")


def _error_rows(cid: str, deal_ids: list[str], errors: Violations) -> pd.DataFrame:
    rows = []
    for v in errors.items:
        match = _PATH.match(v.field)
        deal, column = "", v.field
        if match:
            column = match["column"]
            if match["row"] is not None and int(match["row"]) < len(deal_ids):
                deal = deal_ids[int(match["row"])]
        elif v.field.startswith("campaign."):
            column = v.field.removeprefix("campaign.")
        rows.append((cid, deal, column, v.description))
    return pd.DataFrame(rows, columns=list(ERROR_COLUMNS), dtype=object).astype(str)


def _status(cid: str, status: str, reason: str, plan: Plan | None, n_errors: int) -> pd.DataFrame:
    violations = (
        json.dumps([dataclasses.asdict(v) for v in plan.violations]) if plan is not None else "[]"
    )
    row = {
        "campaign_id": cid,
        "status": status,
        "reason": reason,
        "deals": len(plan.deals) if plan is not None else 0,
        "remaining_budget": plan.remaining_budget if plan is not None else 0,
        "allocated": plan.allocated if plan is not None else 0,
        "unspendable": plan.unspendable if plan is not None else 0,
        "violations": violations,
        "errors": n_errors,
    }
    frame = pd.DataFrame([row], columns=list(STATUS_COLUMNS))
    return frame.astype(
        {
            "deals": "int64",
            "remaining_budget": "int64",
            "allocated": "int64",
            "unspendable": "int64",
            "errors": "int64",
        }
    )


def _requests(cid: str, plan: Plan, rationale: bool) -> pd.DataFrame:
    columns = list(REQUEST_COLUMNS) + (["rationale"] if rationale else [])
    rows = []
    for r in plan.requests:
        row: dict[str, object] = {
            "campaign_id": cid,
            "request_id": r.request_id,
            "deal_id": r.deal_id,
            "seller_id": r.seller_id,
            "order_id": r.order_id,
            "kind": str(r.kind),
            "severity": str(r.severity),
            "target_total": r.target_total,
            "target_rate": r.target_rate,
            "current_rate": r.current_rate,
            "required_rate": r.required_rate,
            "window_start": pd.Timestamp(r.window_start),
            "window_end": pd.Timestamp(r.window_end),
            "reason": str(r.reason),
            "idempotency_key": r.idempotency_key,
            "change_request": json.dumps(r.change_request, sort_keys=True, default=str),
        }
        if rationale:
            row["rationale"] = r.rationale
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _schedules(cid: str, plan: Plan) -> pd.DataFrame:
    frames = []
    for s in plan.schedules:
        n = len(s.hourly_target)
        ceiling = s.hourly_target if s.hourly_ceiling is None else s.hourly_ceiling
        frames.append(
            pd.DataFrame(
                {
                    "campaign_id": cid,
                    "deal_id": s.deal_id,
                    "hour": pd.date_range(pd.Timestamp(s.window_start), periods=n, freq="h"),
                    "hourly_target": np.asarray(s.hourly_target, dtype=np.int64),
                    "hourly_spend_micros": np.asarray(s.hourly_spend_micros, dtype=np.int64),
                    "hourly_ceiling": np.asarray(ceiling, dtype=np.int64),
                    "throttle": s.throttle,
                    "pacing": str(s.pacing),
                    "reason": str(s.reason),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(SCHEDULE_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def plan_campaign(campaign: pd.Series, deals: pd.DataFrame, options: Options) -> CampaignResult:
    """One campaign's plan tables. Pure: a bad campaign gives INVALID with its errors, an
    infeasible one REJECTED with the reason (or RELAXED when its row says on_infeasible RELAX);
    it never raises for bad input."""
    cid = str(campaign.get("campaign_id") or "")
    deal_rows = deals.drop(columns=["campaign_id"], errors="ignore")
    deal_ids = [str(d) for d in deal_rows["deal_id"]] if "deal_id" in deal_rows else []
    errors = Violations()
    mode = str(campaign.get("on_infeasible") or "REJECT").upper()
    if mode not in ("REJECT", "RELAX"):
        errors.add("campaign.on_infeasible", f"must be REJECT or RELAX (got {mode!r})")
    table = pa.Table.from_pandas(deal_rows.reset_index(drop=True), preserve_index=False)
    snapshot = decode_campaign(campaign, table, options.default_policy, errors)
    empty_deals = pd.DataFrame(columns=["campaign_id", *_deal_columns(options.rationale)])
    empty_requests = pd.DataFrame(
        columns=list(REQUEST_COLUMNS) + (["rationale"] if options.rationale else [])
    )
    empty_schedules = pd.DataFrame(columns=list(SCHEDULE_COLUMNS))
    if snapshot is None or errors:
        return CampaignResult(
            empty_deals,
            empty_requests,
            empty_schedules,
            _status(cid, "INVALID", f"{len(errors.items)} error(s)", None, len(errors.items)),
            _error_rows(cid, deal_ids, errors),
        )
    no_errors = pd.DataFrame(columns=list(ERROR_COLUMNS))
    try:
        plan = build_plan(snapshot, relax=mode == "RELAX", time_limit=options.time_limit)
    except PlanRejected as exc:
        return CampaignResult(
            empty_deals,
            empty_requests,
            empty_schedules,
            _status(cid, "REJECTED", str(exc), None, 0).assign(
                violations=json.dumps([dataclasses.asdict(v) for v in exc.violations])
            ),
            no_errors,
        )
    plan_deals = plan.deals[_deal_columns(options.rationale)].copy()
    plan_deals.insert(0, "campaign_id", cid)
    return CampaignResult(
        plan_deals.reset_index(drop=True),
        _requests(cid, plan, options.rationale),
        _schedules(cid, plan),
        _status(cid, str(plan.status), plan.no_change_reason, plan, 0),
        no_errors,
    )


def _deal_columns(rationale: bool) -> list[str]:
    return [c for c in PLAN_DEAL_COLUMNS if rationale or c != "rationale"]

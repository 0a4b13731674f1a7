"""The per-campaign pure function every batch runner calls: one campaign's rows in, plan tables
out. Decodes with the wire's own validators so a batch row is accepted exactly when the API
would accept the same campaign."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
from google.protobuf import json_format

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import Plan
from reallocator.v1 import pacing_pb2, policy_pb2, snapshot_pb2
from reallocator.wire import deals as wire_deals
from reallocator.wire.pacing import decode_pacing
from reallocator.wire.policy import decode_policy
from reallocator.wire.snapshot import _CURRENCY, _groups, _time_zone
from reallocator.wire.violations import Violations

CAMPAIGN_COLUMNS = ("campaign_id", "as_of", "time_zone", "currency_code")
"""Typed flat columns of the campaign table; `pacing`, `sellers`, `channels` and `policy` are
JSON columns in the proto JSON mapping (PacingTarget, [Seller], [Channel], Policy)."""

ERROR_COLUMNS = ("campaign_id", "deal_id", "column", "why")


@dataclass
class CampaignResult:
    """What one campaign produced: a status row, its errors, and the plan when there is one."""

    campaign_id: str
    status: str  # OPTIMAL, RELAXED, NO_CHANGE, TIME_LIMITED, REJECTED, INVALID
    reason: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)
    plan: Plan | None = None


def _json(campaign: Mapping[str, Any], name: str, message: Any, errors: Violations) -> Any:
    raw = campaign.get(name)
    if raw is None or (isinstance(raw, float) and raw != raw) or raw == "":
        return message
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        json_format.ParseDict(value, message)
    except (ValueError, json_format.ParseError) as exc:
        errors.add(name, f"not valid proto JSON: {exc}")
    return message


def _as_of(value: Any, errors: Violations) -> datetime | None:
    try:
        ts = pd.Timestamp(value) if value is not None else None
    except (ValueError, TypeError):
        ts = None
    if ts is None or pd.isna(ts):
        errors.add("as_of", "required (a timestamp with a time zone)")
        return None
    if ts.tzinfo is None:
        errors.add("as_of", "must carry a time zone (e.g. 2026-03-01T12:00:00Z)")
        return None
    return ts.to_pydatetime()


def decode_campaign(
    deals: pd.DataFrame, campaign: Mapping[str, Any], default_policy: Policy, errors: Violations
) -> CampaignSnapshot | None:
    """The snapshot for one campaign, or None with `errors` naming every bad field. Deals go
    through the wire's Arrow-table decoder; no protobuf message carries them."""
    cid = str(campaign.get("campaign_id") or "")
    if not cid:
        errors.add("campaign_id", "required")
    as_of = _as_of(campaign.get("as_of"), errors)
    currency = str(campaign.get("currency_code") or "")
    if not _CURRENCY.fullmatch(currency):
        errors.add("currency_code", f"must be an ISO 4217 code like 'USD' (got {currency!r})")
    tz = _time_zone(str(campaign.get("time_zone") or ""), "time_zone", errors)
    policy_msg = _json(campaign, "policy", policy_pb2.Policy(), errors)
    policy = decode_policy(policy_msg, default_policy, errors)
    pacing_msg = _json(campaign, "pacing", pacing_pb2.PacingTarget(), errors)
    pacing = decode_pacing(pacing_msg, "pacing", as_of, errors)
    groups = _json(
        campaign,
        "groups",
        snapshot_pb2.CampaignSnapshot(),
        errors,
    )  # {"sellers": [...], "channels": [...]} in the CampaignSnapshot JSON mapping
    sellers = _groups(groups.sellers, "seller_id", "sellers", errors)
    channels = _groups(groups.channels, "channel_id", "channels", errors)
    table = pa.Table.from_pandas(deals.drop(columns=["campaign_id"]), preserve_index=False)
    if table.num_rows == 0:
        errors.add("deals", "at least one deal is required")
        return None
    raw = wire_deals.from_arrow_table(table, "deals", errors)
    if raw is None:
        return None
    checked = wire_deals.check_deals(raw, sellers.index, channels.index, as_of, errors)
    if errors or as_of is None:
        return None
    return CampaignSnapshot(
        campaign_id=cid,
        as_of=as_of,
        timezone=tz,
        currency=currency,
        deals=checked.reset_index(drop=True),
        sellers=sellers,
        channels=channels,
        pacing=pacing,
        delivery=None,
        policy=policy,
    )


def _error_rows(cid: str, deals: pd.DataFrame, errors: Violations) -> list[dict[str, str]]:
    """One row per violation: campaign, deal (when the path names a row), column, why."""
    ids = deals["deal_id"].astype(str).tolist() if "deal_id" in deals else []
    out = []
    for v in errors.items:
        path, deal = v.field, ""
        head, _, rest = path.partition("[")
        if rest and head.startswith("deals"):
            index = rest.partition("]")[0]
            if index.isdigit() and int(index) < len(ids):
                deal = ids[int(index)]
        column = path.rsplit(".", 1)[-1].split("[")[0]
        out.append({"campaign_id": cid, "deal_id": deal, "column": column, "why": v.description})
    return out


def replan_campaign(
    deals: pd.DataFrame,
    campaign: Mapping[str, Any],
    *,
    default_policy: Policy,
    relax: bool = False,
    time_limit: float | None = None,
) -> CampaignResult:
    """Pure: one campaign's deal rows (with `campaign_id`) and its campaign row -> its result.
    Never raises for bad input or infeasible constraints: those become INVALID or REJECTED."""
    cid = str(campaign.get("campaign_id") or "")
    errors = Violations()
    snapshot = decode_campaign(deals, campaign, default_policy, errors)
    if snapshot is None:
        rows = _error_rows(cid, deals, errors)
        return CampaignResult(cid, "INVALID", f"{len(rows)} invalid fields", rows)
    try:
        plan = build_plan(snapshot, relax=relax, time_limit=time_limit)
    except PlanRejected as exc:
        return CampaignResult(cid, "REJECTED", str(exc))
    return CampaignResult(cid, str(plan.status), plan.no_change_reason, plan=plan)

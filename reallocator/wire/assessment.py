"""Assessment (core) -> PacingAssessment message."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from reallocator.core.model import BudgetType
from reallocator.core.pacing.assessment import Assessment, EntityKind
from reallocator.v1 import assessment_pb2, common_pb2

STATUS = {
    "ON_PACE": assessment_pb2.PACING_STATUS_ON_PACE,
    "OVER": assessment_pb2.PACING_STATUS_OVER,
    "UNDER": assessment_pb2.PACING_STATUS_UNDER,
    "STALLED": assessment_pb2.PACING_STATUS_STALLED,
    "NOT_STARTED": assessment_pb2.PACING_STATUS_NOT_STARTED,
    "COMPLETED": assessment_pb2.PACING_STATUS_COMPLETED,
}
SEVERITY = {
    "MINOR": common_pb2.SEVERITY_MINOR,
    "MATERIAL": common_pb2.SEVERITY_MATERIAL,
    "CRITICAL": common_pb2.SEVERITY_CRITICAL,
}
KIND = {
    EntityKind.DEAL: common_pb2.ENTITY_KIND_DEAL,
    EntityKind.SELLER: common_pb2.ENTITY_KIND_SELLER,
    EntityKind.CHANNEL: common_pb2.ENTITY_KIND_CHANNEL,
    EntityKind.CAMPAIGN: common_pb2.ENTITY_KIND_CAMPAIGN,
}
_KIND_OF_LABEL = {str(kind): code for kind, code in KIND.items()}
BUDGET_TYPE = {
    BudgetType.SPEND: common_pb2.BUDGET_TYPE_SPEND,
    BudgetType.IMPRESSIONS: common_pb2.BUDGET_TYPE_IMPRESSIONS,
    BudgetType.CLICKS: common_pb2.BUDGET_TYPE_CLICKS,
    BudgetType.COMPLETES: common_pb2.BUDGET_TYPE_COMPLETES,
    BudgetType.REQUESTS: common_pb2.BUDGET_TYPE_REQUESTS,
}


def timestamp(at: datetime | float) -> Timestamp:
    ts = Timestamp()
    if isinstance(at, datetime):
        ts.FromDatetime(at)
    else:
        ts.FromNanoseconds(round(at * 1e9))
    return ts


Columns = Callable[[str], np.ndarray]
"""Reads one ASSESSMENT_COLUMNS column as numpy (labels as str objects)."""


def _ints(column: Columns, name: str) -> list[int]:
    """Whole budget units or micros (rounded half to even); non-finite values read 0."""
    values = np.asarray(column(name), dtype=np.float64)
    out: list[int] = np.rint(np.where(np.isfinite(values), values, 0.0)).astype(np.int64).tolist()
    return out


def _floats(column: Columns, name: str) -> list[float]:
    """Finite floats for the wire (JSON clients choke on inf/NaN): non-finite reads 0."""
    values = np.asarray(column(name), dtype=np.float64)
    out: list[float] = np.where(np.isfinite(values), values, 0.0).tolist()
    return out


def verdicts(frame: pd.DataFrame, kind: EntityKind) -> list[assessment_pb2.PacingVerdict]:
    """One PacingVerdict per row of a verdict frame."""
    ids = frame.index.astype(str).tolist()
    holder = assessment_pb2.PacingAssessment()
    _verdicts(ids, lambda name: frame[name].to_numpy(), kind, holder.sellers)
    return list(holder.sellers)


def _verdicts_of(result: Assessment, kind: EntityKind, into: Any) -> None:
    """`verdicts` of one kind read from the assessment's columns (no frame is built), added to
    the repeated field `into`."""
    _verdicts(result.ids(kind), lambda name: result.column(kind, name), kind, into)


def _verdicts(ids: list[str], column: Columns, kind: EntityKind, into: Any) -> None:
    """Columns are read once each (no per-row DataFrame access); each verdict is added in place
    to the repeated field `into`, its parts given as dicts (no message built, then copied)."""
    ratio = np.asarray(column("pacing_ratio"), dtype=np.float64)
    # An infinite ratio (nothing expected, something delivered) travels as the largest double.
    ratio_out = np.where(np.isinf(ratio), np.finfo(np.float64).max, np.nan_to_num(ratio)).tolist()
    exhaustion = np.asarray(column("projected_exhaustion"), dtype=np.float64).tolist()
    columns = {
        name: _ints(column, name)
        for name in ("expected", "actual", "expected_spend_micros", "actual_spend_micros",
                     "projected_end", "allocation")
    }  # fmt: skip
    floats = {
        name: _floats(column, name)
        for name in ("recent_rate", "recent_rate_clock", "required_rate", "confidence",
                     "conf_gap", "conf_outlook", "conf_trend", "conf_evidence",
                     "evidence_hours", "evidence_events")
    }  # fmt: skip
    status = [STATUS[str(s)] for s in column("status")]
    reason = [str(r) for r in column("reason")]
    alerted = np.asarray(column("alert"), dtype=bool).tolist()
    kind_code = KIND[kind]
    add = into.add
    for i, entity_id in enumerate(ids):
        verdict = add(
            entity={"kind": kind_code, "id": entity_id},
            expected=columns["expected"][i],
            actual=columns["actual"][i],
            expected_spend_micros=columns["expected_spend_micros"][i],
            actual_spend_micros=columns["actual_spend_micros"][i],
            pacing_ratio=ratio_out[i],
            status=status[i],
            recent_rate_per_hour=floats["recent_rate"][i],
            projected_end=columns["projected_end"][i],
            required_rate_per_hour=floats["required_rate"][i],
            confidence=floats["confidence"][i],
            allocation=columns["allocation"][i],
            recent_rate_per_clock_hour=floats["recent_rate_clock"][i],
            confidence_factors={
                "gap": floats["conf_gap"][i],
                "outlook": floats["conf_outlook"][i],
                "trend": floats["conf_trend"][i],
                "evidence": floats["conf_evidence"][i],
                "evidence_hours": floats["evidence_hours"][i],
                "evidence_impressions": floats["evidence_events"][i],
            },
            reason_code=reason[i],
            alerted=alerted[i],
        )
        if math.isfinite(exhaustion[i]):
            verdict.projected_exhaustion_time.CopyFrom(timestamp(exhaustion[i]))


def encode_assessment(result: Assessment, include_deals: bool) -> assessment_pb2.PacingAssessment:
    msg = assessment_pb2.PacingAssessment(
        campaign_id=result.campaign_id,
        as_of=timestamp(result.as_of),
        horizon_end_time=timestamp(result.horizon_end),
        horizon_start_time=timestamp(result.horizon_start),
        budget_type=BUDGET_TYPE[result.budget_type],
        currency_code=result.currency,
        expected_share=result.share_now,
        opportunity_remaining_hours=result.opportunity_remaining_hours,
    )
    holder = assessment_pb2.PacingAssessment()  # the one campaign verdict, then copied
    _verdicts_of(result, EntityKind.CAMPAIGN, holder.sellers)
    msg.campaign.CopyFrom(holder.sellers[0])
    _verdicts_of(result, EntityKind.SELLER, msg.sellers)
    _verdicts_of(result, EntityKind.CHANNEL, msg.channels)
    if include_deals:
        _verdicts_of(result, EntityKind.DEAL, msg.deals)
    created = timestamp(result.as_of)
    seconds, nanos = created.seconds, created.nanos
    alerts = result.alert_columns()  # columns, not 17k typed records and a frame
    add = msg.alerts.add
    for kind, entity_id, status, severity, reason, message, confidence in zip(
        alerts["entity_kind"].tolist(),
        alerts["entity_id"].tolist(),
        alerts["status"].tolist(),
        alerts["severity"].tolist(),
        alerts["reason"].tolist(),
        alerts["message"].tolist(),
        alerts["confidence"].tolist(),
        strict=True,
    ):
        alert = add(
            status=STATUS[status],
            severity=SEVERITY[severity],
            reason_code=reason,
            message=message,
            confidence=confidence,
        )
        # Fields set in place: a third cheaper than building and copying two sub-messages.
        entity = alert.entity
        entity.kind = _KIND_OF_LABEL[kind]
        entity.id = str(entity_id)
        when = alert.create_time
        when.seconds = seconds
        when.nanos = nanos
    return msg

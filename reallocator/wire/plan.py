"""Plan (core) -> Plan message."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd
from google.protobuf import struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from reallocator.core.plan.model import (
    AdjustmentRequest,
    BindingKind,
    DealPacing,
    DeliverySchedule,
    Plan,
    PlanStatus,
    ReasonCode,
    RequestKind,
    SellerResponse,
)
from reallocator.v1 import common_pb2, plan_pb2
from reallocator.wire.assessment import BUDGET_TYPE, SEVERITY, timestamp

STATUS = {
    PlanStatus.OPTIMAL: plan_pb2.PLAN_STATUS_OPTIMAL,
    PlanStatus.RELAXED: plan_pb2.PLAN_STATUS_RELAXED,
    PlanStatus.NO_CHANGE: plan_pb2.PLAN_STATUS_NO_CHANGE,
    PlanStatus.TIME_LIMITED: plan_pb2.PLAN_STATUS_TIME_LIMITED,
}
BINDING = {kind: getattr(plan_pb2, f"BINDING_CONSTRAINT_{kind.value}") for kind in BindingKind}
REASON = {code: getattr(plan_pb2, f"REASON_CODE_{code.value}") for code in ReasonCode}
PACING = {mode: getattr(plan_pb2, f"DEAL_PACING_{mode.value}") for mode in DealPacing}
REQUEST_KIND = {kind: getattr(plan_pb2, f"REQUEST_KIND_{kind.value}") for kind in RequestKind}
RESPONSE = {r: getattr(plan_pb2, f"SELLER_RESPONSE_KIND_{r.value}") for r in SellerResponse}
PATH = {
    "FLOW": plan_pb2.SOLVER_PATH_MIN_COST_FLOW,
    "LP": plan_pb2.SOLVER_PATH_LINEAR_PROGRAM,
}
ENTITY = {
    "DEAL": common_pb2.ENTITY_KIND_DEAL,
    "SELLER": common_pb2.ENTITY_KIND_SELLER,
    "CHANNEL": common_pb2.ENTITY_KIND_CHANNEL,
    "CAMPAIGN": common_pb2.ENTITY_KIND_CAMPAIGN,
}


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def encode_request(r: AdjustmentRequest) -> plan_pb2.AdjustmentRequest:
    msg = plan_pb2.AdjustmentRequest(
        request_id=r.request_id,
        deal_id=r.deal_id,
        seller_id=r.seller_id,
        seller_order_id=r.order_id,
        kind=REQUEST_KIND[r.kind],
        severity=SEVERITY[str(r.severity)],
        target_total=r.target_total,
        target_rate_per_hour=_finite(r.target_rate),
        current_rate_per_hour=_finite(r.current_rate),
        required_rate_per_hour=_finite(r.required_rate),
        window_start_time=timestamp(r.window_start),
        window_end_time=timestamp(r.window_end),
        reason=REASON[r.reason],
        rationale=r.rationale,
        idempotency_key=r.idempotency_key,
        response=RESPONSE[r.response],
    )
    change = struct_pb2.Struct()
    change.update(r.change_request)
    msg.seller_change_request.CopyFrom(change)
    return msg


def encode_schedule(
    s: DeliverySchedule, starts: dict[datetime, Timestamp] | None = None
) -> plan_pb2.DeliverySchedule:
    """`starts` caches the Timestamp of each window start (a plan's schedules share one)."""
    start = None if starts is None else starts.get(s.window_start)
    if start is None:
        start = timestamp(s.window_start)
        if starts is not None:
            starts[s.window_start] = start
    return plan_pb2.DeliverySchedule(
        deal_id=s.deal_id,
        window_start_time=start,
        hourly_spend_micros=s.hourly_spend_micros.tolist(),
        hourly_target=s.hourly_target.tolist(),
        throttle=_finite(s.throttle),
        reason=REASON[s.reason],
        rationale=s.rationale,
        pacing=PACING[s.pacing],
        hourly_ceiling=(s.hourly_target if s.hourly_ceiling is None else s.hourly_ceiling).tolist(),
    )


def _groups(frame: pd.DataFrame) -> list[plan_pb2.GroupTotal]:
    out = []
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    for i, gid in enumerate(frame.index.astype(str)):
        g = plan_pb2.GroupTotal(
            id=gid,
            delivered=int(cols["delivered"][i]),
            old_allocation=int(cols["old_allocation"][i]),
            new_allocation=int(cols["new_allocation"][i]),
            binding=bool(cols["binding"][i]),
            marginal_value=_finite(float(cols["marginal_value"][i])),
        )
        if not np.isnan(cols["min_total"][i]):
            g.min_total = int(cols["min_total"][i])
        if not np.isnan(cols["max_total"][i]):
            g.max_total = int(cols["max_total"][i])
        out.append(g)
    return out


def encode_plan(
    plan: Plan, *, name: str = "", deals: str = "all", into: plan_pb2.Plan | None = None
) -> plan_pb2.Plan:
    """`deals`: "all" rows and schedules; "changed": the rows of the deals whose allocation
    moves or that are paced AHEAD (an instruction either way) and every schedule (each one is a
    change to the buyer's pacer); "none": neither.

    `into`: an empty Plan message to fill (e.g. a response's field), which spares a copy of a
    large plan; the filled message is returned."""
    table = plan.deals
    if deals == "changed":
        moved = table["delta"].to_numpy() != 0
        ahead = table["pacing"].to_numpy(dtype=object) == DealPacing.AHEAD.value
        table = table[moved | ahead]
    elif deals == "none":
        table = table.iloc[:0]
    msg = plan_pb2.Plan() if into is None else into
    _fill(
        msg,
        name=name,
        campaign_id=plan.campaign_id,
        as_of=timestamp(plan.as_of),
        status=STATUS[plan.status],
        no_change_reason=plan.no_change_reason,
        budget_type=BUDGET_TYPE[plan.budget_type],
        currency_code=plan.currency,
        remaining_budget=plan.remaining_budget,
        allocated=plan.allocated,
        unspendable=plan.unspendable,
        max_severity=SEVERITY[str(plan.max_severity)]
        if plan.max_severity
        else common_pb2.SEVERITY_UNSPECIFIED,
    )
    if len(table):
        c = {k: table[k].tolist() for k in table.columns}
        for i in range(len(table)):
            msg.deals.add(
                deal_id=c["deal_id"][i],
                seller_id=c["seller_id"][i],
                channel_id=c["channel_id"][i],
                old_allocation=c["old_allocation"][i],
                new_allocation=c["new_allocation"][i],
                delta=c["delta"][i],
                lower_bound=c["lower_bound"][i],
                upper_bound=c["upper_bound"][i],
                binding=BINDING[c["binding"][i]],  # StrEnum keys: a str finds its member
                capacity_forecast=c["capacity"][i],
                reason=REASON[c["reason"][i]],
                rationale=c["rationale"][i],
                marginal_value=_finite(c["marginal_value"][i]),
                new_total=c["new_total"][i],
                pacing=PACING[c["pacing"][i]],
            )
    msg.sellers.extend(_groups(plan.sellers))
    msg.channels.extend(_groups(plan.channels))
    for u in plan.unspendable_reasons:
        msg.unspendable_reasons.add(
            amount=u.amount,
            reason_code=u.reason_code,
            entity=common_pb2.EntityRef(kind=ENTITY[u.entity_kind], id=u.entity_id),
            message=u.message,
        )
    msg.seller_requests.extend(encode_request(r) for r in plan.requests)
    if deals != "none":
        starts: dict[datetime, Timestamp] = {}
        msg.schedules.extend(encode_schedule(s, starts) for s in plan.schedules)
    for v in plan.violations:
        msg.violations.add(
            constraint=v.constraint,
            entity=common_pb2.EntityRef(
                kind=ENTITY.get(v.entity_kind, common_pb2.ENTITY_KIND_UNSPECIFIED), id=v.entity_id
            ),
            bound=v.bound,
            relaxation=v.relaxation,
            message=v.message,
        )
    record = plan.rationale
    msg.rationale.summary = record.summary
    for f in record.factors:
        msg.rationale.factors.add(
            name=f.name, value=_finite(f.value), display_value=f.display, explanation=f.explanation
        )
    msg.rationale.references.extend(record.references)
    s = plan.solver
    msg.solver.CopyFrom(
        plan_pb2.SolverReport(
            path=PATH.get(s.path, plan_pb2.SOLVER_PATH_UNSPECIFIED),
            build_duration=_duration(s.build_seconds),
            solve_duration=_duration(s.solve_seconds),
            verify_duration=_duration(s.verify_seconds),
            total_duration=_duration(s.total_seconds),
            time_limited=s.time_limited,
            objective_allocated=s.objective_allocated,
            objective_value=_finite(s.objective_value),
        )
    )
    return msg


def _fill(msg: plan_pb2.Plan, **fields: object) -> None:
    """Sets scalar and message fields of `msg` as the constructor would."""
    for key, value in fields.items():
        if isinstance(value, Message):
            getattr(msg, key).CopyFrom(value)
        else:
            setattr(msg, key, value)


__all__ = ["encode_plan", "encode_request", "encode_schedule"]

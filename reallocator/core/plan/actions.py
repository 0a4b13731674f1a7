"""Actions: what the plan asks of people once its allocation is decided — seller requests for
the guaranteed deals, buyer schedules (deals x hours), and the severity of the change. They all
read the finished deals table; a NO_CHANGE plan asks nothing of anyone. No words are made here
(render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta

import numpy as np

from reallocator.core.model import DealType, Severity, labels_of, text_of, values_of
from reallocator.core.pacing.assessment import EntityKind
from reallocator.core.plan.model import (
    AdjustmentRequest,
    Plan,
    PlanStatus,
    RequestHistory,
    ScheduleTable,
)
from reallocator.core.plan.prepare import Prepared
from reallocator.core.plan.requests import RequestInputs, derive_requests
from reallocator.core.plan.schedule import ScheduleInputs, derive_schedule_table
from reallocator.core.plan.severity import change_ranks, most_severe


@dataclass(frozen=True)
class Actions:
    """What a plan asks: of sellers (`requests`), of the buyer's pacer (`schedules`, their words
    not yet rendered; None when not made), and how severe the change is (None: NO_CHANGE)."""

    requests: tuple[AdjustmentRequest, ...] = ()
    schedules: ScheduleTable | None = None
    severity: Severity | None = None


def act(
    plan: Plan,
    prepared: Prepared,
    *,
    history: RequestHistory | None,
    schedule_window: timedelta,
    make_schedules: bool = True,
) -> Actions:
    """Seller requests, buyer schedules (when `make_schedules`) and severity, for `plan`."""
    snapshot, assessment, curve = prepared.snapshot, prepared.assessment, prepared.curve
    policy = snapshot.policy
    requests: tuple[AdjustmentRequest, ...] = ()
    schedules: ScheduleTable | None = None
    severity = None
    if plan.status is not PlanStatus.NO_CHANGE:
        # Elapsed time, not wall-clock: an aware local as_of plus an hour across a change of
        # clocks is the same instant (02:00 -> 03:00 on a spring-forward night).
        window_end = snapshot.as_of.astimezone(UTC) + schedule_window
        end = min(window_end, assessment.horizon_end)
        hours = (
            float(curve.calendar.opportunity_hours(snapshot.as_of, end))
            if end > snapshot.as_of
            else 0.0
        )
        seed = f"{snapshot.campaign_id}:{int(snapshot.as_of.timestamp())}"
        # Only guaranteed deals are asked anything: a campaign of none (open auctions, private
        # marketplaces) skips the request inputs and rules (~0.4 ms of a 50-deal plan).
        guaranteed = values_of(snapshot.deals, "deal_type") == DealType.PROGRAMMATIC_GUARANTEED
        ask = bool(guaranteed.any())
        # The label columns both read, converted once, and only when either is made.
        texts = (
            {
                "deal_id": text_of(snapshot.deals, "deal_id"),
                "seller_id": labels_of(snapshot.deals, "seller_id"),  # a few sellers
                "pacing_status": assessment.column(EntityKind.DEAL, "status"),
            }
            if ask or make_schedules
            else {}
        )
        if ask:  # the schedules read a long plan's reasons by code (label_codes)
            texts["plan_reason"] = labels_of(plan.deals, "reason")  # a few codes: by dictionary
        if ask:
            inputs = RequestInputs.from_plan(
                snapshot,
                assessment,
                plan.deals,
                window_end=window_end,
                texts=texts,
                seed=seed,
                avails_forecast=prepared.forecast["by_avails"],
                window_hours=hours,
            )
            requests = derive_requests(inputs, policy, history)
        if make_schedules:
            schedules = derive_schedule_table(
                ScheduleInputs.from_plan(
                    snapshot, assessment, plan.deals, window_end=window_end, texts=texts
                ),
                curve,
                policy,
            )
        ranks = change_ranks(
            values_of(plan.deals, "delta", np.int64),
            values_of(plan.deals, "old_allocation", np.int64),
            values_of(snapshot.deals, "premium", bool),
            policy.severity,
        )
        moved = values_of(plan.deals, "delta") != 0
        severity = most_severe(ranks[moved], (r.severity for r in requests))
    return Actions(requests=requests, schedules=schedules, severity=severity)


__all__ = ["Actions", "act"]

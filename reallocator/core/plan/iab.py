"""Seller requests as IAB Tech Lab seller-agent change requests (``POST /api/v1/change-requests``).

Why this shape: sellers running the IAB Tech Lab seller agent accept post-booking changes to an
order as a change request ``{idempotency_key, order_id, change_type, diffs, proposed_values,
reason}``; the seller classifies severity and routes approval itself. We export exactly those
fields (nothing else: ``requested_by`` is stamped by the seller from the credential, and the
deal is named in ``reason``), as plain JSON-ready values.

Mapping from an `AdjustmentRequest` (``goal`` = the order's total for the horizon: delivered +
remaining allocation, in the campaign's budget unit; ``rate`` = budget units per opportunity
hour, i.e. per active hour of average expected traffic)::

    kind         condition                        change_type   diffs (field: old -> new)
    -----------  -------------------------------  ------------  ------------------------------
    INCREASE /   goal changes; IMPRESSIONS        impressions   impressions: old -> new goal
    DECREASE     goal changes; SPEND, eCPM known  impressions   impressions: both goals at the
                                                                deal's eCPM (micros * 1000 /
                                                                eCPM micros)
                 goal changes; SPEND without      other         budget (money) or clicks /
                 eCPM, CLICKS, COMPLETES,                       completes / requests: old ->
                 REQUESTS; or a new goal of 0                   new goal; then
                                                                delivery_rate_per_hour
                 goal unchanged (rate only)       other         delivery_rate_per_hour:
                                                                current -> target
    RESUME       stalled, still allocated         other         delivery_status: stalled ->
                                                                delivering;
                                                                delivery_rate_per_hour: 0 ->
                                                                target
    INVESTIGATE  stalled, the plan dropped it     other         delivery_status: stalled ->
                 to 0                                           under_investigation

* ``impressions`` requests carry ``proposed_values = {"impressions": new_goal}`` (the seller
  agent validates that an impression goal is a positive integer, hence "new goal > 0": a goal
  of 0 would read as a cancellation, which we never ask for).
* ``other`` requests carry structured ``proposed_values``: ``action`` (``increase_delivery``,
  ``decrease_delivery``, ``resume_delivery``, ``investigate_delivery``), ``unit`` (the currency
  for SPEND, else the budget unit), ``goal``, ``delivered``, ``current_rate_per_hour``,
  ``target_rate_per_hour``, ``window_start`` / ``window_end`` (ISO 8601 UTC: until the next
  replan), ``window_target`` (what the target rate delivers in the window, when known) and
  ``horizon_end``.
* Money is a decimal amount of the campaign currency (micros / 1e6, 2 decimals); counts are
  integers; rates have 2 decimals.
* ``idempotency_key`` is the request's own (a stable UUID of campaign, deal, as_of, kind and
  target), so a retried Replan re-sends the same key and the seller returns the original
  change request instead of filing a second one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from reallocator.core.model import BudgetType, PriceKind, values_of
from reallocator.core.plan.model import AdjustmentRequest, RequestKind
from reallocator.core.plan.severity import FloatArray

CHANGE_TYPE_IMPRESSIONS = "impressions"
CHANGE_TYPE_OTHER = "other"

_ACTION: dict[RequestKind, str] = {
    RequestKind.INCREASE: "increase_delivery",
    RequestKind.DECREASE: "decrease_delivery",
    RequestKind.RESUME: "resume_delivery",
    RequestKind.INVESTIGATE: "investigate_delivery",
}

_UNIT_COLUMN: dict[BudgetType, str] = {
    BudgetType.SPEND: "spend_micros",
    BudgetType.IMPRESSIONS: "impressions",
    BudgetType.CLICKS: "clicks",
    BudgetType.COMPLETES: "completes",
    BudgetType.REQUESTS: "requests",
}


def impressions_per_unit(deals: pd.DataFrame, budget_type: BudgetType) -> FloatArray:
    """Impressions per budget unit of each deal (NaN when unknowable), for impression goals.

    IMPRESSIONS: 1. SPEND: the deal's contracted eCPM (1000 / price per mille, in micros) when it
    is priced per mille, else the observed impressions per micro. Other units: observed
    impressions per unit. The contract price comes first because a guaranteed deal's goal is
    booked at it; observation is the fallback.
    """
    n = len(deals)
    if budget_type is BudgetType.IMPRESSIONS:
        return np.ones(n)
    units = values_of(deals, _UNIT_COLUMN[budget_type], np.float64)
    imps = values_of(deals, "impressions", np.float64)
    observed = (units > 0) & (imps > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(observed, imps / np.where(observed, units, 1.0), np.nan)
    if budget_type is BudgetType.SPEND:
        price = values_of(deals, "price_micros", np.float64)
        ecpm = (values_of(deals, "price_kind") == PriceKind.ECPM) & (price > 0)
        out = np.where(ecpm, 1000.0 / np.where(ecpm, price, 1.0), out)
    return np.asarray(out, dtype=np.float64)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _amount(value: float, budget_type: BudgetType) -> float | int:
    """A budget-unit amount as the seller reads it: decimal money, or an integer count."""
    if budget_type is BudgetType.SPEND:
        return round(value / 1e6, 2)
    return round(value)


def _rate(value: float, budget_type: BudgetType) -> float:
    scale = 1e-6 if budget_type is BudgetType.SPEND else 1.0
    return round(value * scale, 2) if math.isfinite(value) else 0.0


def change_request(
    req: AdjustmentRequest,
    *,
    budget_type: BudgetType,
    currency: str,
    current_total: int,
    delivered: int,
    impressions_per_unit: float = math.nan,
    window_hours: float = math.nan,
    horizon_end: datetime | None = None,
) -> dict[str, Any]:
    """The IAB seller-agent change-request body for `req` (see the module table).

    `current_total` is the order's goal before the request (delivered + remaining allocation,
    budget units); `impressions_per_unit` converts a SPEND goal to impressions (NaN: unknown,
    so the goal change goes out as ``other``); `window_hours` are the opportunity hours
    between the request's window start and end (NaN: no ``window_target``).
    """
    unit = currency if budget_type is BudgetType.SPEND else budget_type.lower()
    goal_changes = req.kind in (RequestKind.INCREASE, RequestKind.DECREASE) and (
        req.target_total != current_total
    )
    if goal_changes:
        per = 1.0 if budget_type is BudgetType.IMPRESSIONS else impressions_per_unit
        convertible = budget_type in (BudgetType.IMPRESSIONS, BudgetType.SPEND)
        if convertible and math.isfinite(per) and per > 0:
            old_imps = round(current_total * per)
            new_imps = round(req.target_total * per)
            if new_imps > 0:
                return {
                    "idempotency_key": req.idempotency_key,
                    "order_id": req.order_id,
                    "change_type": CHANGE_TYPE_IMPRESSIONS,
                    "diffs": [
                        {"field": "impressions", "old_value": old_imps, "new_value": new_imps}
                    ],
                    "proposed_values": {"impressions": new_imps},
                    "reason": req.rationale,
                }

    rate_diff = {
        "field": "delivery_rate_per_hour",
        "old_value": _rate(req.current_rate, budget_type),
        "new_value": _rate(req.target_rate, budget_type),
    }
    diffs: list[dict[str, Any]]
    if req.kind is RequestKind.RESUME:
        diffs = [
            {"field": "delivery_status", "old_value": "stalled", "new_value": "delivering"},
            {**rate_diff, "old_value": 0.0},
        ]
    elif req.kind is RequestKind.INVESTIGATE:
        diffs = [
            {
                "field": "delivery_status",
                "old_value": "stalled",
                "new_value": "under_investigation",
            }
        ]
    elif goal_changes:
        field = "budget" if budget_type is BudgetType.SPEND else budget_type.lower()
        diffs = [
            {
                "field": field,
                "old_value": _amount(current_total, budget_type),
                "new_value": _amount(req.target_total, budget_type),
            },
            rate_diff,
        ]
    else:
        diffs = [rate_diff]

    proposed: dict[str, Any] = {
        "action": _ACTION[req.kind],
        "unit": unit,
        "goal": _amount(req.target_total, budget_type),
        "delivered": _amount(delivered, budget_type),
        "current_rate_per_hour": _rate(req.current_rate, budget_type),
        "target_rate_per_hour": _rate(req.target_rate, budget_type),
        "window_start": _iso(req.window_start),
        "window_end": _iso(req.window_end),
    }
    if math.isfinite(window_hours) and window_hours >= 0:
        proposed["window_target"] = _amount(req.target_rate * window_hours, budget_type)
    if horizon_end is not None:
        proposed["horizon_end"] = _iso(horizon_end)
    return {
        "idempotency_key": req.idempotency_key,
        "order_id": req.order_id,
        "change_type": CHANGE_TYPE_OTHER,
        "diffs": diffs,
        "proposed_values": proposed,
        "reason": req.rationale,
    }

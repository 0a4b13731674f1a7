"""IAB Tech Lab seller-agent change requests: the body shape for every request kind and budget
type, unit conversion, and what the seller agent would accept."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from reallocator.core.model import BudgetType, PriceKind, Severity, empty_deals
from reallocator.core.plan.iab import change_request, impressions_per_unit
from reallocator.core.plan.model import AdjustmentRequest, ReasonCode, RequestKind

AS_OF = datetime(2026, 11, 16, 12, tzinfo=UTC)
END = AS_OF + timedelta(hours=6)
HORIZON_END = datetime(2026, 12, 1, 5, tzinfo=UTC)
KEY = "7143fd16-dd71-5d91-b154-e28d8a2c899f"
BODY_KEYS = {"idempotency_key", "order_id", "change_type", "diffs", "proposed_values", "reason"}
CHANGE_TYPES = {
    "flight_dates",
    "impressions",
    "pricing",
    "creative",
    "targeting",
    "cancellation",
    "other",
}
M = 1_000_000


def request(kind: RequestKind, target_total: int, **kw: Any) -> AdjustmentRequest:
    base: dict[str, Any] = {
        "request_id": "req-1",
        "deal_id": "D1",
        "seller_id": "S1",
        "order_id": "ORD-1",
        "kind": kind,
        "severity": Severity.MATERIAL,
        "target_total": target_total,
        "target_rate": 30.0 * M,
        "current_rate": 40.0 * M,
        "required_rate": 30.0 * M,
        "window_start": AS_OF,
        "window_end": END,
        "reason": ReasonCode.OVER_DELIVERY,
        "rationale": "because",
        "idempotency_key": KEY,
        "change_request": {},
    }
    base.update(kw)
    return AdjustmentRequest(**base)


def body(req: AdjustmentRequest, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "budget_type": BudgetType.SPEND,
        "currency": "USD",
        "current_total": 9_450 * M,
        "delivered": 6_350 * M,
        "impressions_per_unit": 1000.0 / (10 * M),  # $10 CPM
        "window_hours": 6.0,
        "horizon_end": HORIZON_END,
    }
    args.update(kw)
    out = change_request(req, **args)
    _assert_valid_for_seller_agent(out)
    return out


def _assert_valid_for_seller_agent(out: dict[str, Any]) -> None:
    """The seller agent's create model and validation rules."""
    assert set(out) == BODY_KEYS
    assert out["change_type"] in CHANGE_TYPES
    assert isinstance(out["idempotency_key"], str) and out["idempotency_key"]
    assert isinstance(out["order_id"], str) and out["order_id"]
    assert isinstance(out["reason"], str)
    assert isinstance(out["proposed_values"], dict)
    for diff in out["diffs"]:
        assert set(diff) == {"field", "old_value", "new_value"}
        if out["change_type"] == "impressions" and diff["field"] == "impressions":
            assert isinstance(diff["new_value"], int) and diff["new_value"] > 0
    json.dumps(out)  # JSON-ready: plain types only


def test_budget_change_on_spend_goes_out_as_impressions_at_the_deal_ecpm() -> None:
    out = body(request(RequestKind.DECREASE, 8_000 * M))
    assert out["change_type"] == "impressions"
    # 9,450 USD and 8,000 USD at a 10 USD CPM.
    assert out["diffs"] == [{"field": "impressions", "old_value": 945_000, "new_value": 800_000}]
    assert out["proposed_values"] == {"impressions": 800_000}
    assert out["order_id"] == "ORD-1"
    assert out["idempotency_key"] == KEY
    assert out["reason"] == "because"


def test_impressions_budget_is_its_own_goal() -> None:
    req = request(
        RequestKind.INCREASE, 120_000, target_rate=1_500.0, current_rate=1_000.0, required_rate=1.0
    )
    out = body(req, budget_type=BudgetType.IMPRESSIONS, current_total=100_000, delivered=50_000)
    assert out["change_type"] == "impressions"
    assert out["diffs"] == [{"field": "impressions", "old_value": 100_000, "new_value": 120_000}]


def test_rate_only_change_goes_out_as_other_with_structured_values() -> None:
    out = body(request(RequestKind.DECREASE, 9_450 * M))  # goal unchanged
    assert out["change_type"] == "other"
    assert out["diffs"] == [
        {"field": "delivery_rate_per_hour", "old_value": 40.0, "new_value": 30.0}
    ]
    assert out["proposed_values"] == {
        "action": "decrease_delivery",
        "unit": "USD",
        "goal": 9_450.0,
        "delivered": 6_350.0,
        "current_rate_per_hour": 40.0,
        "target_rate_per_hour": 30.0,
        "window_start": "2026-11-16T12:00:00Z",
        "window_end": "2026-11-16T18:00:00Z",
        "window_target": 180.0,
        "horizon_end": "2026-12-01T05:00:00Z",
    }


def test_resume_is_other_with_a_status_and_rate_diff() -> None:
    req = request(RequestKind.RESUME, 9_000 * M, current_rate=0.0, reason=ReasonCode.STALLED)
    out = body(req)
    assert out["change_type"] == "other"
    assert out["diffs"] == [
        {"field": "delivery_status", "old_value": "stalled", "new_value": "delivering"},
        {"field": "delivery_rate_per_hour", "old_value": 0.0, "new_value": 30.0},
    ]
    assert out["proposed_values"]["action"] == "resume_delivery"
    assert out["proposed_values"]["goal"] == 9_000.0


def test_investigate_is_other_with_a_status_diff_only() -> None:
    req = request(RequestKind.INVESTIGATE, 6_350 * M, current_rate=0.0, target_rate=0.0)
    out = body(req)
    assert out["change_type"] == "other"
    assert out["diffs"] == [
        {"field": "delivery_status", "old_value": "stalled", "new_value": "under_investigation"}
    ]
    assert out["proposed_values"]["action"] == "investigate_delivery"
    assert out["proposed_values"]["target_rate_per_hour"] == 0.0


def test_spend_without_known_ecpm_keeps_the_goal_in_money() -> None:
    out = body(request(RequestKind.INCREASE, 10_000 * M), impressions_per_unit=float("nan"))
    assert out["change_type"] == "other"
    assert out["diffs"][0] == {"field": "budget", "old_value": 9_450.0, "new_value": 10_000.0}
    assert out["diffs"][1]["field"] == "delivery_rate_per_hour"
    assert out["proposed_values"]["action"] == "increase_delivery"


def test_non_impression_units_keep_their_own_goal() -> None:
    req = request(RequestKind.INCREASE, 1_200, target_rate=12.0, current_rate=8.0)
    out = body(req, budget_type=BudgetType.CLICKS, current_total=1_000, delivered=400)
    assert out["change_type"] == "other"
    assert out["diffs"][0] == {"field": "clicks", "old_value": 1_000, "new_value": 1_200}
    assert out["diffs"][1] == {
        "field": "delivery_rate_per_hour",
        "old_value": 8.0,
        "new_value": 12.0,
    }
    assert out["proposed_values"]["unit"] == "clicks"
    assert out["proposed_values"]["window_target"] == 72


def test_a_zero_goal_is_never_sent_as_an_impression_change() -> None:
    out = body(request(RequestKind.DECREASE, 0), delivered=0)
    assert out["change_type"] == "other"
    assert out["diffs"][0]["field"] == "budget" and out["diffs"][0]["new_value"] == 0.0


def test_unknown_window_hours_leave_out_the_window_target() -> None:
    out = body(request(RequestKind.DECREASE, 9_450 * M), window_hours=float("nan"))
    assert "window_target" not in out["proposed_values"]


def test_impressions_per_unit_prefers_the_contract_ecpm() -> None:
    deals = empty_deals(3)
    deals["price_kind"] = np.array([PriceKind.ECPM, PriceKind.PER_UNIT, PriceKind.ECPM], np.int8)
    deals["price_micros"] = [4 * M, 4 * M, 0]
    deals["spend_micros"] = [10 * M, 10 * M, 10 * M]
    deals["impressions"] = [2_000, 2_000, 5_000]
    deals["clicks"] = [0, 10, 5]
    spend = impressions_per_unit(deals, BudgetType.SPEND)
    assert spend.tolist() == pytest.approx([1000 / (4 * M), 2_000 / (10 * M), 5_000 / (10 * M)])
    assert impressions_per_unit(deals, BudgetType.IMPRESSIONS).tolist() == [1.0, 1.0, 1.0]
    clicks = impressions_per_unit(deals, BudgetType.CLICKS)
    assert np.isnan(clicks[0]) and clicks[1:].tolist() == [200.0, 1000.0]


def test_every_kind_round_trips_through_json() -> None:
    for kind in RequestKind:
        for total in (0, 8_000 * M, 9_450 * M, 10_000 * M):
            out = body(replace(request(kind, total)))
            assert json.loads(json.dumps(out)) == out

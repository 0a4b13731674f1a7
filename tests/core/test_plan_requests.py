"""Seller adjustment requests: routing, tolerance, inventory, stalls, history, guard rails, ids;
and the severity / worthiness helpers they (and the plan builder) use."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import request_history
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import (
    GROUP_COLUMNS,
    Budget,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DealType,
    PacingSpec,
    Period,
    Policy,
    Severity,
    SeverityTiers,
    empty_deals,
)
from reallocator.core.pacing import assess
from reallocator.core.plan.model import (
    ReasonCode,
    RequestKind,
)
from reallocator.core.plan.requests import (
    DECISION_COLUMNS,
    RequestInputs,
    RequestOutcome,
    derive_requests,
    format_deadline,
    idempotency_key,
    request_decisions,
)
from reallocator.core.plan.severity import (
    auto_applicable,
    change_severity,
    change_size,
    max_severity,
    worth_changing,
)
from reallocator.core.plan.text import amount

AS_OF = datetime(2026, 11, 16, 12, tzinfo=UTC)
HORIZON_END = datetime(2026, 12, 1, 5, tzinfo=UTC)  # local midnight in New York
HOURS = 100.0  # remaining opportunity hours
PG = DealType.PROGRAMMATIC_GUARANTEED
POLICY = Policy(cooldown=timedelta(hours=12))  # tolerance 0.10, tiers 0.10 / 0.30, min_change 0


def inputs(n: int = 1, **kw: Any) -> RequestInputs:
    """n PG deals on pace at 100 units/h with 10,000 remaining over 100 opportunity hours."""
    base: dict[str, Any] = {
        "deal_id": [f"D{i}" for i in range(n)],
        "seller_id": [f"S{i}" for i in range(n)],
        "order_id": [f"O{i}" for i in range(n)],
        "deal_type": [PG] * n,
        "premium": [False] * n,
        "deal_status": [DealStatus.ACTIVE] * n,
        "pacing_status": ["ON_PACE"] * n,
        "old_allocation": [10_000] * n,
        "new_allocation": [10_000] * n,
        "delivered": [5_000] * n,
        "capacity": [-1] * n,
        "available_inventory": [-1] * n,
        "current_rate": [100.0] * n,
        "participation_rate": [np.nan] * n,
        "as_of": AS_OF,
        "window_end": AS_OF + timedelta(hours=6),
        "horizon_end": HORIZON_END,
        "remaining_hours": HOURS,
        "campaign_id": "C1",
        "budget_type": BudgetType.IMPRESSIONS,
        "currency": "USD",
        "seed": "plan-1",
        "window_hours": 6.0,
        "timezone": "America/New_York",
    }
    for key, value in kw.items():
        base[key] = [value] * n if key in _PER_DEAL and not isinstance(value, list) else value
    return RequestInputs(**base)


_PER_DEAL = {
    "deal_type",
    "premium",
    "deal_status",
    "pacing_status",
    "old_allocation",
    "new_allocation",
    "delivered",
    "capacity",
    "available_inventory",
    "current_rate",
    "participation_rate",
}


def decide(inp: RequestInputs, policy: Policy = POLICY, history: Any = None) -> pd.DataFrame:
    return request_decisions(inp, policy, history)


def outcomes(inp: RequestInputs, policy: Policy = POLICY, history: Any = None) -> list[str]:
    return decide(inp, policy, history)["outcome"].tolist()


# --- tolerance and routing -----------------------------------------------------------------------


def test_tolerance_gate_on_required_vs_current_rate() -> None:
    # Required 105 and 95 per hour are within 10% of 100; 115 and 85 are beyond.
    inp = inputs(
        4,
        new_allocation=[10_500, 9_500, 11_500, 8_500],
        available_inventory=[10**9] * 4,
    )
    frame = decide(inp)
    assert frame["outcome"].tolist() == [
        RequestOutcome.WITHIN_TOLERANCE,
        RequestOutcome.WITHIN_TOLERANCE,
        RequestOutcome.REQUESTED,
        RequestOutcome.REQUESTED,
    ]
    assert frame["kind"].tolist()[2:] == [RequestKind.INCREASE, RequestKind.DECREASE]
    assert frame["required_rate"].tolist() == pytest.approx([105.0, 95.0, 115.0, 85.0])
    assert list(frame.columns) == list(DECISION_COLUMNS)


def test_tolerance_is_configurable_and_strict() -> None:
    inp = inputs(new_allocation=8_500)
    assert outcomes(inp, replace(POLICY, request_tolerance=0.15)) == ["WITHIN_TOLERANCE"]
    assert outcomes(inp, replace(POLICY, request_tolerance=0.14)) == ["REQUESTED"]


def test_zero_current_rate_makes_any_positive_requirement_beyond_tolerance() -> None:
    inp = inputs(2, current_rate=[0.0, 0.0], new_allocation=[1, 0], available_inventory=[10**6] * 2)
    frame = decide(inp)
    assert frame["outcome"].tolist() == ["REQUESTED", "WITHIN_TOLERANCE"]
    assert frame["kind"].tolist() == ["INCREASE", ""]


def test_only_guaranteed_live_deals_get_requests() -> None:
    types = [PG, DealType.PREFERRED, DealType.PRIVATE_AUCTION, DealType.OPEN, PG, PG, PG]
    status = [DealStatus.ACTIVE] * 4 + [DealStatus.PAUSED, DealStatus.ENDED, DealStatus.ACTIVE]
    pacing = ["OVER"] * 6 + ["COMPLETED"]
    inp = inputs(7, deal_type=types, deal_status=status, pacing_status=pacing, new_allocation=5_000)
    assert outcomes(inp) == ["REQUESTED"] + ["NOT_GUARANTEED"] * 3 + ["INACTIVE"] * 3
    reqs = derive_requests(inp, POLICY)
    assert [r.deal_id for r in reqs] == ["D0"]
    assert reqs[0].kind is RequestKind.DECREASE
    assert reqs[0].reason is ReasonCode.OVER_DELIVERY


def test_no_requests_without_remaining_opportunity() -> None:
    inp = inputs(new_allocation=5_000, remaining_hours=0.0)
    assert outcomes(inp) == ["HORIZON_OVER"]
    assert derive_requests(inp, POLICY) == ()


def test_unknown_rate_presumes_booked_pace_so_only_allocation_changes_count() -> None:
    inp = inputs(
        3,
        current_rate=[np.nan, np.nan, 100.0],
        pacing_status=["ON_PACE", "ON_PACE", "NOT_STARTED"],
        new_allocation=[10_000, 8_000, 8_000],
    )
    frame = decide(inp)
    assert frame["outcome"].tolist() == ["WITHIN_TOLERANCE", "REQUESTED", "REQUESTED"]
    assert frame["rate_presumed"].tolist() == [True, True, True]
    assert frame["current_rate"].tolist() == pytest.approx([100.0, 100.0, 100.0])
    text = derive_requests(inp, POLICY)[0].rationale
    assert "is booked to deliver 100.0 impressions/h" in text


# --- inventory --------------------------------------------------------------------------------


def test_increase_only_when_the_seller_shows_inventory() -> None:
    # Plan wants 15,000 (150/h) where the deal delivers 100/h (10,000 projected).
    inp = inputs(
        5,
        new_allocation=15_000,
        available_inventory=[-1, -1, 20_000, 9_000, 12_000],
    )
    avails = np.array([np.nan, 30_000.0, 1.0, 1e9, np.nan])  # ignored where inventory is declared
    frame = decide(replace(inp, avails_forecast=avails))
    assert frame["outcome"].tolist() == [
        "NO_INVENTORY",  # nothing known about supply
        "REQUESTED",  # avails headroom
        "REQUESTED",  # declared inventory covers it
        "NO_INVENTORY",  # declared inventory below the current projection
        "REQUESTED",  # declared inventory between: the target is capped
    ]
    assert frame["target_remaining"].tolist() == [15_000, 15_000, 15_000, 15_000, 12_000]
    assert frame["capped_by"].tolist()[4] == "INVENTORY"
    reqs = derive_requests(replace(inp, avails_forecast=avails), POLICY)
    capped = reqs[-1]
    assert capped.deal_id == "D4"
    assert capped.target_total == 5_000 + 12_000
    assert capped.target_rate == pytest.approx(120.0)
    assert capped.required_rate == pytest.approx(150.0)
    assert "inventory of 12,000 impressions" in capped.rationale


def test_an_increase_capped_below_the_commitment_is_not_asked() -> None:
    """A deal behind its pace (60/h where its 10,000 left need 100/h), kept or raised by the
    plan: with supply for only 8,000 more the capped ask would propose a total below what
    its seller is committed to (a smaller booking the plan never chose), so it is not asked;
    with supply between the commitment and the plan's raise the ask is capped there. A plan
    that lowers the deal still asks, capped, as it chose a smaller booking itself."""
    inp = inputs(
        4,
        current_rate=60.0,
        new_allocation=[10_000, 14_000, 14_000, 9_000],
        available_inventory=[8_000, 8_000, 12_000, 8_000],
    )
    frame = decide(inp)
    assert frame["outcome"].tolist() == ["NO_INVENTORY", "NO_INVENTORY", "REQUESTED", "REQUESTED"]
    assert frame["target_remaining"].tolist()[2:] == [12_000, 8_000]
    assert frame["kind"].tolist()[2:] == ["INCREASE", "INCREASE"]


def test_decrease_needs_no_inventory() -> None:
    assert outcomes(inputs(new_allocation=5_000)) == ["REQUESTED"]


def test_inventory_cap_that_leaves_too_little_change_is_not_asked() -> None:
    inp = inputs(new_allocation=15_000, available_inventory=10_500)
    assert outcomes(inp) == ["WITHIN_TOLERANCE"]  # 105/h asked vs 100/h: within 10%


# --- stalls ---------------------------------------------------------------------------------


def test_stalled_deal_resumes_when_still_allocated_and_is_investigated_when_dropped() -> None:
    inp = inputs(
        3,
        pacing_status="STALLED",
        current_rate=0.0,
        new_allocation=[10_000, 0, 0],
        old_allocation=[10_000, 10_000, 0],
    )
    frame = decide(inp)
    assert frame["kind"].tolist() == ["RESUME", "INVESTIGATE", ""]
    assert frame["outcome"].tolist() == ["REQUESTED", "REQUESTED", "WITHIN_TOLERANCE"]
    assert frame["severity"].tolist()[:2] == [Severity.CRITICAL, Severity.CRITICAL]
    resume, investigate = derive_requests(inp, POLICY)
    assert resume.kind is RequestKind.RESUME and resume.reason is ReasonCode.STALLED
    assert resume.target_total == 15_000 and resume.target_rate == pytest.approx(100.0)
    assert "delivered nothing in the last 6 h" in resume.rationale
    assert "please resume delivery" in resume.rationale
    assert investigate.kind is RequestKind.INVESTIGATE
    assert investigate.target_total == 5_000  # delivered: the plan no longer counts on it
    assert "please investigate" in investigate.rationale


def test_stalled_resume_does_not_need_declared_inventory() -> None:
    inp = inputs(pacing_status="STALLED", current_rate=0.0, new_allocation=12_000)
    assert outcomes(inp) == ["REQUESTED"]


# --- guard rails: min change, severity, cooldown, history ----------------------------------------


def test_min_change_suppresses_small_requests() -> None:
    inp = inputs(new_allocation=8_500)  # size: 1,500 units
    assert outcomes(inp, replace(POLICY, min_change=1_500)) == ["REQUESTED"]
    assert outcomes(inp, replace(POLICY, min_change=1_501)) == ["BELOW_MIN_CHANGE"]


def test_request_severity_tiers_and_premium_floor() -> None:
    tiers = SeverityTiers(material=0.20, critical=0.40)
    policy = replace(POLICY, severity=tiers)
    inp = inputs(
        4,
        new_allocation=[8_500, 7_500, 5_000, 8_500],
        premium=[False, False, False, True],
    )
    assert decide(inp, policy)["severity"].tolist() == [
        Severity.MINOR,  # 15% of the old allocation
        Severity.MATERIAL,  # 25%
        Severity.CRITICAL,  # 50%
        Severity.MATERIAL,  # 15% on a premium deal
    ]


def test_request_size_counts_the_delivery_change_not_only_the_allocation_change() -> None:
    # Allocation unchanged, but the deal runs at 200/h: the seller must halve delivery.
    frame = decide(inputs(current_rate=200.0))
    assert frame["outcome"].tolist() == ["REQUESTED"]
    assert frame["size"].tolist() == [10_000]
    assert frame["severity"].tolist() == [Severity.CRITICAL]


def test_cooldown_blocks_non_critical_requests_only() -> None:
    inp = inputs(2, new_allocation=[8_500, 2_000], available_inventory=10**6)
    recent = request_history(
        ("D0", AS_OF - timedelta(hours=2), "DECREASE", 1, "PENDING", 0),
        ("D1", AS_OF - timedelta(hours=2), "DECREASE", 1, "ACCEPTED", 0),
    )
    frame = decide(inp, POLICY, recent)
    assert frame["severity"].tolist() == [Severity.MATERIAL, Severity.CRITICAL]
    assert frame["outcome"].tolist() == ["COOLDOWN", "REQUESTED"]
    old = request_history(("D0", AS_OF - timedelta(hours=13), "DECREASE", 1, "PENDING", 0))
    assert outcomes(inp, POLICY, old)[0] == "REQUESTED"
    assert outcomes(inp, replace(POLICY, cooldown=timedelta(hours=14)), old)[0] == "COOLDOWN"


def test_the_same_critical_ask_waits_for_the_cooldown_a_new_one_does_not() -> None:
    """A critical DECREASE to 2,000 (target total 7,000 with 5,000 delivered) asked 2 hours
    ago is not asked again within the cooldown: the seller has it. A target moved beyond the
    tolerance, another kind, or the cooldown's end sends it."""
    inp = inputs(new_allocation=2_000)
    (first,) = derive_requests(inp, POLICY)
    assert first.severity == Severity.CRITICAL
    total = first.target_total

    def asked(kind: str, target: int, hours: float = 2.0) -> list[str]:
        past = request_history(("D0", AS_OF - timedelta(hours=hours), kind, target, "ACCEPTED", 0))
        return outcomes(inp, POLICY, past)

    assert asked("DECREASE", total) == ["COOLDOWN"]
    assert asked("DECREASE", int(total * 1.05)) == ["COOLDOWN"]  # within the 10 % tolerance
    assert asked("DECREASE", int(total * 1.5)) == ["REQUESTED"]  # a larger miss: new
    assert asked("INCREASE", total) == ["REQUESTED"]
    assert asked("DECREASE", total, hours=13.0) == ["REQUESTED"]


def test_resume_and_investigate_are_one_ask_for_the_cooldown() -> None:
    inp = inputs(pacing_status="STALLED", current_rate=0.0, new_allocation=12_000)
    (resume,) = derive_requests(inp, POLICY)
    past = request_history(
        ("D0", AS_OF - timedelta(hours=6), "INVESTIGATE", resume.target_total, "PENDING", 0)
    )
    assert outcomes(inp, POLICY, past) == ["COOLDOWN"]


def test_history_at_or_after_as_of_is_ignored_so_a_retry_is_identical() -> None:
    inp = inputs(new_allocation=8_500)
    first = derive_requests(inp, POLICY)
    recorded = request_history(("D0", AS_OF, "DECREASE", first[0].target_total, "PENDING", 0))
    again = derive_requests(inp, POLICY, recorded)
    assert [r.idempotency_key for r in again] == [r.idempotency_key for r in first]
    assert again[0].change_request == first[0].change_request


def test_rejected_kind_is_not_asked_again_within_the_cooldown_even_if_critical() -> None:
    inp = inputs(2, new_allocation=2_000)  # critical decreases
    past = request_history(
        ("D0", AS_OF - timedelta(hours=3), "DECREASE", 1, "REJECTED", 0),
        ("D1", AS_OF - timedelta(hours=3), "INCREASE", 1, "REJECTED", 0),
    )
    frame = decide(inp, POLICY, past)
    assert frame["outcome"].tolist() == ["REJECTED_RECENTLY", "REQUESTED"]
    assert np.isfinite(frame["rejected_at"].iloc[0]) and np.isnan(frame["rejected_at"].iloc[1])


def test_rejection_after_the_cooldown_is_noted() -> None:
    when = AS_OF - timedelta(days=2)
    past = request_history(("D0", when, "DECREASE", 1, "REJECTED", 0))
    (req,) = derive_requests(inputs(new_allocation=8_500), POLICY, past)
    assert "The seller rejected a decrease request on 2026-11-14." in req.rationale


def test_partial_acceptance_caps_the_target() -> None:
    # The seller accepted a total of 17,000 (12,000 remaining); the plan now wants 15,000 more.
    past = request_history(("D0", AS_OF - timedelta(days=1), "INCREASE", 20_000, "PARTIAL", 17_000))
    inp = inputs(new_allocation=15_000, available_inventory=10**6)
    frame = decide(inp, POLICY, past)
    assert frame["capped_by"].tolist() == ["SELLER_PARTIAL"]
    (req,) = derive_requests(inp, POLICY, past)
    assert req.target_total == 17_000
    assert req.reason is ReasonCode.SELLER_RESPONSE
    assert req.required_rate == pytest.approx(150.0) and req.target_rate == pytest.approx(120.0)
    assert "Capped at the 17,000 impressions total the seller accepted on 2026-11-15." in (
        req.rationale
    )


def test_a_newer_response_supersedes_a_partial_one() -> None:
    past = request_history(
        ("D0", AS_OF - timedelta(days=2), "INCREASE", 20_000, "PARTIAL", 17_000),
        ("D0", AS_OF - timedelta(days=1), "INCREASE", 20_000, "ACCEPTED", 0),
    )
    inp = inputs(new_allocation=15_000, available_inventory=10**6)
    (req,) = derive_requests(inp, POLICY, past)
    assert req.target_total == 20_000
    assert req.reason is not ReasonCode.SELLER_RESPONSE


# --- identity and rationale ------------------------------------------------------------------


def test_ids_and_keys_are_deterministic() -> None:
    inp = inputs(3, new_allocation=[5_000, 15_000, 2_000], available_inventory=10**6)
    a = derive_requests(inp, POLICY)
    b = derive_requests(inp, POLICY)
    assert [r.request_id for r in a] == [r.request_id for r in b]
    assert [r.idempotency_key for r in a] == [r.idempotency_key for r in b]
    assert len({r.request_id for r in a}) == 3 and len({r.idempotency_key for r in a}) == 3
    for r in a:
        assert uuid.UUID(r.idempotency_key).version == 5
        assert r.change_request["idempotency_key"] == r.idempotency_key
    # A new plan id gives new request ids but the same keys: the seller dedupes the retry.
    c = derive_requests(replace(inp, seed="plan-2"), POLICY)
    assert [r.request_id for r in c] != [r.request_id for r in a]
    assert [r.idempotency_key for r in c] == [r.idempotency_key for r in a]
    # A different target or instant is a different ask.
    key = idempotency_key("C1", "D0", AS_OF, RequestKind.DECREASE, 10_000)
    assert key == a[0].idempotency_key
    assert key != idempotency_key("C1", "D0", AS_OF, RequestKind.DECREASE, 10_001)
    assert key != idempotency_key(
        "C1", "D0", AS_OF + timedelta(hours=1), RequestKind.DECREASE, 10_000
    )


def test_rationale_with_money_in_the_campaign_currency() -> None:
    micros = 1_000_000
    inp = inputs(
        budget_type=BudgetType.SPEND,
        currency="USD",
        old_allocation=3_100 * micros,
        new_allocation=3_100 * micros,
        delivered=6_350 * micros,
        current_rate=40.0 * micros,
        remaining_hours=3_100 / 25.5,
        pacing_status="OVER",
    )
    (req,) = derive_requests(inp, POLICY)
    assert req.rationale == (
        "Deal D0 (seller S0, order O0) is delivering 40.00 USD/h but needs 25.50 USD/h to finish "
        "its new allocation of 3,100.00 USD by 2026-11-30: please decrease delivery by 36% "
        "(target total 9,450.00 USD)."
    )
    assert req.window_start == AS_OF and req.window_end == AS_OF + timedelta(hours=6)
    assert req.current_rate == pytest.approx(40e6) and req.target_rate == pytest.approx(25.5e6)


def test_formatting_helpers() -> None:
    assert amount(1_234_560_000, BudgetType.SPEND, "EUR") == "1,234.56 EUR"
    assert amount(12_345, BudgetType.CLICKS, "EUR") == "12,345 clicks"
    assert format_deadline(HORIZON_END, "America/New_York") == "2026-11-30"
    assert format_deadline(HORIZON_END, "UTC") == "2026-12-01 05:00 UTC"


def test_increase_rationale_carries_capacity_forecast() -> None:
    inp = inputs(new_allocation=15_000, available_inventory=10**6, capacity=16_000)
    (req,) = derive_requests(inp, POLICY)
    assert "please increase delivery by 50%" in req.rationale
    assert "Capacity forecast: 16,000 impressions." in req.rationale
    assert "we bid on only" not in req.rationale
    (throttled,) = derive_requests(replace(inp, participation_rate=np.array([0.4])), POLICY)
    assert throttled.rationale.endswith("Note: we bid on only 40% of its auctions.")


# --- wiring from a real snapshot + assessment -------------------------------------------------


def test_from_plan_reads_snapshot_assessment_and_plan_frames() -> None:
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    deals = empty_deals(3)
    deals["deal_type"] = np.array([PG, PG, DealType.OPEN], np.int8)
    deals["allocation"] = 24_000
    deals["impressions"] = [6_000, 12_000, 6_000]
    deals["spend_micros"] = deals["impressions"] * 2_000
    deals["price_micros"] = 2_000_000
    deals["order_id"] = ["OA", "OB", "OC"]
    groups = pd.DataFrame({c: pd.Series(dtype=t) for c, t in GROUP_COLUMNS.items()})
    snap = CampaignSnapshot(
        campaign_id="c1",
        as_of=t0 + timedelta(days=5),
        timezone="UTC",
        currency="USD",
        deals=deals,
        sellers=groups,
        channels=groups.copy(),
        pacing=PacingSpec(
            budget_type=BudgetType.IMPRESSIONS,
            start=t0,
            end=t0 + timedelta(days=10),
            catch_up_fraction=1.0,
            budgets=(Budget(Period.LIFETIME, 72_000),),
        ),
    )
    result = assess(snap)
    booked = deals["allocation"].to_numpy(np.int64)
    old = np.maximum(booked - deals["impressions"].to_numpy(np.int64), 0)
    plan = pd.DataFrame(
        {
            "delivered": deals["impressions"].to_numpy(np.int64),
            "old_allocation": old,
            "new_allocation": np.array([18_000, 6_000, 18_000], np.int64),
            "capacity": np.array([30_000, 30_000, 30_000], np.int64),
            "reason": ["UNDER_DELIVERY", "OVER_DELIVERY", "HIGHER_VALUE"],
        }
    )
    inp = RequestInputs.from_plan(
        snap,
        result,
        plan,
        window_end=snap.as_of + timedelta(hours=6),
        seed="p",
        avails_forecast=np.full(3, 1e9),
    )
    assert inp.remaining_hours == pytest.approx(120.0)
    assert inp.pacing_status.tolist() == ["UNDER", "ON_PACE", "UNDER"]
    reqs = derive_requests(inp, POLICY)
    # No delivery series: rates are the flight-to-date averages (50/h and 100/h).
    assert [(r.deal_id, r.kind) for r in reqs] == [
        ("deal0", RequestKind.INCREASE),
        ("deal1", RequestKind.DECREASE),
    ]
    assert reqs[0].order_id == "OA" and reqs[0].target_total == 24_000
    assert reqs[0].reason is ReasonCode.UNDER_DELIVERY
    assert reqs[1].reason is ReasonCode.OVER_DELIVERY  # on pace: the plan's reason
    assert reqs[1].current_rate == pytest.approx(100.0)
    # Deal 0 keeps its goal (a rate change); deal 1's goal drops from 24,000 to 18,000.
    assert reqs[0].change_request["change_type"] == "other"
    assert reqs[1].change_request["change_type"] == "impressions"
    assert reqs[1].change_request["diffs"] == [
        {"field": "impressions", "old_value": 24_000, "new_value": 18_000}
    ]


# --- severity helpers -------------------------------------------------------------------------


def test_change_severity_tiers() -> None:
    tiers = SeverityTiers()
    sev = change_severity(
        np.array([0, 9, 10, 29, 30, -30, 5]),
        np.array([100, 100, 100, 100, 100, 100, 0]),
        np.zeros(7, bool),
        tiers,
    )
    assert sev.tolist() == [
        Severity.MINOR,
        Severity.MINOR,
        Severity.MATERIAL,
        Severity.MATERIAL,
        Severity.CRITICAL,
        Severity.CRITICAL,
        Severity.CRITICAL,  # a change on an empty deal
    ]
    premium = change_severity(np.array([0, 1]), np.array([100, 100]), np.ones(2, bool), tiers)
    assert premium.tolist() == [Severity.MINOR, Severity.MATERIAL]


_RANK = {Severity.MINOR: 0, Severity.MATERIAL: 1, Severity.CRITICAL: 2}


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(-(10**12), 10**12),
    b=st.integers(-(10**12), 10**12),
    current=st.integers(0, 10**12),
    premium=st.booleans(),
    material=st.floats(0.0, 2.0),
    extra=st.floats(0.0, 2.0),
)
def test_severity_is_monotone_in_the_size_of_the_change(
    a: int, b: int, current: int, premium: bool, material: float, extra: float
) -> None:
    tiers = SeverityTiers(material=material, critical=material + extra)
    small, large = sorted((a, b), key=abs)
    sev = change_severity(np.array([small, large]), np.full(2, current), np.full(2, premium), tiers)
    assert _RANK[sev[0]] <= _RANK[sev[1]]
    if premium and large != 0:
        assert _RANK[sev[1]] >= _RANK[Severity.MATERIAL]


def test_worth_changing_and_helpers() -> None:
    assert worth_changing(np.array([0, 1, -5, 9, 10]), 0).tolist() == [
        False,
        True,
        True,
        True,
        True,
    ]
    assert worth_changing(np.array([0, 1, -5, 9, 10, -10]), 10).tolist() == [
        False,
        False,
        False,
        False,
        True,
        True,
    ]
    sev = np.array([Severity.MINOR, Severity.CRITICAL, Severity.MATERIAL], dtype=object)
    assert max_severity(sev) is Severity.CRITICAL
    assert max_severity(np.array([], dtype=object)) is None
    assert auto_applicable(sev, POLICY).tolist() == [False, False, False]
    up_to = replace(POLICY, auto_apply_up_to="MATERIAL")
    assert auto_applicable(sev, up_to).tolist() == [True, False, True]


_AMOUNTS = st.integers(min_value=0, max_value=2**53)
_PROJECTIONS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e30, max_value=1e30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_AMOUNTS, _AMOUNTS, _PROJECTIONS), min_size=1, max_size=20))
def test_a_change_is_sized_the_same_for_requests_and_schedules(
    rows: list[tuple[int, int, float]],
) -> None:
    """The larger of the move and the gap to the deal's current pace, in whole units; a
    projection beyond int64 (a rate read over almost no opportunity) or NaN never gives an
    arbitrary or negative size."""
    new = np.array([r[0] for r in rows], dtype=np.int64)
    old = np.array([r[1] for r in rows], dtype=np.int64)
    projected = np.array([r[2] for r in rows], dtype=np.float64)
    with np.errstate(all="raise"):
        size = change_size(new, old, projected)
    assert size.dtype == np.int64
    for n, o, p, got in zip(
        new.tolist(), old.tolist(), projected.tolist(), size.tolist(), strict=True
    ):
        units = 0 if np.isnan(p) else round(min(max(p, -(2.0**62)), 2.0**62))
        assert got == max(abs(n - o), abs(n - units))
        assert got >= 0


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="new_allocation"):
        inputs(2, new_allocation=[1, 2, 3])
    with pytest.raises(ValueError, match="window_end"):
        inputs(window_end=AS_OF)

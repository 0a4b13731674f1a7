"""A plan takes budget off a deal only to place it on another (post_solve._keep_the_rest): what no
deal takes, even beyond the forecasts, stays with the buyer-paced deals the plan would cut, up to
what they hold. Only where `Policy.beyond_forecast` places the rest (above 1); at 1 or less, and
for paused, locked or guaranteed deals, the forecasts decide as before.

Forecasts are the caller's own (`capacity_forecast`), so each test sets what the deals can
deliver directly."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from builders import AS_OF, DealSpec, SnapshotSpec, build_snapshot, lifetime_pacing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan, ReasonCode
from reallocator.v1 import common_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

B = 10**9  # 1,000 USD in micros
ACTIVE, PAUSED = common_pb2.DEAL_STATUS_ACTIVE, common_pb2.DEAL_STATUS_PAUSED
PG = common_pb2.DEAL_TYPE_PROGRAMMATIC_GUARANTEED


def deal(
    deal_id: str,
    remaining: int,
    forecast: int,
    *,
    spent: int = 1 * B,
    seller: str = "s1",
    status: int = ACTIVE,
    locked: bool = False,
    deal_type: int = common_pb2.DEAL_TYPE_PREFERRED,
    value: float = 1.0,
) -> DealSpec:
    return DealSpec(
        deal_id=deal_id,
        seller_id=seller,
        channel_id="display",
        allocation=spent + remaining,
        spend_micros=spent,
        impressions=max(spent // 10_000, 1),
        status=status,
        locked=locked,
        deal_type=deal_type,
        value_per_unit=value,
        capacity_forecast=forecast,
    )


def snapshot(*deals: DealSpec, budget: int | None = None) -> CampaignSnapshot:
    """Ten days into a 30-day flight; the budget is what the deals hold unless given."""
    held = sum(d.allocation for d in deals)
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=tuple(sorted({d.seller_id for d in deals})),
        channel_ids=("display",),
        pacing=lifetime_pacing(
            held if budget is None else budget,
            start=AS_OF - timedelta(days=10),
            end=AS_OF + timedelta(days=20),
        ),
    )
    errors = Violations()
    out = decode_snapshot(build_snapshot(spec), Policy(), errors)
    assert out is not None, errors.items
    return out


def plan_of(snap: CampaignSnapshot, policy: Policy | None = None) -> Plan:
    if policy is not None:
        snap = dataclasses.replace(snap, policy=policy)
    plan = build_plan(snap)
    new = plan.deals["new_allocation"].to_numpy()
    assert (plan.deals["lower_bound"].to_numpy() <= new).all()
    assert (new <= plan.deals["upper_bound"].to_numpy()).all()
    assert int(new.sum()) == plan.allocated <= plan.remaining_budget
    assert plan.unspendable == plan.remaining_budget - plan.allocated
    return plan


def new_of(plan: Plan) -> dict[str, int]:
    return {str(k): int(v) for k, v in plan.deals.set_index("deal_id")["new_allocation"].items()}


def test_a_lone_deal_keeps_what_no_other_deal_can_take() -> None:
    # 10,000 USD remaining, a forecast of 10: the forecast and 100 x it place 1,010; the rest
    # has nowhere to go, so the deal keeps it all.
    snap = snapshot(deal("a", 10 * B, 10_000_000))
    plan = plan_of(snap)
    d = plan.deals.set_index("deal_id")
    assert d.at["a", "new_allocation"] == d.at["a", "old_allocation"] == 10 * B
    assert plan.unspendable == 0 and int(d.at["a", "delta"]) == 0
    assert "beyond its capacity forecast of 10.00 USD" in str(d.at["a", "rationale"])
    assert not [r for r in plan.unspendable_reasons if r.reason_code == "CAPACITY"]


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_at_one_or_less_the_forecasts_decide_and_the_rest_is_unspendable(ratio: float) -> None:
    plan = plan_of(snapshot(deal("a", 10 * B, 10_000_000)), Policy(beyond_forecast=ratio))
    placed = int(10_000_000 * (1 + ratio))
    assert new_of(plan) == {"a": placed}
    assert plan.unspendable == 10 * B - placed
    (why,) = [r for r in plan.unspendable_reasons if r.reason_code == "CAPACITY"]
    assert why.amount == plan.unspendable


def test_what_another_deal_takes_moves_and_the_rest_stays() -> None:
    # "a" cannot deliver (10 USD of 10,000); "b" can deliver 1,500 more than its 1,000 but may
    # hold at most 2,000 (its maximum): it takes 1,000 from "a", and "a" keeps the other 9,000
    # rather than releasing it.
    b = deal("b", 1 * B, 2_500_000_000)
    b = dataclasses.replace(b, max_allocation=b.spend_micros + 2 * B)  # may reach 2,000 remaining
    plan = plan_of(snapshot(deal("a", 10 * B, 10_000_000), b))
    new = new_of(plan)
    assert new["b"] == 2 * B
    assert new["a"] == 9 * B
    assert plan.unspendable == 0
    d = plan.deals.set_index("deal_id")
    assert d.at["a", "reason"] != ReasonCode.UNCHANGED  # it gave what "b" took


def test_it_goes_back_in_proportion_to_the_cuts() -> None:
    # Both cut from 4,000 and 8,000 to their forecasts and 100 x them (1,010 and 2,020); the
    # 8,970 nobody takes goes back 2,990 : 5,980, i.e. each ends where it was.
    plan = plan_of(snapshot(deal("a", 4 * B, 10_000_000), deal("b", 8 * B, 20_000_000)))
    assert new_of(plan) == {"a": 4 * B, "b": 8 * B}
    # With budget beyond what they hold (a campaign under-booked by 3,000): still nothing more
    # than each holds comes from the keep, the rest beyond their forecasts is what the policy
    # places, and what is left is unspendable.
    plan = plan_of(
        snapshot(deal("a", 4 * B, 10_000_000), deal("b", 8 * B, 20_000_000), budget=17 * B)
    )
    assert new_of(plan) == {"a": 4 * B, "b": 8 * B}
    assert plan.unspendable == 3 * B


def test_paused_locked_and_guaranteed_deals_are_not_kept_here() -> None:
    paused = plan_of(snapshot(deal("p", 10 * B, 10_000_000, status=PAUSED)))
    assert new_of(paused)["p"] < 10 * B and paused.unspendable > 0
    # A locked deal is never cut; a guaranteed one keeps its commitment by its own rule (no
    # seller is asked to deliver less for budget nobody takes).
    locked = plan_of(snapshot(deal("l", 10 * B, 10_000_000, locked=True)))
    assert new_of(locked) == {"l": 10 * B}
    pg = plan_of(snapshot(deal("g", 10 * B, 10_000_000, deal_type=PG)))
    assert new_of(pg) == {"g": 10 * B}
    assert not pg.requests


@st.composite
def campaigns(draw: st.DrawFn) -> CampaignSnapshot:
    n = draw(st.integers(1, 6))
    deals = []
    for i in range(n):
        remaining = draw(st.integers(0, 10_000)) * 1_000_000
        forecast = draw(st.integers(0, 20_000)) * 1_000_000
        deals.append(
            deal(
                f"d{i}",
                remaining,
                forecast,
                spent=draw(st.integers(1, 5_000)) * 1_000_000,
                seller=f"s{i % 3}",
                status=draw(st.sampled_from([ACTIVE, ACTIVE, ACTIVE, PAUSED])),
                locked=draw(st.booleans()) and draw(st.booleans()),
                deal_type=draw(st.sampled_from([common_pb2.DEAL_TYPE_PREFERRED, PG])),
                value=draw(st.sampled_from([0.5, 1.0, 2.0])),
            )
        )
    extra = draw(st.integers(-2_000, 5_000)) * 1_000_000
    held = sum(d.allocation for d in deals)
    return snapshot(*deals, budget=max(held + extra, sum(d.spend_micros for d in deals)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(campaigns())
def test_no_budget_is_released_while_a_deal_that_held_it_could_keep_it(
    snap: CampaignSnapshot,
) -> None:
    """Whenever budget is left free (unplaced, and not held for a seller asked to deliver less),
    no active, unlocked, buyer-paced deal ends below what it held: releasing it would be a cut
    that buys nothing."""
    plan = plan_of(snap)
    held = sum(
        r.amount for r in plan.unspendable_reasons if r.reason_code == "HELD_FOR_SELLER_DECREASE"
    )
    if plan.unspendable - held <= 0:
        return
    d = plan.deals.set_index("deal_id")
    deals = snap.deals.set_index("deal_id").reindex(d.index)
    keepable = (
        (deals["status"] == ACTIVE) & ~deals["locked"].astype(bool) & (deals["deal_type"] != PG)
    ).to_numpy()
    short = keepable & (d["new_allocation"].to_numpy() < d["old_allocation"].to_numpy())
    assert not short.any(), d.loc[short, ["old_allocation", "new_allocation", "capacity"]]

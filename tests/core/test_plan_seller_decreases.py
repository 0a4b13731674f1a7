"""Budget freed by asking a seller to deliver less stays held until the seller agrees.

A guaranteed deal is paced by its seller to the commitment it has; a plan that lowers it only
asks. Until the seller answers, the seller keeps pacing to the whole commitment (a forecast below
it may be wrong: the seller catches up where it can); the plan must not hand any of it to other
deals, or deals that spend all they are given overspend the budget whenever a seller is slow or
says no.

The snapshot: a 40,000 USD lifetime budget with 10,000 USD delivered. "pg" (guaranteed, value
1.0) holds 14,000 USD more and could deliver 20,000; "rich" (preferred, value 3.0) holds 10,000
and could deliver 30,000 - so the plan moves budget from "pg" to "rich"."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from builders import (
    AS_OF,
    DealSpec,
    RecentDelivery,
    SnapshotSpec,
    build_snapshot,
    lifetime_pacing,
)
from builders import random_snapshot_spec as random_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import Budget, CampaignSnapshot, DealType, Period, Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import Plan, PlanStatus, RequestHistory, RequestKind
from reallocator.v1 import common_pb2, pacing_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

B = 10**9  # 1,000 USD
HOURS = 24
HELD = "HELD_FOR_SELLER_DECREASE"


def pacing(lifetime: int) -> pacing_pb2.PacingTarget:
    return lifetime_pacing(lifetime, AS_OF - timedelta(days=5), AS_OF + timedelta(days=10))


def deal(deal_id: str, deal_type: int, value: float, allocation: int, **kw: Any) -> DealSpec:
    base: dict[str, Any] = {
        "deal_id": deal_id,
        "seller_id": f"seller-{deal_id}",
        "channel_id": "display",
        "allocation": allocation,
        "spend_micros": 5 * B,
        "impressions": 500_000,
        "ecpm_micros": 10_000_000,
        "deal_type": int(deal_type),
        "value_per_unit": value,
        "status": common_pb2.DEAL_STATUS_ACTIVE,
        "avails": 2_000_000,
        "bids": 1_000_000,
        "wins": 500_000,
    }
    base.update(kw)
    return DealSpec(**base)


def recent(n: int) -> RecentDelivery:
    imps = np.full((n, HOURS), 2_000, dtype=np.int64)
    return RecentDelivery(
        window_start=AS_OF - timedelta(hours=HOURS),
        bucket_width=timedelta(hours=1),
        spend_micros=np.full((n, HOURS), 20_000_000, dtype=np.int64),
        impressions=imps,
        avails=imps * 4,
        wins=imps,
    )


def snapshot(pg_allocation: int = 19 * B, policy: Policy | None = None) -> CampaignSnapshot:
    deals = (
        deal("pg", DealType.PROGRAMMATIC_GUARANTEED, 1.0, pg_allocation),
        deal("rich", DealType.PREFERRED, 3.0, 15 * B),
    )
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("seller-pg", "seller-rich"),
        channel_ids=("display",),
        pacing=pacing(40 * B),
        delivery=recent(len(deals)),
    )
    errors = Violations()
    out = decode_snapshot(build_snapshot(spec), policy or Policy(), errors)
    assert out is not None, errors.items
    return out


FORECAST = np.array([20 * B, 30 * B])  # remaining deliverable: pg, rich


def row(plan: Plan, deal_id: str) -> Any:
    return plan.deals.set_index("deal_id").loc[deal_id]


def exposure(plan: Plan, snap: CampaignSnapshot) -> int:
    """The most the plan can spend if every seller asked for less says no: a guaranteed deal
    keeps its current allocation (its commitment), whatever its forecast says."""
    d = plan.deals
    pg = snap.deals["deal_type"].to_numpy() == DealType.PROGRAMMATIC_GUARANTEED
    new = d["new_allocation"].to_numpy(np.int64)
    keep = d["old_allocation"].to_numpy(np.int64)
    return int(np.where(pg, np.maximum(new, keep), new).sum())


def held_amount(plan: Plan) -> int:
    return sum(u.amount for u in plan.unspendable_reasons if u.reason_code == HELD)


def test_a_decrease_asked_of_a_seller_frees_nothing_until_it_agrees() -> None:
    snap = snapshot()
    plan = build_plan(snap, forecast=FORECAST)
    pg, rich = row(plan, "pg"), row(plan, "rich")
    assert pg["new_allocation"] < pg["old_allocation"]  # value moves away from the PG deal
    # The seller is asked for the new total (a rate change either way: "pg" delivers slower
    # than even its new total needs, so the request reads INCREASE).
    (ask,) = [r for r in plan.requests if r.deal_id == "pg"]
    assert ask.target_total == pg["delivered"] + pg["new_allocation"]
    # Shown and explained within its real bounds (the re-solve fixed it; that is not a limit).
    assert pg["lower_bound"] <= pg["new_allocation"] < pg["upper_bound"]
    assert pg["binding"] not in ("LOCKED", "STEP")
    held = int(pg["old_allocation"] - pg["new_allocation"])
    assert held > 0 and held_amount(plan) == held
    # "rich" gets only what is really free; the rest waits for the seller.
    assert rich["new_allocation"] == plan.remaining_budget - pg["old_allocation"]
    assert plan.allocated + held <= plan.remaining_budget
    assert exposure(plan, snap) <= plan.remaining_budget
    (reason,) = [u for u in plan.unspendable_reasons if u.reason_code == HELD]
    assert "pg" in reason.message and "until they agree" in reason.message
    # Every unit not allocated is explained once: held here, nothing left over as "capacity".
    assert plan.unspendable == held
    assert sum(u.amount for u in plan.unspendable_reasons if u.entity_kind == "CAMPAIGN") == held


def test_once_the_seller_agrees_the_next_plan_places_it() -> None:
    first = build_plan(snapshot(), forecast=FORECAST)
    pg = row(first, "pg")
    agreed = int(pg["delivered"] + pg["new_allocation"])  # the seller's new commitment
    second = build_plan(snapshot(pg_allocation=agreed), forecast=FORECAST)
    assert held_amount(second) == 0
    assert row(second, "rich")["new_allocation"] > row(first, "rich")["new_allocation"]
    assert second.allocated == second.remaining_budget


def test_a_commitment_forecast_short_is_held_whole_until_the_seller_agrees() -> None:
    """A forecast that a guaranteed deal cannot deliver its commitment frees nothing at once:
    the seller keeps pacing to the commitment and catches up where its supply allows, so a
    forecast that was wrong would overspend the budget (the evaluation set's marathon did, by
    0.04 %, on 1 seed in 30 when only the forecast part was held)."""
    forecast = np.array([4 * B, 30 * B])  # pg can deliver 4,000 of the 14,000 it holds
    plan = build_plan(snapshot(), forecast=forecast)
    pg = row(plan, "pg")
    assert pg["new_allocation"] <= 4 * B
    assert held_amount(plan) == int(pg["old_allocation"] - pg["new_allocation"])
    assert row(plan, "rich")["new_allocation"] == plan.remaining_budget - pg["old_allocation"]
    assert exposure(plan, snapshot()) <= plan.remaining_budget


def test_buyer_paced_decreases_free_budget_at_once() -> None:
    """The buyer's own pacer applies a decrease at once: nothing to hold."""
    snap = snapshot()
    deals = snap.deals.copy()
    deals.loc[deals["deal_id"] == "pg", "deal_type"] = int(DealType.PREFERRED)
    plan = build_plan(dataclasses.replace(snap, deals=deals), forecast=FORECAST)
    assert held_amount(plan) == 0
    assert plan.allocated == plan.remaining_budget
    assert (
        row(plan, "rich")["new_allocation"]
        > plan.remaining_budget - row(plan, "pg")["old_allocation"]
    )


def mixed_snapshot(n: int, seed: int) -> tuple[CampaignSnapshot, np.ndarray]:
    """Guaranteed and buyer-paced deals of spread values, forecasts from a fifth to three times
    what each holds, the budget exactly what they hold: value moves between them both ways."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice([int(DealType.PROGRAMMATIC_GUARANTEED), int(DealType.PREFERRED)], n)
    spent = rng.integers(0, 5, n) * B
    current = rng.integers(1, 20, n) * B
    value = np.round(rng.lognormal(0.0, 0.7, n), 3)
    deals = tuple(
        deal(
            f"d{i}",
            int(kinds[i]),
            float(value[i]),
            int(spent[i] + current[i]),
            seller_id=f"seller-{i % 3}",
            spend_micros=int(spent[i]),
        )
        for i in range(n)
    )
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("seller-0", "seller-1", "seller-2"),
        channel_ids=("display",),
        pacing=pacing(int((spent + current).sum())),
        delivery=recent(n),
    )
    errors = Violations()
    snap = decode_snapshot(build_snapshot(spec), Policy(), errors)
    assert snap is not None, errors.items
    forecast = (current * rng.uniform(0.2, 3.0, n)).astype(np.int64)
    return snap, forecast


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 30), seed=st.integers(0, 100_000))
def test_no_plan_can_overspend_when_sellers_say_no(n: int, seed: int) -> None:
    snap, forecast = mixed_snapshot(n, seed)
    plan = build_plan(snap, forecast=forecast)
    if plan.status is PlanStatus.NO_CHANGE:
        assert held_amount(plan) == 0  # nothing changes, nothing is asked, nothing held
        return
    assert exposure(plan, snap) <= plan.remaining_budget
    assert plan.allocated + held_amount(plan) <= plan.remaining_budget
    assert plan.allocated + held_amount(plan) == plan.remaining_budget - max(
        0, plan.unspendable - held_amount(plan)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 60), seed=st.integers(0, 100_000), own=st.booleans())
def test_random_snapshots_never_overspend_either(n: int, seed: int, own: bool) -> None:
    errors = Violations()
    snap = decode_snapshot(build_snapshot(random_spec(n, seed, n_buckets=12)), Policy(), errors)
    assert snap is not None, errors.items
    forecast = np.random.default_rng(seed).integers(0, 10**10, n) if own else None
    try:
        plan = build_plan(snap, forecast=forecast)
    except PlanRejected:
        return
    if any(v.constraint == "budget" for v in plan.violations):
        return  # the budget itself had to give way: nothing to hold it to
    if plan.status is PlanStatus.NO_CHANGE:
        assert held_amount(plan) == 0  # nothing changes, nothing is asked, nothing held
        return
    assert exposure(plan, snap) <= plan.remaining_budget
    assert plan.allocated + held_amount(plan) <= plan.remaining_budget


def test_a_guaranteed_deal_keeping_pace_is_not_trimmed_to_its_pace() -> None:
    """The seller paces "pg" to its commitment (a third delivered after a third of the flight,
    40 USD/h against the 41.67 its last 10,000 USD need): its rate projects 9,600 USD, which
    measures the seller's pace, not a shortfall. The plan keeps the commitment; before, every
    plan trimmed such a deal to its pace and the next one trimmed it again."""
    deals = (
        deal("pg", DealType.PROGRAMMATIC_GUARANTEED, 2.0, 15 * B),
        deal("other", DealType.PREFERRED, 1.0, 15 * B),
    )
    rate = np.array([40_000_000, 40_000_000], dtype=np.int64)[:, None]
    imps = np.full((2, HOURS), 4_000, dtype=np.int64)
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("seller-pg", "seller-other"),
        channel_ids=("display",),
        pacing=pacing(30 * B),
        delivery=RecentDelivery(
            window_start=AS_OF - timedelta(hours=HOURS),
            bucket_width=timedelta(hours=1),
            spend_micros=np.repeat(rate, HOURS, axis=1),
            impressions=imps,
            avails=imps * 4,
            wins=imps,
        ),
    )
    errors = Violations()
    snap = decode_snapshot(build_snapshot(spec), Policy(), errors)
    assert snap is not None, errors.items
    plan = build_plan(snap)
    pg = row(plan, "pg")
    assert pg["old_allocation"] == 10 * B
    assert pg["capacity"] >= pg["old_allocation"]
    assert pg["new_allocation"] >= pg["old_allocation"]
    assert not any(r.deal_id == "pg" and r.kind is RequestKind.DECREASE for r in plan.requests)
    # The same deal paced by the buyer: its rate is supply, and it caps the plan.
    deals_b = snap.deals.copy()
    deals_b.loc[deals_b["deal_id"] == "pg", "deal_type"] = int(DealType.PREFERRED)
    # A 4% shortfall is inside Policy.move_band, which holds it; without the band it caps.
    held = build_plan(dataclasses.replace(snap, deals=deals_b))
    assert row(held, "pg")["capacity"] == 10 * B
    unbanded = dataclasses.replace(snap.policy, move_band=0.0)
    buyer = build_plan(dataclasses.replace(snap, deals=deals_b, policy=unbanded))
    assert row(buyer, "pg")["capacity"] < 10 * B


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 30), seed=st.integers(0, 100_000))
def test_an_unanswered_request_is_held_like_a_commitment(n: int, seed: int) -> None:
    """A guaranteed deal whose last request its seller has not answered may still end at that
    request's total, whichever way it asks (answers come in the order asked: a request for less
    sent before an earlier one was accepted can raise the commitment that one left). So the
    plan holds the larger of the commitment and the ask: if every such seller accepts its
    pending ask and every one asked now says no, the plan still spends no more than the budget.
    The budget is what an earlier plan gave out: the commitments, and the asks beyond them."""
    snap, forecast = mixed_snapshot(n, seed)
    rng = np.random.default_rng(seed + 1)
    deals = snap.deals
    pg = deals["deal_type"].to_numpy() == DealType.PROGRAMMATIC_GUARANTEED
    spent = deals["spend_micros"].to_numpy(np.int64)
    current = deals["allocation"].to_numpy(np.int64) - spent
    waiting = pg & (rng.random(n) < 0.6)
    asked = (current * rng.uniform(0.0, 1.8, n)).astype(np.int64)  # beyond the spend
    history = RequestHistory(
        pd.DataFrame(
            {
                "deal_id": deals["deal_id"].to_numpy()[waiting],
                "requested_at": snap.as_of.timestamp() - 3600.0,
                "kind": np.where(asked > current, "INCREASE", "DECREASE")[waiting],
                "target_total": (spent + asked)[waiting],
                "response": "PENDING",
                "accepted_total": -1,
            }
        )
    )
    beyond = int(np.where(waiting, np.maximum(asked - current, 0), 0).sum())
    budget = int(deals["allocation"].sum()) + beyond
    snap = dataclasses.replace(
        snap, pacing=dataclasses.replace(snap.pacing, budgets=(Budget(Period.LIFETIME, budget),))
    )
    plan = build_plan(snap, forecast=forecast, history=history)
    if plan.status is PlanStatus.NO_CHANGE:
        return  # nothing moves: what earlier plans asked stands as they asked it
    d = plan.deals
    new = d["new_allocation"].to_numpy(np.int64)
    old = d["old_allocation"].to_numpy(np.int64)
    worst = np.maximum(old, np.where(waiting, asked, 0))  # a seller accepting its pending ask
    assert int(np.where(pg, np.maximum(new, worst), new).sum()) <= plan.remaining_budget


def test_a_commitment_is_kept_when_only_room_beyond_the_forecasts_could_take_it() -> None:
    """Deal "pg" can deliver 4,000 of the 14,000 it holds, "rich" 12,000 (it holds 10,000): within
    their forecasts the deals can take 16,000 of the 30,000 left. What "pg" would free could go
    only into "rich"'s room beyond its forecast (the stretch, a hedge re-decided every plan),
    while a decrease its seller accepts is not undone: "pg" keeps its commitment, nobody is asked
    for less, and "rich" still takes what is left beyond its forecast."""
    forecast = np.array([4 * B, 12 * B])
    plan = build_plan(snapshot(), forecast=forecast)
    pg, rich = row(plan, "pg"), row(plan, "rich")
    assert pg["new_allocation"] == pg["old_allocation"] == 14 * B
    assert not any(r.deal_id == "pg" and r.kind is RequestKind.DECREASE for r in plan.requests)
    assert held_amount(plan) == 0
    assert rich["new_allocation"] == plan.remaining_budget - 14 * B > rich["capacity"]
    assert exposure(plan, snapshot()) <= plan.remaining_budget


def _ending_in(hours: float) -> CampaignSnapshot:
    """`snapshot()` with the flight ending `hours` after it."""
    snap = snapshot()
    end = AS_OF + timedelta(hours=hours)
    return dataclasses.replace(snap, pacing=dataclasses.replace(snap.pacing, end=end))


def test_no_seller_is_asked_for_less_when_no_plan_could_place_what_it_frees() -> None:
    """What a decrease frees is held until the seller agrees and placed by the first plan after
    the answer: 12 hours (`answer_time`), the next plan every 6 hours (`schedule_window`). With
    10 hours left no plan comes after it, so the decrease would only stop "pg" while its
    supply lasts and place nothing: "pg" keeps what it holds, no request, nothing held, and
    "rich" takes the rest. With 30 hours left the plan at hour 12 places it: asked as before;
    and so with 10 hours left when the seller answers within the hour and the next plan is two
    hours away."""
    window = timedelta(hours=6)
    late = build_plan(_ending_in(10), forecast=FORECAST, schedule_window=window)
    pg = row(late, "pg")
    assert pg["new_allocation"] == pg["old_allocation"]
    # Shown within its own bounds: no bound of its stopped it, and the words name none.
    assert pg["lower_bound"] < pg["new_allocation"] and pg["binding"] not in ("STEP", "DEAL_MIN")
    assert "step limit" not in pg["rationale"] and "minimum" not in pg["rationale"]
    assert not [r for r in late.requests if r.deal_id == "pg"]
    assert held_amount(late) == 0
    assert row(late, "rich")["new_allocation"] == late.remaining_budget - pg["old_allocation"]
    early = build_plan(_ending_in(30), forecast=FORECAST, schedule_window=window)
    pg = row(early, "pg")
    assert pg["new_allocation"] < pg["old_allocation"]
    assert held_amount(early) == int(pg["old_allocation"] - pg["new_allocation"]) > 0
    quick = dataclasses.replace(
        _ending_in(10),
        policy=dataclasses.replace(snapshot().policy, answer_time=timedelta(hours=1)),
    )
    plan = build_plan(quick, forecast=FORECAST, schedule_window=timedelta(hours=2))
    assert row(plan, "pg")["new_allocation"] < row(plan, "pg")["old_allocation"]


def test_a_limit_still_cuts_a_commitment_no_plan_could_replace() -> None:
    """The same late plan with a seller maximum below what "pg" holds: the limit decides, so
    "pg" is cut to it (a decrease asked) rather than kept into a plan no solve could make."""
    snap = _ending_in(10)
    sellers = snap.sellers.copy()
    sellers.loc["seller-pg", "max_total"] = float(12 * B)  # 5,000 delivered + 7,000
    snap = dataclasses.replace(snap, sellers=sellers)
    plan = build_plan(snap, forecast=FORECAST, schedule_window=timedelta(hours=6), relax=False)
    pg = row(plan, "pg")
    assert pg["new_allocation"] <= 7 * B < pg["old_allocation"]
    assert [r.deal_id for r in plan.requests if r.deal_id == "pg"] == ["pg"]

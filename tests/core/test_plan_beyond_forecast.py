"""Budget beyond the forecasts in a plan (Policy.beyond_forecast): when the capacity forecasts
cannot absorb the remaining budget, buyer-paced deals take the rest in proportion to their
forecasts, first one forecast more each (the hedge), then up to `beyond_forecast` x forecast
in all; guaranteed, locked and seller-capped deals are not stretched. Also the policy field on
the wire: range check, round trip, and Replan.

The snapshot: no recent delivery; each deal's rate to date (1,000 USD in the first 5 of 25 days)
projects 4,000 USD more, above every seller-declared available inventory, so every forecast is
that declaration (small), and the lifetime budget is far above what they add up to."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from builders import (
    AS_OF,
    DealSpec,
    SnapshotSpec,
    build_snapshot,
    lifetime_pacing,
    random_snapshot_spec,
    replan_request,
)

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import BindingKind, Plan, PlanStatus, ReasonCode, RequestHistory
from reallocator.v1 import common_pb2, plan_pb2, policy_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2_grpc as pb_grpc
from reallocator.wire.plan import encode_plan
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import FieldViolation, Violations

B = 10**9  # 1,000 USD in micros
PG, PD, PMP, OPEN = (
    common_pb2.DEAL_TYPE_PROGRAMMATIC_GUARANTEED,
    common_pb2.DEAL_TYPE_PREFERRED,
    common_pb2.DEAL_TYPE_PRIVATE_AUCTION,
    common_pb2.DEAL_TYPE_OPEN,
)

# Every deal: 6,000 USD booked, 1,000 delivered (5,000 remaining), and a declared inventory;
# the guaranteed deal's seller committed to 2,000 (1,000 remaining, all it declares): a
# commitment beyond the plan stays held until the seller agrees (test_plan_seller_decreases).
FORECAST = {"pg": 1 * B, "locked": 1 * B, "pd": 1 * B, "pmp": 2 * B, "open": 3 * B, "capped": 2 * B}
STRETCHABLE = ("pd", "pmp", "open")  # buyer-paced, not locked, not capped by a seller answer
SPENT = 6 * B  # 1,000 USD on each of the six deals
# The first, forecast-capped solve: each deal at its forecast, except the locked one (held at
# its 5,000 remaining) and the capped one (the seller accepted 1,500 of it, see HISTORY).
FIRST = {**FORECAST, "locked": 5 * B, "capped": 1_500_000_000}
FIRST_TOTAL = sum(FIRST.values())  # 13,500 USD


def deal(deal_id: str, seller: str, channel: str, deal_type: int, locked: bool = False) -> DealSpec:
    return DealSpec(
        deal_id=deal_id,
        seller_id=seller,
        channel_id=channel,
        allocation=2 * B if deal_type == PG else 6 * B,
        spend_micros=1 * B,
        impressions=100_000,
        ecpm_micros=10_000_000,
        deal_type=deal_type,
        locked=locked,
        available_inventory=FORECAST[deal_id],
        value_per_unit=1.0,
    )


def spec(lifetime: int = 60 * B) -> SnapshotSpec:
    return SnapshotSpec(
        deals=(
            deal("pg", "s1", "ctv", PG),
            deal("locked", "s2", "display", PD, locked=True),
            deal("pd", "s2", "display", PD),
            deal("pmp", "s3", "audio", PMP),
            deal("open", "s3", "audio", OPEN),
            deal("capped", "s2", "display", PD),
        ),
        seller_ids=("s1", "s2", "s3"),
        channel_ids=("ctv", "display", "audio"),
        # 5 days elapsed, 20 to go: the rate to date projects 4x what each deal spent.
        pacing=lifetime_pacing(lifetime, start=AS_OF - timedelta(days=5)),
    )


# The seller of "capped" answered a request for more with PARTIAL: 2,500 USD in total, i.e.
# 1,500 remaining, below its 2,000 forecast: its capacity is capped at 1,500.
HISTORY = RequestHistory(
    pd.DataFrame(
        {
            "deal_id": ["capped"],
            "requested_at": [spec().as_of.timestamp() - 3600],
            "kind": ["INCREASE"],
            "target_total": [8 * B],
            "response": ["PARTIAL"],
            "accepted_total": [2_500_000_000],
        }
    )
)


def snapshot(
    policy: Policy | None = None,
    lifetime: int = 60 * B,
    edit: Callable[[snapshot_pb2.CampaignSnapshot], None] | None = None,
) -> CampaignSnapshot:
    msg = build_snapshot(spec(lifetime))
    if edit is not None:
        edit(msg)
    errors = Violations()
    out = decode_snapshot(msg, policy or Policy(), errors)
    assert out is not None, errors.items
    return out


HEDGE = Policy(beyond_forecast=1.0)  # one forecast more beyond each forecast, no more


def plan_of(policy: Policy | None = None, lifetime: int = 60 * B, **kw: object) -> Plan:
    plan = build_plan(snapshot(policy, lifetime, **kw), history=HISTORY)  # type: ignore[arg-type]
    check_bounds(plan)
    return plan


def check_bounds(plan: Plan) -> None:
    d = plan.deals
    new = d["new_allocation"].to_numpy()
    assert plan.status is PlanStatus.OPTIMAL
    assert (d["lower_bound"].to_numpy() <= new).all()
    assert (new <= d["upper_bound"].to_numpy()).all()
    assert int(new.sum()) == plan.allocated <= plan.remaining_budget
    assert plan.unspendable == plan.remaining_budget - plan.allocated


def rows(plan: Plan) -> pd.DataFrame:
    return plan.deals.set_index("deal_id")


# --- the plan ---------------------------------------------------------------------------------


def test_forecasts_are_what_the_snapshot_declares() -> None:
    # Guards the premise of the tests below: capacities are the declared inventory (the capped
    # deal's is the seller's answer) and their sum is far below the remaining budget.
    plan = plan_of(Policy(beyond_forecast=0.0))
    d = rows(plan)
    assert d["capacity"].to_dict() == {**FORECAST, "capped": 1_500_000_000}
    assert plan.remaining_budget == 60 * B - SPENT
    assert int(d["capacity"].sum()) < FIRST_TOTAL < plan.remaining_budget


def test_without_beyond_forecast_the_rest_is_unspendable() -> None:
    plan = plan_of(Policy(beyond_forecast=0.0))
    d = rows(plan)
    assert d["new_allocation"].to_dict() == FIRST
    assert plan.allocated == FIRST_TOTAL
    assert plan.unspendable == plan.remaining_budget - FIRST_TOTAL == 40_500_000_000
    assert ReasonCode.BEYOND_FORECAST not in set(d["reason"])
    assert not d["rationale"].str.contains("cannot absorb").any()
    # The upper bounds are the forecast-capped ones.
    unlocked = d.index != "locked"
    assert (d["upper_bound"][unlocked] == d["capacity"][unlocked]).all()


def test_the_hedge_gives_buyer_paced_deals_their_forecast_again() -> None:
    plan = plan_of(HEDGE)  # beyond_forecast 1.0: up to 1 x forecast beyond it
    d = rows(plan)
    stretched = list(STRETCHABLE)
    # Far more is left than the room: each stretchable deal takes exactly 1 x its forecast more.
    for deal_id in stretched:
        assert d.at[deal_id, "new_allocation"] == 2 * FORECAST[deal_id], deal_id
        assert d.at[deal_id, "upper_bound"] == 2 * FORECAST[deal_id], deal_id
        assert d.at[deal_id, "reason"] == ReasonCode.BEYOND_FORECAST, deal_id
        assert "cannot absorb" in d.at[deal_id, "rationale"], deal_id
        assert f"{FORECAST[deal_id] // 10**6:,}.00 USD" in d.at[deal_id, "rationale"]
    extra = sum(FORECAST[deal_id] for deal_id in stretched)
    assert plan.allocated == FIRST_TOTAL + extra > int(d["capacity"].sum())
    assert plan.unspendable == plan.remaining_budget - FIRST_TOTAL - extra
    # Guaranteed (seller-paced), locked and seller-capped deals are not stretched.
    for deal_id in ("pg", "locked", "capped"):
        assert d.at[deal_id, "new_allocation"] == FIRST[deal_id], deal_id
        assert d.at[deal_id, "reason"] != ReasonCode.BEYOND_FORECAST, deal_id
        assert "cannot absorb" not in d.at[deal_id, "rationale"], deal_id
    assert d.at["pg", "upper_bound"] == FORECAST["pg"]
    assert d.at["capped", "upper_bound"] == FIRST["capped"]
    assert d.at["locked", "upper_bound"] == d.at["locked", "old_allocation"]
    assert plan.solver.objective_allocated == plan.allocated
    # The unspendable reason does not contradict what the plan placed.
    (why,) = [r for r in plan.unspendable_reasons if r.reason_code == "CAPACITY"]
    assert f"placed {extra // 10**6:,}.00 USD beyond them" in why.message


def test_by_default_the_rest_goes_too_as_far_as_the_limits_allow() -> None:
    """Beyond the hedge (one forecast more each, in proportion) the default (100 x forecast)
    places what is left as well: 40,500 USD is left after the forecasts, 13,500 more than
    twice them; each stretchable deal is stopped by its step limit (its 5,000 USD remaining
    may double in one plan), so the rest of the budget stays unspendable, reported as such."""
    plan = plan_of()
    d = rows(plan)
    hedge = rows(plan_of(HEDGE))
    for deal_id in STRETCHABLE:
        assert d.at[deal_id, "new_allocation"] == d.at[deal_id, "upper_bound"] == 10 * B, deal_id
        assert d.at[deal_id, "new_allocation"] > hedge.at[deal_id, "new_allocation"], deal_id
        assert d.at[deal_id, "reason"] == ReasonCode.BEYOND_FORECAST, deal_id
        assert d.at[deal_id, "step"] == 5 * B, deal_id  # what stops it: 5,000 + its step
        assert "cannot absorb" in d.at[deal_id, "rationale"], deal_id
    for deal_id in ("pg", "locked", "capped"):  # never stretched
        assert d.at[deal_id, "new_allocation"] == FIRST[deal_id], deal_id
    assert plan.allocated == FIRST_TOTAL - sum(FIRST[i] for i in STRETCHABLE) + 30 * B
    assert plan.unspendable == plan.remaining_budget - plan.allocated > 0


def test_what_is_left_after_the_hedge_is_split_in_proportion_to_the_forecasts() -> None:
    # 9,000 USD left beyond the forecasts (1,000 : 2,000 : 3,000): the hedge takes 6,000 (one
    # forecast each), the rest 3,000 in the same proportion (500 : 1,000 : 1,500), each within
    # a slice of its room.
    plan = plan_of(lifetime=SPENT + FIRST_TOTAL + 9 * B)
    d = rows(plan)
    assert plan.allocated == plan.remaining_budget and plan.unspendable == 0
    total = sum(FORECAST[i] for i in STRETCHABLE)
    for deal_id in STRETCHABLE:
        share = 3 * B * FORECAST[deal_id] // total
        beyond = int(d.at[deal_id, "new_allocation"]) - 2 * FORECAST[deal_id]
        assert abs(beyond - share) <= FORECAST[deal_id] // 4, (deal_id, beyond, share)


@pytest.mark.parametrize("ratio", [0.5, 0.25, 1.0, 2.0])
def test_the_ratio_caps_what_each_deal_takes_beyond_its_forecast(ratio: float) -> None:
    plan = plan_of(Policy(beyond_forecast=ratio))
    d = rows(plan)
    # Above 1 what the ratio leaves stays with the deals the plan would cut (each holds 5,000
    # remaining): pd (3,000 at 2 x) keeps its 5,000; pmp and open grow beyond it.
    kept = 5 * B if ratio > 1 else 0
    for deal_id in STRETCHABLE:
        beyond = math.floor(FORECAST[deal_id] * ratio)
        expected = max(FORECAST[deal_id] + beyond, kept)
        assert d.at[deal_id, "new_allocation"] == expected, deal_id
    extra = sum(max(math.floor(FORECAST[i] * (1 + ratio)), kept) - FORECAST[i] for i in STRETCHABLE)
    assert plan.allocated == FIRST_TOTAL + extra


def test_a_budget_just_above_the_forecasts_is_split_in_proportion() -> None:
    # 3,000 USD left after the forecast-capped solve, 6,000 of room (1,000 : 2,000 : 3,000):
    # each stretchable deal takes half its forecast more, and the whole budget is placed.
    lifetime = SPENT + FIRST_TOTAL + 3 * B
    plan = plan_of(lifetime=lifetime)
    d = rows(plan)
    assert plan.remaining_budget == FIRST_TOTAL + 3 * B
    assert plan.allocated == plan.remaining_budget and plan.unspendable == 0
    for deal_id in STRETCHABLE:
        assert d.at[deal_id, "new_allocation"] == FORECAST[deal_id] * 3 // 2, deal_id
        assert d.at[deal_id, "reason"] == ReasonCode.BEYOND_FORECAST
    for deal_id in ("pg", "locked", "capped"):
        assert d.at[deal_id, "new_allocation"] == FIRST[deal_id], deal_id


def test_forecasts_that_absorb_the_budget_leave_the_plan_as_before() -> None:
    lifetime = SPENT + FIRST_TOTAL  # exactly what the forecast-capped plan places
    on, off = plan_of(lifetime=lifetime), plan_of(Policy(beyond_forecast=0.0), lifetime=lifetime)
    pd.testing.assert_frame_equal(on.deals, off.deals)
    assert on.unspendable == off.unspendable == 0
    assert ReasonCode.BEYOND_FORECAST not in set(on.deals["reason"])


def test_a_seller_maximum_still_holds_beyond_the_forecasts() -> None:
    # Seller s3 (pmp, open: 2,000 delivered) may total 9,000: 7,000 remaining, 2,000 above the
    # forecasts of its deals (5,000), not the 5,000 the ratio would allow.
    def limit(msg: snapshot_pb2.CampaignSnapshot) -> None:
        (s3,) = [s for s in msg.sellers if s.seller_id == "s3"]
        s3.limits.max_total = 9 * B

    plan = plan_of(HEDGE, edit=limit)
    d = rows(plan)
    assert int(d.loc[["pmp", "open"], "new_allocation"].sum()) == 7 * B
    assert bool(plan.sellers.loc["s3", "binding"])
    assert plan.sellers.loc["s3", "new_allocation"] == 7 * B
    # Still in proportion (2 : 3) within a slice of room (room / 8).
    extra = d.loc[["pmp", "open"], "new_allocation"] - d.loc[["pmp", "open"], "capacity"]
    assert abs(int(extra["pmp"]) - 800_000_000) <= 2 * B // 8
    assert abs(int(extra["open"]) - 1_200_000_000) <= 3 * B // 8
    # The other seller's stretchable deal is unaffected.
    assert d.at["pd", "new_allocation"] == 2 * FORECAST["pd"]
    # What stops s3's deals now is the seller's maximum, not their forecast; and the second
    # solve's artificial slopes price nothing, so no dual is quoted for it.
    assert set(d.loc[["pmp", "open"], "binding"]) == {BindingKind.SELLER}
    assert d.at["pd", "binding"] == BindingKind.CAPACITY
    assert plan.sellers.loc["s3", "marginal_value"] == 0.0


def test_deal_maximum_and_step_limit_still_hold_beyond_the_forecasts() -> None:
    # pd may total 2,500 (1,500 remaining): it gets 500 beyond its forecast, not 1,000.
    def cap_pd(msg: snapshot_pb2.CampaignSnapshot) -> None:
        (pd_deal,) = [d for d in msg.deals if d.deal_id == "pd"]
        pd_deal.max_allocation = 2_500_000_000

    d = rows(plan_of(HEDGE, edit=cap_pd))
    assert d.at["pd", "new_allocation"] == d.at["pd", "upper_bound"] == 1_500_000_000
    assert d.at["open", "new_allocation"] == 2 * FORECAST["open"]
    # A step of 10% of the 5,000 remaining: no deal may end above 5,500, so "open" takes 2,500
    # beyond its forecast of 3,000 instead of 3,000.
    d = rows(plan_of(Policy(step_rel=0.1, step_abs=1, beyond_forecast=1.0)))
    assert d.at["open", "new_allocation"] == d.at["open", "upper_bound"] == 5_500_000_000
    assert d.at["pmp", "new_allocation"] == 2 * FORECAST["pmp"]
    assert d.at["pd", "new_allocation"] == 2 * FORECAST["pd"]


def test_the_encoded_plan_carries_the_new_reason_code() -> None:
    msg = encode_plan(plan_of())
    by_id = {d.deal_id: d for d in msg.deals}
    for deal_id in STRETCHABLE:
        assert by_id[deal_id].reason == plan_pb2.REASON_CODE_BEYOND_FORECAST
        assert by_id[deal_id].new_allocation > by_id[deal_id].capacity_forecast
    assert by_id["pg"].reason != plan_pb2.REASON_CODE_BEYOND_FORECAST


# --- the policy on the wire -------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1.0, -1e-9, 100.5, math.inf, math.nan])
def test_beyond_forecast_out_of_range_is_a_field_violation(value: float) -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(beyond_forecast=value), Policy(), errors)
    assert [v.field for v in errors.items] == ["policy.beyond_forecast"]
    assert ">= 0.0 and <= 100.0" in errors.items[0].description


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, 100.0])
def test_beyond_forecast_in_range_decodes_and_round_trips(value: float) -> None:
    errors = Violations()
    policy = decode_policy(policy_pb2.Policy(beyond_forecast=value), Policy(), errors)
    assert errors.items == [] and policy.beyond_forecast == value
    # encode -> decode keeps it, 0 included (an explicit 0 is not "unset"), against other
    # defaults, and every other field with it.
    original = Policy(beyond_forecast=value, step_rel=0.5)
    msg = encode_policy(original)
    assert msg.HasField("beyond_forecast") and msg.beyond_forecast == value
    back = decode_policy(msg, Policy(beyond_forecast=7.0), errors)
    assert errors.items == []
    assert back.beyond_forecast == value
    assert back == original


def test_unset_beyond_forecast_takes_the_server_default() -> None:
    errors = Violations()
    policy = decode_policy(policy_pb2.Policy(), Policy(beyond_forecast=3.0), errors)
    assert errors.items == [] and policy.beyond_forecast == 3.0
    assert Policy().beyond_forecast == 100.0


def test_replan_rejects_a_negative_beyond_forecast_with_invalid_argument(
    invalid: Callable[..., list[FieldViolation]],
) -> None:
    request = replan_request(
        build_snapshot(random_snapshot_spec(4, seed=7, n_sellers=2, n_channels=2, n_buckets=4))
    )
    request.policy.beyond_forecast = -1.0
    violations = invalid(request)
    assert [v.field for v in violations] == ["policy.beyond_forecast"]
    assert "-1.0" in violations[0].description


def test_replan_over_grpc_honours_beyond_forecast(stub: pb_grpc.ReallocatorServiceStub) -> None:
    request = replan_request(build_snapshot(spec()), dry_run=True)
    request.policy.beyond_forecast = 1.0
    default = stub.Replan(request, timeout=30).plan
    request.policy.beyond_forecast = 0.0
    off = stub.Replan(request, timeout=30).plan
    # No seller history over the wire here: "capped" is an ordinary stretchable deal too.
    stretchable = (*STRETCHABLE, "capped")
    extra = sum(FORECAST[i] for i in stretchable)
    first = FIRST_TOTAL - FIRST["capped"] + FORECAST["capped"]
    assert off.allocated == first and off.unspendable == off.remaining_budget - first
    assert default.allocated == first + extra
    reasons = {d.deal_id: d.reason for d in default.deals}
    assert {i for i, r in reasons.items() if r == plan_pb2.REASON_CODE_BEYOND_FORECAST} == set(
        stretchable
    )
    assert np.all([d.new_allocation <= d.upper_bound for d in default.deals])

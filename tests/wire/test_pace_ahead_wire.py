"""Pacing ahead on the wire: Policy.pace_ahead (range [1, 10], round trip, server default) and
the plan's DealAllocation.pacing, DeliverySchedule.pacing and hourly_ceiling, in-process and
over gRPC.

The snapshot: four deals booked 6,000 USD with 2,000 delivered and their own capacity forecasts
(supply.capacity_forecast): "bound", the most valuable buyer-paced deal, forecasts far less than
the plan has to give; "free" forecasts more than one step can move to it; "pg" is guaranteed."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from builders import (
    AS_OF,
    CAMPAIGN_START,
    DealSpec,
    RecentDelivery,
    SnapshotSpec,
    build_snapshot,
    random_snapshot_spec,
    replan_request,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import DealPacing, DeliverySchedule, Plan, ReasonCode
from reallocator.v1 import common_pb2, pacing_pb2, plan_pb2, policy_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2_grpc as pb_grpc
from reallocator.wire.plan import encode_plan, encode_schedule
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import FieldViolation, Violations

B = 10**9
ENUM = {
    DealPacing.CURVE.value: plan_pb2.DEAL_PACING_CURVE,
    DealPacing.AHEAD.value: plan_pb2.DEAL_PACING_AHEAD,
    DealPacing.SELLER.value: plan_pb2.DEAL_PACING_SELLER,
}

# --- the policy field ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [0.0, 0.5, 1.0 - 1e-9, 10.0 + 1e-9, 11.0, -1.0, math.inf, -math.inf, math.nan]
)
def test_pace_ahead_out_of_range_is_a_field_violation(value: float) -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(pace_ahead=value), Policy(), errors)
    assert [v.field for v in errors.items] == ["policy.pace_ahead"]
    assert ">= 1.0 and <= 10.0" in errors.items[0].description
    assert str(value) in errors.items[0].description


def test_the_violation_path_follows_the_message_path() -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(pace_ahead=0.5), Policy(), errors, path="request.policy")
    assert [v.field for v in errors.items] == ["request.policy.pace_ahead"]


def test_pace_ahead_violations_are_listed_with_the_others() -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(pace_ahead=20.0, beyond_forecast=-1.0), Policy(), errors)
    assert sorted(v.field for v in errors.items) == ["policy.beyond_forecast", "policy.pace_ahead"]


@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(st.sampled_from([1.0, 1.5, 10.0]), st.floats(1.0, 10.0, allow_nan=False)),
    default=st.floats(1.0, 10.0, allow_nan=False),
)
def test_pace_ahead_in_range_decodes_and_round_trips(value: float, default: float) -> None:
    errors = Violations()
    policy = decode_policy(policy_pb2.Policy(pace_ahead=value), Policy(), errors)
    assert errors.items == [] and policy.pace_ahead == value
    # encode -> decode keeps it exactly, against any server default, with every other field.
    original = Policy(pace_ahead=value, beyond_forecast=0.25, step_rel=0.5)
    msg = encode_policy(original)
    assert msg.HasField("pace_ahead") and msg.pace_ahead == value
    back = decode_policy(msg, Policy(pace_ahead=default), errors)
    assert errors.items == []
    assert back == original
    # ... and through the bytes.
    parsed = policy_pb2.Policy.FromString(msg.SerializeToString())
    assert decode_policy(parsed, Policy(pace_ahead=default), errors).pace_ahead == value


@pytest.mark.parametrize("value", [0.5, 11.0, math.nan])
def test_out_of_range_values_never_reach_an_accepted_policy(value: float) -> None:
    # A policy outside the range cannot be produced by the encoder's round trip unnoticed.
    errors = Violations()
    decode_policy(encode_policy(Policy(pace_ahead=value)), Policy(), errors)
    assert [v.field for v in errors.items] == ["policy.pace_ahead"]


def test_unset_pace_ahead_takes_the_server_default() -> None:
    errors = Violations()
    msg = policy_pb2.Policy()
    assert not msg.HasField("pace_ahead")
    assert decode_policy(msg, Policy(pace_ahead=3.0), errors).pace_ahead == 3.0
    assert decode_policy(msg, Policy(), errors).pace_ahead == Policy().pace_ahead == 2.0
    assert errors.items == []


def test_replan_rejects_an_out_of_range_pace_ahead(
    invalid: Callable[..., list[FieldViolation]],
) -> None:
    request = replan_request(
        build_snapshot(random_snapshot_spec(4, seed=7, n_sellers=2, n_channels=2, n_buckets=4))
    )
    request.policy.pace_ahead = 0.5
    violations = invalid(request)
    assert [v.field for v in violations] == ["policy.pace_ahead"]
    assert "0.5" in violations[0].description


# --- the plan -----------------------------------------------------------------------------------

HOURS = 24
FORECASTS = {"pg": 3 * B, "bound": 1 * B, "free": 50 * B, "open": 2 * B}


def deal(deal_id: str, deal_type: int, value: float) -> DealSpec:
    return DealSpec(
        deal_id=deal_id,
        seller_id="s1",
        channel_id="display",
        allocation=6 * B,
        spend_micros=2 * B,
        impressions=200_000,
        ecpm_micros=10_000_000,
        deal_type=deal_type,
        value_per_unit=value,
        status=common_pb2.DEAL_STATUS_ACTIVE,
        avails=1_000_000,
        bids=400_000,
        wins=200_000,
        participation_rate=0.5,
        capacity_forecast=FORECASTS[deal_id],
    )


def spec() -> SnapshotSpec:
    pacing = pacing_pb2.PacingTarget(
        budget_type=common_pb2.BUDGET_TYPE_SPEND,
        mode=common_pb2.PACING_MODE_EVEN,
        budgets=[pacing_pb2.Budget(period=common_pb2.PERIOD_LIFETIME, amount=32 * B)],
    )
    pacing.start_time.FromDatetime(CAMPAIGN_START)
    pacing.end_time.FromDatetime(AS_OF + timedelta(days=20))
    deals = (
        deal("pg", common_pb2.DEAL_TYPE_PROGRAMMATIC_GUARANTEED, 1.0),
        deal("bound", common_pb2.DEAL_TYPE_PREFERRED, 2.0),
        deal("free", common_pb2.DEAL_TYPE_PRIVATE_AUCTION, 1.0),
        deal("open", common_pb2.DEAL_TYPE_OPEN, 1.5),
    )
    imps = np.full((len(deals), HOURS), 800, dtype=np.int64)
    delivery = RecentDelivery(
        window_start=AS_OF - timedelta(hours=HOURS),
        bucket_width=timedelta(hours=1),
        spend_micros=np.full((len(deals), HOURS), 8_000_000, dtype=np.int64),
        impressions=imps,
        avails=imps * 5,
        wins=imps,
    )
    return SnapshotSpec(
        deals=deals,
        seller_ids=("s1",),
        channel_ids=("display",),
        pacing=pacing,
        delivery=delivery,
    )


def message() -> snapshot_pb2.CampaignSnapshot:
    msg: snapshot_pb2.CampaignSnapshot = build_snapshot(spec())
    return msg


def snapshot(policy: Policy | None = None) -> CampaignSnapshot:
    errors = Violations()
    out = decode_snapshot(message(), policy or Policy(), errors)
    assert out is not None, errors.items
    return out


def plan_of(policy: Policy | None = None) -> Plan:
    return build_plan(snapshot(policy))


def test_the_premise_some_deals_ahead_some_not() -> None:
    d = plan_of().deals.set_index("deal_id")
    assert d["capacity"].to_dict() == FORECASTS
    assert d.at["bound", "pacing"] == DealPacing.AHEAD.value
    assert d.at["free", "pacing"] == DealPacing.CURVE.value
    assert d.at["pg", "pacing"] == DealPacing.SELLER.value


@pytest.mark.parametrize("pace_ahead", [1.0, 1.5, 3.25])
def test_encoded_deals_carry_the_plan_pacing(pace_ahead: float) -> None:
    plan = plan_of(Policy(pace_ahead=pace_ahead))
    msg = encode_plan(plan)
    assert [d.deal_id for d in msg.deals] == plan.deals["deal_id"].tolist()
    want = [ENUM[p] for p in plan.deals["pacing"]]
    assert [d.pacing for d in msg.deals] == want
    assert plan_pb2.DEAL_PACING_UNSPECIFIED not in [d.pacing for d in msg.deals]
    ahead = [d.deal_id for d in msg.deals if d.pacing == plan_pb2.DEAL_PACING_AHEAD]
    if pace_ahead == 1.0:
        assert ahead == []
    else:
        assert "bound" in ahead
        for d in msg.deals:
            if d.pacing == plan_pb2.DEAL_PACING_AHEAD:
                assert d.new_allocation >= d.capacity_forecast and d.new_allocation > 0
    # Through the bytes, too.
    again = plan_pb2.Plan.FromString(msg.SerializeToString())
    assert [d.pacing for d in again.deals] == want


def check_schedule_message(m: plan_pb2.DeliverySchedule, s: DeliverySchedule) -> None:
    assert m.deal_id == s.deal_id
    assert m.pacing == ENUM[s.pacing.value]
    assert s.hourly_ceiling is not None
    assert list(m.hourly_ceiling) == s.hourly_ceiling.tolist()
    assert list(m.hourly_target) == s.hourly_target.tolist()
    assert len(m.hourly_ceiling) == len(m.hourly_target)
    assert all(c >= t for c, t in zip(m.hourly_ceiling, m.hourly_target, strict=True))
    assert m.throttle == s.throttle
    if m.pacing == plan_pb2.DEAL_PACING_AHEAD:
        assert m.throttle == 1.0
        assert "paced ahead up to" in m.rationale
    else:
        assert list(m.hourly_ceiling) == list(m.hourly_target)


@pytest.mark.parametrize("pace_ahead", [1.0, 1.5, 7.0])
def test_encoded_schedules_carry_pacing_and_ceilings(pace_ahead: float) -> None:
    plan = plan_of(Policy(pace_ahead=pace_ahead))
    msg = encode_plan(plan)
    assert len(msg.schedules) == len(plan.schedules) > 0
    for m, s in zip(msg.schedules, plan.schedules, strict=True):
        check_schedule_message(m, s)
    pacing = {d.deal_id: d.pacing for d in msg.deals}
    for m in msg.schedules:
        assert m.pacing == pacing[m.deal_id]  # the schedule agrees with the deal's row
    ahead = [m for m in msg.schedules if m.pacing == plan_pb2.DEAL_PACING_AHEAD]
    assert bool(ahead) == (pace_ahead > 1.0)
    for m in ahead:
        assert sum(m.hourly_ceiling) == pytest.approx(
            pace_ahead * sum(m.hourly_target), abs=pace_ahead / 2 + len(m.hourly_target)
        )


def test_a_schedule_without_a_ceiling_encodes_its_target_as_the_ceiling() -> None:
    s = DeliverySchedule(
        deal_id="d",
        window_start=AS_OF,
        hourly_target=np.array([3, 0, 5], dtype=np.int64),
        hourly_spend_micros=np.array([30, 0, 50], dtype=np.int64),
        throttle=0.5,
        reason=ReasonCode.PACING_SCHEDULE,
        rationale="r",
    )
    m = encode_schedule(s)
    assert s.pacing is DealPacing.CURVE and s.hourly_ceiling is None
    assert m.pacing == plan_pb2.DEAL_PACING_CURVE
    assert list(m.hourly_ceiling) == [3, 0, 5]


@pytest.mark.parametrize("mode", list(DealPacing))
def test_every_pacing_mode_has_its_enum_value(mode: DealPacing) -> None:
    ceiling = np.array([4, 1], dtype=np.int64)
    s = DeliverySchedule(
        deal_id="d",
        window_start=AS_OF,
        hourly_target=np.array([2, 1], dtype=np.int64),
        hourly_spend_micros=np.array([2, 1], dtype=np.int64),
        throttle=1.0,
        reason=ReasonCode.PACING_SCHEDULE,
        rationale="r",
        pacing=mode,
        hourly_ceiling=ceiling,
    )
    m = encode_schedule(s)
    assert plan_pb2.DealPacing.Name(m.pacing) == f"DEAL_PACING_{mode.value}"
    assert list(m.hourly_ceiling) == [4, 1]


def _by_id(msg: plan_pb2.Plan) -> dict[str, Any]:
    return {d.deal_id: d for d in msg.deals}


def test_replan_over_grpc_carries_pacing_and_honours_the_policy(
    stub: pb_grpc.ReallocatorServiceStub,
) -> None:
    request = replan_request(message(), dry_run=True)
    request.policy.pace_ahead = 2.0
    remote = stub.Replan(request, timeout=30).plan
    local = plan_of(Policy(pace_ahead=2.0))
    assert {d.deal_id: d.pacing for d in remote.deals} == {
        i: ENUM[p] for i, p in zip(local.deals["deal_id"], local.deals["pacing"], strict=True)
    }
    assert _by_id(remote)["bound"].pacing == plan_pb2.DEAL_PACING_AHEAD
    local_schedules = {s.deal_id: s for s in local.schedules}
    assert {m.deal_id for m in remote.schedules} == set(local_schedules)
    for m in remote.schedules:
        s = local_schedules[m.deal_id]
        assert m.pacing == ENUM[s.pacing.value]
        assert s.hourly_ceiling is not None
        assert list(m.hourly_ceiling) == s.hourly_ceiling.tolist()
        assert list(m.hourly_target) == s.hourly_target.tolist()
    # pace_ahead 1.0 over the wire: nobody ahead, every ceiling the target.
    request.policy.pace_ahead = 1.0
    flat = stub.Replan(request, timeout=30).plan
    assert plan_pb2.DEAL_PACING_AHEAD not in {d.pacing for d in flat.deals}
    assert all(list(m.hourly_ceiling) == list(m.hourly_target) for m in flat.schedules)
    # Unset: the server's default (2.0) paces the bound deal ahead again.
    request.policy.ClearField("pace_ahead")
    default = stub.Replan(request, timeout=30).plan
    assert _by_id(default)["bound"].pacing == plan_pb2.DEAL_PACING_AHEAD
    (s,) = [m for m in default.schedules if m.deal_id == "bound"]
    assert f"paced ahead up to {Policy().pace_ahead:.3g}x" in s.rationale

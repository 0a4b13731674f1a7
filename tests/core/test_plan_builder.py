"""build_plan end to end on the README's example campaign and on random snapshots."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import (
    BindingKind,
    Plan,
    PlanStatus,
    ReasonCode,
    RequestHistory,
    RequestKind,
)
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import snapshot_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def decode(msg: snapshot_pb2.CampaignSnapshot, policy: Policy | None = None) -> CampaignSnapshot:
    errors = Violations()
    snapshot = decode_snapshot(msg, policy or Policy(), errors)
    assert snapshot is not None, errors.items
    return snapshot


@pytest.fixture()
def example() -> CampaignSnapshot:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    return decode(request.snapshot)


def check_plan(plan: Plan) -> None:
    """Every bound and total holds on the returned plan, to the unit."""
    d = plan.deals
    new = d["new_allocation"].to_numpy()
    assert (new >= 0).all()
    if plan.status is not PlanStatus.NO_CHANGE:
        assert (new >= d["lower_bound"].to_numpy()).all()
        assert (new <= d["upper_bound"].to_numpy()).all()
    assert int(new.sum()) == plan.allocated <= plan.remaining_budget or (
        plan.status is PlanStatus.NO_CHANGE
    )
    assert (d["new_total"] == d["delivered"] + d["new_allocation"]).all()
    assert (d["delta"] == d["new_allocation"] - d["old_allocation"]).all()
    for frame, column in ((plan.sellers, "seller_id"), (plan.channels, "channel_id")):
        sums = d.groupby(column)["new_allocation"].sum()
        assert sums.reindex(frame.index).tolist() == frame["new_allocation"].tolist()
    assert set(d["binding"]) <= {k.value for k in BindingKind}
    assert set(d["reason"]) <= {r.value for r in ReasonCode}


def test_example_campaign_plan_reads_like_a_decision(example: CampaignSnapshot) -> None:
    plan = build_plan(example)
    check_plan(plan)
    assert plan.status is PlanStatus.OPTIMAL
    deals = plan.deals.set_index("deal_id")
    # The stalled audio deal forecasts nothing: its budget moves to deals that can deliver it.
    audio = deals.loc["audio-pmp-003"]
    assert audio["new_allocation"] == 0 and audio["reason"] == ReasonCode.STALLED
    assert audio["binding"] == BindingKind.CAPACITY
    assert "capacity forecast of 0.00 USD" in audio["rationale"]
    assert plan.allocated == plan.remaining_budget == 30_000_000_000 - 13_350_000_000
    # Only the programmatic-guaranteed deal gets a seller request; the others, schedules.
    assert {r.deal_id for r in plan.requests} == {"ctv-pg-001"}
    request = plan.requests[0]
    assert request.change_request["order_id"] == "SO-88121"
    assert request.change_request["idempotency_key"] == request.idempotency_key
    assert {s.deal_id for s in plan.schedules} <= {"display-pd-002", "audio-pmp-003"}
    assert "acme-holiday-2026" in plan.rationale.summary
    for text in deals["rationale"]:
        assert re.search(r"\d", text)


def test_identical_snapshots_give_identical_plans(example: CampaignSnapshot) -> None:
    a, b = build_plan(example), build_plan(example)
    pd.testing.assert_frame_equal(a.deals, b.deals)
    assert [r.idempotency_key for r in a.requests] == [r.idempotency_key for r in b.requests]


def test_no_change_when_nothing_is_confident_and_changes_are_small(
    example: CampaignSnapshot,
) -> None:
    policy = dataclasses.replace(
        example.policy,
        confidence_threshold=100.0,
        min_change=10**15,
        min_evidence_impressions=10**12,
    )
    plan = build_plan(dataclasses.replace(example, policy=policy))
    check_plan(plan)
    assert plan.status is PlanStatus.NO_CHANGE
    assert (plan.deals["delta"] == 0).all()
    assert plan.requests == () and plan.schedules == ()
    assert "minimum change" in plan.no_change_reason


def test_conflicting_constraints_are_rejected_with_the_conflict(
    example: CampaignSnapshot,
) -> None:
    # Each minimum fits its seller's deals, but together they need 8,100 + 9,250 = 17,350 USD
    # of the 16,650 USD left: both cannot hold.
    sellers = example.sellers.copy()
    sellers.loc["streamco", "min_total"] = 16_000_000_000.0
    sellers.loc["newsgroup", "min_total"] = 13_500_000_000.0
    with pytest.raises(PlanRejected) as info:
        build_plan(dataclasses.replace(example, sellers=sellers), relax=False)
    assert info.value.violations


def test_a_rejected_increase_caps_the_deal_at_its_current_plan(example: CampaignSnapshot) -> None:
    history = RequestHistory(
        pd.DataFrame(
            {
                "deal_id": ["display-pd-002"],
                "requested_at": [example.as_of.timestamp() - 3600],
                "kind": [RequestKind.INCREASE.value],
                "target_total": [20_000_000_000],
                "response": ["REJECTED"],
                "accepted_total": [0],
            }
        )
    )
    plan = build_plan(example, history=history)
    check_plan(plan)
    display = plan.deals.set_index("deal_id").loc["display-pd-002"]
    assert display["new_allocation"] <= display["old_allocation"]
    assert display["capacity"] == display["old_allocation"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 60), seed=st.integers(0, 5_000))
def test_random_snapshots_give_verified_plans_or_a_named_conflict(n: int, seed: int) -> None:
    snapshot = decode(build_snapshot(random_snapshot_spec(n, seed, n_buckets=6), "columns"))
    try:
        plan = build_plan(snapshot, relax=False)
    except PlanRejected as exc:
        assert exc.violations and all(v.message for v in exc.violations)
        return
    check_plan(plan)
    changed = plan.deals["delta"].to_numpy() != 0
    assert all(re.search(r"\d", t) for t in plan.deals["rationale"][changed])
    assert np.isfinite(plan.deals["marginal_value"]).all()

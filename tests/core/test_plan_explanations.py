"""Every deal's codes and text agree with its numbers, on random plans (hypothesis)."""

from __future__ import annotations

import numpy as np
from builders import build_snapshot, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import BindingKind, Plan, PlanStatus, ReasonCode
from reallocator.core.plan.text import amount
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

STOP_WORDS = {
    BindingKind.CAPACITY: "capped by its capacity forecast",
    BindingKind.DEAL_MAX: "capped by its maximum allocation",
    BindingKind.STEP: "step limit",
    BindingKind.LOCKED: "locked",
    BindingKind.DEAL_MIN: "minimum allocation",
    BindingKind.BUDGET: "remaining budget is fully placed",
    BindingKind.SELLER: "seller ",
    BindingKind.CHANNEL: "channel ",
}


def random_plan(seed: int, n_deals: int, min_change: int, confidence: float) -> Plan | None:
    spec = random_snapshot_spec(n_deals, seed, n_buckets=(0, 6, 48)[seed % 3])
    errors = Violations()
    policy = Policy(min_change=min_change, confidence_threshold=confidence)
    snapshot = decode_snapshot(build_snapshot(spec, "columns"), policy, errors)
    assert snapshot is not None, errors.items
    try:
        return build_plan(snapshot)
    except PlanRejected:
        return None


plans = st.builds(
    random_plan,
    seed=st.integers(0, 10_000),
    n_deals=st.integers(1, 80),
    min_change=st.sampled_from([0, 10**6, 10**13]),
    confidence=st.sampled_from([60.0, 100.0]),
)


def check_deals_agree(plan: Plan) -> None:
    d = plan.deals
    for delta, reason, binding, text in zip(
        d["delta"].tolist(),
        d["reason"].tolist(),
        d["binding"].tolist(),
        d["rationale"].tolist(),
        strict=True,
    ):
        assert (reason == ReasonCode.UNCHANGED) == (delta == 0), (reason, delta, text)
        if delta == 0:
            assert text.startswith("unchanged") and " -> " not in text, text
        else:
            assert text.startswith("+" if delta > 0 else "-"), (delta, text)
            assert f": {reason.lower().replace('_', ' ')}" in text, (reason, text)
        if binding != BindingKind.NONE and reason != ReasonCode.BEYOND_FORECAST:
            assert STOP_WORDS[BindingKind(binding)] in text, (binding, text)


def check_summary_agrees(plan: Plan) -> None:
    """The summary's moved, released and added budget are the deals' changes."""
    summary = plan.rationale.summary
    delta = plan.deals["delta"].to_numpy()
    increase, decrease = int(delta[delta > 0].sum()), int(-delta[delta < 0].sum())
    moved = min(increase, decrease)
    bt, cur = plan.budget_type, plan.currency
    assert (f"moves {amount(moved, bt, cur)} from" in summary) == (moved > 0), summary
    released = f"releases {amount(decrease - moved, bt, cur)} from"
    assert (released in summary) == (decrease > moved), summary
    added = f"adds {amount(increase - moved, bt, cur)} of unplaced"
    assert (added in summary) == (increase > moved), summary
    assert "moves 0.00" not in summary


def check_groups_agree(plan: Plan) -> None:
    for frame in (plan.sellers, plan.channels):
        idle = ~frame["binding"].to_numpy(bool)
        assert (frame["marginal_value"].to_numpy()[idle] == 0).all(), frame


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_codes_text_and_numbers_agree(plan: Plan | None) -> None:
    if plan is None:
        return
    check_deals_agree(plan)
    check_groups_agree(plan)
    if plan.status is not PlanStatus.NO_CHANGE:
        check_summary_agrees(plan)
    if plan.status is PlanStatus.NO_CHANGE:
        d = plan.deals
        assert (d["delta"] == 0).all()
        assert set(d["binding"]) <= {BindingKind.NONE, BindingKind.LOCKED}
        assert not plan.requests and not plan.schedules
        assert (plan.sellers["marginal_value"] == 0).all()
        assert not plan.sellers["binding"].any() and not plan.channels["binding"].any()


def test_a_no_change_plan_explains_no_move() -> None:
    """Seeds whose solver moved budget the gate then kept: the rows say so, not the moves."""
    found = 0
    for seed in range(40):
        plan = random_plan(seed, 30, min_change=10**13, confidence=100.0)
        if plan is None or plan.status is not PlanStatus.NO_CHANGE:
            continue
        found += 1
        check_deals_agree(plan)
        texts = plan.deals["rationale"].tolist()
        assert all(t.startswith("unchanged at ") for t in texts), texts
        locked = plan.deals["binding"].to_numpy() == BindingKind.LOCKED
        assert np.array_equal(["locked" in t for t in texts], locked)
    assert found >= 3

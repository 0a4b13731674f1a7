"""What a plan says agrees with its numbers, for any plan: every deal's reason code with its
own verdict and move, its binding constraint with where it stopped, its words with both; groups
claim a marginal value only where a limit binds; the summary's figures add up. Properties over
random campaigns and policies, plus the cases found wrong before."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from builders import DealSpec, SnapshotSpec, build_snapshot, lifetime_pacing, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import Budget, BudgetType, CampaignSnapshot, DealStatus, Period, Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import BindingKind, Plan, PlanStatus, ReasonCode
from reallocator.core.plan.text import amount, amounts, rates, where
from reallocator.wire.plan import encode_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

GIVES = {
    ReasonCode.UNDER_DELIVERY,
    ReasonCode.OVER_DELIVERY,
    ReasonCode.CAPACITY_SHORTFALL,
    ReasonCode.MAXIMUM_REACHED,
    ReasonCode.LOWER_VALUE,
}
TAKES = {ReasonCode.HIGHER_VALUE, ReasonCode.REDISTRIBUTED, ReasonCode.MINIMUM_REQUIRED}


def _snapshot(n: int, seed: int, **policy: object) -> CampaignSnapshot:
    errors = Violations()
    msg = build_snapshot(random_snapshot_spec(n, seed), "deals")
    snapshot = decode_snapshot(msg, dataclasses.replace(Policy(), **policy), errors)
    assert snapshot is not None, errors.items
    return snapshot


def check_words_agree(plan: Plan) -> None:
    d = plan.deals
    bt, cur = plan.budget_type, plan.currency
    for row in d.itertuples(index=False):
        reason, binding, delta = ReasonCode(row.reason), BindingKind(row.binding), row.delta
        where = f"{row.deal_id}: {reason}/{binding} delta {delta}: {row.rationale}"
        assert (reason is ReasonCode.UNCHANGED) == (delta == 0), where
        if reason in GIVES:
            assert delta < 0, where
        if reason in TAKES:
            assert delta > 0, where
        if reason is ReasonCode.UNDER_DELIVERY:
            assert row.pacing_status == "UNDER", where
        if reason is ReasonCode.OVER_DELIVERY:
            assert row.pacing_status == "OVER", where
        if reason is ReasonCode.STALLED:
            assert row.pacing_status == "STALLED", where
        if reason is ReasonCode.CAPACITY_SHORTFALL:  # the shortfall is most of the cut
            assert row.old_allocation - row.capacity >= row.capacity - row.new_allocation, where
        if binding is BindingKind.STEP:
            assert abs(delta) == row.step, where
            assert f"the step limit of {amount(row.step, bt, cur)}" in row.rationale, where
        if binding is BindingKind.ZERO:
            assert row.new_allocation == 0 and "cut to nothing" in row.rationale, where
        if binding is BindingKind.CAPACITY and reason is not ReasonCode.BEYOND_FORECAST:
            assert f"capacity forecast of {amount(row.capacity, bt, cur)}" in row.rationale, where
        text = row.rationale
        if delta > 0:
            assert text.startswith(f"+{amount(delta, bt, cur)} "), where
        elif delta < 0:
            assert text.startswith(f"-{amount(-delta, bt, cur)} "), where
        else:
            assert text.startswith("unchanged"), where
        verdict = re.search(r"pacing \d+% \((\w+)\)", text)
        if verdict:
            assert verdict.group(1) == row.pacing_status, where
        # The words never name a verdict the deal does not have.
        for other in ("OVER", "UNDER", "STALLED", "ON_PACE"):
            if other != row.pacing_status:
                assert f"({other})" not in text, where


def check_groups_and_summary(plan: Plan) -> None:
    for frame in (plan.sellers, plan.channels):
        idle = ~frame["binding"].to_numpy(bool)
        assert (frame["marginal_value"].to_numpy()[idle] == 0).all()
    delta = plan.deals["delta"].to_numpy()
    moved = min(int(delta[delta > 0].sum()), int(-delta[delta < 0].sum()))
    summary = plan.rationale.summary
    if plan.status is not PlanStatus.NO_CHANGE and moved:
        assert f"moves {amount(moved, plan.budget_type, plan.currency)} from" in summary
    assert "moves 0.00" not in summary


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 100_000),
    n=st.integers(2, 80),
    step_rel=st.sampled_from([0.05, 0.3, 1.0]),
    churn=st.sampled_from([0.0, 0.05]),
    pace_ahead=st.sampled_from([1.0, 2.0]),
)
def test_every_plan_says_what_its_numbers_say(
    seed: int, n: int, step_rel: float, churn: float, pace_ahead: float
) -> None:
    snapshot = _snapshot(n, seed, step_rel=step_rel, churn_deal=churn, pace_ahead=pace_ahead)
    plan = build_plan(snapshot)
    check_words_agree(plan)
    check_groups_and_summary(plan)


def test_a_deal_cut_far_below_its_forecast_is_cut_for_value_not_for_a_shortfall() -> None:
    """Two on-pace deals of one campaign: the low-valued one's forecast is 10 % under what it
    holds, the other has room for both. The plan moves all of it: most of that cut is below
    the forecast, so it is said to go to a deal worth more, not to a capacity shortfall."""
    m = 1_000_000
    low, high = (
        DealSpec(
            deal_id,
            seller,
            "c1",
            allocation=1000 * m,
            spend_micros=333 * m,
            impressions=100_000,
            ecpm_micros=4 * m,
            value_per_unit=value,
            capacity_forecast=forecast * m,
        )
        for deal_id, seller, value, forecast in (("low", "s1", 0.5, 600), ("high", "s2", 2.0, 5000))
    )
    spec = SnapshotSpec(
        deals=(low, high), seller_ids=("s1", "s2"), channel_ids=("c1",),
        pacing=lifetime_pacing(2000 * m),
    )  # fmt: skip
    errors = Violations()
    snapshot = decode_snapshot(build_snapshot(spec, "deals"), Policy(step_rel=1.0), errors)
    assert snapshot is not None, errors.items
    plan = build_plan(snapshot)
    row = plan.deals.set_index("deal_id").loc["low"]
    assert (row.old_allocation, row.capacity, row.new_allocation) == (667 * m, 600 * m, 0)
    assert row.reason == "LOWER_VALUE"
    assert row.rationale.startswith("-667.00 USD (667.00 USD -> 0.00 USD remaining): moved to")
    check_words_agree(plan)
    nearly = dataclasses.replace(
        spec, deals=(dataclasses.replace(low, capacity_forecast=300 * m), high)
    )
    snapshot = decode_snapshot(build_snapshot(nearly, "deals"), Policy(step_rel=1.0), errors)
    assert snapshot is not None, errors.items
    row = build_plan(snapshot).deals.set_index("deal_id").loc["low"]
    assert (row.new_allocation, row.reason) == (0, "CAPACITY_SHORTFALL")  # 367 of the 667


def test_a_no_change_plan_explains_no_move() -> None:
    plan = build_plan(_snapshot(30, 500, confidence_threshold=100.0, min_change=10**15))
    assert plan.status is PlanStatus.NO_CHANGE
    assert set(plan.deals["reason"]) == {"UNCHANGED"}
    assert set(plan.deals["binding"]) <= {"NONE", "LOCKED"}
    locked = plan.deals["binding"] == "LOCKED"
    assert (plan.deals.loc[~locked, "rationale"] == "unchanged").all()
    assert plan.deals.loc[locked, "rationale"].str.endswith("locked: not moved").all()
    assert (plan.deals["marginal_value"] == 0).all()
    check_words_agree(plan)


def _unmeetable(snapshot: CampaignSnapshot) -> CampaignSnapshot:
    """A seller minimum above everything its deals could ever take (the whole campaign's
    booked allocation x 10)."""
    sellers = snapshot.sellers.copy()
    first = sellers.index[0]
    sellers.loc[first, "min_total"] = float(snapshot.deals["allocation"].sum() * 10)
    return dataclasses.replace(snapshot, sellers=sellers)


def test_a_broken_commitment_is_in_the_summary() -> None:
    snapshot = _unmeetable(_snapshot(40, 7))
    plan = build_plan(snapshot)
    assert plan.status is PlanStatus.OPTIMAL
    first = snapshot.sellers.index[0]
    assert f"Broken commitment: the minimum of seller {first}" in plan.rationale.summary
    assert any(u.reason_code == "MINIMUM_BEYOND_CAPACITY" for u in plan.unspendable_reasons)
    (alert,) = plan.alerts
    assert (str(alert.reason), str(alert.severity), alert.entity_id) == (
        "BROKEN_COMMITMENT",
        "CRITICAL",
        first,
    )
    msg = encode_plan(plan, deals="none")
    assert [(a.reason_code, a.entity.id) for a in msg.alerts] == [("BROKEN_COMMITMENT", first)]
    assert not build_plan(_snapshot(40, 7)).alerts  # none where every minimum can be met


def test_a_broken_commitment_can_be_rejected_or_relaxed_instead_of_capped() -> None:
    snapshot = _unmeetable(_snapshot(40, 7, cap_unmeetable_minimums=False))
    first = snapshot.sellers.index[0]
    with pytest.raises(PlanRejected) as info:
        build_plan(snapshot, relax=False)
    assert [v.constraint for v in info.value.violations] == [f"seller/{first}/min_total"]
    assert str(info.value).count("constraints conflict") == 1
    relaxed = build_plan(snapshot, relax=True)
    assert relaxed.status is PlanStatus.RELAXED
    (violation,) = relaxed.violations
    assert violation.constraint == f"seller/{first}/min_total" and violation.relaxation > 0
    capped = build_plan(dataclasses.replace(snapshot, policy=Policy()))
    np.testing.assert_array_equal(
        relaxed.deals["new_allocation"].to_numpy(), capped.deals["new_allocation"].to_numpy()
    )


def test_a_deal_cut_to_nothing_was_stopped_by_zero_not_the_step() -> None:
    snapshot = _snapshot(40, 3)
    deals = snapshot.deals.copy()
    # Every deal could take its whole booking again (the caller's own forecast, all live); deal 0 is
    # worth nothing next to the others, so it gives all it holds.
    deals["capacity_forecast"] = deals["allocation"] * 2
    deals["value_per_unit"] = 10.0
    deals.loc[0, "value_per_unit"] = 0.001
    deals.loc[0, "min_allocation"] = 0
    deals.loc[0, "locked"] = False
    deals["status"] = int(DealStatus.ACTIVE)  # a paused or ended deal forecasts nothing
    # No budget beyond what the deals hold: what deal 0 gives is what the others take.
    held = int(np.maximum(deals["allocation"] - deals["spend_micros"], 0).sum())
    total = int(deals["spend_micros"].sum()) + held
    pacing = dataclasses.replace(snapshot.pacing, budgets=(Budget(Period.LIFETIME, total),))
    plan = build_plan(dataclasses.replace(snapshot, deals=deals, pacing=pacing))
    row = plan.deals.iloc[0]
    assert row["new_allocation"] == 0 < row["old_allocation"], row.to_dict()
    assert row["binding"] == "ZERO" and row["rationale"].endswith("cut to nothing")
    assert row["reason"] in {r.value for r in GIVES}
    check_words_agree(plan)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e15, 1e15) | st.just(float("nan")), st.booleans()),
        max_size=30,
    ),
    st.sampled_from(list(BudgetType)),
)
def test_figures_are_formatted_only_where_a_sentence_shows_them(
    rows: list[tuple[float, bool]], budget_type: BudgetType
) -> None:
    values = np.array([v for v, _ in rows], dtype=np.float64)
    used = np.array([u for _, u in rows], dtype=bool)
    for render in (amounts, rates):
        got = where(render, values, used, budget_type, "EUR")
        full = render(values, budget_type, "EUR")
        assert got == [t if u else "" for t, u in zip(full, used.tolist(), strict=True)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.integers(1, 10**12)), min_size=1, max_size=30))
def test_weighted_mean_is_numpys_average(pairs: list[tuple[float, int]]) -> None:
    from reallocator.core.plan.explain import _weighted_mean

    values = np.array([v for v, _ in pairs], dtype=np.float64)
    weights = np.array([w for _, w in pairs], dtype=np.int64)
    assert _weighted_mean(values, weights) == float(np.average(values, weights=weights))

"""Pacing ahead (Policy.pace_ahead, DealPacing AHEAD): which deals are paced ahead
(`pacing_modes`), their schedules (throttle 1.0, an hourly ceiling of pace_ahead x the exact
hourly share, rounded up, never below the target) and the plan's "pacing" column.

The plan snapshot: five deals, each booked 6,000 USD with 2,000 delivered, a 40,000 USD lifetime
budget (30,000 left), and the caller's own capacity forecasts (`build_plan(forecast=...)`, method
"given"): "bound" (the most valuable buyer-paced deal) forecasts 1,000 USD, far below what it
could take, so the plan gives it all its forecast or more; "free" forecasts 50,000 USD, more than
the plan can move to it in one step; "open" forecasts 2,000 USD below the 4,000 it holds;
"paused" is not live; "pg" is guaranteed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import (
    AS_OF,
    DealSpec,
    RecentDelivery,
    SnapshotSpec,
    build_snapshot,
    lifetime_pacing,
    random_snapshot_spec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.engine.forecast import METHODS
from reallocator.core.model import (
    Budget,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DealType,
    PacingSpec,
    Period,
    Policy,
)
from reallocator.core.pacing.curves import build_curve
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import DealPacing, DeliverySchedule, Plan, PlanStatus
from reallocator.core.plan.schedule import ScheduleInputs, derive_schedules, pacing_modes
from reallocator.v1 import common_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

B = 10**9  # 1,000 USD in micros
PG, PD, PMP, OPEN = (
    DealType.PROGRAMMATIC_GUARANTEED,
    DealType.PREFERRED,
    DealType.PRIVATE_AUCTION,
    DealType.OPEN,
)
ACTIVE, PAUSED, ENDED = DealStatus.ACTIVE, DealStatus.PAUSED, DealStatus.ENDED
SUPPLY = ("rate", "declared", "given")  # forecast methods that measure supply
AHEAD, CURVE, SELLER = DealPacing.AHEAD.value, DealPacing.CURVE.value, DealPacing.SELLER.value


def expected_mode(
    deal_type: int, status: int, x: int, capacity: int, method: str, pace_ahead: float
) -> str:
    """The documented rule, one deal at a time."""
    if deal_type == PG:
        return SELLER
    if pace_ahead > 1.0 and status == ACTIVE and method in SUPPLY and x > 0 and x >= capacity:
        return AHEAD
    return CURVE


def modes(*rows: tuple[int, int, int, int, str], pace_ahead: float = 1.5) -> list[str]:
    """pacing_modes over rows of (deal_type, status, new_allocation, capacity, method)."""
    t, s, x, c, m = zip(*rows, strict=True)
    out = pacing_modes(
        np.array(t, np.int64),
        np.array(s, np.int64),
        np.array(x, np.int64),
        np.array(c, np.int64),
        np.array(m, dtype=object),
        pace_ahead,
    )
    assert len(out) == len(rows)
    return [str(v) for v in out]


# --- pacing_modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", SUPPLY)
@pytest.mark.parametrize("deal_type", [PD, PMP, OPEN])
def test_a_live_buyer_deal_given_its_supply_forecast_is_ahead(deal_type: int, method: str) -> None:
    assert modes(
        (deal_type, ACTIVE, 1_000, 1_000, method),  # exactly its forecast
        (deal_type, ACTIVE, 1_001, 1_000, method),  # beyond it
        (deal_type, ACTIVE, 5, 0, method),  # a forecast of 0: anything given is beyond it
        (deal_type, ACTIVE, 999, 1_000, method),  # one unit short: on the curve
    ) == [AHEAD, AHEAD, AHEAD, CURVE]


@pytest.mark.parametrize("method", ["booked", "stalled", "inactive", "", "unknown"])
def test_fallback_capacities_never_pace_ahead(method: str) -> None:
    # The booked fallback (too little evidence), a stalled or inactive deal: nothing says the
    # deal is supply-bound, however much the plan gives it.
    assert modes(
        (PD, ACTIVE, 1_000, 1_000, method),
        (OPEN, ACTIVE, 10**12, 1, method),
    ) == [CURVE, CURVE]


@pytest.mark.parametrize("status", [PAUSED, ENDED, 0])
def test_only_active_deals_pace_ahead(status: int) -> None:
    assert modes((PD, status, 2_000, 1_000, "given"), (PD, ACTIVE, 2_000, 1_000, "given")) == [
        CURVE,
        AHEAD,
    ]


def test_a_deal_given_nothing_is_not_ahead() -> None:
    assert modes((PD, ACTIVE, 0, 0, "rate"), (OPEN, ACTIVE, 0, 0, "given")) == [CURVE, CURVE]


@pytest.mark.parametrize("pace_ahead", [1.0, 0.5, 0.0])
def test_pace_ahead_of_one_or_less_keeps_every_deal_on_the_curve(pace_ahead: float) -> None:
    rows = [(PD, ACTIVE, 2_000, 1_000, "given"), (OPEN, ACTIVE, 10, 0, "rate")]
    assert modes(*rows, pace_ahead=pace_ahead) == [CURVE, CURVE]
    assert modes(*rows, pace_ahead=1.0 + 1e-9) == [AHEAD, AHEAD]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("status", [ACTIVE, PAUSED, ENDED])
def test_guaranteed_deals_are_always_seller_paced(status: int, method: str) -> None:
    assert modes(
        (PG, status, 2_000, 1_000, method),
        (PG, status, 0, 1_000, method),
        pace_ahead=10.0,
    ) == [SELLER, SELLER]


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from([int(t) for t in DealType]),
            st.integers(0, 3),
            st.integers(0, 10**15),
            st.integers(0, 10**15),
            st.sampled_from([*METHODS, ""]),
        ),
        min_size=0,
        max_size=40,
    ),
    near=st.lists(st.integers(-2, 2), min_size=40, max_size=40),
    pace_ahead=st.one_of(st.just(1.0), st.floats(0.0, 10.0, allow_nan=False)),
)
def test_vectorised_modes_match_the_rule_per_deal(
    data: list[tuple[int, int, int, int, str]], near: list[int], pace_ahead: float
) -> None:
    # Half the rows get an allocation within 2 units of the capacity, where the boundary is.
    rows = [
        (t, s, max(0, c + near[i]) if i % 2 else x, c, m) for i, (t, s, x, c, m) in enumerate(data)
    ]
    if not rows:
        empty = np.array([], np.int64)
        out = pacing_modes(empty, empty, empty, empty, np.array([], object), pace_ahead)
        assert len(out) == 0
        return
    assert modes(*rows, pace_ahead=pace_ahead) == [
        expected_mode(*row, pace_ahead=pace_ahead) for row in rows
    ]


# --- derive_schedules with pacing ----------------------------------------------------------------

T0 = datetime(2026, 3, 2, 5, tzinfo=UTC)  # Monday 00:00 in New York
T1 = T0 + timedelta(days=14)
CURVE_NY = build_curve(
    PacingSpec(
        budget_type=BudgetType.IMPRESSIONS,
        start=T0,
        end=T1,
        catch_up_fraction=1.0,
        budgets=(Budget(Period.LIFETIME, 1_000_000),),
    ),
    "America/New_York",
)


def schedule_inputs(n: int, as_of: datetime, window: timedelta, **kw: Any) -> ScheduleInputs:
    base: dict[str, Any] = {
        "deal_id": [f"D{i}" for i in range(n)],
        "seller_id": [f"S{i}" for i in range(n)],
        "deal_type": [OPEN] * n,
        "deal_status": [ACTIVE] * n,
        "pacing_status": ["ON_PACE"] * n,
        "old_allocation": [10_000] * n,
        "new_allocation": [10_000] * n,
        "current_rate": [50.0] * n,
        "participation_rate": [0.5] * n,
        "cost_per_unit": [2_000.0] * n,
        "as_of": as_of,
        "window_end": as_of + window,
        "horizon_end": T1,
        "budget_type": BudgetType.IMPRESSIONS,
        "currency": "USD",
        "timezone": "America/New_York",
    }
    base.update(kw)
    return ScheduleInputs(**base)


def check_ahead_schedule(s: DeliverySchedule, ratio: float) -> None:
    """Throttle 1.0; per hour target <= ceiling, and the ceiling is ceil(ratio x the exact share)
    where the exact share is within a unit of the (largest-remainder) target."""
    assert s.pacing is DealPacing.AHEAD
    assert s.throttle == 1.0
    assert s.hourly_ceiling is not None
    target = s.hourly_target.astype(np.float64)
    ceiling = s.hourly_ceiling
    assert ceiling.shape == s.hourly_target.shape
    assert ceiling.dtype == np.int64
    assert np.all(ceiling >= s.hourly_target)
    assert np.all(ceiling <= np.ceil(ratio * (target + 1.0)))
    assert np.all(ceiling >= ratio * (target - 1.0) - 1e-6)
    total, hours = float(ceiling.sum()), ceiling.size
    assert ratio * (target.sum() - 0.5) - 1e-6 <= total <= ratio * (target.sum() + 0.5) + hours
    assert f"paced ahead up to {ratio:.3g}x, throttle 1.00" in s.rationale


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 8),
    data=st.data(),
    offset_minutes=st.integers(0, 13 * 24 * 60),
    window_hours=st.integers(1, 72),
    pace_ahead=st.floats(1.0, 10.0, allow_nan=False),
)
def test_ahead_schedules_open_fully_under_a_ceiling(
    n: int, data: st.DataObject, offset_minutes: int, window_hours: int, pace_ahead: float
) -> None:
    as_of = T0 + timedelta(minutes=offset_minutes)
    alloc = st.integers(0, 10**9)
    kw: dict[str, Any] = {
        "deal_type": data.draw(
            st.lists(st.sampled_from([PG, PD, PMP, OPEN]), min_size=n, max_size=n)
        ),
        "deal_status": data.draw(
            st.lists(st.sampled_from([ACTIVE, ACTIVE, PAUSED]), min_size=n, max_size=n)
        ),
        "pacing_status": data.draw(
            st.lists(st.sampled_from(["ON_PACE", "UNDER", "OVER"]), min_size=n, max_size=n)
        ),
        "old_allocation": data.draw(st.lists(alloc, min_size=n, max_size=n)),
        "new_allocation": data.draw(st.lists(alloc, min_size=n, max_size=n)),
        "current_rate": data.draw(
            st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e7)), min_size=n, max_size=n)
        ),
    }
    pacing = data.draw(st.lists(st.sampled_from([AHEAD, CURVE]), min_size=n, max_size=n))
    policy = Policy(pace_ahead=pace_ahead)
    window = timedelta(hours=window_hours)
    on = derive_schedules(schedule_inputs(n, as_of, window, pacing=pacing, **kw), CURVE_NY, policy)
    off = derive_schedules(schedule_inputs(n, as_of, window, **kw), CURVE_NY, policy)
    by_id = {s.deal_id: s for s in on}
    before = {s.deal_id: s for s in off}
    for i in range(n):
        deal_id = f"D{i}"
        buyer_live = kw["deal_type"][i] != PG and kw["deal_status"][i] == ACTIVE
        if pacing[i] == AHEAD and buyer_live:
            # Changed or not, worth changing or not: an AHEAD deal gets its ceiling.
            assert deal_id in by_id
            s = by_id[deal_id]
            check_ahead_schedule(s, pace_ahead)
            if deal_id in before:  # the targets are the curve's, as without pacing ahead
                assert np.array_equal(s.hourly_target, before[deal_id].hourly_target)
                assert np.array_equal(s.hourly_spend_micros, before[deal_id].hourly_spend_micros)
            assert int(s.hourly_target.sum()) <= kw["new_allocation"][i]
        elif pacing[i] == AHEAD:
            assert deal_id not in by_id  # guaranteed or not live: nothing to pace
        else:
            # A deal on the curve is scheduled exactly as without the feature.
            assert (deal_id in by_id) == (deal_id in before)
            if deal_id in by_id:
                s, b = by_id[deal_id], before[deal_id]
                assert s.pacing is DealPacing.CURVE
                assert s.hourly_ceiling is not None
                assert np.array_equal(s.hourly_ceiling, s.hourly_target)
                assert np.array_equal(s.hourly_target, b.hourly_target)
                assert s.throttle == b.throttle and s.rationale == b.rationale
                assert "paced ahead" not in s.rationale
    assert all(s.pacing is DealPacing.CURVE for s in off)


def test_an_unchanged_on_pace_deal_gets_a_schedule_only_when_ahead() -> None:
    # 168 opportunity hours left at the recent rate exactly: nothing would re-pace it.
    as_of = T0 + timedelta(days=7)
    kw: dict[str, Any] = {"new_allocation": [16_800] * 2, "old_allocation": [16_800] * 2}
    kw["current_rate"] = [100.0] * 2
    inputs = schedule_inputs(2, as_of, timedelta(hours=6), pacing=[CURVE, AHEAD], **kw)
    (s,) = derive_schedules(inputs, CURVE_NY, Policy(pace_ahead=2.0))
    assert s.deal_id == "D1"
    check_ahead_schedule(s, 2.0)
    assert int(s.hourly_target.sum()) > 0
    assert "its allocation stays at 16,800 impressions" in s.rationale


# --- the plan ---------------------------------------------------------------------------------

IDS = ("pg", "bound", "free", "open", "paused")
FORECAST = np.array([3 * B, 1 * B, 50 * B, 2 * B, 1 * B], dtype=np.int64)
HOURS = 24


def deal(deal_id: str, deal_type: int, value: float, **kw: Any) -> DealSpec:
    base: dict[str, Any] = {
        "deal_id": deal_id,
        "seller_id": "s1" if deal_type == PG else "s2",
        "channel_id": "display",
        "allocation": 6 * B,
        "spend_micros": 2 * B,
        "impressions": 200_000,
        "ecpm_micros": 10_000_000,
        "deal_type": int(deal_type),
        "value_per_unit": value,
        "status": common_pb2.DEAL_STATUS_ACTIVE,
        "avails": 1_000_000,
        "bids": 400_000,
        "wins": 200_000,
        "participation_rate": 0.5,
    }
    base.update(kw)
    return DealSpec(**base)


def recent(n: int, per_hour_micros: int = 8_000_000) -> RecentDelivery:
    imps = np.full((n, HOURS), 800, dtype=np.int64)
    return RecentDelivery(
        window_start=AS_OF - timedelta(hours=HOURS),
        bucket_width=timedelta(hours=1),
        spend_micros=np.full((n, HOURS), per_hour_micros, dtype=np.int64),
        impressions=imps,
        avails=imps * 5,
        wins=imps,
    )


def decode(spec: SnapshotSpec, policy: Policy | None = None) -> CampaignSnapshot:
    errors = Violations()
    out = decode_snapshot(build_snapshot(spec), policy or Policy(), errors)
    assert out is not None, errors.items
    return out


def plan_spec() -> SnapshotSpec:
    deals = (
        deal("pg", PG, 1.0),
        deal("bound", PD, 2.0),
        deal("free", PMP, 1.0),
        deal("open", OPEN, 1.5),
        deal("paused", PD, 3.0, status=common_pb2.DEAL_STATUS_PAUSED),
    )
    return SnapshotSpec(
        deals=deals,
        seller_ids=("s1", "s2"),
        channel_ids=("display",),
        pacing=lifetime_pacing(40 * B, end=AS_OF + timedelta(days=20)),
        delivery=recent(len(deals)),
    )


def plan_of(policy: Policy | None = None) -> Plan:
    plan = build_plan(decode(plan_spec(), policy), forecast=FORECAST)
    assert plan.deals["deal_id"].tolist() == list(IDS)
    return plan


def check_pacing_column(plan: Plan, snapshot: CampaignSnapshot, method: str = "given") -> None:
    """The plan's pacing column is the rule applied to the plan's own allocation."""
    d, deals = plan.deals, snapshot.deals
    want = [
        expected_mode(t, s, x, c, method, snapshot.policy.pace_ahead)
        for t, s, x, c in zip(
            deals["deal_type"].tolist(),
            deals["status"].tolist(),
            d["new_allocation"].tolist(),
            d["capacity"].tolist(),
            strict=True,
        )
    ]
    assert d["pacing"].tolist() == want


def at(d: pd.DataFrame, deal_id: str, column: str) -> Any:
    """One cell of a plan's deals frame indexed by deal id."""
    return d.at[deal_id, column]


def schedules(plan: Plan) -> dict[str, DeliverySchedule]:
    return {s.deal_id: s for s in plan.schedules}


@pytest.mark.parametrize("pace_ahead", [1.5, 1.01, 4.0, 10.0])
def test_the_capacity_bound_deal_is_paced_ahead(pace_ahead: float) -> None:
    policy = Policy(pace_ahead=pace_ahead)
    plan = plan_of(policy)
    assert plan.status is PlanStatus.OPTIMAL
    d = plan.deals.set_index("deal_id")
    # The caller's forecast, as given, but for the paused deal: it forecasts nothing.
    given = np.where(d.index == "paused", 0, FORECAST)
    assert (d["capacity"].to_numpy() == given).all()
    # The premise: the most valuable buyer deal gets at least all of its small forecast.
    bound = d.loc["bound"]
    assert bound["new_allocation"] >= bound["capacity"] > 0
    assert bound["pacing"] == AHEAD
    s = schedules(plan)["bound"]
    check_ahead_schedule_spend(s, pace_ahead)
    # A buyer deal the plan does not give all its forecast stays on the curve.
    free = d.loc["free"]
    assert 0 < free["new_allocation"] < free["capacity"]
    assert free["pacing"] == CURVE
    if "free" in schedules(plan):
        f = schedules(plan)["free"]
        assert f.pacing is DealPacing.CURVE and "paced ahead" not in f.rationale
        assert f.hourly_ceiling is not None
        assert np.array_equal(f.hourly_ceiling, f.hourly_target)
    assert at(d, "pg", "pacing") == SELLER and "pg" not in schedules(plan)
    assert at(d, "paused", "pacing") == CURVE and "paused" not in schedules(plan)
    check_pacing_column(plan, decode(plan_spec(), policy))
    # Every schedule agrees with its deal's row.
    for deal_id, s in schedules(plan).items():
        assert s.pacing.value == d.at[deal_id, "pacing"]


def check_ahead_schedule_spend(s: DeliverySchedule, ratio: float) -> None:
    """check_ahead_schedule for a SPEND budget (amounts in USD)."""
    assert s.pacing is DealPacing.AHEAD and s.throttle == 1.0
    assert s.hourly_ceiling is not None
    target, ceiling = s.hourly_target, s.hourly_ceiling
    assert ceiling.shape == target.shape == (6,)  # the default 6 h window, as_of on the hour
    assert np.all(ceiling >= target)
    assert np.all(ceiling <= np.ceil(ratio * (target + 1.0)))
    assert np.all(ceiling >= ratio * (target - 1.0) - 1e-6)
    assert int(target.sum()) > 0
    assert ceiling.sum() == pytest.approx(ratio * target.sum(), abs=ratio / 2 + ceiling.size)
    assert f"paced ahead up to {ratio:.3g}x, throttle 1.00" in s.rationale


def test_an_unchanged_ahead_deal_still_gets_its_ceiling() -> None:
    hedge = Policy(beyond_forecast=1.0)  # no budget beyond one forecast more: "open" stays
    plan = plan_of(hedge)
    d = plan.deals.set_index("deal_id")
    # "open" holds 4,000 USD, twice its forecast: the plan leaves it, and it is paced ahead.
    assert at(d, "open", "delta") == 0
    assert at(d, "open", "new_allocation") >= at(d, "open", "capacity")
    assert at(d, "open", "pacing") == AHEAD
    check_ahead_schedule_spend(schedules(plan)["open"], Policy().pace_ahead)
    # Without pacing ahead nothing asks for a schedule for it.
    assert "open" not in schedules(plan_of(dataclasses.replace(hedge, pace_ahead=1.0)))


def test_at_exactly_its_forecast_a_deal_is_ahead() -> None:
    # No budget beyond the forecasts: "bound" gets exactly its forecast.
    plan = plan_of(Policy(beyond_forecast=0.0))
    d = plan.deals.set_index("deal_id")
    assert at(d, "bound", "new_allocation") == at(d, "bound", "capacity") == FORECAST[1]
    assert at(d, "bound", "pacing") == AHEAD
    check_ahead_schedule_spend(schedules(plan)["bound"], Policy().pace_ahead)


def test_pace_ahead_one_keeps_every_deal_on_the_curve() -> None:
    plan = plan_of(Policy(pace_ahead=1.0))
    d = plan.deals.set_index("deal_id")
    assert at(d, "bound", "new_allocation") >= at(d, "bound", "capacity")  # still supply-bound
    assert AHEAD not in set(d["pacing"])
    assert at(d, "pg", "pacing") == SELLER
    for s in plan.schedules:
        assert s.pacing is DealPacing.CURVE
        assert s.hourly_ceiling is not None and np.array_equal(s.hourly_ceiling, s.hourly_target)
        assert "paced ahead" not in s.rationale
    # The allocation itself does not depend on pacing ahead.
    default = plan_of()
    assert d["new_allocation"].tolist() == default.deals["new_allocation"].tolist()
    # Nor do the targets of the deals scheduled both ways.
    ahead = schedules(default)
    for deal_id, s in schedules(plan).items():
        assert np.array_equal(s.hourly_target, ahead[deal_id].hourly_target)


def test_the_booked_fallback_is_not_paced_ahead() -> None:
    # Without the caller's forecasts and with too little evidence, every capacity falls back to
    # the booked remainder: the valuable deal may get all of it or more, yet it stays on the curve.
    policy = Policy(min_evidence_impressions=10**12)
    snapshot = decode(plan_spec(), policy)
    plan = build_plan(snapshot)
    d = plan.deals.set_index("deal_id")
    remaining = 4 * B  # booked 6,000, delivered 2,000
    assert at(d, "bound", "capacity") == remaining
    assert at(d, "bound", "new_allocation") >= at(d, "bound", "capacity") > 0
    assert AHEAD not in set(d["pacing"])
    assert all(s.pacing is DealPacing.CURVE for s in plan.schedules)
    check_pacing_column(plan, snapshot, method="booked")


def test_a_no_change_plan_paces_ahead_only_deals_given_their_forecast() -> None:
    # Nothing is confident and no change is worth making: the plan keeps every allocation. The
    # pacing column must describe the allocation the plan keeps: "bound" keeps 4,000 USD, below
    # a forecast of 5,000, so it is not given all its supply and must not read AHEAD.
    policy = Policy(confidence_threshold=100.0, min_change=10**15)
    forecast = FORECAST.copy()
    forecast[1] = 5 * B
    snapshot = decode(plan_spec(), policy)
    plan = build_plan(snapshot, forecast=forecast)
    assert plan.status is PlanStatus.NO_CHANGE
    d = plan.deals.set_index("deal_id")
    assert at(d, "bound", "new_allocation") == 4 * B < at(d, "bound", "capacity")
    assert at(d, "bound", "pacing") == CURVE
    check_pacing_column(plan, snapshot)


def test_every_ahead_deal_gets_a_schedule_even_after_delivering_its_allocation() -> None:
    # Three hours before the end, "done" has delivered all its 2,000 USD on schedule (pacing
    # status COMPLETED); the plan gives it more than its 1,000 USD forecast, so it reads AHEAD -
    # and an AHEAD deal must come with its schedule (the ceiling is the instruction).
    deals = (
        deal("done", PD, 3.0, allocation=2 * B, spend_micros=2 * B),
        deal("other", PD, 1.0),
    )
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("s2",),
        channel_ids=("display",),
        pacing=lifetime_pacing(12 * B, end=AS_OF + timedelta(hours=3)),
        delivery=recent(len(deals)),
    )
    plan = build_plan(decode(spec), forecast=np.array([1 * B, 1 * B]))
    assert plan.status is not PlanStatus.NO_CHANGE
    d = plan.deals.set_index("deal_id")
    ahead = set(d.index[d["pacing"] == AHEAD])
    assert "done" in ahead  # given 2,000 USD >= its 1,000 forecast
    missing = ahead - set(schedules(plan))
    assert not missing, f"AHEAD deals without a schedule: {sorted(missing)}"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 10_000),
    pace_ahead=st.floats(1.0, 10.0, allow_nan=False),
)
def test_random_plans_pace_ahead_consistently(n: int, seed: int, pace_ahead: float) -> None:
    spec = random_snapshot_spec(n, seed, n_buckets=6)
    snapshot = decode(spec, Policy(pace_ahead=pace_ahead))
    # Half the time, the caller's own forecasts for every deal (method "given").
    forecast = None
    if seed % 2:
        rng = np.random.default_rng(seed)
        forecast = rng.integers(0, 10**10, n)
    try:
        plan = build_plan(snapshot, forecast=forecast)
    except PlanRejected:
        return
    d = plan.deals
    deals = snapshot.deals
    types, status = deals["deal_type"].to_numpy(), deals["status"].to_numpy()
    new, cap = d["new_allocation"].to_numpy(), d["capacity"].to_numpy()
    pacing = d["pacing"].to_numpy(dtype=object)
    assert set(pacing) <= {AHEAD, CURVE, SELLER}
    assert ((pacing == SELLER) == (types == PG)).all()
    ahead = pacing == AHEAD
    assert (types[ahead] != PG).all() and (status[ahead] == ACTIVE).all()
    if plan.status is not PlanStatus.NO_CHANGE:
        assert (new[ahead] > 0).all() and (new[ahead] >= cap[ahead]).all()
    if pace_ahead == 1.0:
        assert not ahead.any()
    if forecast is not None and plan.status is not PlanStatus.NO_CHANGE:
        # Every capacity is the caller's: the rule decides every deal exactly (a NO_CHANGE plan
        # has its own test above).
        check_pacing_column(plan, snapshot)
    rows = {deal_id: i for i, deal_id in enumerate(d["deal_id"].tolist())}
    for s in plan.schedules:
        i = rows[s.deal_id]
        assert s.pacing.value == pacing[i]
        assert s.hourly_ceiling is not None
        if s.pacing is DealPacing.AHEAD:
            assert s.throttle == 1.0 and np.all(s.hourly_ceiling >= s.hourly_target)
            assert "paced ahead up to" in s.rationale
        else:
            assert np.array_equal(s.hourly_ceiling, s.hourly_target)


def test_the_default_paces_ahead_at_two() -> None:
    assert Policy().pace_ahead == 2.0
    assert dataclasses.replace(Policy(), pace_ahead=2.5).pace_ahead == 2.5

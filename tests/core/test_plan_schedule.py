"""Buyer-side delivery schedules: which deals, hourly shape (dayparts, local hours, DST, curve vs
traffic), exact integer sums, spend, and the throttle."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reallocator.core.model import (
    Budget,
    BudgetType,
    DealStatus,
    DealType,
    PacingMode,
    PacingSpec,
    Period,
    Policy,
    table_of,
)
from reallocator.core.pacing.assessment import PacingStatus
from reallocator.core.pacing.curves import PacingCurve, build_curve, deal_expected
from reallocator.core.plan import schedule
from reallocator.core.plan.model import DealPacing, ReasonCode
from reallocator.core.plan.schedule import (
    ScheduleInputs,
    _largest_remainder,
    _ranked_bumps,
    _schedule_reasons,
    _sorted_bumps,
    derive_schedules,
    floor_to_local_hour,
    hourly_profile,
    largest_remainder,
    pacing_column,
    throttle,
)

NY = "America/New_York"
T0 = datetime(2026, 3, 2, 5, tzinfo=UTC)  # Monday 00:00 in New York
T1 = T0 + timedelta(days=14)
POLICY = Policy()


def spec(**kw: Any) -> PacingSpec:
    base: dict[str, Any] = {
        "budget_type": BudgetType.IMPRESSIONS,
        "start": T0,
        "end": T1,
        "catch_up_fraction": 1.0,
        "budgets": (Budget(Period.LIFETIME, 1_000_000),),
    }
    base.update(kw)
    return PacingSpec(**base)


def office_hours() -> np.ndarray:
    mask = np.zeros((7, 24), dtype=bool)
    mask[:, 9:17] = True
    return mask


def inputs(curve: PacingCurve, as_of: datetime, n: int = 1, **kw: Any) -> ScheduleInputs:
    """n open-auction deals at 100 units per opportunity hour, allocation 10,000 -> 20,000."""
    base: dict[str, Any] = {
        "deal_id": [f"D{i}" for i in range(n)],
        "seller_id": [f"S{i}" for i in range(n)],
        "deal_type": [DealType.OPEN] * n,
        "deal_status": [DealStatus.ACTIVE] * n,
        "pacing_status": ["UNDER"] * n,
        "old_allocation": [10_000] * n,
        "new_allocation": [20_000] * n,
        "current_rate": [100.0] * n,
        "participation_rate": [0.5] * n,
        "cost_per_unit": [2_000.0] * n,  # micros per impression: a 2 USD CPM
        "as_of": as_of,
        "window_end": as_of + timedelta(hours=48),
        "horizon_end": T1,
        "budget_type": BudgetType.IMPRESSIONS,
        "currency": "USD",
        "timezone": curve.calendar.timezone,
    }
    base.update(kw)
    return ScheduleInputs(**base)


def test_inputs_keep_a_read_only_text_column_and_copy_one_that_can_change() -> None:
    """A read-only column that owns its memory (a plan's shared read) is kept as it is; a
    writable one, or a read-only view of a writable one, is copied: editing the caller's array
    afterwards changes nothing."""
    curve = build_curve(spec(), "UTC")
    frozen = np.array(["D0", "D1"], dtype=object)
    frozen.flags.writeable = False
    owner = np.array(["S0", "S1"], dtype=object)
    view = owner[:]
    view.flags.writeable = False
    status = np.array(["UNDER", "UNDER"], dtype=object)
    inp = inputs(
        curve, T0 + timedelta(days=7), n=2, deal_id=frozen, seller_id=view, pacing_status=status
    )
    assert inp.deal_id is frozen
    assert inp.seller_id is not view and inp.pacing_status is not status
    owner[0] = "changed"
    status[0] = "changed"
    assert inp.seller_id.tolist() == ["S0", "S1"]
    assert inp.pacing_status.tolist() == ["UNDER", "UNDER"]


def local_hours(start: datetime, n: int, tz: str) -> list[int]:
    zone = ZoneInfo(tz)
    return [(start + timedelta(hours=k)).astimezone(zone).hour for k in range(n)]


# --- shape --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["curve", "opportunity"])
def test_targets_follow_local_dayparts_across_a_dst_change(shape: str) -> None:
    curve = build_curve(spec(daypart=office_hours()), NY)
    as_of = datetime(2026, 3, 7, 20, 40, tzinfo=UTC)  # Sat 15:40 EST; DST starts Sun 2am
    inp = inputs(curve, as_of, new_allocation=[20_000])
    (sched,) = derive_schedules(inp, curve, POLICY, shape=shape)  # type: ignore[arg-type]
    assert sched.window_start == datetime(2026, 3, 7, 20, tzinfo=UTC)  # 15:00 EST
    n = sched.hourly_target.size
    assert n == 49  # 15:00 Saturday to 16:40 Monday (local), one hour lost to DST
    hours = local_hours(sched.window_start, n, NY)
    inside = np.array([9 <= h < 17 for h in hours])
    assert np.all(sched.hourly_target[~inside] == 0)
    assert np.all(sched.hourly_target[inside] > 0)
    # Hour 0 counts only from as_of (20 of its 60 minutes); later office hours are full.
    full = sched.hourly_target[inside][1]
    assert sched.hourly_target[0] == pytest.approx(full / 3, abs=1)
    assert hours[:2] == [15, 16] and hours[-1] == 16
    # The window total is the window's share of the allocation, to the unit.
    prof = hourly_profile(curve, as_of, inp.window_end, T1, NY, shape)  # type: ignore[arg-type]
    assert int(sched.hourly_target.sum()) == round(20_000 * prof.share.sum())
    assert sched.hourly_spend_micros.tolist() == (sched.hourly_target * 2_000).tolist()


def test_local_hours_with_a_half_hour_offset() -> None:
    at = datetime(2026, 3, 4, 10, 10, tzinfo=UTC)  # 15:40 in Kolkata (+05:30)
    assert floor_to_local_hour(at, "Asia/Kolkata") == datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
    assert floor_to_local_hour(at, "UTC") == datetime(2026, 3, 4, 10, tzinfo=UTC)
    curve = build_curve(spec(daypart=office_hours()), "Asia/Kolkata")
    (sched,) = derive_schedules(inputs(curve, at), curve, POLICY)
    hours = local_hours(sched.window_start, sched.hourly_target.size, "Asia/Kolkata")
    inside = np.array([9 <= h < 17 for h in hours])
    assert np.all(sched.hourly_target[~inside] == 0) and np.all(sched.hourly_target[inside] > 0)


def test_a_window_covering_the_horizon_schedules_the_whole_allocation() -> None:
    curve = build_curve(spec(daypart=office_hours()), NY)
    as_of = T1 - timedelta(days=2, minutes=17)
    inp = inputs(curve, as_of, 3, new_allocation=[12_345, 7, 0], window_end=T1 + timedelta(days=1))
    scheds = derive_schedules(inp, curve, POLICY)
    assert [int(s.hourly_target.sum()) for s in scheds] == [12_345, 7, 0]
    assert all(s.hourly_target.min() >= 0 for s in scheds)
    assert scheds[2].throttle == 0.0  # dropped to zero: stop bidding


def test_curve_shape_matches_what_the_assessment_expects_after_the_plan() -> None:
    curve = build_curve(spec(mode=PacingMode.FRONT_LOADED, daypart=office_hours()), NY)
    as_of = T0 + timedelta(days=3, hours=7, minutes=13)
    inp = inputs(curve, as_of, new_allocation=[500_000])
    (sched,) = derive_schedules(inp, curve, POLICY)
    horizon = curve.horizon_at(as_of)
    t0, t1 = as_of.timestamp(), inp.window_end.timestamp()
    restart = deal_expected(
        curve,
        horizon,
        np.array([t1]),
        np.array([500_000.0]),
        np.array([t0]),
        np.array([0.0]),
    )
    assert int(sched.hourly_target.sum()) == pytest.approx(float(restart[0]), abs=1.0)


def test_curve_versus_traffic_shape_under_custom_weights() -> None:
    weights = np.ones(24)
    weights[12:14] = 3.0  # lunchtime traffic peak
    curve = build_curve(spec(custom_weights=weights, daypart=office_hours()), NY)
    as_of = datetime(2026, 3, 4, 14, tzinfo=UTC)  # Wednesday 09:00 EST
    inp = inputs(curve, as_of, new_allocation=[140_000], window_end=as_of + timedelta(hours=8))
    (even,) = derive_schedules(inp, curve, POLICY, shape="curve")
    (traffic,) = derive_schedules(inp, curve, POLICY, shape="opportunity")
    assert np.ptp(even.hourly_target) <= 1  # EVEN mode: every active hour alike
    peak, quiet = traffic.hourly_target[3], traffic.hourly_target[0]  # 12:00 vs 09:00
    assert peak == pytest.approx(3 * quiet, abs=2)


def test_asap_falls_back_to_the_traffic_shape() -> None:
    curve = build_curve(spec(mode=PacingMode.ASAP, daypart=office_hours()), NY)
    as_of = datetime(2026, 3, 4, 14, tzinfo=UTC)
    prof = hourly_profile(curve, as_of, as_of + timedelta(hours=24), T1, NY)
    assert prof.shape == "opportunity"
    assert prof.share[:8] == pytest.approx(np.full(8, prof.share[0]))
    assert np.all(prof.share[8:] == 0)  # 17:00 to 09:00 local: outside the daypart


# --- which deals ----------------------------------------------------------------------------------


def test_only_buyer_paced_live_deals_that_change_get_a_schedule() -> None:
    curve = build_curve(spec(), "UTC")
    as_of = T0 + timedelta(days=7)  # 168 opportunity hours left
    remaining = 168.0
    per_hour = 10_000 / remaining
    inp = inputs(
        curve,
        as_of,
        7,
        deal_type=[
            DealType.PROGRAMMATIC_GUARANTEED,
            DealType.PREFERRED,
            DealType.PRIVATE_AUCTION,
            DealType.OPEN,
            DealType.OPEN,
            DealType.OPEN,
            DealType.OPEN,
        ],
        deal_status=[DealStatus.ACTIVE] * 5 + [DealStatus.PAUSED, DealStatus.ACTIVE],
        pacing_status=["ON_PACE"] * 6 + ["COMPLETED"],
        old_allocation=[10_000] * 7,
        new_allocation=[20_000, 20_000, 10_000, 10_000, 10_000, 20_000, 0],
        current_rate=[per_hour, per_hour, per_hour, per_hour * 1.5, per_hour * 1.05, 0, 0],
    )
    ids = [s.deal_id for s in derive_schedules(inp, curve, POLICY)]
    # PG: a seller request instead; D2 unchanged and on pace; D4 within tolerance; paused; done
    # and given nothing more.
    assert ids == ["D1", "D3"]
    revived = replace(
        inp, new_allocation=np.array([20_000, 20_000, 10_000, 10_000, 10_000, 20_000, 20_000])
    )
    ids = [s.deal_id for s in derive_schedules(revived, curve, POLICY)]
    assert ids == ["D1", "D3", "D6"]  # done, but the plan gives it more: it must deliver again


def test_min_change_applies_to_schedules() -> None:
    curve = build_curve(spec(), "UTC")
    as_of = T0 + timedelta(days=7)
    inp = inputs(curve, as_of, current_rate=[10_000 / 168.0], new_allocation=[10_500])
    assert len(derive_schedules(inp, curve, POLICY)) == 1  # allocation changed by 500
    assert derive_schedules(inp, curve, replace(POLICY, min_change=501)) == ()


def test_reason_and_rationale() -> None:
    curve = build_curve(spec(), "UTC")
    as_of = T0 + timedelta(days=7)
    inp = inputs(
        curve,
        as_of,
        3,
        pacing_status=["UNDER", "ON_PACE", "STALLED"],
        plan_reason=["UNDER_DELIVERY", "HIGHER_VALUE", "STALLED"],
    )
    scheds = derive_schedules(inp, curve, POLICY)
    assert [s.reason for s in scheds] == [
        ReasonCode.UNDER_DELIVERY,
        ReasonCode.HIGHER_VALUE,
        ReasonCode.STALLED,
    ]
    text = scheds[0].rationale
    assert text.startswith("Deal D0 (seller S0) is delivering 100.0 impressions/h")
    assert "its allocation moves from 10,000 impressions to 20,000 impressions" in text
    assert "over the next 48 h" in text and "was 0.50" in text


# --- throttle ---------------------------------------------------------------------------------


def test_throttle_math() -> None:
    p = np.array([0.5, np.nan, 0.5, 0.5, 0.5, 0.8, np.nan])
    req = np.array([50.0, 50.0, 400.0, 50.0, 0.0, 10.0, 10.0])
    obs = np.array([100.0, 100.0, 100.0, 0.0, 100.0, np.nan, 0.0])
    assert throttle(p, req, obs).tolist() == pytest.approx([0.25, 0.5, 1.0, 1.0, 0.0, 1.0, 1.0])


def test_schedule_throttle_uses_the_window_rate() -> None:
    curve = build_curve(spec(), "UTC")  # no dayparts: every hour is one opportunity hour
    as_of = T0 + timedelta(days=7)
    inp = inputs(curve, as_of, new_allocation=[16_800], current_rate=[200.0])
    (sched,) = derive_schedules(inp, curve, POLICY)
    # Needs 100/h where 200/h came at participation 0.5: bid on a quarter of auctions.
    assert sched.throttle == pytest.approx(0.25)
    assert sched.hourly_target.tolist() == [100] * 48


def test_spend_follows_cost_per_unit_and_is_identical_for_spend_budgets() -> None:
    curve = build_curve(spec(budget_type=BudgetType.SPEND), "UTC")
    as_of = T0 + timedelta(days=7)
    inp = inputs(curve, as_of, budget_type=BudgetType.SPEND, cost_per_unit=[np.nan])
    (sched,) = derive_schedules(inp, curve, POLICY)
    assert sched.hourly_spend_micros.tolist() == sched.hourly_target.tolist()
    curve_i = build_curve(spec(), "UTC")
    (unknown,) = derive_schedules(inputs(curve_i, as_of, cost_per_unit=[np.nan]), curve_i, POLICY)
    assert unknown.hourly_spend_micros.sum() == 0


# --- largest remainder ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(0.0, 1e9, allow_nan=False),
    )
)
def test_largest_remainder_sums_exactly_and_stays_within_a_unit(exact: np.ndarray) -> None:
    out = largest_remainder(exact)
    assert out.dtype == np.int64
    assert out.sum(axis=1).tolist() == np.rint(exact.sum(axis=1)).astype(np.int64).tolist()
    assert np.all(out >= np.floor(exact)) and np.all(out <= np.ceil(exact))
    assert np.all(out[exact == 0] == 0)


def _largest_remainder_by_put(exact: np.ndarray) -> np.ndarray:
    """The formulation before einsum's row sums and the flat scatter (the reference)."""
    x = np.maximum(np.asarray(exact, dtype=np.float64), 0.0)
    base = np.floor(x)
    frac = x - base
    total = np.rint(x.sum(axis=1))
    positive = frac > 0
    deficit = np.clip(total - base.sum(axis=1), 0, positive.sum(axis=1)).astype(np.int64)
    order = np.argsort(np.where(positive, -frac, 1.0), axis=1, kind="stable")
    bump = np.empty(x.shape, dtype=bool)
    np.put_along_axis(bump, order, np.arange(x.shape[1])[None, :] < deficit[:, None], axis=1)
    out: np.ndarray = base.astype(np.int64) + bump
    return out


_REMAINDER_VALUES = st.sampled_from(
    [0.0, -0.0, -1.5, 0.25, 0.5, 0.75, 1.5, 2.25, 3.5, 7.0, 1e9 + 0.5, 2.0**53, 3e17 + 0.5]
)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and inf cast to int64, both ways
@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=30),
        elements=_REMAINDER_VALUES | st.floats(allow_nan=True, allow_infinity=True),
    ),
    st.lists(st.sampled_from([0.0, 0.1, 0.125, 1 / 3, 0.5]), min_size=1, max_size=30),
    st.lists(st.integers(0, 10**7) | st.sampled_from([2**53, 2**62]), min_size=1, max_size=40),
)
def test_largest_remainder_gives_the_integers_of_the_sort_by_row(
    exact: np.ndarray, share: list[float], new: list[int]
) -> None:
    """Ties (equal remainders: many in a row, as equal hourly shares make them), negatives,
    NaN, inf and sums past 2**52: the same integers as the stable argsort and put_along_axis."""
    np.testing.assert_array_equal(largest_remainder(exact), _largest_remainder_by_put(exact))
    shares = np.asarray(new, dtype=np.float64)[:, None] * np.asarray(share)[None, :]
    np.testing.assert_array_equal(largest_remainder(shares), _largest_remainder_by_put(shares))
    for matrix in (exact, shares):  # the row sums it gives with them are theirs
        out, sums = _largest_remainder(matrix)
        assert sums.dtype == np.int64
        np.testing.assert_array_equal(sums, out.sum(axis=1))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=30),
        elements=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5]),
    )
)
def test_ranked_and_sorted_bumps_pick_the_same_hours(exact: np.ndarray) -> None:
    """Pairwise ranks (up to 24 hours) and the stable sort pick the same hours, ties (equal
    remainders, many here) to the earlier hour."""
    frac = exact - np.floor(exact)
    positive = frac > 0
    deficit = np.clip(
        np.rint(exact.sum(axis=1)) - np.floor(exact).sum(axis=1), 0, positive.sum(axis=1)
    ).astype(np.int64)
    np.testing.assert_array_equal(
        _ranked_bumps(frac, positive, deficit).T, _sorted_bumps(frac, positive, deficit)
    )


def test_window_must_end_after_as_of() -> None:
    curve = build_curve(spec(), "UTC")
    with pytest.raises(ValueError, match="window_end"):
        inputs(curve, T0 + timedelta(days=1), window_end=T0 + timedelta(days=1))


_STATUSES = [s.value for s in PacingStatus] + list(PacingStatus)
_REASONS = ["", *[r.value for r in ReasonCode], *ReasonCode, np.str_("LOWER_VALUE")]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(_STATUSES), min_size=0, max_size=40),
    st.lists(st.sampled_from(_REASONS), min_size=40, max_size=40) | st.none(),
    st.data(),
)
def test_a_schedules_reason_is_its_verdict_else_the_plans_reason_else_the_schedule(
    status: list[Any], reasons: list[Any] | None, data: st.DataObject
) -> None:
    """Decided per distinct value (pacing verdicts and reasons may arrive as enum members,
    numpy strings or str): the same words as the row-by-row rule, always plain str."""
    n = len(status)
    pick = np.asarray(
        data.draw(st.lists(st.integers(0, 39), min_size=n, max_size=n)), dtype=np.int64
    )
    plan_reason = None if reasons is None else np.asarray(reasons, dtype=object)
    got, positions = _schedule_reasons(np.asarray(status, dtype=object), plan_reason, pick)
    expected = []
    for j, s in enumerate(status):
        own = "" if plan_reason is None else str(plan_reason[pick[j]])
        expected.append(
            {"STALLED": "STALLED", "UNDER": "UNDER_DELIVERY", "OVER": "OVER_DELIVERY"}.get(str(s))
            or (own if own not in ("", "UNCHANGED") else "PACING_SCHEDULE")
        )
    assert got.tolist() == expected
    assert all(type(w) is str for w in got.tolist())
    if positions is not None:  # positions in ReasonCode, where each reason is one
        assert [list(ReasonCode)[p].value for p in positions.tolist()] == expected
    else:
        assert any(w not in set(ReasonCode) for w in expected)


_LABELLED_REASONS = st.sampled_from(["", *[r.value for r in ReasonCode], "OTHER"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from([s.value for s in PacingStatus]), min_size=0, max_size=40),
    st.lists(_LABELLED_REASONS, min_size=40, max_size=40),
    st.permutations(range(len(PacingStatus))),
    st.data(),
)
def test_schedule_reasons_by_the_callers_codes_are_the_reasons_by_their_labels(
    status: list[str], reasons: list[str], numbering: list[int], data: st.DataObject
) -> None:
    """Codes given (the assessment's verdict codes, in any numbering; the plan's reasons as
    codes into their distinct labels) decide the same reasons and positions as the labels."""
    n = len(status)
    pick = np.asarray(
        data.draw(st.lists(st.integers(0, 39), min_size=n, max_size=n)), dtype=np.int64
    )
    verdicts = np.asarray(status, dtype=object)
    plan_reason = np.asarray(reasons, dtype=object)
    labels = list(dict.fromkeys(reasons))
    reason_codes = np.asarray([labels.index(r) for r in reasons], dtype=np.intp)
    status_codes = np.asarray(
        [numbering[[s.value for s in PacingStatus].index(v)] for v in status], dtype=np.intp
    )
    want, want_positions = _schedule_reasons(verdicts, plan_reason, pick)
    got, positions = _schedule_reasons(
        verdicts,
        plan_reason,
        pick,
        status_codes=status_codes,
        reason_codes=reason_codes,
        reason_labels=np.asarray(labels, dtype=object),
    )
    assert got.tolist() == want.tolist()
    assert all(type(w) is str for w in got.tolist())
    by_codes_alone, _ = _schedule_reasons(  # the reasons' objects not needed with their codes
        verdicts,
        None,
        pick,
        status_codes=status_codes,
        reason_codes=reason_codes,
        reason_labels=np.asarray(labels, dtype=object),
    )
    assert by_codes_alone.tolist() == want.tolist()
    if want_positions is None:
        assert positions is None
    else:
        assert positions is not None
        assert positions.tolist() == want_positions.tolist()


@given(
    n=st.integers(0, 40),
    hours=st.integers(1, 9),
    block=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    spend=st.booleans(),
)
def test_hourly_matrices_made_in_blocks_as_in_one(
    n: int, hours: int, block: int, seed: int, spend: bool
) -> None:
    """The schedules' hourly matrices are made BLOCK_ROWS rows at a time: targets, spend,
    ceilings and totals bit for bit what one block of every row gives (huge allocations and
    unknown costs among them)."""
    rng = np.random.default_rng(seed)
    new = np.floor(rng.lognormal(15, 4, n))
    new[rng.random(n) < 0.1] = 2.0**60
    share = rng.dirichlet(np.ones(hours)) * rng.uniform(0.5, 1.0)
    ahead = rng.random(n) < 0.5
    cost = None if spend else np.where(rng.random(n) < 0.2, 0.0, rng.random(n) * 5)
    whole = schedule._HourlyMatrices.of(new, share, ahead, 1.3, cost)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schedule, "BLOCK_ROWS", block)
        blocks = schedule._HourlyMatrices.of(new, share, ahead, 1.3, cost)
    for name in ("target", "spend", "ceiling", "total"):
        a, b = getattr(whole, name), getattr(blocks, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    assert (whole.total == whole.target.sum(axis=1)).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2), max_size=400))
def test_the_pacing_column_is_the_pacing_modes_labels(codes: list[int]) -> None:
    """Long or short, the plan table's "pacing" column says the labels of its codes, and the
    table holds it as it held the labels' str objects."""
    picked = np.asarray(codes, dtype=np.int64)
    column = pacing_column(picked)
    labels = [list(DealPacing)[c].value for c in codes]
    assert list(column) == labels
    by_objects = table_of({"pacing": np.asarray(labels, dtype=object)}, {"pacing": "str"})
    by_codes = table_of({"pacing": column}, {"pacing": "str"})
    pd.testing.assert_frame_equal(by_codes, by_objects)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=0, max_size=400))
def test_deals_paced_ahead_read_by_arrow_are_the_labels_ahead(codes: list[int]) -> None:
    """A long plan's "pacing" column is compared by Arrow (a short one's labels as objects):
    the same deals as its labels say AHEAD."""
    column = pacing_column(np.asarray(codes, dtype=np.int64))
    frame = table_of({"pacing": column}, {"pacing": "str"})
    ahead = schedule._paced_ahead(frame)
    if len(codes) <= schedule.SMALL_IDS:
        assert ahead is None
    else:
        assert ahead is not None and ahead.dtype == bool
        assert ahead.tolist() == [c == 1 for c in codes]

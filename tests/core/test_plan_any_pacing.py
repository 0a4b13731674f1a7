"""Every pacing target the wire accepts can be planned: build_plan returns a plan whose bounds and
totals hold (or rejects conflicting limits with PlanRejected), never another error. The plan's
own assessment and one passed in (as the servicer does) give the same allocation.

An always-on campaign (no dates, only periodic budgets) once reached a curve that needed dates
and Replan answered INTERNAL; this walks the pacing target's shapes (dated or not, flights,
periodic caps, the paced period, modes, dayparts, a money cap, an as_of before, inside or after
the dates) through the wire's validation into the planner."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_plan_builder import EXAMPLE, check_plan

from reallocator.core.model import Policy
from reallocator.core.pacing.assessment import assess
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.conflicts import PlanRejected
from reallocator.v1 import common_pb2, pacing_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

HOUR = timedelta(hours=1)
PERIODS = (common_pb2.PERIOD_HOUR, common_pb2.PERIOD_DAY, common_pb2.PERIOD_WEEK,
           common_pb2.PERIOD_MONTH)  # fmt: skip


def _at(msg: object, when: datetime) -> None:
    msg.FromDatetime(when)  # type: ignore[attr-defined]


@st.composite
def pacing_targets(draw: st.DrawFn, as_of: datetime) -> pacing_pb2.PacingTarget:
    msg = pacing_pb2.PacingTarget(budget_type=common_pb2.BUDGET_TYPE_SPEND)
    msg.mode = draw(st.sampled_from([1, 2, 3, 4, 5]))  # type: ignore[assignment]
    if msg.mode == 5:
        weights = draw(st.lists(st.floats(0.0, 5.0), min_size=24, max_size=24))
        assume(sum(weights) > 0)
        msg.custom_curve.hour_weights.extend(weights)
    start = as_of - HOUR * draw(st.integers(-48, 24 * 20))
    end = start + HOUR * draw(st.integers(6, 24 * 30))
    dated = draw(st.booleans())
    if dated:
        _at(msg.start_time, start)
        _at(msg.end_time, end)
        if draw(st.booleans()):
            msg.budgets.add(period=common_pb2.PERIOD_LIFETIME,
                            amount=draw(st.integers(10**9, 10**11)))  # fmt: skip
        flights = draw(st.integers(0, 2))
        cut = start + (end - start) / 2
        for i, (a, b) in enumerate([(start, cut), (cut, end)][:flights]):
            f = msg.flights.add(flight_id=f"f{i}")
            _at(f.start_time, a)
            _at(f.end_time, b)
            f.budgets.add(period=common_pb2.PERIOD_LIFETIME,
                          amount=draw(st.integers(10**9, 10**11)))  # fmt: skip
    for period in PERIODS:
        if draw(st.booleans()):
            msg.budgets.add(period=period, amount=draw(st.integers(10**8, 10**11)))
    periods = [b.period for b in msg.budgets]
    if periods and draw(st.booleans()):
        msg.paced_period = draw(st.sampled_from(periods))
    if draw(st.booleans()):
        for day in draw(st.lists(st.integers(1, 7), min_size=1, max_size=7, unique=True)):
            first = draw(st.integers(0, 22))
            msg.dayparting.windows.add(day=day, start_hour=first,  # type: ignore[arg-type]
                                       end_hour=draw(st.integers(first + 1, 24)))  # fmt: skip
    if draw(st.booleans()):
        msg.max_spend_micros = draw(st.integers(10**9, 10**11))
    return msg


BASE = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest()).snapshot
AS_OF = BASE.as_of.ToDatetime(tzinfo=UTC)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(pacing=pacing_targets(AS_OF))
def test_every_pacing_target_the_wire_accepts_is_planned(
    pacing: pacing_pb2.PacingTarget,
) -> None:
    msg = type(BASE)()
    msg.CopyFrom(BASE)
    msg.pacing.CopyFrom(pacing)
    errors = Violations()
    snapshot = decode_snapshot(msg, Policy(), errors)
    assume(snapshot is not None and not errors.items)  # the wire's INVALID_ARGUMENT, not ours
    assert snapshot is not None
    event("dated" if pacing.HasField("start_time") else "only periodic budgets")
    try:
        # A numpy warning here was a NaN or an int64 cast overflow in the making (subnormal
        # custom weights: the curve divided by a mean of 0; a rate over almost no opportunity).
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            own = build_plan(snapshot)
    except PlanRejected:  # limits that conflict (FAILED_PRECONDITION with the conflict named)
        with pytest.raises(PlanRejected):
            build_plan(snapshot, assessment=assess(snapshot))
        return
    event(f"plan {own.status}")
    check_plan(own)
    given_ = build_plan(snapshot, assessment=assess(snapshot))
    assert given_.deals["new_allocation"].tolist() == own.deals["new_allocation"].tolist()


@pytest.mark.parametrize(
    "tiny",
    [
        [5e-324] + [0.0] * 23,  # the smallest subnormal: its mean underflowed to 0
        [1e-320] * 24,
        [1e-318, 5e-315] * 12,  # subnormal, within 1e-9 of each other
    ],
)
def test_a_custom_curve_of_subnormal_weights_is_the_same_curve_scaled_up(
    tiny: list[float],
) -> None:
    """Only the weights' ratios matter: weights the wire accepts (finite, >= 0, not all zero)
    however small plan as the same weights scaled up, without a NaN or a numpy warning (the
    mean of subnormal weights underflowed to 0 and the curve divided by it)."""
    biggest = max(tiny)
    scaled = [w / biggest for w in tiny]  # 5e-324 / 5e-324 == 1.0
    plans = []
    for weights in (tiny, scaled):
        msg = type(BASE)()
        msg.CopyFrom(BASE)
        msg.pacing.mode = common_pb2.PACING_MODE_CUSTOM
        del msg.pacing.custom_curve.hour_weights[:]
        msg.pacing.custom_curve.hour_weights.extend(weights)
        errors = Violations()
        snapshot = decode_snapshot(msg, Policy(), errors)
        assert snapshot is not None, errors.items
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plans.append(build_plan(snapshot))
    a, b = plans
    assert a.status is b.status
    assert a.deals["new_allocation"].tolist() == b.deals["new_allocation"].tolist()
    assert np.allclose(a.deals["pacing_ratio"], b.deals["pacing_ratio"], equal_nan=True)
    assert np.isfinite(a.deals["pacing_ratio"]).all()


def test_a_custom_weight_far_below_the_largest_is_a_field_violation() -> None:
    """An hour of traffic 1e-213 of the busiest is 0 in any real curve, and a rate read over
    it overflowed: the wire asks for 0 or at least 1e-9 of the largest, naming the hour."""
    msg = type(BASE)()
    msg.CopyFrom(BASE)
    msg.pacing.mode = common_pb2.PACING_MODE_CUSTOM
    del msg.pacing.custom_curve.hour_weights[:]
    msg.pacing.custom_curve.hour_weights.extend([1.0] * 5 + [2e-213] + [0.0] * 18)
    errors = Violations()
    assert decode_snapshot(msg, Policy(), errors) is None
    (violation,) = errors.items
    assert violation.field.endswith("custom_curve.hour_weights[5]")
    assert "at least 1e-09 of the largest" in violation.description

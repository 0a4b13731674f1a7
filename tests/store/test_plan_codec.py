"""Plans survive the store's codec unchanged."""

from __future__ import annotations

import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan
from reallocator.store.plan_codec import (
    PlanCodecError,
    decode_plan,
    decode_summary,
    encode_plan,
    summary_length,
)
from reallocator.wire.plan import encode_plan as wire_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


def plan_of(n_deals: int, seed: int) -> Plan:
    errors = Violations()
    snapshot = decode_snapshot(
        build_snapshot(random_snapshot_spec(n_deals, seed)), Policy(), errors
    )
    errors.raise_if_any()
    assert snapshot is not None
    return build_plan(snapshot)


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_round_trip_is_byte_identical(seed: int) -> None:
    plan = plan_of(60, seed)
    data = encode_plan(plan)
    again = decode_plan(data)
    assert encode_plan(again) == data
    # and the wire message (what GetPlan answers) is the same as Replan's
    assert wire_plan(again).SerializeToString(deterministic=True) == wire_plan(
        plan
    ).SerializeToString(deterministic=True)


@settings(max_examples=8, deadline=None)
@given(n_deals=st.integers(1, 120), seed=st.integers(0, 10_000))
def test_round_trip_holds_for_random_campaigns(n_deals: int, seed: int) -> None:
    plan = plan_of(n_deals, seed)
    data = encode_plan(plan)
    assert encode_plan(decode_plan(data)) == data
    assert wire_plan(decode_summary(data[: summary_length(data)])) == wire_plan(plan, deals="none")


def test_summary_has_no_deal_rows_but_the_same_totals() -> None:
    plan = plan_of(40, 3)
    data = encode_plan(plan)
    summary = decode_summary(data)
    prefix = decode_summary(data[: summary_length(data)])  # what the store reads
    assert wire_plan(prefix) == wire_plan(summary)
    assert summary_length(data) < len(data)
    assert len(summary.deals) == 0 and not summary.schedules
    assert wire_plan(summary).SerializeToString(deterministic=True) == wire_plan(
        plan, deals="none"
    ).SerializeToString(deterministic=True)


def test_corrupt_bytes_raise_a_codec_error() -> None:
    data = encode_plan(plan_of(10, 1))
    with pytest.raises(PlanCodecError):
        decode_plan(b"nonsense")
    with pytest.raises(PlanCodecError):
        decode_plan(data[: len(data) // 2])

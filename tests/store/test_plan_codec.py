"""The stored plan reads back as the plan Replan returned (byte for byte on the wire)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import snapshot_messages
from google.protobuf import json_format

from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan
from reallocator.store.plan_codec import (
    PlanCodecError,
    decode_plan,
    encode_plan,
    encode_summary,
)
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import snapshot_pb2
from reallocator.wire import plan as wire_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def core_plan(snapshot: snapshot_pb2.CampaignSnapshot) -> Plan:
    errors = Violations()
    decoded = decode_snapshot(snapshot, Policy(), errors)
    errors.raise_if_any()
    assert decoded is not None
    return build_plan(decoded, relax=True)


def example_snapshot() -> snapshot_pb2.CampaignSnapshot:
    return json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest()).snapshot


@pytest.mark.parametrize("source", ["example", "random"])
def test_plan_round_trips_to_the_same_wire_bytes(source: str) -> None:
    snapshot = example_snapshot() if source == "example" else snapshot_messages(300, seed=5)
    plan = core_plan(snapshot)
    stored = encode_plan(plan)
    back = decode_plan(stored)
    assert encode_plan(back) == stored
    for view in ("all", "changed", "none"):
        expected = wire_plan.encode_plan(plan, deals=view).SerializeToString(deterministic=True)
        got = wire_plan.encode_plan(back, deals=view).SerializeToString(deterministic=True)
        assert got == expected
    expected = wire_plan.encode_plan(plan, deals="none").SerializeToString(deterministic=True)
    for data in (stored, encode_summary(plan)):
        summary = wire_plan.encode_plan(decode_plan(data, summary=True), deals="none")
        assert summary.SerializeToString(deterministic=True) == expected
    assert len(encode_summary(plan)) < len(stored) or not len(plan.deals)


def test_example_plan_has_requests_and_schedules() -> None:
    """The round trip above covers every part (guards the test against an empty plan)."""
    plan = core_plan(example_snapshot())
    assert plan.requests and plan.schedules and len(plan.deals)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-10],
        lambda b: b"XXXX" + b[4:],
        lambda b: b[:40] + bytes(200) + b[240:],
    ],
)
def test_damaged_bytes_are_a_clear_error(mutate: object) -> None:
    stored = encode_plan(core_plan(example_snapshot()))
    with pytest.raises(PlanCodecError):
        decode_plan(mutate(stored))  # type: ignore[operator]

"""Repeated messages serialised from columns (wire/columnar.py) parse to the messages added one
by one, for any values the fields can hold; a large plan encoded from columns is the plan
encoded row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reallocator.core.model import Policy
from reallocator.core.plan.builder import build_plan
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire import plan as wire_plan
from reallocator.wire.assessment import timestamp
from reallocator.wire.columnar import merge_repeated, repeated_bytes, varints
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@given(st.lists(INT64, max_size=50))
def test_varints_are_protobufs(values: list[int]) -> None:
    data, lengths = varints(np.array(values, dtype=np.int64))
    expected = b"".join(
        plan_pb2.DealAllocation(delta=v).SerializeToString()[1:] if v else b"\x00" for v in values
    )  # field 6's key is one byte; a zero is omitted by protobuf, a one-byte 0 here
    assert data.tobytes() == expected
    assert lengths.sum() == len(expected)


@st.composite
def _deal_columns(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(1, 30))
    ints = hnp.arrays(np.int64, n, elements=INT64)
    codes = hnp.arrays(np.int64, n, elements=st.integers(0, 12))
    floats = hnp.arrays(np.float64, n, elements=st.floats(allow_nan=False, allow_infinity=True))
    texts = st.lists(TEXT, min_size=n, max_size=n)
    return {
        "deal_id": draw(texts),
        "seller_id": np.asarray(draw(texts), dtype=object),
        "old_allocation": draw(ints),
        "delta": draw(ints),
        "binding": draw(codes),
        "rationale": draw(texts),
        "marginal_value": draw(floats),
        "new_total": draw(ints),
        "pacing": draw(codes),
    }


def _one_by_one(field: str, columns: dict[str, object]) -> plan_pb2.Plan:
    msg = plan_pb2.Plan()
    n = next(len(v) for v in columns.values() if not isinstance(v, bytes))  # type: ignore[arg-type]
    for i in range(n):
        element = getattr(msg, field).add()
        for name, values in columns.items():
            if isinstance(values, bytes):
                getattr(element, name).MergeFromString(values)
            elif isinstance(values, np.ndarray) and values.ndim == 2:
                getattr(element, name).extend(values[i].tolist())
            else:
                value = values[i]  # type: ignore[index]
                setattr(element, name, value.item() if isinstance(value, np.generic) else value)
    return msg


@settings(max_examples=60, deadline=None)
@given(columns=_deal_columns())
def test_deal_rows_parse_to_the_messages_added_one_by_one(columns: dict[str, object]) -> None:
    msg = plan_pb2.Plan(campaign_id="c")
    merge_repeated(msg, "deals", columns)
    expected = _one_by_one("deals", columns)
    expected.campaign_id = "c"
    assert msg.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 20),
    hours=st.integers(0, 9),
    data=st.data(),
    start=st.integers(0, 2**40),
)
def test_schedule_rows_with_packed_hours_and_a_shared_timestamp(
    n: int, hours: int, data: st.DataObject, start: int
) -> None:
    matrix = hnp.arrays(np.int64, (n, hours), elements=INT64)
    columns: dict[str, object] = {
        "deal_id": data.draw(st.lists(TEXT, min_size=n, max_size=n)),
        "window_start_time": timestamp(
            datetime.fromtimestamp(start % 2**33, UTC)
        ).SerializeToString(),
        "hourly_spend_micros": data.draw(matrix),
        "hourly_target": data.draw(matrix),
        "throttle": data.draw(hnp.arrays(np.float64, n, elements=st.floats(0, 1))),
        "reason": data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 20))),
        "hourly_ceiling": data.draw(matrix),
    }
    msg = plan_pb2.Plan()
    merge_repeated(msg, "schedules", columns)
    assert msg == _one_by_one("schedules", columns)
    assert len(msg.schedules) == n
    assert all(s.HasField("window_start_time") for s in msg.schedules)


def test_bad_columns_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="new_total"):
        repeated_bytes(plan_pb2.Plan, "deals", {"deal_id": ["a", "b"], "new_total": np.zeros(3)})
    with pytest.raises(ValueError, match="hourly_target"):
        repeated_bytes(plan_pb2.Plan, "schedules", {"hourly_target": np.zeros(3, np.int64)})
    assert repeated_bytes(plan_pb2.Plan, "deals", {"deal_id": []}) == b""


@pytest.mark.parametrize("view", ["all", "changed"])
def test_a_large_plan_from_columns_is_the_plan_row_by_row(
    view: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = build_snapshot(random_snapshot_spec(600, 7), "arrow")
    errors = Violations()
    snap = decode_snapshot(snapshot, Policy(), errors)
    errors.raise_if_any()
    plan = build_plan(snap, text=False, schedule_window=timedelta(hours=6))
    assert plan.schedule_table is not None and len(plan.schedule_table) > 100
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 100)  # both tables take the columnar path
    from_columns = wire_plan.encode_plan(plan, deals=view)
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 10**9)
    row_by_row = wire_plan.encode_plan(plan, deals=view)
    assert len(from_columns.deals) == len(row_by_row.deals) > 100
    assert from_columns.SerializeToString() == row_by_row.SerializeToString()


@pytest.mark.parametrize("view", ["all", "changed", "none", "table"])
def test_a_plans_rows_kept_apart_read_as_the_merged_answer(
    view: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`encode_plan(rows=...)` keeps a long plan's rows (or its TABLE view's Arrow streams) as
    bytes and `plan_bytes` serialises the answer with them: a parser reads the answer the merged
    message is, with as many deals."""
    snapshot = build_snapshot(random_snapshot_spec(600, 11), "arrow")
    errors = Violations()
    snap = decode_snapshot(snapshot, Policy(), errors)
    errors.raise_if_any()
    plan = build_plan(snap, text=False, schedule_window=timedelta(hours=6))
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 100)
    merged = pb.ReplanResponse()
    wire_plan.encode_plan(plan, deals=view, out=merged.plan)
    apart, kept = pb.ReplanResponse(), wire_plan.Rows()
    wire_plan.encode_plan(plan, deals=view, out=apart.plan, rows=kept)
    data = wire_plan.plan_bytes(apart, "plan", kept)
    assert pb.ReplanResponse.FromString(data) == merged
    assert len(apart.plan.deals) + kept.deals == len(merged.plan.deals)
    if view == "none":
        assert not kept.parts and data == merged.SerializeToString()
    else:  # rows, or the TABLE view's two Arrow streams, only in the bytes
        assert kept.parts and not apart.plan.deals and not apart.plan.schedules
        assert not apart.plan.deals_arrow and not apart.plan.schedules_arrow
    apart.plan.name = "set after"  # the message's own fields still go out as they are then
    merged.plan.name = "set after"
    assert pb.ReplanResponse.FromString(wire_plan.plan_bytes(apart, "plan", kept)) == merged
    watched = pb.WatchCampaignResponse()  # a container with another field beside the plan
    watched.event_time.seconds = 7
    watched.plan.CopyFrom(apart.plan)
    expected = pb.WatchCampaignResponse(plan=merged.plan)
    expected.event_time.seconds = 7
    assert pb.WatchCampaignResponse.FromString(wire_plan.plan_bytes(watched, "plan", kept)) == (
        expected
    )

"""The plan as a table on the wire: PLAN_VIEW_TABLE's Arrow streams say what FULL's messages say,
and words rendered late (for the rows returned) are the words rendered at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pyarrow as pa
from builders import build_snapshot, random_snapshot_spec, replan_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import Policy, labels_by_code
from reallocator.core.pacing.assessment import EntityKind, assess
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import DealPacing, ReasonCode
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc
from reallocator.wire.plan import add_rows, encode_plan, schedules_arrow
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


def _table(data: bytes) -> pa.Table:
    table: pa.Table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return table


def _without_timings(msg: plan_pb2.Plan) -> plan_pb2.Plan:
    out = plan_pb2.Plan()
    out.CopyFrom(msg)
    out.solver.ClearField("build_duration")
    out.solver.ClearField("solve_duration")
    out.solver.ClearField("verify_duration")
    out.solver.ClearField("total_duration")
    for field in ("create_time", "state", "name", "etag", "history", "previous_plan"):
        out.ClearField(field)
    return out


def test_table_view_says_what_the_full_view_says(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    for seed in (3, 11, 21):
        snapshot = build_snapshot(random_snapshot_spec(400, seed), "arrow")
        full = stub.Replan(replan_request(snapshot, view=pb.PLAN_VIEW_FULL), timeout=60).plan
        table = stub.Replan(replan_request(snapshot, view=pb.PLAN_VIEW_TABLE), timeout=60).plan
        assert not table.deals and not table.schedules  # the table replaces the messages
        deals = _table(table.deals_arrow).to_pydict()
        assert len(deals["deal_id"]) == len(full.deals) == 400
        for field in ("deal_id", "seller_id", "channel_id", "old_allocation", "new_allocation",
                      "delta", "lower_bound", "upper_bound", "capacity_forecast",
                      "marginal_value", "new_total", "binding", "reason", "pacing"):  # fmt: skip
            assert deals[field] == [getattr(d, field) for d in full.deals], (seed, field)
        schedules = _table(table.schedules_arrow)
        assert schedules.num_rows == len(full.schedules) > 0
        rows = schedules.to_pydict()
        for i, s in enumerate(full.schedules):
            assert rows["deal_id"][i] == s.deal_id
            assert rows["window_start_unix_seconds"][i] == s.window_start_time.seconds
            assert rows["hourly_target"][i] == list(s.hourly_target)
            assert rows["hourly_spend_micros"][i] == list(s.hourly_spend_micros)
            assert rows["hourly_ceiling"][i] == list(s.hourly_ceiling)
            assert rows["throttle"][i] == s.throttle
            assert (rows["reason"][i], rows["pacing"][i]) == (s.reason, s.pacing)
        # Everything else is the same message.
        table.ClearField("deals_arrow")
        table.ClearField("schedules_arrow")
        summary = stub.Replan(replan_request(snapshot, view=pb.PLAN_VIEW_SUMMARY), timeout=60)
        assert _without_timings(table) == _without_timings(summary.plan)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 120),
    pace_ahead=st.sampled_from([1.0, 2.0]),
    view=st.sampled_from(["all", "changed"]),
)
def test_words_rendered_late_are_the_words_rendered_at_once(
    seed: int, n: int, pace_ahead: float, view: str
) -> None:
    errors = Violations()
    msg = build_snapshot(random_snapshot_spec(n, seed), "deals")
    snapshot = decode_snapshot(msg, Policy(pace_ahead=pace_ahead), errors)
    assert snapshot is not None
    window = timedelta(hours=6)
    eager = encode_plan(build_plan(snapshot, schedule_window=window), deals=view)
    late = encode_plan(build_plan(snapshot, schedule_window=window, text=False), deals=view)
    assert _without_timings(late) == _without_timings(eager)
    assert all(d.rationale for d in late.deals) and all(s.rationale for s in late.schedules)


def test_a_plan_built_without_words_has_none_until_encoded() -> None:
    errors = Violations()
    msg = build_snapshot(random_snapshot_spec(50, 5), "deals")
    snapshot = decode_snapshot(msg, Policy(), errors)
    assert snapshot is not None
    plan = build_plan(snapshot, text=False)
    assert (plan.deals["rationale"] == "").all()
    assert plan.schedule_table is not None and plan.schedule_table.rationale is None
    # The objects made on demand carry the words.
    assert all(s.rationale.startswith("Deal ") for s in plan.schedules)
    np.testing.assert_array_equal(
        [s.deal_id for s in plan.schedules], plan.schedule_table.deal_id.astype(str)
    )


def test_a_long_plans_schedule_ids_come_from_its_deal_id_column_as_the_same_strings() -> None:
    """Past 128 deals the schedules' table carries the snapshot's deal_id column and the stream
    takes its rows by Arrow: the same bytes as converting the ids' str objects."""
    for source in ("arrow", "deals"):
        errors = Violations()
        msg = build_snapshot(random_snapshot_spec(400, 7), source)
        snapshot = decode_snapshot(msg, Policy(), errors)
        assert snapshot is not None
        table = build_plan(snapshot, schedule_window=timedelta(hours=6), text=False).schedule_table
        assert table is not None and len(table) > 0
        assert table.deal_ids is not None, source
        by_objects = replace(table, deal_ids=None)
        assert schedules_arrow(table) == schedules_arrow(by_objects)
        ids = _table(schedules_arrow(table)).column("deal_id")
        assert ids.type == pa.string() and ids.to_pylist() == table.deal_id.tolist()


def test_schedule_codes_by_position_are_the_codes_of_the_labels() -> None:
    """A derived schedule table carries its reasons and pacing as positions in their enums:
    the stream and the messages look the numbers up by them, the same bytes as from the
    labels (a table read back from the store has labels only)."""
    for n, seed in ((400, 7), (1_500, 3)):
        errors = Violations()
        msg = build_snapshot(random_snapshot_spec(n, seed), "arrow")
        snapshot = decode_snapshot(msg, Policy(pace_ahead=2.0), errors)
        assert snapshot is not None
        plan = build_plan(snapshot, schedule_window=timedelta(hours=6), text=False)
        table = plan.schedule_table
        assert table is not None and len(table) > 0
        assert table.reason_code is not None and table.pacing_code is not None
        reasons = [list(ReasonCode)[p].value for p in table.reason_code.tolist()]
        assert reasons == table.reason.tolist()
        assert [list(DealPacing)[p].value for p in table.pacing_code.tolist()] == (
            table.pacing.tolist()
        )
        by_labels = replace(table, reason_code=None, pacing_code=None)
        assert schedules_arrow(table) == schedules_arrow(by_labels)
        for view in ("all", "changed"):
            coded, labelled = plan_pb2.Plan(), plan_pb2.Plan()
            for out, schedules in ((coded, table), (labelled, by_labels)):
                add_rows(out, plan.deals, schedules, plan.budget_type, plan.currency, view)
            assert coded.SerializeToString() == labelled.SerializeToString()


def test_the_assessments_status_labels_are_picked_by_its_codes() -> None:
    """What the plan's compares per code (capacity, schedules: model.labels_by_code) rely on:
    an assessment's status column is its labels picked by its codes."""
    for seed in (3, 11):
        errors = Violations()
        msg = build_snapshot(random_snapshot_spec(300, seed), "arrow")
        snapshot = decode_snapshot(msg, Policy(), errors)
        assert snapshot is not None
        assessment = assess(snapshot, alert_messages=False)
        status = assessment.column(EntityKind.DEAL, "status")
        codes = assessment.codes(EntityKind.DEAL, "status")
        by_code = labels_by_code(codes, status)
        assert by_code is not None
        assert by_code[codes].tolist() == status.tolist()
        # Rows of one code hold one label.
        for code in np.unique(codes).tolist():
            assert len(set(status[codes == code].tolist())) == 1

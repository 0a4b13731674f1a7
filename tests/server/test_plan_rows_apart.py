"""A long plan's rows go out as bytes serialised apart from its message (`wire.plan.Rows`): the
answer reads as the merged message does, and the call log, the metrics and a forwarding worker
still count its deals."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import build_snapshot, random_snapshot_spec
from call_context import CallContext

from reallocator.config import ServerConfig
from reallocator.server import peers
from reallocator.server.dispatch import Encoded
from reallocator.server.logs import CallRecord, note_response
from reallocator.server.servicer import ReallocatorServicer
from reallocator.store.sql import SqlStore
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire import plan as wire_plan


def _answer(servicer: ReallocatorServicer, request: pb.ReplanRequest) -> Encoded:
    out = servicer.replan(request, CallContext())  # type: ignore[arg-type]
    assert isinstance(out, Encoded)
    return out


@pytest.mark.parametrize("view", [pb.PLAN_VIEW_FULL, pb.PLAN_VIEW_CHANGES])
def test_a_long_plans_answer_reads_as_the_merged_one_and_counts_its_deals(
    view: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer = ReallocatorServicer(ServerConfig(), SqlStore.open(f"sqlite:///{tmp_path}/s.db"))
    request = pb.ReplanRequest(
        snapshot=build_snapshot(random_snapshot_spec(400, 5), "arrow"), dry_run=True, view=view
    )
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 10**9)  # every row a message, merged
    merged = _answer(servicer, request)
    assert merged.deal_count is None
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 50)  # rows from columns, kept apart
    apart = _answer(servicer, request)
    assert apart.deal_count is not None and not apart.message.plan.deals
    read, expected = pb.ReplanResponse.FromString(apart.data), merged.message
    for answer in (read, expected):
        answer.plan.ClearField("create_time")  # a dry run's time of answer
        for timing in ("build", "solve", "verify", "total"):  # two solves, two timings
            answer.plan.solver.ClearField(f"{timing}_duration")  # type: ignore[arg-type]
    assert read == expected
    assert apart.deal_count == len(expected.plan.deals) > 50
    record = CallRecord(request_id="r", method="Replan")
    note_response(record, apart)
    assert record.deals == apart.deal_count
    summary, deals = peers._summarise(apart)  # what a forwarded call's worker sends back
    assert summary is not None and deals == apart.deal_count

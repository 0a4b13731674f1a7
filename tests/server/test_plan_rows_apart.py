"""A long plan's rows go out as bytes serialised apart from its message (`wire.plan.Rows`): the
answer reads as the merged message does, and the call log, the metrics and a forwarding worker
still count its deals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builders import build_snapshot, random_snapshot_spec
from call_context import CallContext

from reallocator import background
from reallocator.config import ServerConfig
from reallocator.server import peers
from reallocator.server import servicer as servicer_module
from reallocator.server.dispatch import Encoded
from reallocator.server.logs import CallRecord, note_response
from reallocator.server.servicer import ReallocatorServicer
from reallocator.store.errors import AlreadyExists
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


_LIFE_CYCLE = ("name", "etag", "create_time", "history", "previous_plan")


def _stored_answer(servicer: ReallocatorServicer, request: pb.ReplanRequest) -> pb.ReplanResponse:
    """A recorded Replan's answer, checked against the plan the store keeps, without its
    life-cycle fields (each call records a plan of its own)."""
    answer = pb.ReplanResponse.FromString(_answer(servicer, request).data)
    again = servicer.store.get_plan(answer.plan.name, "all")
    assert again.SerializeToString(deterministic=True) == answer.plan.SerializeToString(
        deterministic=True
    )
    for name in _LIFE_CYCLE:
        answer.plan.ClearField(name)  # type: ignore[arg-type]
    for timing in ("build", "solve", "verify", "total"):
        answer.plan.solver.ClearField(f"{timing}_duration")  # type: ignore[arg-type]
    return answer


def test_a_long_recorded_plan_stored_on_a_thread_answers_and_stores_as_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From COLUMNAR_FROM deals the plan is stored on a thread while its rows are encoded: the
    same answer and the same stored plan as stored first, and a store's refusal still reaches
    the caller."""
    servicer = ReallocatorServicer(ServerConfig(), SqlStore.open(f"sqlite:///{tmp_path}/s.db"))
    request = pb.ReplanRequest(
        snapshot=build_snapshot(random_snapshot_spec(400, 6), "arrow"), view=pb.PLAN_VIEW_FULL
    )
    monkeypatch.setattr(wire_plan, "COLUMNAR_FROM", 50)  # rows kept apart in both
    monkeypatch.setattr(servicer_module, "COLUMNAR_FROM", 10**9)
    at_once = _stored_answer(servicer, request)
    started: list[str] = []

    def spy(call: Any, *args: Any, name: str = "") -> Any:
        started.append(name)
        return background.begun(call, *args, name=name)

    monkeypatch.setattr(servicer_module, "COLUMNAR_FROM", 50)
    monkeypatch.setattr(servicer_module, "begun", spy)
    apart = _stored_answer(servicer, request)
    assert started and apart == at_once and len(apart.plan.deals) == 400

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AlreadyExists("refused by the store")

    monkeypatch.setattr(servicer.store, "record_plan", refused)
    with pytest.raises(AlreadyExists, match="refused by the store"):
        _answer(servicer, request)
    assert started == ["record-plan", "record-plan"]

"""A recorded Replan stores its assessment unworded (wire.assessment.stored_assessment); the store
reads it back as the PacingAssessment message AssessPacing answers for the same snapshot, byte
for byte, alerts' words included, in the pacing history and in a watch's polls alike; a row
written as the message (before that form) reads as it did."""

from __future__ import annotations

from pathlib import Path

import pytest
from call_context import CallContext
from google.protobuf import json_format

from reallocator.config import ServerConfig
from reallocator.server.servicer import ReallocatorServicer
from reallocator.store.schema import assessments
from reallocator.store.sql import SqlStore
from reallocator.v1 import assessment_pb2, common_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.assessment import STORED_MAGIC

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


@pytest.fixture
def servicer(tmp_path: Path) -> ReallocatorServicer:
    return ReallocatorServicer(ServerConfig(), SqlStore.open(f"sqlite:///{tmp_path}/s.db"))


def _request() -> pb.ReplanRequest:
    return json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())


def _answered(servicer: ReallocatorServicer, request: pb.ReplanRequest) -> bytes:
    """AssessPacing's BASIC answer for the Replan request's snapshot, as its message's bytes."""
    assessed = pb.AssessPacingRequest(
        snapshot=request.snapshot, policy=request.policy, view=assessment_pb2.ASSESSMENT_VIEW_BASIC
    )
    answer = pb.AssessPacingResponse.FromString(
        servicer.assess_pacing(assessed, CallContext()).data  # type: ignore[arg-type]
    )
    data: bytes = answer.assessment.SerializeToString(deterministic=True)
    return data


def _payloads(store: SqlStore, campaign: str) -> list[bytes]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            assessments.select()
            .where(assessments.c.campaign_id == campaign)
            .order_by(assessments.c.id)
        ).all()
    return [bytes(r.payload) for r in rows]


def test_a_recorded_replans_assessment_reads_back_as_assess_pacing_answers(
    servicer: ReallocatorServicer,
) -> None:
    request = _request()
    request.dry_run = False
    campaign = request.snapshot.campaign_id
    store = servicer.store
    cursor = store.cursor(campaign)
    servicer.replan(request, CallContext())  # type: ignore[arg-type]
    [stored] = _payloads(store, campaign)
    assert stored.startswith(STORED_MAGIC)  # unworded
    answered = _answered(servicer, request)
    assert assessment_pb2.PacingAssessment.FromString(answered).alerts
    assert all(a.message for a in assessment_pb2.PacingAssessment.FromString(answered).alerts)
    history, _ = store.pacing_history(campaign)
    assert [payload for _, payload, _, _ in history] == [answered, answered]
    _, polled = store.events_after(campaign, cursor)
    assert [payload for _, _, payload in polled] == [answered, answered]


def test_an_assessment_stored_as_its_message_reads_as_before(
    servicer: ReallocatorServicer,
) -> None:
    """A row holding the message (as every row did before the stored form) reads as it is."""
    request = _request()
    campaign = request.snapshot.campaign_id
    answered = _answered(servicer, request)
    servicer.store.record_assessment(
        campaign, 1, snapshot=b"s", assessment=answered, severity=3, actor="old"
    )
    assert [p for p in _payloads(servicer.store, campaign)] == [answered, answered]
    history, _ = servicer.store.pacing_history(campaign)
    assert [payload for _, payload, _, _ in history] == [answered, answered]


def test_the_verdicts_alone_read_without_the_alerts_words(
    servicer: ReallocatorServicer,
) -> None:
    """GetPacingHistory reads verdicts only: the stored form read with `alerts=False` carries the
    same verdicts and no alerts, and the RPC answers the same points either way."""
    request = _request()
    request.dry_run = False
    campaign = request.snapshot.campaign_id
    servicer.replan(request, CallContext())  # type: ignore[arg-type]
    worded, _ = servicer.store.pacing_history(campaign)
    bare, _ = servicer.store.pacing_history(campaign, alerts=False)
    [(_, full, _, _)] = worded
    [(_, verdicts, _, _)] = bare
    whole = assessment_pb2.PacingAssessment.FromString(full)
    assert whole.alerts  # the example campaign alerts
    without = assessment_pb2.PacingAssessment.FromString(verdicts)
    assert not without.alerts
    whole.ClearField("alerts")
    assert without == whole
    for kind, entity in (
        (0, ""),
        (common_pb2.ENTITY_KIND_SELLER, whole.sellers[0].entity.id),
        (common_pb2.ENTITY_KIND_CHANNEL, whole.channels[0].entity.id),
    ):
        asked = pb.GetPacingHistoryRequest(campaign_id=campaign)
        asked.entity.kind = kind
        asked.entity.id = entity
        answer = servicer.get_pacing_history(asked, CallContext())  # type: ignore[arg-type]
        [point] = answer.points
        expected = (
            whole.campaign
            if kind == 0
            else next(
                v
                for v in (
                    whole.sellers if kind == common_pb2.ENTITY_KIND_SELLER else whole.channels
                )
                if v.entity.id == entity
            )
        )
        assert point.verdict == expected

"""The gRPC server through a real channel: health, reflection, methods not implemented yet, bytes
that do not decode, message size limits and valid requests in every wire form."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc
import pytest
from builders import FORMS, Form, build_snapshot, random_snapshot_spec, replan_request
from conftest import MIB, SERVICE, bad_request, rpc_error
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from reallocator.config import load_config
from reallocator.server.app import RunningServer, start_server
from reallocator.v1 import common_pb2, reallocator_service_pb2_grpc, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# --- health ----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_check_serving(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == SERVING


def test_health_check_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="reallocator.v1.NoSuchService")
    error = rpc_error(lambda: health.Check(request, timeout=5))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_graceful_shutdown_reports_not_serving_first() -> None:
    running = start_server(load_config(env={}, port=0, host="127.0.0.1"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
            running.health.enter_graceful_shutdown()
            for service in ("", SERVICE):
                request = health_pb2.HealthCheckRequest(service=service)
                assert health.Check(request, timeout=5).status == NOT_SERVING
    finally:
        running.stop(grace=0)


# --- reflection ------------------------------------------------------------------------------


def _reflect(channel: grpc.Channel, **query: str) -> reflection_pb2.ServerReflectionResponse:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(**query)
    (reply,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=5))
    assert not reply.HasField("error_response"), reply.error_response
    return reply


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    reply = _reflect(channel, list_services="")
    names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def _files(
    reply: reflection_pb2.ServerReflectionResponse,
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    files = {}
    for raw in reply.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        files[proto.name] = proto
    return files


def test_reflection_file_containing_service(channel: grpc.Channel) -> None:
    files = _files(_reflect(channel, file_containing_symbol=SERVICE))
    proto = files["reallocator/v1/reallocator_service.proto"]
    (service,) = [s for s in proto.service if s.name == "ReallocatorService"]
    expected = [m.name for m in pb.DESCRIPTOR.services_by_name["ReallocatorService"].methods]
    assert [m.name for m in service.method] == expected
    watch = next(m for m in service.method if m.name == "WatchCampaign")
    assert watch.server_streaming and watch.output_type == ".reallocator.v1.WatchCampaignResponse"
    assert "reallocator/v1/snapshot.proto" in proto.dependency


def test_reflection_resolves_message_types(channel: grpc.Channel) -> None:
    files = _files(_reflect(channel, file_containing_symbol="reallocator.v1.CampaignSnapshot"))
    snapshot = files["reallocator/v1/snapshot.proto"]
    message = next(m for m in snapshot.message_type if m.name == "CampaignSnapshot")
    assert {f.name for f in message.field} >= {"campaign_id", "as_of", "deals", "deals_table"}
    by_name = _files(_reflect(channel, file_by_filename="reallocator/v1/policy.proto"))
    assert "reallocator/v1/policy.proto" in by_name


# --- every method answers ----------------------------------------------------------------------


def test_life_cycle_methods_answer_for_what_is_not_there(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    missing = rpc_error(
        lambda: stub.RollbackPlan(pb.RollbackPlanRequest(name="campaigns/c/plans/ab"), timeout=5)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    empty = stub.GetPacingHistory(pb.GetPacingHistoryRequest(campaign_id="nobody"), timeout=5)
    assert not empty.points and not empty.next_page_token
    deal = common_pb2.EntityRef(kind=common_pb2.ENTITY_KIND_DEAL, id="d1")
    bad = rpc_error(
        lambda: stub.GetPacingHistory(
            pb.GetPacingHistoryRequest(campaign_id="c", entity=deal), timeout=5
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "entity.kind" in (bad.details() or "")
    # A Timestamp outside protobuf's own range (the fuzzer found it answered INTERNAL).
    far = pb.GetPacingHistoryRequest(campaign_id="c")
    far.end_time.seconds = -(2**40)
    wrong = rpc_error(lambda: stub.GetPacingHistory(far, timeout=5))
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT and "end_time" in (
        wrong.details() or ""
    )


def test_a_watch_with_nothing_to_report_ends_at_its_deadline(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    request = pb.WatchCampaignRequest(campaign_id="quiet", include_plans=True)
    error = rpc_error(lambda: list(stub.WatchCampaign(request, timeout=1.5)))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    unnamed = rpc_error(lambda: list(stub.WatchCampaign(pb.WatchCampaignRequest(), timeout=5)))
    assert unnamed.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_method_answers_unimplemented(channel: grpc.Channel) -> None:
    call = channel.unary_unary(f"/{SERVICE}/NoSuchMethod")
    error = rpc_error(lambda: call(b"", timeout=5))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


# --- bytes that do not decode ----------------------------------------------------------------

_UNDECODABLE = {
    "garbage": b"\xff\xff\xff",
    # field 1 (snapshot) announces 200 bytes and the stream ends
    "truncated": b"\x0a\xc8\x01\x0a\x02ab",
    # snapshot.campaign_id holding invalid UTF-8 (proto3 strings must be UTF-8)
    "bad_utf8": b"\x0a\x03\x0a\x01\xff",
}


@pytest.mark.parametrize("method", ["AssessPacing", "Replan", "GetPlan"])
@pytest.mark.parametrize("data", list(_UNDECODABLE.values()), ids=list(_UNDECODABLE))
def test_undecodable_bytes_answer_invalid_argument(
    channel: grpc.Channel, method: str, data: bytes
) -> None:
    call = channel.unary_unary(
        f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None
    )
    error = rpc_error(lambda: call(data, timeout=5))
    (violation,) = bad_request(error)
    assert violation.field == ""
    assert "not a valid reallocator.v1." in violation.description


def test_undecodable_bytes_on_a_streaming_method(channel: grpc.Channel) -> None:
    call = channel.unary_stream(f"/{SERVICE}/WatchCampaign")
    error = rpc_error(lambda: list(call(b"\xff\xff\xff", timeout=5)))
    (violation,) = bad_request(error)
    assert "reallocator.v1.WatchCampaignRequest" in violation.description


# --- valid requests ---------------------------------------------------------------------------


_FORMS = [(form, False) for form in FORMS] + [("columns", True), ("arrow", True)]


@pytest.mark.parametrize(
    ("form", "matrix_arrow"), _FORMS, ids=[f + ("-arrow-matrix" * m) for f, m in _FORMS]
)
def test_valid_request_passes_validation_in_every_form(
    passes_validation: Callable[[Message], None], form: Form, matrix_arrow: bool
) -> None:
    snapshot = build_snapshot(random_snapshot_spec(40, seed=5), form, matrix_arrow=matrix_arrow)
    passes_validation(replan_request(snapshot, dry_run=True))


def test_request_over_4_mib_is_not_rejected_for_size(
    passes_validation: Callable[[Message], None],
    large_columns_snapshot: snapshot_pb2.CampaignSnapshot,
) -> None:
    request = replan_request(large_columns_snapshot)
    assert request.ByteSize() > 4 * MIB  # gRPC's default receive limit
    passes_validation(request)


@contextmanager
def one_mib_server() -> Iterator[reallocator_service_pb2_grpc.ReallocatorServiceStub]:
    """A server of its own whose message limit is 1 MiB, and a stub on it."""
    running: RunningServer = start_server(
        load_config(env={}, port=0, host="127.0.0.1", max_message_bytes=MIB)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            yield reallocator_service_pb2_grpc.ReallocatorServiceStub(ch)
    finally:
        running.stop(grace=0)


def test_request_over_the_configured_limit_is_resource_exhausted() -> None:
    with one_mib_server() as stub:
        snapshot = build_snapshot(random_snapshot_spec(12_000, seed=2, n_buckets=0), "columns")
        request = replan_request(snapshot)
        assert request.ByteSize() > MIB
        error = rpc_error(lambda: stub.Replan(request, timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_concurrent_calls_are_all_answered(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    good = replan_request(build_snapshot(random_snapshot_spec(200, seed=8, n_buckets=6), "deals"))
    bad = pb.ReplanRequest()
    bad.CopyFrom(good)
    bad.snapshot.campaign_id = ""

    def one(i: int) -> grpc.StatusCode:
        try:
            stub.Replan(good if i % 2 else bad, timeout=30)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    # As many at once as the server runs (max_workers - 2 = 6): more answer RESOURCE_EXHAUSTED.
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(one, range(32)))
    # The valid request gets the same answer every time (a plan, or FAILED_PRECONDITION if its
    # random constraints conflict); the invalid one INVALID_ARGUMENT, whatever the interleaving.
    valid_answer = codes[1]
    assert valid_answer in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)
    assert codes == [valid_answer if i % 2 else grpc.StatusCode.INVALID_ARGUMENT for i in range(32)]


def test_a_response_over_the_limit_says_so_and_what_to_ask_instead() -> None:
    """A plan too large for the message limit ends in RESOURCE_EXHAUSTED naming its size, the
    limit and the smaller views (not grpc's bare "Sent message larger than max"); the same
    request with PLAN_VIEW_SUMMARY is answered."""
    with one_mib_server() as stub:
        snapshot = build_snapshot(random_snapshot_spec(4_000, seed=3, n_buckets=6), "columns")
        request = replan_request(
            snapshot, dry_run=True, on_infeasible=pb.INFEASIBILITY_HANDLING_RELAX
        )
        assert request.ByteSize() < MIB
        error = rpc_error(lambda: stub.Replan(request, timeout=60))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "PLAN_VIEW_CHANGES" in error.details()
        assert "max_message_bytes" in error.details()
        status = rpc_status.from_call(error)
        assert status is not None
        (info,) = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
        detail = error_details_pb2.ErrorInfo()
        info.Unpack(detail)
        assert detail.reason == "RESPONSE_TOO_LARGE"
        assert int(detail.metadata["response_bytes"]) > MIB
        assert int(detail.metadata["max_message_bytes"]) == MIB
        # Every deal moves here, so CHANGES is as large: the answer suggests SUMMARY alone.
        request.view = pb.PLAN_VIEW_CHANGES
        error = rpc_error(lambda: stub.Replan(request, timeout=60))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ask for PLAN_VIEW_SUMMARY (view)" in error.details()
        request.view = pb.PLAN_VIEW_SUMMARY
        plan = stub.Replan(request, timeout=60).plan
        assert plan.allocated > 0 and not plan.deals


def test_thousands_of_conflicts_fit_the_trailers(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    """Random limits on 4,000 deals conflict in hundreds of places. The status lists as many as
    fit a few KB and says how many it left out: listed in full it passed the clients' metadata
    limit and the caller saw only RESOURCE_EXHAUSTED "Stream removed"."""
    snapshot = build_snapshot(random_snapshot_spec(4_000, seed=3, n_buckets=6), "columns")
    error = rpc_error(lambda: stub.Replan(replan_request(snapshot, dry_run=True), timeout=60))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details().startswith("constraints conflict")
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.ByteSize() < 8 * 1024
    (packed,) = status.details
    failure = error_details_pb2.PreconditionFailure()
    assert packed.Unpack(failure)
    *listed, last = failure.violations
    assert len(listed) >= 10
    assert all(v.type == "CONSTRAINT" and v.subject for v in listed)
    assert last.subject == "..." and "more, left out" in last.description

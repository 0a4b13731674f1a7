"""Every error a method raises reaches the caller as a status chosen by one table: domain errors
by meaning, anything unforeseen as INTERNAL with a request id and nothing of the request."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from builders import build_snapshot, random_snapshot_spec
from conftest import bad_request, rpc_error
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reallocator.core.interrupt import Interrupted
from reallocator.server.app import SERVICE
from reallocator.server.dispatch import generic_handler
from reallocator.server.errors import ENTRY_BUDGET, MESSAGE_BUDGET
from reallocator.server.servicer import call_checkpoint
from reallocator.server.status_map import ServiceError, register, status_for
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc

SECRET = "request-bytes-7f3a"


class _Raising:
    """A servicer whose AssessPacing raises whatever the test sets."""

    error: BaseException = RuntimeError("unset")

    def assess_pacing(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise self.error


@pytest.fixture(scope="module")
def raising() -> Iterator[tuple[_Raising, reallocator_service_pb2_grpc.ReallocatorServiceStub]]:
    servicer = _Raising()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((generic_handler(SERVICE, servicer),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield servicer, reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)
    server.stop(0)


def _call(
    raising: tuple[_Raising, reallocator_service_pb2_grpc.ReallocatorServiceStub],
    error: BaseException,
) -> grpc.RpcError:
    servicer, stub = raising
    servicer.error = error
    return rpc_error(lambda: stub.AssessPacing(pb.AssessPacingRequest(), timeout=10))


def test_an_unforeseen_error_is_internal_with_a_request_id_and_no_request_bytes(
    raising: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="reallocator.server.dispatch"):
        error = _call(raising, ValueError(f"bad value {SECRET * 200}"))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert SECRET not in (error.details() or "")
    assert "Traceback" not in (error.details() or "")
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.RequestInfo()
    assert status.details[0].Unpack(info)
    assert info.request_id and info.request_id in (error.details() or "")
    logged = [r.getMessage() for r in caplog.records]
    assert any(info.request_id in line and "ValueError" in line for line in logged), logged
    assert all(line.count(SECRET) <= 300 // len(SECRET) for line in logged)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MemoryError(), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Interrupted("DEADLINE", "solve"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (Interrupted("CANCELLED", "solve"), grpc.StatusCode.CANCELLED),
    ],
)
def test_domain_errors_map_by_meaning(
    raising: Any, error: Exception, code: grpc.StatusCode
) -> None:
    assert _call(raising, error).code() == code


def test_a_new_service_error_needs_only_its_code(raising: Any) -> None:
    class NotFound(ServiceError):
        code = grpc.StatusCode.NOT_FOUND

    error = _call(raising, NotFound("no plan 'p1'"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no plan 'p1'"


def test_register_maps_a_foreign_exception() -> None:
    class Foreign(Exception):
        pass

    assert status_for(Foreign()) is None
    register(Foreign, lambda _e: ServiceError("x").status())
    status = status_for(Foreign())
    assert status is not None and status.message == "x"


@pytest.mark.parametrize(
    ("field", "value"),
    [("time_zone", "x" * 100_000), ("time_zone", "é" * 100_000), ("seller_id", "y" * 20_000)],
)
def test_one_long_value_cannot_push_the_error_past_the_trailer_limit(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, field: str, value: str
) -> None:
    snapshot = build_snapshot(random_snapshot_spec(3, seed=1, n_buckets=0), "deals")
    if field == "time_zone":
        snapshot.time_zone = value
    else:
        snapshot.deals[0].seller_id = value
    error = rpc_error(lambda: stub.AssessPacing(pb.AssessPacingRequest(snapshot=snapshot)))
    violations = bad_request(error)  # INVALID_ARGUMENT, not "RESOURCE_EXHAUSTED: Stream removed"
    assert len((error.details() or "").encode()) <= MESSAGE_BUDGET
    assert all(len(v.description.encode()) <= ENTRY_BUDGET for v in violations)


class _Context:
    def __init__(self, remaining: float | None, active: bool) -> None:
        self.remaining, self.active = remaining, active

    def time_remaining(self) -> float | None:
        return self.remaining

    def is_active(self) -> bool:
        return self.active


@pytest.mark.parametrize(
    ("remaining", "active", "why"),
    [(None, True, None), (5.0, True, None), (0.0, True, "DEADLINE"), (-1.0, True, "DEADLINE"),
     (None, False, "CANCELLED"), (3.0, False, "CANCELLED")],
)  # fmt: skip
def test_the_call_checkpoint_stops_work_nobody_waits_for(
    remaining: float | None, active: bool, why: str | None
) -> None:
    check = call_checkpoint(_Context(remaining, active))  # type: ignore[arg-type]
    if why is None:
        check("solve")
        return
    with pytest.raises(Interrupted) as info:
        check("solve")
    assert info.value.why == why and info.value.phase == "solve"

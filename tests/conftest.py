"""Shared fixtures: one real gRPC server for the session, a channel and stub to it, and helpers
that read a failed call's google.rpc.BadRequest back."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from grpc_status import rpc_status

from reallocator.config import load_config
from reallocator.server.app import RunningServer, start_server
from reallocator.server.errors import field_violations
from reallocator.v1 import assessment_pb2, reallocator_service_pb2_grpc, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as service_pb2
from reallocator.wire.violations import FieldViolation

# `from builders import ...` in test modules, whatever pytest's import mode.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from ports import free_port as free_port  # noqa: E402  (tests import it from here)

MIB = 1024 * 1024

# Servers the tests start as processes keep their audit store in a scratch folder, not in the
# working directory (the default of `reallocator serve`).
os.environ.setdefault(
    "REALLOCATOR_DATABASE_URL",
    f"sqlite:///{tempfile.mkdtemp(prefix='reallocator-tests-')}/reallocator.db",
)
SERVICE = "reallocator.v1.ReallocatorService"


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """Runs `call`, which must fail, and returns its error (a grpc.Call too). Wrap a
    server-streaming call in list(...): it fails when read."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def bad_request(error: grpc.RpcError) -> list[FieldViolation]:
    """The field violations of an INVALID_ARGUMENT error (asserting it is one, with details)."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT without grpc-status-details-bin"
    violations = field_violations(status)
    assert violations, f"INVALID_ARGUMENT without a BadRequest: {error.details()}"
    return violations


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real server on a free port of 127.0.0.1 (REALLOCATOR_* variables ignored), its
    audit store a fresh SQLite file."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'reallocator.db'}"
    running = start_server(load_config(env={}, port=0, host="127.0.0.1", database_url=url))
    yield running
    running.stop(grace=0)


@pytest.fixture(scope="session")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    options = [("grpc.max_receive_message_length", 128 * MIB)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> reallocator_service_pb2_grpc.ReallocatorServiceStub:
    return reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)


@pytest.fixture(scope="session")
def invalid(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> Callable[..., list[FieldViolation]]:
    """`invalid(request, rpc="Replan")`: sends the request, asserts INVALID_ARGUMENT with a
    BadRequest, and returns its field violations."""

    def call(request: Message, rpc: str = "Replan") -> list[FieldViolation]:
        method = getattr(stub, rpc)
        return bad_request(rpc_error(lambda: method(request, timeout=30)))

    return call


@pytest.fixture(scope="session")
def passes_validation(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> Callable[[Message], None]:
    """`passes_validation(replan_request)`: the request's snapshot and policy pass validation.
    Checked through AssessPacing (same validation as Replan, and it answers for every valid
    snapshot, while Replan may rightly answer FAILED_PRECONDITION when constraints conflict)."""

    def call(request: Message) -> None:
        assert isinstance(request, service_pb2.ReplanRequest)
        assess = service_pb2.AssessPacingRequest(
            snapshot=request.snapshot,
            policy=request.policy,
            view=assessment_pb2.ASSESSMENT_VIEW_BASIC,
        )
        try:
            reply = stub.AssessPacing(assess, timeout=120)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                pytest.fail(f"valid request rejected: {bad_request(error)}")
            raise
        assert reply.assessment.campaign_id == request.snapshot.campaign_id

    return call


@pytest.fixture(scope="session")
def large_columns_snapshot() -> snapshot_pb2.CampaignSnapshot:
    """A valid 100k-deal snapshot in packed columns (~10 MB). Shared: copy it before changing it."""
    from builders import build_snapshot, random_snapshot_spec

    return build_snapshot(random_snapshot_spec(100_000, seed=11, n_buckets=0), "columns")

"""Shared fixtures: one real gRPC server for the session, a channel and stub to it, and helpers
that read a failed call's google.rpc.BadRequest back."""

from __future__ import annotations

import itertools
import os
import socket
import sys
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

MIB = 1024 * 1024
SERVICE = "reallocator.v1.ReallocatorService"


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A server started without a database_url puts its default SQLite store under
    $XDG_STATE_HOME: point that at a temporary folder, never the user's own."""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real server on a free port of 127.0.0.1 (REALLOCATOR_* variables ignored), with its
    own temporary SQLite audit store."""
    database = tmp_path_factory.mktemp("store") / "audit.db"
    config = load_config(env={}, port=0, host="127.0.0.1", database_url=f"sqlite:///{database}")
    running = start_server(config)
    yield running
    running.stop(grace=0)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py). Skips when PostgreSQL
    is not installed, unless REALLOCATOR_REQUIRE_POSTGRES=1 (CI), where that fails."""
    from postgres import REQUIRE, postgres_bin, postgres_server

    if postgres_bin() is None:
        reason = "PostgreSQL server binaries not installed (apt-get install postgresql)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 but {reason}")
        pytest.skip(reason)
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind (PostgreSQL: a new database on the session server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    import psycopg

    base = request.getfixturevalue("postgres_url")
    name = f"t{os.getpid()}_{next(_DATABASES)}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + f"/{name}"


_DATABASES = itertools.count()


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

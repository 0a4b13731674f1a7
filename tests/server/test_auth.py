"""Bearer tokens and roles through a real channel: good, bad, missing and with too few roles;
refused calls never reach the servicer; the servicer sees the token's name as the actor; health
stays open; reflection can be turned off; every RPC has a role."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import rpc_error
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ops_helpers import Recorder, bearer, ops_server, stub

from reallocator.client import open_channel
from reallocator.server.app import RunningServer
from reallocator.server.auth import METHOD_ROLES, hash_token
from reallocator.v1 import reallocator_service_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as grpc_pb

ORCHESTRATOR = "orchestrator-token-0123456789"
PERSON = "person-token-abcdefghijklmnop"
VIEWER = "viewer-token-zyxwvutsrqponm"

TOKENS = f"""
[security]
reflection = false

[[security.tokens]]
name = "orchestrator"
sha256 = "{hash_token(ORCHESTRATOR)}"
roles = ["read", "plan"]

[[security.tokens]]
name = "alice@example.com"
sha256 = "{hash_token(PERSON)}"
roles = ["read", "review"]

[[security.tokens]]
name = "dashboard"
sha256 = "{hash_token(VIEWER)}"
roles = ["read"]
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with ops_server(tmp_path_factory.mktemp("auth"), TOKENS, recorder=True) as running:
        yield running


@pytest.fixture
def channel(secured: RunningServer) -> Iterator[grpc.Channel]:
    Recorder.seen = []
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as ch:
        yield ch


def test_a_good_token_reaches_the_servicer_as_its_name(channel: grpc.Channel) -> None:
    stub(channel).Replan(pb.ReplanRequest(), metadata=bearer(ORCHESTRATOR), timeout=5)
    stub(channel).AssessPacing(pb.AssessPacingRequest(), metadata=bearer(PERSON), timeout=5)
    assert Recorder.seen == [("Replan", "orchestrator"), ("AssessPacing", "alice@example.com")]


def test_the_identity_holds_for_every_message_of_a_stream(channel: grpc.Channel) -> None:
    request = pb.WatchCampaignRequest(campaign_id="c1")
    replies = list(stub(channel).WatchCampaign(request, metadata=bearer(VIEWER), timeout=5))
    assert len(replies) == 2
    assert Recorder.seen == [("WatchCampaign", "dashboard")] * 2


def test_the_token_outranks_a_self_declared_actor_header(channel: grpc.Channel) -> None:
    metadata = (*bearer(VIEWER), ("x-reallocator-actor", "root"))
    stub(channel).AssessPacing(pb.AssessPacingRequest(), metadata=metadata, timeout=5)
    assert Recorder.seen == [("AssessPacing", "dashboard")]


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        bearer("not-a-known-token"),
        (("authorization", ORCHESTRATOR),),  # no scheme
        (("authorization", f"Basic {ORCHESTRATOR}"),),
        (("authorization", "Bearer "),),
        (("x-reallocator-actor", "orchestrator"),),  # a label is no credential
    ],
    ids=["missing", "unknown", "no-scheme", "basic", "empty", "actor-header-only"],
)
def test_missing_or_bad_credentials_are_unauthenticated(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    error = rpc_error(
        lambda: stub(channel).Replan(pb.ReplanRequest(), metadata=metadata, timeout=5)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert Recorder.seen == []


@pytest.mark.parametrize(
    ("token", "call"),
    [
        (VIEWER, "Replan"),  # read only
        (ORCHESTRATOR, "ReviewPlan"),  # a service may plan but not approve
        (PERSON, "Replan"),  # the reviewer's token does not plan
    ],
)
def test_a_known_caller_without_the_role_is_permission_denied(
    channel: grpc.Channel, token: str, call: str
) -> None:
    requests = {"Replan": pb.ReplanRequest(), "ReviewPlan": pb.ReviewPlanRequest()}
    method = getattr(stub(channel), call)
    error = rpc_error(lambda: method(requests[call], metadata=bearer(token), timeout=5))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert "role" in error.details()
    assert Recorder.seen == []


def test_a_person_with_review_may_review(channel: grpc.Channel) -> None:
    stub(channel).ReviewPlan(pb.ReviewPlanRequest(), metadata=bearer(PERSON), timeout=5)
    assert Recorder.seen == [("ReviewPlan", "alice@example.com")]


def test_a_refused_stream_sends_nothing(channel: grpc.Channel) -> None:
    request = pb.WatchCampaignRequest(campaign_id="c1")
    error = rpc_error(lambda: list(stub(channel).WatchCampaign(request, timeout=5)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert Recorder.seen == []


def test_health_needs_no_credentials(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_can_be_turned_off(channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    error = rpc_error(
        lambda: list(reflection.ServerReflectionInfo(iter([request]), metadata=bearer(PERSON)))
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_when_on_needs_credentials_too(tmp_path: Path) -> None:
    toml = TOKENS.replace("reflection = false", "reflection = true")
    with (
        ops_server(tmp_path, toml, recorder=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        error = rpc_error(lambda: list(reflection.ServerReflectionInfo(iter([request]))))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        (reply,) = reflection.ServerReflectionInfo(iter([request]), metadata=bearer(VIEWER))
        assert reply.list_services_response.service


def test_every_rpc_has_a_role() -> None:
    service = reallocator_service_pb2.DESCRIPTOR.services_by_name["ReallocatorService"]
    assert set(METHOD_ROLES) == {m.name for m in service.methods}
    assert grpc_pb.ReallocatorServiceStub  # the generated stub exists for these methods


def test_token_commands_make_and_hash_tokens() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "reallocator.cli", "token", "new"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    lines = dict(line.split(":", 1) for line in made.stdout.splitlines())
    token, digest = lines["token"].strip(), lines["sha256"].strip()
    assert len(token) >= 40 and digest == hash_token(token)
    hashed = subprocess.run(
        [sys.executable, "-m", "reallocator.cli", "token", "hash"],
        input=token + "\n", capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert hashed.stdout.strip() == digest


def test_open_channel_sends_the_token_on_plaintext_too(secured: RunningServer) -> None:
    Recorder.seen = []
    with open_channel(f"127.0.0.1:{secured.port}", token=ORCHESTRATOR) as channel:
        stub(channel).Replan(pb.ReplanRequest(), timeout=5)
        list(stub(channel).WatchCampaign(pb.WatchCampaignRequest(campaign_id="c"), timeout=5))
    assert Recorder.seen == [("Replan", "orchestrator")] + [("WatchCampaign", "orchestrator")] * 2

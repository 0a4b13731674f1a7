"""Helpers for the security and operations tests: a server started from a TOML text, with the
real servicer or a recording one that says who it saw and can hold calls open."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import grpc

from reallocator.config import ServerConfig, load_config
from reallocator.server.app import RunningServer, start_server
from reallocator.server.identity import current_actor
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc


class Recorder:
    """Stands in for ReallocatorServicer: records (method, actor) of every call it receives;
    AssessPacing waits for `gate` when one is set (to hold calls in progress)."""

    seen: ClassVar[list[tuple[str, str]]] = []
    gate: ClassVar[threading.Event | None] = None
    entered: ClassVar[threading.Semaphore] = threading.Semaphore(0)
    fail_with: ClassVar[Exception | None] = None  # ReviewPlan raises it when set
    ended: ClassVar[threading.Event] = threading.Event()  # grpc saw an AssessPacing call end

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    def assess_pacing(self, request: Any, context: grpc.ServicerContext) -> Any:
        Recorder.seen.append(("AssessPacing", current_actor(context)))
        context.add_callback(Recorder.ended.set)
        Recorder.entered.release()
        if Recorder.gate is not None:
            Recorder.gate.wait(30)
        return pb.AssessPacingResponse()

    def replan(self, request: Any, context: grpc.ServicerContext) -> Any:
        Recorder.seen.append(("Replan", current_actor(context)))
        return pb.ReplanResponse()

    def review_plan(self, request: Any, context: grpc.ServicerContext) -> Any:
        Recorder.seen.append(("ReviewPlan", current_actor(context)))
        if Recorder.fail_with is not None:
            raise Recorder.fail_with
        return pb.ReviewPlanResponse()

    def watch_campaign(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for _ in range(2):
            Recorder.seen.append(("WatchCampaign", current_actor(context)))
            yield pb.WatchCampaignResponse()


@contextmanager
def ops_server(
    folder: Path, toml: str = "", *, recorder: bool = False, **overrides: Any
) -> Iterator[RunningServer]:
    """A server on 127.0.0.1 with the [security]/[overload]/... settings in `toml`."""
    path = folder / "reallocator.toml"
    path.write_text(toml)
    config = load_config(path, env={}, host="127.0.0.1", port=0, **overrides)
    Recorder.seen = []
    Recorder.gate = None
    Recorder.entered = threading.Semaphore(0)
    Recorder.fail_with = None
    Recorder.ended = threading.Event()
    patch = mock.patch("reallocator.server.app.ReallocatorServicer", Recorder)
    with patch if recorder else _nothing():
        running = start_server(config)
    try:
        yield running
    finally:
        running.stop(grace=0)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def stub(channel: grpc.Channel) -> reallocator_service_pb2_grpc.ReallocatorServiceStub:
    return reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)

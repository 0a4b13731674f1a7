"""Optional OpenTelemetry tracing: a span per call when enabled and installed; a warning and
no spans when enabled but not installed (no hard dependency)."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from ops_helpers import ops_server, stub

from reallocator.v1 import reallocator_service_pb2 as pb


class FakeTracer:
    spans: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    @contextmanager
    def start_as_current_span(self, name: str, **options: Any) -> Iterator[None]:
        FakeTracer.spans.append((name, options))
        yield


def _fake_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("opentelemetry")
    trace = types.ModuleType("opentelemetry.trace")
    trace.get_tracer = lambda name: FakeTracer()  # type: ignore[attr-defined]
    trace.SpanKind = types.SimpleNamespace(SERVER="server")  # type: ignore[attr-defined]
    package.trace = trace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "opentelemetry", package)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", trace)


def test_a_span_per_call_when_opentelemetry_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_opentelemetry(monkeypatch)
    FakeTracer.spans = []
    with (
        ops_server(tmp_path, "[tracing]\nenabled = true\n", recorder=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub(channel).Replan(pb.ReplanRequest(), metadata=(("x-reallocator-actor", "bob"),))
    ((name, options),) = FakeTracer.spans
    assert name == "/reallocator.v1.ReallocatorService/Replan"
    assert options["kind"] == "server"
    assert options["attributes"]["enduser.id"] == "bob"


def test_enabled_without_opentelemetry_warns_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    caplog.set_level(logging.WARNING)
    with (
        ops_server(tmp_path, "[tracing]\nenabled = true\n", recorder=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub(channel).Replan(pb.ReplanRequest())
    assert any("opentelemetry is not installed" in r.getMessage() for r in caplog.records)

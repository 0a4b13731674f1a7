"""Optional OpenTelemetry tracing: a server span per call when `[tracing] enabled = true` and
the opentelemetry packages are installed; the service never depends on them."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

log = logging.getLogger(__name__)


class Tracer:
    """Starts a span per call through the OpenTelemetry API (exporters are the SDK's setup)."""

    def __init__(self, trace_api: Any) -> None:
        self._api = trace_api
        self._tracer = trace_api.get_tracer("reallocator.server")

    @contextmanager
    def _span(self, method: str, attributes: dict[str, str]) -> Iterator[None]:
        kind = getattr(self._api, "SpanKind", None)
        server_kind = getattr(kind, "SERVER", None)
        options: dict[str, Any] = {"attributes": attributes}
        if server_kind is not None:
            options["kind"] = server_kind
        with self._tracer.start_as_current_span(method, **options):
            yield

    def span(self, method: str, attributes: dict[str, str]) -> AbstractContextManager[None]:
        return self._span(method, attributes)


def make_tracer(enabled: bool) -> Tracer | None:
    """A Tracer when enabled and `opentelemetry` imports; else None (with a warning if asked)."""
    if not enabled:
        return None
    try:
        trace_api = importlib.import_module("opentelemetry.trace")
    except ImportError:
        log.warning("tracing enabled but opentelemetry is not installed: no spans")
        return None
    return Tracer(trace_api)


def span(tracer: Tracer | None, method: str, attributes: dict[str, str]) -> Any:
    return nullcontext() if tracer is None else tracer.span(method, attributes)


__all__ = ["Tracer", "make_tracer", "span"]

"""The serving status one place sets and every probe reads: gRPC health and the HTTP /healthz.

Adapters that depend on something outside the process (the audit store's database) drive it:
`set_serving(False, reason)` when the dependency is lost, `set_serving(True)` when it is back,
and raise `Unavailable` from a call that needs it; the call interceptor answers UNAVAILABLE with
a retry hint.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Unavailable(Exception):
    """A dependency the call needs is unreachable right now (answered as UNAVAILABLE)."""


class _Probe:
    """The minimum of a ServicerContext that HealthServicer.Check uses."""

    def __init__(self) -> None:
        self.code: Any = None

    def set_code(self, code: Any) -> None:
        self.code = code


class ServingState:
    """Wraps the gRPC health servicer: the services it reports, set together."""

    def __init__(self, servicer: health.HealthServicer, services: tuple[str, ...]) -> None:
        self.servicer = servicer
        self.services = services
        self._lock = threading.Lock()
        self.reason = ""

    def set_serving(self, serving: bool, reason: str = "") -> None:
        with self._lock:
            self.reason = "" if serving else reason
            for name in self.services:
                self.servicer.set(name, SERVING if serving else NOT_SERVING)
        if not serving:
            log.warning("health: NOT_SERVING (%s)", reason or "no reason given")

    def status(self, service: str = "") -> str:
        """The status gRPC health reports for `service` ("SERVICE_UNKNOWN" if none)."""
        probe = _Probe()
        reply = self.servicer.Check(health_pb2.HealthCheckRequest(service=service), probe)
        if probe.code is not None:
            return "SERVICE_UNKNOWN"
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return name


__all__ = ["NOT_SERVING", "SERVING", "ServingState", "Unavailable"]

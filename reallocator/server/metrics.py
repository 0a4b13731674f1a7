"""Prometheus metrics and the HTTP health probe, on their own port beside gRPC.

Each server owns a registry (several servers in one process, as in tests, do not mix counts).
`store_timer(operation)` is the hook the audit store times its work with; it records into the
running server's metrics, or nowhere when none runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

_LATENCY = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DEALS = (10, 100, 1_000, 10_000, 100_000, 1_000_000)


class Metrics:
    """The service's metrics, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "reallocator_calls",
            "Finished calls by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "reallocator_call_seconds",
            "Call duration by method",
            ["method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.in_flight = Gauge("reallocator_calls_in_flight", "Calls in progress", registry=r)
        self.solve = Histogram(
            "reallocator_solve_seconds",
            "Solver time by solver path",
            ["path"],
            buckets=_LATENCY,
            registry=r,
        )
        self.plan_deals = Histogram(
            "reallocator_plan_deals", "Deals in a returned plan", buckets=_DEALS, registry=r
        )
        self.store = Histogram(
            "reallocator_store_seconds",
            "Audit store operation time",
            ["operation"],
            buckets=_LATENCY,
            registry=r,
        )
        self.rejected = Counter(
            "reallocator_overload_rejections",
            "Calls refused by the concurrency limits",
            ["limit"],
            registry=r,
        )

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


_active: Metrics | None = None


def activate(metrics: Metrics | None) -> None:
    """Makes `metrics` the target of `store_timer` (None: record nowhere)."""
    global _active
    _active = metrics


@contextmanager
def store_timer(operation: str) -> Iterator[None]:
    """Times an audit-store operation into reallocator_store_seconds{operation=...}."""
    start = time.perf_counter()
    try:
        yield
    finally:
        target = _active
        if target is not None:
            target.store.labels(operation).observe(time.perf_counter() - start)


class MetricsServer:
    """`GET /metrics` (Prometheus text format) and `GET /healthz` (200 when the gRPC health
    status of the whole server is SERVING, else 503) on a small threaded HTTP server."""

    def __init__(
        self, host: str, port: int, metrics: Metrics, health_status: Callable[[], str]
    ) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, owner.metrics.exposition())
                elif path in ("/healthz", "/readyz"):
                    status = owner.health_status()
                    code = 200 if status == "SERVING" else 503
                    self._send(code, "text/plain; charset=utf-8", f"{status}\n".encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the call log

        self.metrics = metrics
        self.health_status = health_status
        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise OSError(f"metrics: cannot listen on {host}:{port}: {exc}") from exc
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and /healthz on http://%s:%d", self.httpd.server_address[0], self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


__all__ = ["Metrics", "MetricsServer", "activate", "store_timer"]

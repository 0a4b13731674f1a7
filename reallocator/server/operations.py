"""Security and operations around the gRPC server, built from the configuration in one object
so the app wires them in one block: credentials, interceptor, limits, metrics endpoint, warnings.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import grpc
from grpc_health.v1 import health

from reallocator.config import ServerConfig
from reallocator.server import metrics as metrics_module
from reallocator.server.auth import Authenticator
from reallocator.server.interceptors import CallInterceptor
from reallocator.server.limits import CallLimiter
from reallocator.server.metrics import Metrics, MetricsServer
from reallocator.server.serving import ServingState
from reallocator.server.tls import CertificateReloader, reload_on_sighup
from reallocator.server.tracing import make_tracer

log = logging.getLogger(__name__)

RESERVED_THREADS = 2
"""Threads beyond the service's running, waiting, streaming and arriving calls: reflection
always finds one free (health checks have their own, `HEALTH_THREADS`)."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Operations:
    """What `start_server` adds to a plain gRPC server, built from `config.security`/`ops`."""

    def __init__(self, config: ServerConfig, process_index: int = 0) -> None:
        """`process_index`: with several server processes on one port (SO_REUSEPORT), process
        i serves its metrics on metrics_port + i (each process counts its own calls)."""
        self.config = config
        self.process_index = process_index
        security, ops = config.security, config.ops
        self.reloader = CertificateReloader(security) if security.tls else None
        self.metrics = Metrics()
        watches = config.max_watch_streams
        self.limiter = CallLimiter(
            ops.concurrent_limit(config.max_workers, config.max_pending_calls + watches),
            ops.caller_limit(config.max_workers, config.max_pending_calls + watches),
        )
        self.interceptor = CallInterceptor(
            Authenticator(security),
            self.limiter,
            self.metrics,
            retry_after=ops.retry_after.total_seconds(),
            call_log=ops.call_log,
            tracer=make_tracer(ops.tracing),
        )
        self.serving: ServingState | None = None
        self.metrics_server: MetricsServer | None = None

    @property
    def interceptors(self) -> list[grpc.ServerInterceptor]:
        return [self.interceptor]

    @property
    def threads(self) -> int:
        """The service's thread pool. grpcio's sync server holds a thread for a call from its
        first byte, while its request still arrives, so the pool has room for
        `max_arriving_calls` such calls beside the ones the dispatch layer runs, queues and
        streams: a hundred clients that never finish their message (slowloris) hold threads
        that would otherwise serve. Idle threads are only created when needed."""
        c = self.config
        return (
            c.max_workers
            + c.max_pending_calls
            + c.max_watch_streams
            + c.ops.max_arriving_calls
            + RESERVED_THREADS
        )

    @property
    def maximum_concurrent_rpcs(self) -> int:
        """grpc's own bound on calls held (on a thread or waiting for one): the backstop that
        keeps the executor's queue finite; the interceptor's limits answer first, with a hint.
        Health checks count too, so the bound sits above every thread the pool has."""
        return self.threads + self.config.ops.max_queued_calls

    def add_port(self, server: grpc.Server, address: str) -> int:
        port: int
        if self.reloader is not None:
            port = server.add_secure_port(address, self.reloader.credentials())
        else:
            port = server.add_insecure_port(address)
        return port

    def start(self, health_servicer: health.HealthServicer, services: tuple[str, ...]) -> None:
        """After the server started: health state, metrics endpoint, SIGHUP, warnings."""
        self.serving = ServingState(health_servicer, services)
        ops = self.config.ops
        if ops.metrics_enabled:
            port = ops.metrics_port + self.process_index if ops.metrics_port else 0
            self.metrics_server = MetricsServer(
                ops.metrics_host, port, self.metrics, self.serving.status
            )
            self.metrics_server.start()
        metrics_module.activate(self.metrics)
        if self.reloader is not None:
            reload_on_sighup(self.reloader)
        self._warn()

    def _warn(self) -> None:
        security = self.config.security
        exposed = not is_loopback(self.config.host)
        if exposed and not security.tls and not security.auth:
            log.warning(
                "INSECURE: serving plaintext without authentication on %s: anyone who can reach "
                "it may read and change plans. Set [security] tls_cert/tls_key and tokens, or "
                "bind to 127.0.0.1.",
                self.config.address,
            )
        elif exposed and not security.tls:
            log.warning(
                "INSECURE: bearer tokens travel in clear on %s (no TLS): set [security] "
                "tls_cert and tls_key.",
                self.config.address,
            )
        elif exposed and not security.auth and security.tls_client_ca is None:
            log.warning(
                "no authentication on %s: every caller holds every role. Configure "
                "[[security.tokens]] or client certificates.",
                self.config.address,
            )

    def stop(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        metrics_module.activate(None)

    def describe(self) -> dict[str, Any]:
        security = self.config.security
        return {
            "tls": security.tls,
            "mutual_tls": security.tls_client_ca is not None,
            "auth": security.auth,
            "reflection": security.reflection,
            "metrics_port": self.metrics_server.port if self.metrics_server else None,
        }


__all__ = ["Operations", "is_loopback"]

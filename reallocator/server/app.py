"""Builds and runs the gRPC server: ReallocatorService, health checking and reflection."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reallocator.config import ServerConfig
from reallocator.server.dispatch import generic_handler
from reallocator.server.operations import Operations
from reallocator.server.servicer import ReallocatorServicer
from reallocator.v1 import reallocator_service_pb2

log = logging.getLogger(__name__)

SERVICE = reallocator_service_pb2.DESCRIPTOR.services_by_name["ReallocatorService"]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    executor: futures.ThreadPoolExecutor
    ops: Operations | None = None  # security and operations (server/operations.py)

    def stop(self, grace: float | None = None) -> None:
        """Stops taking calls (health NOT_SERVING first) and lets in-flight calls finish for up
        to `grace` seconds; then releases the worker threads so the process can exit."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait((grace or 0.0) + 1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.ops is not None:
            self.ops.stop()


def start_server(config: ServerConfig) -> RunningServer:
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    executor = futures.ThreadPoolExecutor(max_workers=config.max_workers)
    # --- security and operations (server/operations.py): TLS, auth, limits, metrics, logs ---
    ops = Operations(config)
    server = grpc.server(
        executor,
        options=options,
        interceptors=ops.interceptors,
        maximum_concurrent_rpcs=ops.maximum_concurrent_rpcs,
    )
    # --- end security and operations ---
    server.add_generic_rpc_handlers((generic_handler(SERVICE, ReallocatorServicer(config)),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.security.reflection:
        names = (SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    try:
        port = ops.add_port(server, config.address)
    except RuntimeError as exc:  # grpcio raises RuntimeError when the port is taken
        raise OSError(f"cannot listen on {config.address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    server.start()
    for name in ("", SERVICE.full_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    ops.start(health_servicer, ("", SERVICE.full_name))  # metrics endpoint, SIGHUP, warnings
    log.info("reallocator listening on %s:%d %s", config.host, port, ops.describe())
    return RunningServer(server, port, health_servicer, executor, ops)


def serve(config: ServerConfig) -> None:
    """Runs until SIGINT/SIGTERM, then drains in-flight calls for the grace period. The
    handlers are in place before the server reports SERVING, so no signal is missed."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: draining for %.1fs", signum, config.grace_period.total_seconds())
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running = start_server(config)
    while not stopping.wait(0.5):  # a timed wait wakes for signals on every platform
        pass
    running.stop(config.grace_period.total_seconds())

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
from reallocator.server.servicer import ReallocatorServicer
from reallocator.store.sql import default_database_url, open_store
from reallocator.v1 import reallocator_service_pb2

log = logging.getLogger(__name__)

SERVICE = reallocator_service_pb2.DESCRIPTOR.services_by_name["ReallocatorService"]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    executor: futures.ThreadPoolExecutor

    def stop(self, grace: float | None = None) -> None:
        """Stops taking calls (health NOT_SERVING first) and lets in-flight calls finish for up
        to `grace` seconds; then releases the worker threads so the process can exit."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait((grace or 0.0) + 1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)


def start_server(config: ServerConfig) -> RunningServer:
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    executor = futures.ThreadPoolExecutor(max_workers=config.max_workers)
    server = grpc.server(executor, options=options)
    store = open_store(config.database_url or default_database_url())  # migrates at start-up
    servicer = ReallocatorServicer(config, store)
    server.add_generic_rpc_handlers((generic_handler(SERVICE, servicer),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    try:
        port = server.add_insecure_port(config.address)
    except RuntimeError as exc:  # grpcio raises RuntimeError when the port is taken
        raise OSError(f"cannot listen on {config.address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    server.start()
    for name in ("", SERVICE.full_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("reallocator listening on %s:%d", config.host, port)
    return RunningServer(server, port, health_servicer, executor)


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

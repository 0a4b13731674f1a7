"""Builds and runs the gRPC server: ReallocatorService, health checking and reflection.

`serve` runs `workers` server processes sharing one port (SO_REUSEPORT, grpcio's documented way
to use several cores from Python: each process has its own GIL), started with the "spawn"
context before any gRPC thread exists in the parent, which only supervises them: it restarts a
worker that dies and forwards SIGTERM/SIGINT. Every worker answers health checks and drains on
its own: NOT_SERVING first for `drain_delay` while the listener still accepts (a load balancer
sees it and stops sending), then in-flight calls get the rest of `grace_period` to finish, are
cancelled (the servicer stops at its next phase), and the process exits — the whole drain takes
`grace_period`, whatever a call is doing. The workers share CPU-bound calls: a busy one hands
a call to an idle sibling over its private socket (server/peers.py), so the calls of a single
connection use every core.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection
from threadpoolctl import threadpool_limits

from reallocator.config import ServerConfig
from reallocator.server.dispatch import Admission, Sharing, generic_handler
from reallocator.server.memory import (
    collect_garbage_less_often,
    keep_large_buffers,
    return_freed_memory,
)
from reallocator.server.operations import Operations
from reallocator.server.peers import (
    CLOSED,
    SHARED_METHODS,
    Peers,
    PeerSpec,
    forwarder,
    peer_spec,
    start_private_server,
    tagger,
)
from reallocator.server.servicer import ReallocatorServicer
from reallocator.server.warm_up import warm_up
from reallocator.v1 import reallocator_service_pb2

log = logging.getLogger(__name__)

SERVICE = reallocator_service_pb2.DESCRIPTOR.services_by_name["ReallocatorService"]
HEALTH_THREADS = 2
"""Health checks (`Check`) run on threads of their own: a load balancer's probe is answered
whatever the service's calls hold, including calls whose request never finishes arriving."""


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    executor: futures.ThreadPoolExecutor
    ops: Operations | None = None  # security and operations (server/operations.py)
    health_pool: futures.ThreadPoolExecutor | None = None
    admission: Admission | None = None  # the service's calls (their activity: server/memory.py)
    peers: Peers | None = None  # calls shared with the sibling processes (server/peers.py)
    private: tuple[grpc.Server, futures.ThreadPoolExecutor] | None = None  # their calls here

    def stop(self, grace: float | None = None) -> None:
        """Stops taking calls (health NOT_SERVING first) and lets in-flight calls finish for up
        to `grace` seconds; then releases the worker threads so the process can exit."""
        self.health.enter_graceful_shutdown()
        if self.peers is not None:
            self.peers.shut()
        stopped = [self.server.stop(grace)]
        if self.private is not None:
            stopped.append(self.private[0].stop(grace))
        for event in stopped:
            event.wait((grace or 0.0) + 1.0)
        if self.private is not None:
            self.private[1].shutdown(wait=False, cancel_futures=True)
        if self.peers is not None:
            self.peers.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.health_pool is not None:
            self.health_pool.shutdown(wait=False, cancel_futures=True)
        if self.ops is not None:
            self.ops.stop()

    def drain(self, delay: float, grace: float) -> None:
        """The documented drain: NOT_SERVING for `delay` seconds while still accepting calls,
        then in-flight calls get what is left of `grace` before they are cancelled."""
        delay = min(delay, grace)
        self.health.enter_graceful_shutdown()
        if self.peers is not None:
            self.peers.shut()  # siblings stop sending calls here; those in flight finish
        log.info("draining: NOT_SERVING for %.1fs, then %.1fs for calls", delay, grace - delay)
        time.sleep(delay)
        self.stop(max(grace - delay, 0.0))


def start_server(
    config: ServerConfig,
    *,
    reuse_port: bool = False,
    process_index: int = 0,
    peers: PeerSpec | None = None,
    warm: bool = False,
) -> RunningServer:
    """Starts a server in this process (tests, and each worker of `serve`); with `peers`, it
    shares CPU-bound calls with the other workers (server/peers.py); `warm`: it runs the
    warm-up's calls (server/warm_up.py) before it listens."""
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    age, grace = config.ops.max_connection_age_seconds, config.ops.max_connection_age_grace_seconds
    if age:  # bounds how long a call whose request never arrives can hold a thread
        options += [
            ("grpc.max_connection_age_ms", age * 1000),
            ("grpc.max_connection_age_grace_ms", grace * 1000),
        ]
    # --- security and operations (server/operations.py): TLS, auth, limits, metrics, logs ---
    ops = Operations(config, process_index=process_index)
    executor = futures.ThreadPoolExecutor(max_workers=ops.threads, thread_name_prefix="call")
    server = grpc.server(
        executor,
        options=options,
        interceptors=ops.interceptors,
        maximum_concurrent_rpcs=ops.maximum_concurrent_rpcs,
    )
    # --- end security and operations ---
    # No directory for the private sockets (share_calls off, or none could be made): each
    # worker runs its own calls, and nothing is published or forwarded.
    siblings = (
        Peers(peers, process_index, config.max_message_bytes)
        if peers is not None and peers.directory is not None
        else None
    )
    admission = Admission(
        config.max_workers,
        config.max_pending_calls,
        publish=siblings.publish if siblings else None,
        interleave_after=config.interleave_after.total_seconds(),
    )
    watches = Admission(config.max_watch_streams, 0)  # streams wait on the store, not a core
    servicer = ReallocatorServicer(config)
    if warm:  # before the port is opened: a rehearsal must not roll back a caller's writes
        log.info("warmed up in %.0f ms", 1e3 * warm_up(servicer))
    if config.retention_days:
        threading.Thread(
            target=_purge_every_hour, args=(servicer, config.retention_days), daemon=True
        ).start()
    sharing, private = None, None
    if siblings is not None:
        tag = tagger(process_index)
        sharing = Sharing(SHARED_METHODS, tag, forward=forwarder(siblings))
        received = Sharing(
            SHARED_METHODS, tag, forwarded=True, unavailable=ops.interceptor.unavailable
        )
        handler = generic_handler(SERVICE, servicer, admission, watches, received)
        try:
            private = start_private_server(siblings, handler, ops.threads)
        except OSError as exc:  # this worker still forwards; it never opens to its siblings
            log.warning("calls are not shared with this worker: %s", exc)
    server.add_generic_rpc_handlers(
        (generic_handler(SERVICE, servicer, admission, watches, sharing),)
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pool = futures.ThreadPoolExecutor(HEALTH_THREADS, thread_name_prefix="health")
    _add_health(server, health_servicer, health_pool)
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
    if siblings is not None and private is not None:
        siblings.open()
    ops.start(health_servicer, ("", SERVICE.full_name))  # metrics endpoint, SIGHUP, warnings
    watch = getattr(getattr(servicer, "store", None), "watch", None)  # tests replace the servicer
    if watch is not None and ops.serving is not None:
        watch.subscribe(ops.serving.set_serving)  # the store's database away: NOT_SERVING
        watch.keep_watching()  # an outage while no call needs the database shows too
    log.info(
        "reallocator listening on %s:%d (pid %d) %s", config.host, port, os.getpid(), ops.describe()
    )
    return RunningServer(
        server, port, health_servicer, executor, ops, health_pool, admission, siblings, private
    )


def _add_health(
    server: grpc.Server, servicer: health.HealthServicer, pool: futures.ThreadPoolExecutor
) -> None:
    """The generated registration of the health service, with `Check` on `pool` (grpcio runs
    a behaviour on the pool it names in `experimental_thread_pool`). `Watch` streams stay on
    the service's pool, so a flood of watchers cannot take the probes' threads."""

    def check(
        request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        return servicer.Check(request, context)

    check.experimental_thread_pool = pool  # type: ignore[attr-defined]
    codec = {
        "request_deserializer": health_pb2.HealthCheckRequest.FromString,
        "response_serializer": health_pb2.HealthCheckResponse.SerializeToString,
    }
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(check, **codec),
        "Watch": grpc.unary_stream_rpc_method_handler(servicer.Watch, **codec),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(health.SERVICE_NAME, handlers),)
    )
    server.add_registered_method_handlers(health.SERVICE_NAME, handlers)


def _purge_every_hour(servicer: ReallocatorServicer, days: int) -> None:
    """Retention (`retention_days`): snapshots and assessments older than that go, hourly;
    the decision record stays. Several processes may purge at once: deletes are idempotent."""
    while True:
        try:
            gone = servicer.store.purge(int((time.time() - days * 86_400) * 1e6))
            if any(gone):
                log.info("retention: purged %d snapshot(s), %d assessment(s)", *gone)
        except Exception:  # the next hour tries again; a call that needs the store will say
            log.exception("retention: purge failed")
        time.sleep(3600)


def _stop_event() -> threading.Event:
    """An event set by SIGTERM/SIGINT (handlers in place before anything reports SERVING)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def _serve_here(
    config: ServerConfig, reuse_port: bool, process_index: int = 0, peers: PeerSpec | None = None
) -> None:
    """One server in this process until SIGTERM/SIGINT, then the drain; then the process
    exits at once (a call still in a solver must not hold it past the grace period)."""
    stopping = _stop_event()
    one_blas_thread()
    keep_large_buffers()  # before the server's threads start
    collect_garbage_less_often()
    running = start_server(
        config, reuse_port=reuse_port, process_index=process_index, peers=peers,
        warm=config.warm_up,
    )  # fmt: skip
    return_freed_memory(running.admission.activity if running.admission else None)
    while not stopping.wait(0.5):  # a timed wait wakes for signals on every platform
        pass
    running.drain(config.drain_delay.total_seconds(), config.grace_period.total_seconds())
    log.info("drained; exiting")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def one_blas_thread() -> None:
    """Numpy's BLAS runs on one thread in a server process: the server already runs one
    process per core, and BLAS threads woken for a pacing curve's matrix product (10k deals x
    48 hours) cost 4-6 ms of CPU under load where one thread spends 0.3 ms, with the same
    result (threadpoolctl)."""
    threadpool_limits(limits=1, user_api="blas")


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its supervisor dies, however it dies (even
    SIGKILL), so no orphaned worker keeps the port. No-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(config: ServerConfig, log_level: int, index: int, peers: PeerSpec) -> None:
    """A worker process's entry point (spawned: it imports everything afresh)."""
    _die_with_parent()
    from reallocator.server import logs

    logs.configure(config.ops.log_format, logging.getLevelName(log_level))
    try:
        _serve_here(config, reuse_port=True, process_index=index, peers=peers)
    except OSError as exc:
        log.error("%s", exc)
        logging.shutdown()
        os._exit(3)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@contextlib.contextmanager
def _reserved_port(host: str) -> Iterator[socket.socket]:
    """A socket bound (not listening) to the address with SO_REUSEPORT, held while the workers
    run: it picks the port for `--port 0` and fails at once when another program holds the
    port. Not listening, it never receives a connection."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        yield sock
    finally:
        sock.close()


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Raises OSError when something listens on the address already. The workers and their
    reservation share the port through SO_REUSEPORT, which any socket of the same user that
    also set it may join: a second `serve` on the port started without complaint and split
    the calls with the first (a stale server answering beside a new one). A plain bind (with
    SO_REUSEADDR, so connections of a server just stopped do not block it) fails wherever a
    socket listens."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    finally:
        probe.close()


def serve(config: ServerConfig) -> None:
    """Runs until SIGINT/SIGTERM and drains (see the module docstring). With one worker the
    server runs in this process; with more, this process only supervises them."""
    if config.workers <= 1:
        _serve_here(config, reuse_port=False)
        return
    with _reserved_port(config.host) as reservation:
        try:
            if config.port:
                _refuse_a_taken_port(config.host, config.port)
            reservation.bind((config.host, config.port))
        except OSError as exc:
            raise OSError(f"cannot listen on {config.address}: {exc.strerror}") from exc
        port = int(reservation.getsockname()[1])
        with peer_spec(config.workers, share=config.share_calls) as peers:
            _supervise(dataclasses.replace(config, port=port), peers)


def _supervise(config: ServerConfig, peers: PeerSpec) -> None:
    stopping = _stop_event()
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_worker,
            args=(config, level, index, peers),
            name=f"reallocator-worker-{index}",
        )
        process.start()
        return process

    workers = [start(i) for i in range(config.workers)]
    log.info(
        "reallocator supervising %d workers on %s:%d", config.workers, config.host, config.port
    )
    restarts: list[float] = []
    failed = False
    while not stopping.wait(0.5):
        for i, process in enumerate(workers):
            if process.is_alive():
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 2 * config.workers:
                log.error("workers keep exiting (last: code %s); stopping", process.exitcode)
                failed = True
                stopping.set()
                break
            log.error("worker %d (pid %s) exited with %s; restarting", i, process.pid,
                      process.exitcode)  # fmt: skip
            peers.loads[i] = CLOSED  # no call is sent to it until it serves again
            workers[i] = start(i)
    for process in workers:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + config.grace_period.total_seconds() + 2.0
    for process in workers:
        process.join(max(deadline - time.monotonic(), 0.0))
        if process.is_alive():
            log.error("worker pid %s did not exit in time; killing it", process.pid)
            process.kill()
            process.join(1.0)
    log.info("all workers stopped")
    if failed:
        raise OSError(f"workers on {config.host}:{config.port} keep exiting (see the log)")

"""Calls shared between the server processes: a busy worker hands a CPU-bound call to an idle
sibling, so one client connection gets every core.

SO_REUSEPORT spreads connections, not calls: grpcio multiplexes every call a client makes to one
address over one connection (its channels share it too), and the kernel hands that connection to
one worker, so a client with eight calls in flight on one channel got one core of two. Now each
worker also serves the service on a private Unix socket (no interceptors: the caller was
authenticated, limited, counted and logged by the worker it reached), and the workers publish how
many calls each has admitted in a small shared array. A worker that already runs a call and
sees a sibling with fewer forwards the request bytes there and relays the answer: the same bytes
back, or the same status with its details. The caller's deadline and cancellation travel with
the forwarded call; the actor is passed in its header. A call is forwarded at most once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor

from reallocator.server.dispatch import Encoded
from reallocator.server.identity import ACTOR_HEADER, current_actor

log = logging.getLogger(__name__)

SHARED_METHODS = frozenset({"Replan", "AssessPacing"})
"""The CPU-bound calls worth another core (the rest wait on the store, not a core)."""
WORKER_HEADER = "x-reallocator-worker"
"""Trailer: the index of the worker process that computed the answer."""
SUMMARY_HEADER = "x-reallocator-summary-bin"
"""Trailer of a forwarded answer: what the receiving worker's call log and metrics read of it
(the plan's status and solver, its deal count), so the answer itself is never parsed there."""
CLOSED = -1
"""A worker's load while it drains or starts: no call is sent to it."""


@dataclass(frozen=True)
class PeerSpec:
    """What the supervisor hands each worker: the shared loads and the sockets' directory."""

    loads: SynchronizedArray[int]
    directory: str | None  # None: no place for the sockets (every worker runs its own calls)

    def socket(self, index: int) -> str:
        if self.directory is None:
            raise OSError("no directory for the workers' private sockets")
        return os.path.join(self.directory, f"worker-{index}.sock")


@contextmanager
def peer_spec(workers: int, share: bool = True) -> Iterator[PeerSpec]:
    """A spec for `workers` processes (spawn context): every load CLOSED until the worker
    serves; the directory (0700: only this user may call the private sockets) removed after.
    Without a writable temporary directory, or with `share` False (`share_calls`), there is no
    directory and each worker runs its own calls."""
    _remove_stale()
    directory: str | None = None
    if share:
        try:
            directory = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        except OSError as exc:
            log.warning("calls are not shared between the workers: %s", exc)
    loads = multiprocessing.get_context("spawn").Array("i", [CLOSED] * workers)
    try:
        yield PeerSpec(loads, directory)
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


_PREFIX = "reallocator-peers-"


def _remove_stale() -> None:
    """Directories a supervisor killed outright (SIGKILL: no cleanup) left behind: each named
    after its supervisor's pid, removed when that process is gone."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        pid = name.removeprefix(_PREFIX).split("-")[0]
        if not name.startswith(_PREFIX) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except OSError:  # alive (another user's, or ours): left alone
            continue


class Peers:
    """This worker's view of its siblings: publishes its own load, picks where to forward."""

    def __init__(self, spec: PeerSpec, index: int, max_message_bytes: int) -> None:
        self.spec, self.index = spec, index
        self.options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._calls: dict[tuple[int, str], grpc.UnaryUnaryMultiCallable] = {}
        self._channels: dict[int, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._state = threading.Lock()  # publish and shut: CLOSED is never overwritten
        self._open = False

    def publish(self, admitted: int) -> None:
        """This worker's calls admitted (running and waiting), once it is open."""
        with self._state:
            if self._open:
                self.spec.loads[self.index] = admitted

    def open(self, admitted: int = 0) -> None:
        """Siblings may send calls here from now on."""
        with self._state:
            self._open = True
            self.spec.loads[self.index] = admitted

    def shut(self) -> None:
        """No more calls from siblings (draining); those in flight finish."""
        with self._state:
            self._open = False
            self.spec.loads[self.index] = CLOSED

    def pick(self) -> int | None:
        """The least loaded sibling (the lowest index among equals) when this worker is busy and
        that one idle, or when it has at least two calls fewer; None: run it here. A forwarded
        call costs both ends a little CPU: one call more or less either way, the usual jitter of
        workers that each have their own callers, moves nothing."""
        loads = self.spec.loads[:]
        own = loads[self.index]
        best: int | None = None
        for i, load in enumerate(loads):
            if i != self.index and load > CLOSED and (best is None or load < loads[best]):
                best = i
        if best is None or own < 1:
            return None
        load = loads[best]
        return best if load == 0 or own - load >= 2 else None

    def call(self, index: int, path: str) -> grpc.UnaryUnaryMultiCallable:
        """Method `path` of sibling `index`, bytes in and out (one channel per sibling)."""
        with self._lock:
            found = self._calls.get((index, path))
            if found is None:
                channel = self._channels.get(index)
                if channel is None:
                    socket = f"unix:{self.spec.socket(index)}"
                    channel = self._channels[index] = grpc.insecure_channel(socket, self.options)
                found = self._calls[(index, path)] = channel.unary_unary(
                    path, request_serializer=None, response_deserializer=None
                )
            return found

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._calls.clear()


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: Sequence[tuple[str, str | bytes]]


class Relayed(Encoded):
    """A sibling's answer: its bytes for the wire, a summary message for the call log and
    metrics (`deal_count`: the deals the full answer carries)."""

    def __init__(self, summary: message.Message, data: bytes, deal_count: int) -> None:
        super().__init__(summary, data, deal_count)


def forwarder(peers: Peers) -> Callable[[MethodDescriptor, bytes, grpc.ServicerContext], Any]:
    """`forward(method, request bytes, context)`: the answer of a sibling (a `Relayed`, or the
    call ends with its status), or None when no sibling is less busy or none could be reached
    (the call then runs here: a call that never reached a sibling has done nothing there)."""
    out_types: dict[str, type[message.Message]] = {}

    def forward(method: MethodDescriptor, data: bytes, context: grpc.ServicerContext) -> Any:
        target = peers.pick()
        if target is None:
            return None
        remaining = context.time_remaining()
        call = peers.call(target, f"/{method.containing_service.full_name}/{method.name}")
        future = call.future(
            data,
            timeout=remaining,
            metadata=((ACTOR_HEADER, current_actor(context)),),
            wait_for_ready=False,
        )
        context.add_callback(future.cancel)  # the caller gone: the sibling stops too
        try:
            answer: bytes = future.result()
        except grpc.RpcError as exc:
            code, trailers = exc.code(), tuple(exc.trailing_metadata() or ())
            if code == grpc.StatusCode.UNAVAILABLE and _never_reached(exc.details(), trailers):
                log.warning("worker %d unreachable (%s): the call runs here", target, exc.details())
                return None
            context.abort_with_status(
                _Status(code, exc.details() or "", tuple(_relayable(trailers)))
            )
            raise  # abort_with_status raises; for the type checker
        trailers = tuple(future.trailing_metadata() or ())
        kind = out_types.get(method.name)
        if kind is None:
            kind = out_types[method.name] = message_factory.GetMessageClass(method.output_type)
        summary, deals = _summary(kind, trailers)
        context.set_trailing_metadata(tuple(_relayable(trailers)))
        return Relayed(summary, answer, deals)

    return forward


def _never_reached(details: str | None, trailers: Sequence[tuple[str, Any]]) -> bool:
    """Whether an UNAVAILABLE means the call never reached the sibling (no connection to its
    socket: it drains, restarts or is gone), so running it here cannot run it twice. The
    service's own UNAVAILABLE (the store away) carries a retry hint in its status details; a
    connection lost mid-call is relayed as it is (a recorded Replan may have been stored there:
    the caller retries with its request_id)."""
    if any(key == "grpc-status-details-bin" for key, _ in trailers):
        return False
    return "failed to connect" in (details or "").lower()


def _relayable(trailers: Sequence[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    for key, value in trailers:
        if key != SUMMARY_HEADER:
            yield key, value


def _summary(
    kind: type[message.Message], trailers: Sequence[tuple[str, Any]]
) -> tuple[message.Message, int]:
    for key, value in trailers:
        if key == SUMMARY_HEADER:
            summary = kind.FromString(value)
            deals = int(dict(trailers).get(_DEALS_HEADER, 0))
            return summary, deals
    return kind(), 0


_DEALS_HEADER = "x-reallocator-summary-deals"


def tagger(index: int) -> Callable[[grpc.ServicerContext, Any, bool], None]:
    """`tag(context, response, forwarded)`: worker `index` on the answer's trailers, and for a
    forwarded call the summary the forwarding worker's log and metrics read."""
    mine = (WORKER_HEADER, str(index))

    def tag(context: grpc.ServicerContext, response: Any, forwarded: bool) -> None:
        extra: list[tuple[str, Any]] = [mine]
        if forwarded:
            summary, deals = _summarise(response)
            if summary is not None:
                extra += [(SUMMARY_HEADER, summary), (_DEALS_HEADER, str(deals))]
        existing = tuple(context.trailing_metadata() or ())  # type: ignore[attr-defined]
        context.set_trailing_metadata((*existing, *extra))

    return tag


def _summarise(response: Any) -> tuple[bytes | None, int]:
    msg = getattr(response, "message", response)
    counted = getattr(response, "deal_count", None)  # rows serialised apart (`Encoded`)
    if msg.DESCRIPTOR.fields_by_name.get("plan") is not None and msg.HasField("plan"):
        plan = msg.plan
        out = type(msg)()
        out.plan.status = plan.status
        if plan.HasField("solver"):
            out.plan.solver.CopyFrom(plan.solver)
        return out.SerializeToString(), len(plan.deals) if counted is None else counted
    if msg.DESCRIPTOR.fields_by_name.get("assessment") is not None and msg.HasField("assessment"):
        out = type(msg)()
        out.assessment.SetInParent()
        return out.SerializeToString(), len(msg.assessment.deals)
    return None, 0


def start_private_server(
    peers: Peers, handler: grpc.GenericRpcHandler, threads: int
) -> tuple[grpc.Server, futures.ThreadPoolExecutor]:
    """The service on this worker's private socket, for its siblings' forwarded calls."""
    path = peers.spec.socket(peers.index)  # OSError without a directory
    if os.path.exists(path):  # a socket left by this worker's previous process
        os.unlink(path)
    pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="peer")
    server = grpc.server(pool, options=peers.options)
    server.add_generic_rpc_handlers((handler,))
    try:
        bound = server.add_insecure_port(f"unix:{path}")
    except RuntimeError:  # grpcio's word for a socket it cannot bind (a path too long, ...)
        bound = 0
    if not bound:
        pool.shutdown(wait=False)
        raise OSError(f"cannot listen on unix:{path}")
    server.start()
    return server, pool


__all__ = [
    "CLOSED",
    "SHARED_METHODS",
    "WORKER_HEADER",
    "PeerSpec",
    "Peers",
    "Relayed",
    "forwarder",
    "peer_spec",
    "start_private_server",
    "tagger",
]

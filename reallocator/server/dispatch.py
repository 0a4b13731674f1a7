"""Generic gRPC handlers for a service descriptor: requests arrive as raw bytes and are parsed in
the handler, so undecodable bytes answer INVALID_ARGUMENT (grpcio's own deserialiser would answer
INTERNAL); every error a method raises becomes a status through one table
(`server/status_map.py`), an unforeseen one INTERNAL with a request id (logged, never a traceback
or request bytes to the caller); methods the servicer does not implement answer UNIMPLEMENTED."""

from __future__ import annotations

import logging
import re
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from reallocator.core.interrupt import Interrupted
from reallocator.server.errors import abort_with, bad_request_status, short_text
from reallocator.server.logs import note_request
from reallocator.server.serving import Unavailable
from reallocator.server.status_map import ResourceLimit, internal_status, status_for
from reallocator.wire.strings import check_strings
from reallocator.wire.violations import FieldViolation, Violations

log = logging.getLogger(__name__)


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _parse(method: MethodDescriptor, data: bytes, context: grpc.ServicerContext) -> message.Message:
    request = message_factory.GetMessageClass(method.input_type)()
    try:
        request.ParseFromString(data)
    except message.DecodeError as exc:
        violation = FieldViolation(
            "", f"request bytes are not a valid {method.input_type.full_name}: {exc}"
        )
        abort_with(context, bad_request_status([violation]))
    errors = Violations()
    check_strings(request, errors)
    if errors:
        abort_with(context, bad_request_status(errors.items))
    note_request(request)  # the campaign id for the call's log line
    return request


def _fail(method: MethodDescriptor, exc: Exception, context: grpc.ServicerContext) -> None:
    """Ends the call with the status the table gives `exc` (raises, as abort does). An abort the
    method made itself (the context already has a code) passes through unchanged."""
    if context.code() is not None:  # type: ignore[attr-defined]
        raise exc
    status = status_for(exc)
    if status is None:
        request_id = uuid.uuid4().hex[:16]
        # The stack, the type and a cut message: enough to find the bug, and no request bytes
        # beyond what a short message may quote.
        log.error(
            "request %s: %s failed with %s: %s\n%s",
            request_id,
            method.full_name,
            type(exc).__name__,
            short_text(str(exc), 300),
            "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
        )
        status = internal_status(request_id)
    elif isinstance(exc, MemoryError):
        log.warning("%s: out of memory (RESOURCE_EXHAUSTED)", method.full_name)
    abort_with(context, status)


class Busy(ResourceLimit):
    """Every serving slot is taken and the waiting line is full: retry with backoff."""


class _Waiter:
    """A call in the admission line; `granted` once it holds a slot."""

    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False


class Admission:
    """Bounds the service's calls: at most `running` at once, at most `waiting` more queued for a
    slot (until their deadline; a cancelled caller leaves the line), the rest refused at once
    with RESOURCE_EXHAUSTED. The server's thread pool is larger than running + waiting, so
    health checks and reflection always find a free thread, whatever the service's calls do.

    The line is first come, first served: a finished call hands its slot to the longest waiter
    (a semaphore polled with a timeout sends a waiter that checks on its caller to the back,
    and under 32 callers a few waited seconds while others passed).

    `interleave_after` (seconds): a free slot goes to the next call only once every running
    call has run that long. A process's calls share one core under the GIL, so two short calls
    at once only interleave, each taking twice as long, and the tail grows; a long call still
    lets the next one run beside it after that delay."""

    def __init__(
        self,
        running: int,
        waiting: int,
        publish: Callable[[int], None] | None = None,
        interleave_after: float = 0.0,
    ) -> None:
        """`publish(admitted)` is told every change of the calls admitted (under the lock):
        how the other server processes see this one's load (server/peers.py)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a slot handed on or freed
        self._free = running
        self._line: deque[_Waiter] = deque()
        self._started: dict[_Waiter, float] = {}  # the running calls' start (monotonic)
        self._admitted = 0
        self._calls = 0
        self._quiet_since = time.monotonic()
        self.running, self.capacity = running, running + waiting
        self.interleave_after = interleave_after
        self._publish = publish

    def activity(self) -> tuple[int, float]:
        """(calls admitted so far, seconds since the last one ended; 0.0 while any is in):
        what tells the memory trim the server is quiet (server/memory.py)."""
        with self._lock:
            quiet = 0.0 if self._admitted else time.monotonic() - self._quiet_since
            return self._calls, quiet

    @contextmanager
    def slot(self, context: grpc.ServicerContext) -> Iterator[None]:
        mine = _Waiter()
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(
                    f"server busy: {self.running} calls running and "
                    f"{self.capacity - self.running} waiting; retry with backoff"
                )
            self._admitted += 1
            self._calls += 1
            if self._publish is not None:
                self._publish(self._admitted)
            self._line.append(mine)
            self._take_free()
        try:
            if not mine.granted:
                self._wait(mine, context)
            try:
                yield
            finally:
                with self._lock:
                    del self._started[mine]
                    self._hand_on()
        finally:
            with self._lock:
                self._admitted -= 1
                if self._publish is not None:
                    self._publish(self._admitted)
                if not self._admitted:
                    self._quiet_since = time.monotonic()

    def _wait(self, mine: _Waiter, context: grpc.ServicerContext) -> None:
        while True:
            with self._lock:
                checked = time.monotonic() + 0.25  # the caller checked on at least this often
                while not mine.granted:
                    pause = checked - time.monotonic()
                    if pause <= 0:
                        break
                    later = self._take_free()
                    if not mine.granted:
                        self._changed.wait(pause if later is None else min(pause, later))
                if mine.granted:
                    return
            try:
                _check_caller(context, "waiting for a serving slot")
            except BaseException:
                with self._lock:
                    if mine.granted:  # handed the slot meanwhile: pass it on
                        del self._started[mine]
                        self._hand_on()
                    else:
                        self._line.remove(mine)
                        self._changed.notify_all()  # another may head the line now
                raise

    def _take_free(self) -> float | None:
        """A free slot to the head of the line if the running calls have run `interleave_after`
        (the lock held); else the seconds until they will have (None: no free slot or no line)."""
        if not self._line or self._free <= 0:
            return None
        now = time.monotonic()
        if self._started and self.interleave_after > 0:
            later = max(self._started.values()) + self.interleave_after - now
            if later > 0:
                return later
        self._free -= 1
        self._grant(self._line.popleft(), now)
        return None

    def _grant(self, waiter: _Waiter, now: float) -> None:
        waiter.granted = True
        self._started[waiter] = now
        self._changed.notify_all()  # wakes it

    def _hand_on(self) -> None:
        """A slot freed (the lock held): to the first in line when the rule above lets it
        (the waiters are told either way: the head may be due a slot later)."""
        self._free += 1
        self._take_free()
        self._changed.notify_all()


def _check_caller(context: grpc.ServicerContext, phase: str) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise Interrupted("DEADLINE", phase)
    if not context.is_active():
        raise Interrupted("CANCELLED", phase)


@dataclass(frozen=True)
class Sharing:
    """How this process shares calls with its siblings (server/peers.py): `forward` hands a
    call to a less busy one (None: none is; run it here), `tag` marks an answer with the worker
    that computed it. A call that arrived forwarded (`forwarded`) is never forwarded again."""

    methods: frozenset[str]
    tag: Callable[[grpc.ServicerContext, Any, bool], None]
    forward: Callable[[MethodDescriptor, bytes, grpc.ServicerContext], Any] | None = None
    forwarded: bool = False
    unavailable: Callable[[grpc.ServicerContext, Unavailable], None] | None = None
    """Answers Unavailable where no interceptor does (the private server of forwarded calls)."""


def _unary(
    method: MethodDescriptor,
    impl: Callable[..., Any],
    admission: Admission | None,
    sharing: Sharing | None = None,
) -> Callable[[bytes, grpc.ServicerContext], Any]:
    shared = sharing is not None and method.name in sharing.methods
    forward = sharing.forward if sharing is not None and shared else None

    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse(method, data, context)
        if forward is not None:
            relayed = forward(method, data, context)
            if relayed is not None:
                return relayed
        try:
            with admission.slot(context) if admission else nullcontext():
                response = impl(request, context)
            if shared:
                sharing.tag(context, response, sharing.forwarded)  # type: ignore[union-attr]
            return response
        except Unavailable as exc:
            if sharing is not None and sharing.unavailable is not None:
                sharing.unavailable(context, exc)
            raise  # the operations interceptor answers it, with its retry hint
        except Exception as exc:  # every error maps to a status in one place
            _fail(method, exc, context)

    return handle


def _streaming(
    method: MethodDescriptor, impl: Callable[..., Any], admission: Admission | None
) -> Callable[[bytes, grpc.ServicerContext], Iterator[Any]]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        request = _parse(method, data, context)
        try:
            with admission.slot(context) if admission else nullcontext():
                yield from impl(request, context)
        except Unavailable:
            raise  # the operations interceptor answers it, with its retry hint
        except Exception as exc:  # every error maps to a status in one place
            _fail(method, exc, context)

    return handle


def _unimplemented(method: MethodDescriptor) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        _parse(method, data, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method.full_name} is not implemented yet")

    return handle


class Encoded:
    """A response a servicer serialised already (to check its size on the bytes sent): the
    message for whoever reads it on the way out (call log, metrics), the bytes for the wire.
    `deal_count`: the deals the bytes carry where the message does not hold them all (a long
    plan's rows serialised apart: `wire.plan.Rows`); None where it does."""

    def __init__(
        self, response: message.Message, data: bytes, deal_count: int | None = None
    ) -> None:
        self.message = response
        self.data = data
        self.deal_count = deal_count

    def __getattr__(self, name: str) -> Any:
        return getattr(self.message, name)


def _serializer(out: type[message.Message]) -> Callable[[Any], bytes]:
    """Responses as they come: a message is serialised, an `Encoded` one goes out as it is."""

    def serialize(response: Any) -> bytes:
        return response.data if isinstance(response, Encoded) else out.SerializeToString(response)

    return serialize


def generic_handler(
    service: ServiceDescriptor,
    servicer: object,
    admission: Admission | None = None,
    streams: Admission | None = None,
    sharing: Sharing | None = None,
) -> grpc.GenericRpcHandler:
    """One handler per method of `service`, bound to `servicer.<snake_case name>` if it exists;
    `admission` bounds how many calls run and wait at once, `streams` how many server streams
    are open (they wait on the store, so they must not hold a call's slot); `sharing`: calls
    shared with the other server processes."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        out = message_factory.GetMessageClass(method.output_type)
        impl = getattr(servicer, snake_case(method.name), None)
        if method.client_streaming:
            raise NotImplementedError("client-streaming methods are not supported")
        if method.server_streaming:
            fn = _streaming(method, impl, streams) if impl else _unimplemented(method)
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=None, response_serializer=_serializer(out)
            )
        else:
            fn = _unary(method, impl, admission, sharing) if impl else _unimplemented(method)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=None, response_serializer=_serializer(out)
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)

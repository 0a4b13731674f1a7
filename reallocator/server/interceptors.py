"""One server interceptor for every call but health: request id, authentication and roles,
concurrency limits, the caller's identity for the handler, metrics, a log line, a trace span.

The checks run inside the wrapped handler, in the thread that then runs the servicer, so the
client-certificate identity (only on the context) is available, `caller_scope` is seen by the
handler (`identity.current_actor`), and a refused call never reaches the servicer: it ends with
UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED (with google.rpc.RetryInfo) first.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from reallocator.server import logs
from reallocator.server.auth import (
    ANYONE,
    OPEN_SERVICES,
    Authenticator,
    Caller,
    Denied,
    split_method,
)
from reallocator.server.errors import abort_with
from reallocator.server.identity import caller_scope, current_actor
from reallocator.server.limits import CallLimiter
from reallocator.server.metrics import Metrics
from reallocator.server.serving import Unavailable
from reallocator.server.tracing import Tracer, span
from reallocator.v1 import plan_pb2

REQUEST_ID = "x-request-id"
_REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")


def retry_status(code: int, message: str, retry_after: float) -> status_pb2.Status:
    """A status whose details hold a google.rpc.RetryInfo: when to try again."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after * 1e9))
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status_pb2.Status(code=code, message=message, details=[packed])


def _request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return uuid.uuid4().hex


class _Call:
    """One call's bookkeeping between admission and its log line."""

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.start = time.perf_counter()
        self.full_method = method
        self.record = logs.CallRecord(request_id=_request_id(context), method=method)
        self.caller: Caller | None = None
        self.limit_key: str | None = None
        self.failed = False


class CallInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps each handler of the services it guards (all but grpc.health.v1.Health)."""

    def __init__(
        self,
        auth: Authenticator,
        limiter: CallLimiter,
        metrics: Metrics | None = None,
        *,
        retry_after: float = 1.0,
        call_log: bool = True,
        tracer: Tracer | None = None,
    ) -> None:
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.retry_after = retry_after
        self.call_log = call_log
        self.tracer = tracer
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._series: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._solve_series: dict[int, Any] = {}

    def intercept_service(
        self,
        continuation: Callable[[Any], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return handler
        method = details.method
        # grpcio asks on every call; the service's handlers are fixed, so each is wrapped once
        # (~5 us a call). A dict's reads and writes are atomic: two threads that wrap the same
        # handler at once store equal wrappers.
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if split_method(method)[0] in OPEN_SERVICES:
            return handler
        common = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), **common
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream), **common
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream), **common
            )
        return grpc.stream_unary_rpc_method_handler(
            self._unary(method, handler.stream_unary), **common
        )

    # --- the wrappers -----------------------------------------------------------------------

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(method, context)
            try:
                with ExitStack() as scope:
                    self._admit(call, context, scope)
                    response = behavior(request, context)
                logs.note_response(call.record, response)
                self._observe(response)
                return response
            except Unavailable as exc:
                self.unavailable(context, exc)
            except BaseException:
                call.failed = True
                raise
            finally:
                self._close(call, context)

        return handle

    def _stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method, context)
            try:
                with ExitStack() as scope:
                    self._admit(call, context, scope)
                    for response in behavior(request, context):
                        logs.note_response(call.record, response)
                        yield response
            except Unavailable as exc:
                self.unavailable(context, exc)
            except BaseException:
                call.failed = True
                raise
            finally:
                self._close(call, context)

        return handle

    # --- the steps --------------------------------------------------------------------------

    def _admit(self, call: _Call, context: grpc.ServicerContext, scope: ExitStack) -> None:
        """Authenticates, authorises and takes a concurrency slot, or ends the call."""
        try:
            # Without authentication nothing is read (grpcio builds the auth context's dict).
            caller = (
                self.auth.identify(context.invocation_metadata() or (), _auth(context))
                if self.auth.enabled
                else ANYONE
            )
            call.record.caller = caller.name
            self.auth.authorize(caller, call.full_method)
        except Denied as exc:
            code = grpc.StatusCode.PERMISSION_DENIED
            if not exc.authenticated:
                code = grpc.StatusCode.UNAUTHENTICATED
            context.abort(code, str(exc))
            raise AssertionError("unreachable: abort raises") from exc
        call.caller = caller
        if self.auth.enabled:
            key = caller.name
        else:
            call.record.caller = logs.clean(current_actor(context))
            key = _peer_host(context.peer())
        refusal = self.limiter.try_acquire(key)
        if refusal is not None:
            if self.metrics is not None:
                which = "process" if refusal.startswith("server busy") else "caller"
                self.metrics.rejected.labels(which).inc()
            abort_with(
                context, retry_status(code_pb2.RESOURCE_EXHAUSTED, refusal, self.retry_after)
            )
        call.limit_key = key
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        scope.callback(logs.unbind, logs.bind(call.record))
        if self.auth.enabled:
            scope.enter_context(caller_scope(caller.name))
        if self.tracer is not None:
            attributes = {"rpc.method": call.full_method, "enduser.id": call.record.caller}
            scope.enter_context(span(self.tracer, call.full_method, attributes))

    def unavailable(self, context: grpc.ServicerContext, exc: Unavailable) -> None:
        message = f"temporarily unavailable: {exc}"
        abort_with(context, retry_status(code_pb2.UNAVAILABLE, message, self.retry_after))

    def _observe(self, response: Any) -> None:
        """Solve time by solver path and plan size, from a returned plan."""
        if self.metrics is None or not _has(response, "plan"):
            return
        plan = response.plan
        counted = getattr(response, "deal_count", None)  # relayed from another worker
        self.metrics.plan_deals.observe(len(plan.deals) if counted is None else counted)
        if plan.HasField("solver"):
            solver = plan.solver
            series = self._solve_series.get(solver.path)
            if series is None:  # looked up once a path, as `_call_series`
                path = plan_pb2.SolverPath.Name(solver.path)
                series = self._solve_series[solver.path] = self.metrics.solve.labels(path)
            solve = solver.solve_duration
            series.observe(solve.seconds + solve.nanos / 1e9)

    def _call_series(self, method: str, status: str) -> tuple[Any, Any]:
        """The calls counter's and the latency histogram's series of a method and status,
        looked up once (prometheus_client's `labels` costs ~3 us a call). `_observe` and
        `_close` run with metrics only."""
        key = (method, status)
        found = self._series.get(key)
        if found is None:
            metrics = self.metrics
            assert metrics is not None
            found = metrics.calls.labels(method, status), metrics.latency.labels(method)
            self._series[key] = found
        return found

    def _close(self, call: _Call, context: grpc.ServicerContext) -> None:
        seconds = time.perf_counter() - call.start
        _tag(context, call.record.request_id)
        code = context.code()
        if code is None and not call.failed and not context.is_active():
            status = "CANCELLED"  # the client went away or its deadline passed
        elif code is None:
            status = "UNKNOWN" if call.failed else "OK"
        else:
            status = code.name if isinstance(code, grpc.StatusCode) else str(code)
        if call.limit_key is not None:
            self.limiter.release(call.limit_key)
            if self.metrics is not None:
                self.metrics.in_flight.dec()
        method = split_method(call.full_method)[1]
        if self.metrics is not None:
            calls, latency = self._call_series(method, status)
            calls.inc()
            latency.observe(seconds)
        if self.call_log:
            call.record.status = status
            call.record.duration_ms = round(seconds * 1000, 3)
            call.record.method = method
            logs.log_call(call.record)


def _tag(context: grpc.ServicerContext, request_id: str) -> None:
    """Adds x-request-id to the trailers, beside any the call set (error details). Trailers,
    not headers: sending headers early costs an extra write per call (~0.2 ms measured)."""
    existing = tuple(context.trailing_metadata() or ())
    context.set_trailing_metadata((*existing, (REQUEST_ID, request_id)))


def _has(message: Any, field: str) -> bool:
    try:
        return bool(message.HasField(field))
    except (AttributeError, ValueError):
        return False


def _auth(context: grpc.ServicerContext) -> dict[str, list[bytes]]:
    try:
        found: dict[str, list[bytes]] = context.auth_context() or {}
    except Exception:  # some test doubles have no auth context
        return {}
    return found


def _peer_host(peer: str) -> str:
    """ "ipv4:127.0.0.1:5555" -> "ipv4:127.0.0.1" (the limit is per client host)."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


__all__ = ["REQUEST_ID", "CallInterceptor", "retry_status"]

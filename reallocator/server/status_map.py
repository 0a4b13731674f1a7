"""Domain errors -> gRPC statuses: the one table the dispatch layer consults for every call.

A handler raises; `status_for` finds the first table entry whose exception type the error is an
instance of and builds the status (code, short message, details). Anything not in the table is
a bug: the caller gets INTERNAL with a request id and nothing else (no traceback, no request
bytes), and the log line carries the same id.

Adding an error: subclass `ServiceError` and set its `code` (e.g. a store's
``class NotFound(ServiceError): code = grpc.StatusCode.NOT_FOUND``) — nothing else to change; or,
for an exception defined where gRPC is unknown (the core), `register(ExcType, to_status)`.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from reallocator.core.interrupt import Interrupted
from reallocator.core.plan.builder import PlanRejected
from reallocator.server.errors import bad_request_status, precondition_status, short_text
from reallocator.server.interceptors import retry_status
from reallocator.store.errors import StoreError, StoreUnavailable
from reallocator.wire.violations import InvalidRequest

ToStatus = Callable[[BaseException], status_pb2.Status]


class ServiceError(Exception):
    """An error whose gRPC status is its `code` and its message (cut to the message budget).
    Subclass it per meaning (NotFound, Conflict, Unavailable, ...), setting `code`."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=short_text(str(self)))


class ResourceLimit(ServiceError):
    """A request would need more memory or work than the server's limits allow."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def _invalid(exc: BaseException) -> status_pb2.Status:
    assert isinstance(exc, InvalidRequest)
    return bad_request_status(exc.violations)


def _rejected(exc: BaseException) -> status_pb2.Status:
    assert isinstance(exc, PlanRejected)
    failures = [("CONSTRAINT", v.constraint, v.message) for v in exc.violations]
    return precondition_status(str(exc), failures)  # the message names the conflict


def _interrupted(exc: BaseException) -> status_pb2.Status:
    assert isinstance(exc, Interrupted)
    if exc.why == "DEADLINE":
        return status_pb2.Status(
            code=code_pb2.DEADLINE_EXCEEDED,
            message=f"the call's deadline passed; work stopped before {exc.phase}",
        )
    return status_pb2.Status(
        code=code_pb2.CANCELLED, message=f"the call was cancelled; work stopped before {exc.phase}"
    )


def _service(exc: BaseException) -> status_pb2.Status:
    assert isinstance(exc, ServiceError)
    return exc.status()


def _store(exc: BaseException) -> status_pb2.Status:
    assert isinstance(exc, StoreError)
    code = grpc.StatusCode[exc.code]
    return status_pb2.Status(code=code.value[0], message=short_text(str(exc)))


def _store_unavailable(exc: BaseException) -> status_pb2.Status:
    """UNAVAILABLE with a google.rpc.RetryInfo: the database is away, the call is worth a
    retry (a Replan with the same request id is answered once)."""
    assert isinstance(exc, StoreUnavailable)
    return retry_status(code_pb2.UNAVAILABLE, short_text(str(exc)), exc.retry_after)


def _memory(_exc: BaseException) -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="the request needs more memory than the server can give one call: "
        "send fewer deals or shorter series, or split the campaign",
    )


_TABLE: list[tuple[type[BaseException], ToStatus]] = [
    (InvalidRequest, _invalid),
    (PlanRejected, _rejected),
    (Interrupted, _interrupted),
    (ServiceError, _service),
    (StoreUnavailable, _store_unavailable),
    (StoreError, _store),
    (MemoryError, _memory),
]


def register(kind: type[BaseException], to_status: ToStatus) -> None:
    """Adds (or replaces) the mapping of `kind`; entries registered later are tried first, so a
    subclass registered after its base wins."""
    _TABLE[:] = [(k, f) for k, f in _TABLE if k is not kind]
    _TABLE.insert(0, (kind, to_status))


def status_for(exc: BaseException) -> status_pb2.Status | None:
    """The status of a known domain error, or None for anything unforeseen (INTERNAL)."""
    for kind, to_status in _TABLE:
        if isinstance(exc, kind):
            return to_status(exc)
    return None


def internal_status(request_id: str) -> status_pb2.Status:
    """What the caller learns of a bug: that it happened, and the id to find it in the log
    (also as a google.rpc.RequestInfo detail)."""
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.RequestInfo(request_id=request_id))
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (request id {request_id}); the server log has the details",
        details=[packed],
    )


__all__ = ["ResourceLimit", "ServiceError", "internal_status", "register", "status_for"]

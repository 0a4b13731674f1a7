"""The one place that maps domain errors to gRPC status codes and error details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reallocator.wire.violations import FieldViolation


def bad_request_status(
    violations: list[FieldViolation], what: str = "request"
) -> status_pb2.Status:
    """INVALID_ARGUMENT with a google.rpc.BadRequest listing every field and why."""
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=f"invalid {what}: {first.field}: {first.description}{more}",
        details=[packed],
    )


def abort_with(context: grpc.ServicerContext, status: status_pb2.Status) -> None:
    """Ends the call with `status` (raises, as grpc's abort does)."""
    context.abort_with_status(rpc_status.to_status(status))


def field_violations(status: status_pb2.Status) -> list[FieldViolation]:
    """Reads the BadRequest detail back (clients and tests use it)."""
    out: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out


def precondition_status(message: str, failures: list[tuple[str, str, str]]) -> status_pb2.Status:
    """FAILED_PRECONDITION with a google.rpc.PreconditionFailure: (type, subject, description)."""
    detail = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(type=t, subject=s, description=d)
            for t, s, d in failures
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=message, details=[packed])

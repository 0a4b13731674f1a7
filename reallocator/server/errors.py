"""The one place that maps domain errors to gRPC status codes and error details."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reallocator.wire.violations import FieldViolation

E = TypeVar("E")
M = TypeVar("M", bound=Message)

DETAILS_BUDGET = 4_000
"""Most bytes of error details in one status. They travel base64-encoded in a trailer, and gRPC
clients drop a call whose metadata passes 8-16 KiB (the caller then sees only "Stream removed"):
a status listing thousands of violations must be cut, saying how many it left out."""
MESSAGE_BUDGET = 1_000
"""Most bytes (UTF-8) of a status message (the grpc-message trailer)."""
ENTRY_BUDGET = 400
"""Most bytes (UTF-8) of one detail string (a field path, a description, a subject): one entry
quoting a 100 KB value must not push the trailer past what clients accept."""


def _cut(entries: Sequence[E], more: Callable[[int], E], wrap: Callable[[list[E]], M]) -> M:
    """`wrap` of as many leading `entries` as fit the details budget (at least one), and then
    `more(k)`, the entry saying how many of them were left out after the first k."""

    def build(k: int) -> M:
        kept = list(entries[:k])
        return wrap([*kept, more(k)] if k < len(entries) else kept)

    lo, hi = min(1, len(entries)), len(entries)
    while lo < hi:  # the largest k whose message fits, by bisection
        mid = (lo + hi + 1) // 2
        if build(mid).ByteSize() <= DETAILS_BUDGET:
            lo = mid
        else:
            hi = mid - 1
    return build(lo)


def short_text(text: str, budget: int = MESSAGE_BUDGET) -> str:
    """`text` cut to at most `budget` bytes of UTF-8, the cut marked with an ellipsis (what
    travels is bytes: a value of multi-byte characters must not pass the trailer limit)."""
    if len(text) <= budget // 4:
        return text  # fits whatever its characters
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= budget:
        return text
    return raw[: budget - 3].decode("utf-8", errors="ignore") + "…"


def _entry(text: str) -> str:
    return short_text(text, ENTRY_BUDGET)


def bad_request_status(
    violations: list[FieldViolation], what: str = "request"
) -> status_pb2.Status:
    """INVALID_ARGUMENT with a google.rpc.BadRequest listing the fields and why (as many as the
    details budget allows, then one entry saying how many more)."""
    entries = [
        error_details_pb2.BadRequest.FieldViolation(
            field=_entry(v.field), description=_entry(v.description)
        )
        for v in violations
    ]
    detail = _cut(
        entries,
        lambda k: error_details_pb2.BadRequest.FieldViolation(
            field=entries[k].field,
            description=f"... and {len(entries) - k} more violations, left out",
        ),
        lambda kept: error_details_pb2.BadRequest(field_violations=kept),
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=short_text(
            f"invalid {what}: {_entry(first.field)}: {_entry(first.description)}{more}"
        ),
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
    """FAILED_PRECONDITION with a google.rpc.PreconditionFailure: (type, subject, description),
    as many as the details budget allows, then one entry saying how many more."""
    entries = [
        error_details_pb2.PreconditionFailure.Violation(
            type=_entry(t), subject=_entry(s), description=_entry(d)
        )
        for t, s, d in failures
    ]
    detail = _cut(
        entries,
        lambda k: error_details_pb2.PreconditionFailure.Violation(
            type=entries[k].type,
            subject="...",
            description=f"and {len(entries) - k} more, left out",
        ),
        lambda kept: error_details_pb2.PreconditionFailure(violations=kept),
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION, message=short_text(message), details=[packed]
    )


def too_large_status(what: str, size: int, limit: int, remedy: str) -> status_pb2.Status:
    """RESOURCE_EXHAUSTED for a response over the message limit, said before grpc would fail
    it with a bare "Sent message larger than max": how large, the limit, and what to ask
    instead (google.rpc.ErrorInfo reason RESPONSE_TOO_LARGE, sizes in its metadata)."""
    detail = error_details_pb2.ErrorInfo(
        reason="RESPONSE_TOO_LARGE",
        domain="reallocator.v1",
        metadata={"response_bytes": str(size), "max_message_bytes": str(limit)},
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED,
        message=(
            f"the {what} is {size / 1e6:.1f} MB, over the server's message limit of "
            f"{limit / 2**20:.0f} MiB (max_message_bytes): {remedy}"
        ),
        details=[packed],
    )

"""Store errors, each with the gRPC status code the dispatch layer answers with.

(When the server's `ServiceError` base exists, these become its subclasses; `code` stays.)
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class StoreError(Exception):
    """Base: `code` is the status the API answers with; the message is shown to the caller."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL


class NotFound(StoreError):
    """No such plan / request."""

    code = grpc.StatusCode.NOT_FOUND


class Conflict(StoreError):
    """The etag the caller sent is stale: someone changed the plan since it was read."""

    code = grpc.StatusCode.ABORTED


class AlreadyExists(StoreError):
    """An idempotency key reused with a different request body."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(StoreError):
    """The plan's state does not allow the action (approving a rejected plan, ...)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(StoreError):
    """The database cannot be reached or is locked for longer than the busy timeout."""

    code = grpc.StatusCode.UNAVAILABLE


__all__ = [
    "AlreadyExists",
    "Conflict",
    "FailedPrecondition",
    "NotFound",
    "StoreError",
    "Unavailable",
]

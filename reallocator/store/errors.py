"""What the audit store can refuse; the server maps each to one gRPC status code."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's domain errors."""


class NotFound(StoreError):
    """No such plan, request or campaign (NOT_FOUND)."""


class StaleEtag(StoreError):
    """The record changed since the caller read it (ABORTED: read again, retry)."""


class AlreadyExists(StoreError):
    """An idempotency key reused with a different request body (ALREADY_EXISTS)."""


class InvalidTransition(StoreError):
    """The plan's state does not allow this call, e.g. confirming a rejected plan
    (FAILED_PRECONDITION)."""


class Unavailable(StoreError):
    """The database cannot be reached or is locked beyond the busy timeout (UNAVAILABLE)."""

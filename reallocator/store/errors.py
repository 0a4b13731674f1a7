"""What can go wrong in the audit store, by meaning; the dispatch layer maps each to a status."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors; `code` is the gRPC status code name it maps to."""

    code = "INTERNAL"


class NotFound(StoreError):
    """No such plan (or campaign)."""

    code = "NOT_FOUND"


class AlreadyExists(StoreError):
    """A request id reused with a different request body."""

    code = "ALREADY_EXISTS"


class StaleEtag(StoreError):
    """The plan changed since the caller read it (optimistic concurrency)."""

    code = "ABORTED"


class WrongState(StoreError):
    """The plan's life-cycle state does not allow the call."""

    code = "FAILED_PRECONDITION"


class StoreUnavailable(StoreError, ConnectionError):
    """The database cannot be reached right now (connection refused or lost, server shutting
    down, SQLite locked past its busy timeout): nothing was written, or the write's outcome is
    unknown, so the caller retries after `retry_after` seconds (a Replan with its request id).
    A ConnectionError too, so a server that cannot reach it at start exits with the message."""

    code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


__all__ = ["AlreadyExists", "NotFound", "StaleEtag", "StoreError", "StoreUnavailable", "WrongState"]

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


__all__ = ["AlreadyExists", "NotFound", "StaleEtag", "StoreError", "WrongState"]

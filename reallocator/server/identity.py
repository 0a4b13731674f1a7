"""Who is calling: the identity the audit store records as the actor of every write.

With authentication on, the auth interceptor sets the authenticated caller for the duration of
the call (`caller_scope`); without it, a client may name itself in the `x-reallocator-actor`
metadata header (trusted as given: it is a label, not a credential), else it is "anonymous".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import grpc

ACTOR_HEADER = "x-reallocator-actor"
ANONYMOUS = "anonymous"
MAX_ACTOR_LENGTH = 200

_caller: ContextVar[str | None] = ContextVar("reallocator_caller", default=None)


@contextmanager
def caller_scope(name: str) -> Iterator[None]:
    """Marks `name` as the authenticated caller while the block runs (the auth interceptor)."""
    token = _caller.set(name)
    try:
        yield
    finally:
        _caller.reset(token)


def current_actor(context: grpc.ServicerContext | None) -> str:
    """The authenticated caller, else the actor header, else "anonymous" (cut to 200 chars)."""
    name = _caller.get()
    if name is None and context is not None:
        for key, value in context.invocation_metadata() or ():
            if key == ACTOR_HEADER and isinstance(value, str) and value.strip():
                name = value.strip()
                break
    return (name or ANONYMOUS)[:MAX_ACTOR_LENGTH]


__all__ = ["ACTOR_HEADER", "ANONYMOUS", "caller_scope", "current_actor"]

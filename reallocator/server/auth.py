"""Who may call what: bearer tokens (stored as SHA-256 hex, never in clear), client-certificate
identities under mutual TLS, and one table of the role each RPC needs.

Tokens are random 256-bit strings (`reallocator token new`), so one SHA-256 is enough at rest: a
slow password hash protects guessable secrets, and these are not guessable. A presented token is
hashed and looked up in a dict; the lookup never compares secrets byte by byte.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from reallocator.config import Principal, SecurityConfig

SERVICE = "reallocator.v1.ReallocatorService"
AUTHORIZATION = "authorization"


class Role(StrEnum):
    READ = "read"  # look: assessments, plans, history, watch
    PLAN = "plan"  # propose and report: replan, seller responses, confirm applied
    REVIEW = "review"  # decide: approve or reject a plan, roll one back


# The role each RPC needs. A method missing here is refused to everyone (PERMISSION_DENIED):
# a new RPC gets a role before anyone can call it.
METHOD_ROLES: Mapping[str, Role] = {
    "AssessPacing": Role.READ,
    "GetPlan": Role.READ,
    "ListPlans": Role.READ,
    "GetPacingHistory": Role.READ,
    "WatchCampaign": Role.READ,
    "Replan": Role.PLAN,
    "RecordSellerResponse": Role.PLAN,
    "ConfirmApplied": Role.PLAN,
    "ReviewPlan": Role.REVIEW,
    "RollbackPlan": Role.REVIEW,
}

OPEN_SERVICES = ("grpc.health.v1.Health",)  # answered to anyone, always


def hash_token(token: str) -> str:
    """The hex SHA-256 the configuration stores for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def split_method(full_method: str) -> tuple[str, str]:
    """ "/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


class Denied(Exception):
    """Authentication or authorisation failed; `authenticated` tells which status to answer."""

    def __init__(self, message: str, *, authenticated: bool) -> None:
        super().__init__(message)
        self.authenticated = authenticated


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[str]
    via: str  # "token", "certificate" or "none" (authentication off)


ANYONE = Caller("anonymous", frozenset(Role), "none")


class Authenticator:
    """Maps a call's credentials to a Caller, and checks the role its method needs."""

    def __init__(self, security: SecurityConfig) -> None:
        self.enabled = security.auth
        self._tokens: dict[str, Principal] = {t.sha256: t for t in security.tokens}
        self._clients: dict[str, Principal] = {c.name: c for c in security.clients}

    def identify(
        self, metadata: Iterable[tuple[str, str | bytes]], auth_context: Mapping[str, list[bytes]]
    ) -> Caller:
        """The caller a bearer token names (first), else the client certificate's identity."""
        if not self.enabled:
            return ANYONE
        presented = [v for k, v in metadata if k == AUTHORIZATION]
        if presented:
            value = presented[0]
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if len(presented) > 1 or scheme.lower() != "bearer" or not token.strip():
                raise Denied("expected one 'authorization: Bearer <token>'", authenticated=False)
            principal = self._tokens.get(hash_token(token.strip()))
            if principal is None:
                raise Denied("unknown token", authenticated=False)
            return Caller(principal.name, principal.roles, "token")
        for name in certificate_names(auth_context):
            client = self._clients.get(name)
            if client is not None:
                return Caller(client.name, client.roles, "certificate")
        if certificate_names(auth_context):
            raise Denied("client certificate identity not configured", authenticated=False)
        raise Denied(
            "credentials required: a bearer token or a client certificate", authenticated=False
        )

    @staticmethod
    def authorize(caller: Caller, full_method: str) -> None:
        service, method = split_method(full_method)
        if service != SERVICE:
            return  # reflection: any authenticated caller
        role = METHOD_ROLES.get(method)
        if role is None:
            raise Denied(f"{method}: no role grants this method", authenticated=True)
        if role not in caller.roles:
            raise Denied(
                f"{caller.name} lacks the {role} role that {method} needs", authenticated=True
            )


def certificate_names(auth_context: Mapping[str, list[bytes]]) -> list[str]:
    """A verified client certificate's identities: subject CN, then its SANs (grpc only fills
    these after verifying the chain against the client CA)."""
    names: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for raw in auth_context.get(key, ()):
            name = raw.decode(errors="replace")
            if name and name not in names:
                names.append(name)
    return names


__all__ = [
    "METHOD_ROLES",
    "OPEN_SERVICES",
    "Authenticator",
    "Caller",
    "Denied",
    "Role",
    "hash_token",
    "new_token",
]

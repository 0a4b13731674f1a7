"""CSRF protection and optional bearer-token authentication for the dashboard.

CSRF: a signed double-submit token. Every page sets a random, HttpOnly, SameSite=Strict cookie;
forms (and htmx, through a header) send HMAC(secret, cookie). A forged cross-site post has
neither the cookie value nor the secret, so it cannot produce the token; a post whose Origin
names another host is refused as well.

Authentication reuses the gRPC API's [security] tokens and roles (server/auth.py): reading
needs the read role, approving or rejecting needs review. A browser presents its token once on
/login; it is kept in an HttpOnly cookie (API clients may send `Authorization: Bearer`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from reallocator.config import SecurityConfig
from reallocator.server.auth import Authenticator, Caller, Denied

CSRF_COOKIE = "reallocator_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOKEN_COOKIE = "reallocator_token"


class CsrfError(Exception):
    """A state-changing request without a valid CSRF token (403)."""


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def csrf_cookie(request: Request) -> tuple[str, bool]:
    """The browser's CSRF cookie value, and whether it is new (to be set on the response)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) == 43:  # token_urlsafe(32)
        return value, False
    return secrets.token_urlsafe(32), True


def csrf_token(secret: bytes, cookie: str) -> str:
    return hmac.new(secret, cookie.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, secret: bytes, submitted: str) -> None:
    """Raises CsrfError unless `submitted` (form field or header) matches the cookie."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise CsrfError(f"origin {origin!r} is not this site ({host})")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie:
        raise CsrfError("no CSRF cookie: reload the page and try again")
    token = submitted or request.headers.get(CSRF_HEADER, "")
    if not token:
        raise CsrfError(f"{CSRF_FIELD}: required")
    if not hmac.compare_digest(token, csrf_token(secret, cookie)):
        raise CsrfError(f"{CSRF_FIELD}: does not match this browser's session")


class WebAuth:
    """Who is calling, from a bearer header or the login cookie (off: everyone may do all)."""

    def __init__(self, security: SecurityConfig | None) -> None:
        self.enabled = bool(security and security.auth)
        self._auth = Authenticator(security) if security is not None else None

    def caller(self, request: Request) -> Caller:
        """The caller, or Denied (401) when authentication is on and no valid token came."""
        if not self.enabled or self._auth is None:
            return Caller("web", frozenset({"read", "plan", "review"}), "none")
        header = request.headers.get("authorization", "")
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        if not header and cookie:
            header = f"Bearer {cookie}"
        metadata = [("authorization", header)] if header else []
        return self._auth.identify(metadata, {})

    @staticmethod
    def require(caller: Caller, role: str) -> None:
        if role not in caller.roles:
            raise Denied(f"{caller.name} lacks the {role} role", authenticated=True)


__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "TOKEN_COOKIE",
    "CsrfError",
    "WebAuth",
    "check_csrf",
    "csrf_cookie",
    "csrf_token",
    "new_secret",
]

"""Client channels that speak the server's security: TLS (trusting a CA), a client certificate
for mutual TLS, and a bearer token on every call; and the allocator setting that spares a
Python caller's large requests their page faults. Used by `reallocator health` (which must start
light: only grpc is loaded here), the benchmarks and tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from reallocator.config_error import ConfigError


def read_pem(path: Path, what: str) -> bytes:
    """A PEM file's bytes, or a ConfigError naming the setting (`security.<what>`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"security.{what}: cannot read {path}: {exc}") from exc
    if b"-----BEGIN " not in data:
        raise ConfigError(f"security.{what}: {path} is not PEM")
    return data


def channel_credentials(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    """Client side: trust `ca` (else the system roots); present `cert`/`key` for mutual TLS."""
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key: give both or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "tls_ca") if ca else None,
        private_key=read_pem(key, "tls_key") if key else None,
        certificate_chain=read_pem(cert, "tls_cert") if cert else None,
    )


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` on a plaintext channel (grpc's call credentials
    refuse insecure channels; loopback and test set-ups still need the header)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._with_token(details), request)


def open_channel(
    target: str,
    *,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    token: str | None = None,
    server_name: str | None = None,
    tls: bool = False,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to `target`: TLS when any TLS setting is given (or `tls`), else plaintext."""
    opts = list(options)
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name))
    if tls or tls_ca or tls_cert or tls_key:
        credentials = channel_credentials(tls_ca, tls_cert, tls_key)
        if token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token)
            )
        return grpc.secure_channel(target, credentials, options=opts)
    channel = grpc.insecure_channel(target, options=opts)
    if token:
        return grpc.intercept_channel(channel, _BearerToken(token))
    return channel


def keep_large_buffers() -> bool:
    """For a Python caller that sends or reads large messages (snapshots of thousands of deals):
    keeps glibc from mapping each large buffer afresh and unmapping it when freed, which it does
    by default for every serialisation of the request (upb writes it into a new buffer each
    call). Serialising a 10k-deal ReplanRequest (9.7 MB) took 15.6 ms with glibc's defaults and
    2.8 ms with this; a 100k-deal one (62 MB) 65 -> 16 ms. The same allocator settings the
    server makes (`reallocator.server.memory`), its arenas excepted; freed memory up to ~1 GB
    then stays with the process for its next call. Call it once, early (before the threads that
    allocate start). A no-op returning False where glibc is absent or GLIBC_TUNABLES tunes
    malloc already; True when the settings took."""
    from reallocator.server.memory import keep_large_buffers as keep

    return keep(one_arena=False)


__all__ = ["channel_credentials", "keep_large_buffers", "open_channel", "read_pem"]

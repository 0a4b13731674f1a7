"""TLS and mutual TLS for the server, with certificates reloaded without a restart.

grpc asks the fetcher for a new certificate configuration at every TLS handshake; the fetcher
answers None (keep the current one) unless a file changed since the last load or SIGHUP asked
for a reload. A file that fails to load keeps the previous certificates serving and logs why,
so a half-written rotation never takes the service down.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import grpc

from reallocator.client import read_pem
from reallocator.config import SecurityConfig
from reallocator.config_error import ConfigError

log = logging.getLogger(__name__)


class CertificateReloader:
    """Loads the server's key, certificate chain and client CA; reloads them when a file's
    modification time or size changes, or after `request_reload()` (SIGHUP)."""

    def __init__(self, security: SecurityConfig) -> None:
        assert security.tls_cert is not None and security.tls_key is not None
        self._files = {"tls_cert": security.tls_cert, "tls_key": security.tls_key}
        if security.tls_client_ca is not None:
            self._files["tls_client_ca"] = security.tls_client_ca
        self.mutual = security.tls_client_ca is not None
        self._lock = threading.Lock()
        self._forced = False
        self._stamp = self._stamps()
        self.reloads = 0  # configurations handed to grpc after the first
        self.initial = self._configuration()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self._files.values():
            try:
                info = path.stat()
                stamps.append((info.st_mtime_ns, info.st_size))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def _configuration(self) -> Any:
        key = read_pem(self._files["tls_key"], "tls_key")
        chain = read_pem(self._files["tls_cert"], "tls_cert")
        ca = read_pem(self._files["tls_client_ca"], "tls_client_ca") if self.mutual else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def request_reload(self) -> None:
        with self._lock:
            self._forced = True

    def fetch(self) -> Any:
        """grpc's certificate configuration fetcher: a new configuration, or None for no change."""
        with self._lock:
            stamp = self._stamps()
            if stamp == self._stamp and not self._forced:
                return None
            self._stamp, self._forced = stamp, False
            try:
                configuration = self._configuration()
            except ConfigError as exc:
                log.error("TLS reload failed, still serving the previous certificates: %s", exc)
                return None
            self.reloads += 1
            log.info("TLS certificates reloaded from %s", ", ".join(map(str, self._files.values())))
            return configuration

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.initial, self.fetch, require_client_authentication=self.mutual
        )


def reload_on_sighup(reloader: CertificateReloader) -> None:
    """SIGHUP reloads the certificates at the next handshake (main thread only: elsewhere
    Python cannot install signal handlers; file changes are still picked up)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return

    def on_sighup(_signum: int, _frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading TLS certificates at the next handshake")
        reloader.request_reload()

    signal.signal(signal.SIGHUP, on_sighup)


__all__ = ["CertificateReloader", "reload_on_sighup"]

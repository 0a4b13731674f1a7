"""The configuration error, apart from the configuration itself, so light commands (the health
check, clients) can raise and catch it without loading what the server's settings need."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


__all__ = ["ConfigError"]

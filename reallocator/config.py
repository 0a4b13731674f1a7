"""Server configuration: embedded defaults, overridden by a TOML file, env vars, then flags."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from reallocator.core.model import Policy, SeverityTiers
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.violations import Violations

MIB = 1024 * 1024


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    max_workers: int = 8  # threads serving calls
    max_message_bytes: int = 128 * MIB  # receive and send limit: a full 100k-deal plan is 63-68 MB
    solver_time_limit: timedelta = timedelta(seconds=10)
    grace_period: timedelta = timedelta(seconds=5)  # on SIGTERM: finish in-flight calls
    default_policy: Policy = field(default_factory=Policy)
    # The audit store ([store] database_url): "" = SQLite at store.sql.default_database_url()
    database_url: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_ENV = {
    "REALLOCATOR_HOST": ("host", str),
    "REALLOCATOR_PORT": ("port", int),
    "REALLOCATOR_MAX_WORKERS": ("max_workers", int),
    "REALLOCATOR_MAX_MESSAGE_BYTES": ("max_message_bytes", int),
    "REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS": ("solver_time_limit", float),
    "REALLOCATOR_DATABASE_URL": ("database_url", str),
}

_DURATION_FIELDS = {"solver_time_limit", "grace_period"}
_POLICY_DURATIONS = {"stalled_window", "min_evidence", "cooldown"}


def _seconds(name: str, value: Any) -> timedelta:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}: expected a non-negative number of seconds, got {value!r}")
    return timedelta(seconds=float(value))


def _policy(table: dict[str, Any], base: Policy) -> Policy:
    known = {f.name for f in dataclasses.fields(Policy)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        name = key.removesuffix("_seconds") if key.endswith("_seconds") else key
        if name not in known:
            raise ConfigError(f"policy.{key}: unknown setting (known: {', '.join(sorted(known))})")
        if name in _POLICY_DURATIONS:
            changes[name] = _seconds(f"policy.{key}", value)
        elif name == "severity":
            if not isinstance(value, dict) or not set(value) <= {"material", "critical"}:
                raise ConfigError("policy.severity: expected a table with material and critical")
            changes[name] = SeverityTiers(
                **{k: _typed(f"policy.severity.{k}", v, 0.0) for k, v in value.items()}
            )
        else:
            changes[name] = _typed(f"policy.{key}", value, getattr(base, name))
    policy = dataclasses.replace(base, **changes)
    # The same range rules as a request's policy: one source of truth.
    errors = Violations()
    decode_policy(encode_policy(policy), Policy(), errors)
    if errors:
        raise ConfigError("; ".join(f"{v.field}: {v.description}" for v in errors.items))
    return policy


def _typed(name: str, value: Any, default: Any) -> Any:
    """A TOML value of the setting's type (ints accepted where floats are expected)."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{name}: expected {type(default).__name__}, got {value!r}")
    if isinstance(value, int | float) and value < 0:
        raise ConfigError(f"{name}: must not be negative, got {value!r}")
    return value


_STORE_KEYS = {"database_url"}


def _store(table: Any, config: ServerConfig) -> ServerConfig:
    """The [store] table: where the audit store lives."""
    if not isinstance(table, dict):
        raise ConfigError("store: expected a table")
    unknown = set(table) - _STORE_KEYS
    if unknown:
        raise ConfigError(f"store: unknown settings {sorted(unknown)} (known: database_url)")
    if "database_url" in table:
        url = table["database_url"]
        if not isinstance(url, str):
            raise ConfigError(f"store.database_url: expected a string, got {url!r}")
        config = dataclasses.replace(config, database_url=url)
    return config


def load_config(
    path: Path | None = None, env: dict[str, str] | None = None, **overrides: Any
) -> ServerConfig:
    """Defaults < TOML file ([server], [policy], [store]) < REALLOCATOR_* env vars < explicit
    overrides."""
    config = ServerConfig()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        server = dict(data.get("server", {}))
        for key in list(server):
            if key.endswith("_seconds") and key.removesuffix("_seconds") in _DURATION_FIELDS:
                server[key.removesuffix("_seconds")] = _seconds(key, server.pop(key))
        known = {f.name for f in dataclasses.fields(ServerConfig)} - {
            "default_policy",
            *_STORE_KEYS,
        }
        unknown = set(server) - known
        if unknown:
            raise ConfigError(f"server: unknown settings {sorted(unknown)}")
        defaults = ServerConfig()
        for key in known & set(server):
            if key not in _DURATION_FIELDS:
                server[key] = _typed(f"server.{key}", server[key], getattr(defaults, key))
        config = dataclasses.replace(config, **server)
        config = _store(data.get("store", {}), config)
        if "policy" in data:
            config = dataclasses.replace(
                config, default_policy=_policy(data["policy"], config.default_policy)
            )
    for var, (name, kind) in _ENV.items():
        raw = (env if env is not None else os.environ).get(var)
        if raw is None or raw == "":
            continue
        try:
            value: Any = kind(raw)
        except ValueError as exc:
            raise ConfigError(f"{var}: cannot read {raw!r} as {kind.__name__}") from exc
        if name in _DURATION_FIELDS:
            value = _seconds(var, value)
        config = dataclasses.replace(config, **{name: value})
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port: must be in 0-65535, got {config.port}")
    if config.max_workers < 1:
        raise ConfigError(f"max_workers: must be at least 1, got {config.max_workers}")
    if config.max_message_bytes < MIB:
        raise ConfigError(
            f"max_message_bytes: must be at least {MIB}, got {config.max_message_bytes}"
        )
    return config

"""Server configuration: embedded defaults, overridden by a TOML file, env vars, then flags.

Durations have one spelling everywhere: `<name>_seconds`, a number of seconds, in TOML
(`stalled_window_seconds = 21600`), environment variables (`REALLOCATOR_<NAME>_SECONDS`), flags
(`--<name>-seconds`) and the simulator's `--policy` JSON. `<name>` alone, or another unit, is an
error that names the spelling to use.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from reallocator.config_error import ConfigError as ConfigError
from reallocator.core.model import Policy, SeverityTiers
from reallocator.wire.limits import DEFAULT_LIMITS, WireLimits
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.violations import Violations

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    # Calls one process runs at once. A call is CPU-bound Python: a process's threads share one
    # core under the GIL, so more only interleave calls and cost throughput (8 at once ran at
    # half the rate of 1); 2 lets a small call run beside a long one. Cores: `workers`.
    max_workers: int = 2
    # ... of which a second starts only once those running have run this long: two short calls
    # at once only interleave (8 clients of 50-deal calls: p99 ~20 % lower than starting every
    # call at once), and a long call still lets a short one in after this delay.
    interleave_after: timedelta = timedelta(milliseconds=20)
    max_message_bytes: int = 128 * MIB  # receive and send limit: a full 100k-deal plan is 63-68 MB
    solver_time_limit: timedelta = timedelta(seconds=10)
    grace_period: timedelta = timedelta(seconds=5)  # on SIGTERM: the whole drain, at most
    drain_delay: timedelta = timedelta(seconds=1)  # ... of which NOT_SERVING, still accepting
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # server processes
    # With workers > 1: a busy worker hands a Replan or AssessPacing to an idle sibling over a
    # private Unix socket (server/peers.py), so one connection's calls use every core.
    share_calls: bool = True
    # `serve`: each worker runs the example Replan and an AssessPacing through itself before it
    # listens (server/warm_up.py; nothing stored), so no caller's call is a process's first.
    warm_up: bool = True
    max_pending_calls: int = 32  # calls waiting for a thread beyond max_workers; more: refused
    max_watch_streams: int = (
        8  # WatchCampaign streams open at once (beside the calls); more: refused
    )
    watch_poll: timedelta = timedelta(seconds=1)  # how often a watch reads the store for news
    default_policy: Policy = field(default_factory=Policy)
    security: SecurityConfig = field(default_factory=lambda: SecurityConfig())
    ops: OpsConfig = field(default_factory=lambda: OpsConfig())
    database_url: str = ""  # the audit store; "" = SQLite file reallocator.db in the working dir
    retention_days: int = 0  # snapshots and assessments older than this are purged; 0 = kept
    # Per-request limits (wire/limits.py says why each exists): checked before the work.
    max_arrow_bytes: int = DEFAULT_LIMITS.max_arrow_bytes
    max_id_length: int = DEFAULT_LIMITS.max_id_length
    max_span_days: int = DEFAULT_LIMITS.max_span_days
    max_buckets: int = DEFAULT_LIMITS.max_buckets
    max_budget_changes: int = DEFAULT_LIMITS.max_budget_changes
    max_flights: int = DEFAULT_LIMITS.max_flights
    max_schedule_window_hours: int = DEFAULT_LIMITS.max_schedule_window_hours

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def wire_limits(self) -> WireLimits:
        return WireLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(WireLimits)})


_ENV = {
    "REALLOCATOR_HOST": ("host", str),
    "REALLOCATOR_PORT": ("port", int),
    "REALLOCATOR_MAX_WORKERS": ("max_workers", int),
    "REALLOCATOR_INTERLEAVE_AFTER_SECONDS": ("interleave_after", float),
    "REALLOCATOR_MAX_MESSAGE_BYTES": ("max_message_bytes", int),
    "REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS": ("solver_time_limit", float),
    "REALLOCATOR_GRACE_PERIOD_SECONDS": ("grace_period", float),
    "REALLOCATOR_DATABASE_URL": ("database_url", str),
    "REALLOCATOR_RETENTION_DAYS": ("retention_days", int),
    "REALLOCATOR_DRAIN_DELAY_SECONDS": ("drain_delay", float),
    "REALLOCATOR_WORKERS": ("workers", int),
    "REALLOCATOR_SHARE_CALLS": ("share_calls", bool),
    "REALLOCATOR_WARM_UP": ("warm_up", bool),
    "REALLOCATOR_MAX_PENDING_CALLS": ("max_pending_calls", int),
    "REALLOCATOR_MAX_WATCH_STREAMS": ("max_watch_streams", int),
    "REALLOCATOR_WATCH_POLL_SECONDS": ("watch_poll", float),
    **{f"REALLOCATOR_{f.name.upper()}": (f.name, int) for f in dataclasses.fields(WireLimits)},
}

_DURATION_FIELDS = {
    "solver_time_limit",
    "grace_period",
    "drain_delay",
    "watch_poll",
    "interleave_after",
}
POLICY_DURATIONS = frozenset(
    {
        "stalled_window",
        "min_evidence",
        "cooldown",
        "answer_time",
        "forecast_prior",
        "protect_window",
        "reversal_window",
    }
)
"""Policy fields that are durations: spelled `<name>_seconds` in every configuration source."""


_OTHER_UNITS = frozenset({"ms", "millis", "milliseconds", "s", "secs", "sec", "minutes", "mins"})
_OTHER_UNITS |= {"m", "h", "hours", "hrs", "d", "days"}


def duration_key(key: str, durations: frozenset[str] | set[str], where: str) -> str | None:
    """The duration a `<name>_seconds` key sets, None for a key that is not a duration; a
    duration spelled any other way (`stalled_window`, `stalled_window_hours`) is an error."""
    if key.endswith("_seconds") and key.removesuffix("_seconds") in durations:
        return key.removesuffix("_seconds")
    for name in durations:
        unit = key.removeprefix(name + "_") if key.startswith(name + "_") else None
        if key == name or unit in _OTHER_UNITS:
            raise ConfigError(
                f"{where}{key}: durations are given in seconds as {name}_seconds "
                f"(e.g. {name}_seconds = 3600)"
            )
    return None


def _seconds(name: str, value: Any) -> timedelta:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}: expected a non-negative number of seconds, got {value!r}")
    return timedelta(seconds=float(value))


def _policy(table: dict[str, Any], base: Policy) -> Policy:
    known = {f.name for f in dataclasses.fields(Policy)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        duration = duration_key(key, POLICY_DURATIONS, "policy.")
        name = duration or key
        if name not in known:
            spelled = sorted(f"{k}_seconds" if k in POLICY_DURATIONS else k for k in known)
            raise ConfigError(f"policy.{key}: unknown setting (known: {', '.join(spelled)})")
        if duration is not None:
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


def load_config(
    path: Path | None = None, env: dict[str, str] | None = None, **overrides: Any
) -> ServerConfig:
    """Defaults < TOML file ([server], [policy]) < REALLOCATOR_* env vars < explicit overrides."""
    config = ServerConfig()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        server = dict(data.get("server", {}))
        for key in list(server):
            duration = duration_key(key, _DURATION_FIELDS, "server.")
            if duration is not None:
                server[duration] = _seconds(key, server.pop(key))
        known = {f.name for f in dataclasses.fields(ServerConfig)} - _TABLE_FIELDS
        unknown = set(server) - known
        if unknown:
            raise ConfigError(f"server: unknown settings {sorted(unknown)}")
        defaults = ServerConfig()
        for key in known & set(server):
            if key not in _DURATION_FIELDS:
                server[key] = _typed(f"server.{key}", server[key], getattr(defaults, key))
        config = dataclasses.replace(config, **server)
        if "policy" in data:
            config = dataclasses.replace(
                config, default_policy=_policy(data["policy"], config.default_policy)
            )
        config = _ops_from_toml(data, config)
        store = data.get("store", {})
        unknown_store = set(store) - {"database_url", "retention_days"}
        if unknown_store:
            raise ConfigError(f"store: unknown settings {sorted(unknown_store)}")
        if "retention_days" in store:
            config = dataclasses.replace(
                config, retention_days=_typed("store.retention_days", store["retention_days"], 0)
            )
        if "database_url" in store:
            config = dataclasses.replace(
                config, database_url=_typed("store.database_url", store["database_url"], "")
            )
    for var, (name, kind) in _ENV.items():
        raw = (env if env is not None else os.environ).get(var)
        if raw is None or raw == "":
            continue
        try:
            value: Any = _bool_word(raw) if kind is bool else kind(raw)
        except ValueError as exc:
            wanted = "true or false" if kind is bool else kind.__name__
            raise ConfigError(f"{var}: cannot read {raw!r} as {wanted}") from exc
        if name in _DURATION_FIELDS:
            value = _seconds(var, value)
        config = dataclasses.replace(config, **{name: value})
    config = _ops_from_env(env if env is not None else os.environ, config)
    config, overrides = _ops_overrides(config, overrides)
    given = {k: v for k, v in overrides.items() if v is not None}
    for name in _DURATION_FIELDS:
        seconds = given.pop(f"{name}_seconds", None)
        if seconds is not None:
            given[name] = _seconds(f"--{name.replace('_', '-')}-seconds", seconds)
    config = dataclasses.replace(config, **given)
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port: must be in 0-65535, got {config.port}")
    if config.max_workers < 1:
        raise ConfigError(f"max_workers: must be at least 1, got {config.max_workers}")
    if config.workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {config.workers}")
    if config.retention_days < 0:
        raise ConfigError(f"retention_days: must not be negative, got {config.retention_days}")
    if config.max_watch_streams < 0:
        raise ConfigError(
            f"max_watch_streams: must not be negative, got {config.max_watch_streams}"
        )
    if config.max_pending_calls < 0:
        raise ConfigError(
            f"max_pending_calls: must not be negative, got {config.max_pending_calls}"
        )
    for limit in dataclasses.fields(WireLimits):
        if getattr(config, limit.name) < 1:
            raise ConfigError(
                f"{limit.name}: must be at least 1, got {getattr(config, limit.name)}"
            )
    if config.max_message_bytes < MIB:
        raise ConfigError(
            f"max_message_bytes: must be at least {MIB}, got {config.max_message_bytes}"
        )
    _check_ops(config)
    return config


# --- security and operations: [security], [overload], [metrics], [logging], [tracing] --------

ROLES = ("read", "plan", "review")
_TABLE_FIELDS = {"default_policy", "security", "ops", "database_url"}
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Principal:
    """A caller the server knows: a bearer token (by its SHA-256) or a client-certificate
    identity (subject CN or a DNS/URI SAN), with the roles it holds."""

    name: str
    roles: frozenset[str]
    sha256: str = ""  # tokens only: hex SHA-256 of the token; the token itself is never stored


@dataclass(frozen=True)
class SecurityConfig:
    """TLS, mutual TLS, callers and reflection. Authentication is on when any token or client
    identity is configured; then every call but health must present one."""

    tls_cert: Path | None = None  # PEM certificate chain
    tls_key: Path | None = None  # PEM private key
    tls_client_ca: Path | None = None  # set: mutual TLS, client certificates required
    tokens: tuple[Principal, ...] = ()
    clients: tuple[Principal, ...] = ()
    reflection: bool = True

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def auth(self) -> bool:
        return bool(self.tokens or self.clients)


@dataclass(frozen=True)
class OpsConfig:
    """Overload limits, metrics endpoint, logs and tracing."""

    max_concurrent_calls: int = 0  # 0: max_workers + max_pending_calls (the admission bound)
    max_calls_per_caller: int = 0  # 0: no limit beyond max_concurrent_calls
    max_queued_calls: int = 64  # calls grpc holds beyond its threads; more: RESOURCE_EXHAUSTED
    max_arriving_calls: int = 256  # calls whose request is still arriving (a thread each)
    max_connection_age_seconds: int = 1800  # then GOAWAY: clients reconnect (0: never)
    max_connection_age_grace_seconds: int = 300  # calls left on an aged connection end after
    retry_after: timedelta = timedelta(seconds=1)  # the RetryInfo hint on RESOURCE_EXHAUSTED
    metrics_enabled: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    log_format: str = "json"  # "json": one JSON object per line; "text": human-readable
    call_log: bool = True  # one line per call (never bodies or credentials)
    tracing: bool = False  # OpenTelemetry spans, when its packages are installed

    def concurrent_limit(self, max_workers: int, max_pending: int = 0) -> int:
        """Calls in progress per process: by default what the dispatch layer admits (running
        plus waiting; its thread pool keeps threads free for health checks beyond those)."""
        return self.max_concurrent_calls or max(1, max_workers + max_pending)

    def caller_limit(self, max_workers: int, max_pending: int = 0) -> int:
        return self.max_calls_per_caller or self.concurrent_limit(max_workers, max_pending)


# TOML table.key -> (config part, field)
_OPS_TOML = {
    ("security", "tls_cert"): ("security", "tls_cert"),
    ("security", "tls_key"): ("security", "tls_key"),
    ("security", "tls_client_ca"): ("security", "tls_client_ca"),
    ("security", "reflection"): ("security", "reflection"),
    ("overload", "max_concurrent_calls"): ("ops", "max_concurrent_calls"),
    ("overload", "max_calls_per_caller"): ("ops", "max_calls_per_caller"),
    ("overload", "max_queued_calls"): ("ops", "max_queued_calls"),
    ("overload", "max_arriving_calls"): ("ops", "max_arriving_calls"),
    ("overload", "max_connection_age_seconds"): ("ops", "max_connection_age_seconds"),
    ("overload", "max_connection_age_grace_seconds"): ("ops", "max_connection_age_grace_seconds"),
    ("overload", "retry_after_seconds"): ("ops", "retry_after"),
    ("metrics", "enabled"): ("ops", "metrics_enabled"),
    ("metrics", "host"): ("ops", "metrics_host"),
    ("metrics", "port"): ("ops", "metrics_port"),
    ("logging", "format"): ("ops", "log_format"),
    ("logging", "calls"): ("ops", "call_log"),
    ("tracing", "enabled"): ("ops", "tracing"),
}
_PATHS = {"tls_cert", "tls_key", "tls_client_ca"}

# env var -> (config part, field); also the flags' names without the prefix, lower-cased
_OPS_ENV = {
    "REALLOCATOR_TLS_CERT": ("security", "tls_cert"),
    "REALLOCATOR_TLS_KEY": ("security", "tls_key"),
    "REALLOCATOR_TLS_CLIENT_CA": ("security", "tls_client_ca"),
    "REALLOCATOR_REFLECTION": ("security", "reflection"),
    "REALLOCATOR_MAX_CONCURRENT_CALLS": ("ops", "max_concurrent_calls"),
    "REALLOCATOR_MAX_CALLS_PER_CALLER": ("ops", "max_calls_per_caller"),
    "REALLOCATOR_MAX_ARRIVING_CALLS": ("ops", "max_arriving_calls"),
    "REALLOCATOR_MAX_CONNECTION_AGE_SECONDS": ("ops", "max_connection_age_seconds"),
    "REALLOCATOR_MAX_CONNECTION_AGE_GRACE_SECONDS": ("ops", "max_connection_age_grace_seconds"),
    "REALLOCATOR_METRICS_PORT": ("ops", "metrics_port"),
    "REALLOCATOR_METRICS_HOST": ("ops", "metrics_host"),
    "REALLOCATOR_LOG_FORMAT": ("ops", "log_format"),
}
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _bool_word(raw: str) -> bool:
    """An environment variable's true or false (ValueError for any other word)."""
    if raw.lower() not in _BOOL_WORDS:
        raise ValueError(raw)
    return _BOOL_WORDS[raw.lower()]


def _set(config: ServerConfig, part: str, name: str, value: Any, where: str) -> ServerConfig:
    """`config` with `part.name` set to `value`, checked against the field's type."""
    target = getattr(config, part)
    if name in _PATHS:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{where}: expected a file path, got {value!r}")
        value = Path(value)
    elif name == "retry_after":
        value = _seconds(where, value)
    else:
        value = _typed(where, value, getattr(type(target)(), name))
    changes: dict[str, Any] = {name: value}
    if part == "ops" and name.startswith("metrics_") and name != "metrics_enabled":
        changes["metrics_enabled"] = True  # naming a metrics port or host turns metrics on
    return dataclasses.replace(config, **{part: dataclasses.replace(target, **changes)})


def _principals(entries: Any, table: str, token: bool) -> tuple[Principal, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{table}: expected an array of tables ([[{table}]])")
    found: list[Principal] = []
    allowed = {"name", "roles", "sha256"} if token else {"name", "roles"}
    for i, entry in enumerate(entries):
        where = f"{table}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        if set(entry) - allowed:
            raise ConfigError(f"{where}: unknown settings {sorted(set(entry) - allowed)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}.name: required, a non-empty string")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or not set(roles) <= set(ROLES):
            raise ConfigError(f"{where}.roles: expected a non-empty list from {list(ROLES)}")
        digest = ""
        if token:
            digest = entry.get("sha256", "")
            ok = isinstance(digest, str) and len(digest) == 64 and set(digest) <= _SHA256_HEX
            if not ok:
                raise ConfigError(
                    f"{where}.sha256: expected 64 lower-case hex digits "
                    "(make one with `reallocator token hash`)"
                )
        found.append(Principal(name.strip(), frozenset(roles), digest))
    return tuple(found)


def _ops_from_toml(data: dict[str, Any], config: ServerConfig) -> ServerConfig:
    for table in ("security", "overload", "metrics", "logging", "tracing"):
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{table}: expected a table")
        for key, value in section.items():
            if table == "security" and key in ("tokens", "clients"):
                found = _principals(value, f"security.{key}", token=key == "tokens")
                changes: dict[str, Any] = {key: found}
                security = dataclasses.replace(config.security, **changes)
                config = dataclasses.replace(config, security=security)
                continue
            if (table, key) not in _OPS_TOML:
                known = sorted(k for t, k in _OPS_TOML if t == table)
                raise ConfigError(f"{table}.{key}: unknown setting (known: {', '.join(known)})")
            part, name = _OPS_TOML[(table, key)]
            config = _set(config, part, name, value, f"{table}.{key}")
    return config


def _ops_from_env(env: Any, config: ServerConfig) -> ServerConfig:
    for var, (part, name) in _OPS_ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        value: Any = raw
        default = getattr(type(getattr(config, part))(), name)
        if isinstance(default, bool):
            try:
                value = _bool_word(raw)
            except ValueError as exc:
                raise ConfigError(f"{var}: expected true or false, got {raw!r}") from exc
        elif isinstance(default, int):
            try:
                value = int(raw)
            except ValueError as exc:
                raise ConfigError(f"{var}: cannot read {raw!r} as int") from exc
        config = _set(config, part, name, value, var)
    return config


def _ops_overrides(
    config: ServerConfig, overrides: dict[str, Any]
) -> tuple[ServerConfig, dict[str, Any]]:
    """Applies the flags that set security/ops fields (named like the fields); returns the rest."""
    rest = dict(overrides)
    for part, name in _OPS_ENV.values():
        value = rest.pop(name, None)
        if value is not None:
            config = _set(config, part, name, value, f"--{name.replace('_', '-')}")
    return config, rest


def _check_ops(config: ServerConfig) -> None:
    security, ops = config.security, config.ops
    if (security.tls_cert is None) != (security.tls_key is None):
        raise ConfigError("security.tls_cert and security.tls_key: give both or neither")
    if security.tls_client_ca is not None and security.tls_cert is None:
        raise ConfigError("security.tls_client_ca: mutual TLS needs tls_cert and tls_key")
    if security.clients and security.tls_client_ca is None:
        raise ConfigError(
            "security.clients: certificate identities need tls_client_ca (mutual TLS)"
        )
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(security, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"security.{name}: no such file: {path}")
    for kind in ("tokens", "clients"):
        names = [p.name for p in getattr(security, kind)]
        if len(names) != len(set(names)):
            raise ConfigError(f"security.{kind}: names must be unique")
    digests = [t.sha256 for t in security.tokens]
    if len(digests) != len(set(digests)):
        raise ConfigError("security.tokens: two entries have the same sha256")
    if ops.max_queued_calls < 1:
        raise ConfigError("overload.max_queued_calls: must be at least 1")
    for name in ("max_connection_age_seconds", "max_connection_age_grace_seconds"):
        if not 0 <= getattr(ops, name) <= 365 * 86_400:
            raise ConfigError(f"overload.{name}: must be in 0-31536000, got {getattr(ops, name)}")
    if not 0 <= ops.max_arriving_calls <= 100_000:
        raise ConfigError(
            f"overload.max_arriving_calls: must be in 0-100000, got {ops.max_arriving_calls}"
        )
    if not 0 <= ops.metrics_port <= 65535:
        raise ConfigError(f"metrics.port: must be in 0-65535, got {ops.metrics_port}")
    if ops.log_format not in ("json", "text"):
        raise ConfigError(f"logging.format: expected json or text, got {ops.log_format!r}")

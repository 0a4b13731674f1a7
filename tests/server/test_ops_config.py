"""Configuration of security and operations: TOML < env < flags, clear errors naming the
setting, and the warning for plaintext without authentication on a non-loopback address."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from reallocator.cli import build_parser
from reallocator.config import ConfigError, load_config
from reallocator.server.app import start_server
from reallocator.server.auth import hash_token
from reallocator.server.operations import is_loopback

DIGEST = hash_token("t")


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_defaults_are_plaintext_open_with_limits_from_the_thread_count() -> None:
    config = load_config(env={})
    assert not config.security.tls and not config.security.auth and config.security.reflection
    admitted = config.max_workers + config.max_pending_calls  # the dispatch layer's bound
    assert config.ops.concurrent_limit(config.max_workers, config.max_pending_calls) == admitted
    assert config.ops.caller_limit(config.max_workers, config.max_pending_calls) == admitted
    assert not config.ops.metrics_enabled and config.ops.log_format == "json"


def test_toml_tables_then_env_then_flags(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    path = _toml(
        tmp_path,
        f"""
[security]
tls_cert = "{cert}"
tls_key = "{key}"
reflection = false
[[security.tokens]]
name = "svc"
sha256 = "{DIGEST}"
roles = ["read", "plan"]
[overload]
max_concurrent_calls = 3
max_calls_per_caller = 2
retry_after_seconds = 4
[metrics]
port = 9100
[logging]
format = "text"
calls = false
""",
    )
    config = load_config(path, env={})
    assert config.security.tls_cert == cert and config.security.reflection is False
    (token,) = config.security.tokens
    assert (token.name, token.sha256, token.roles) == ("svc", DIGEST, {"read", "plan"})
    assert (config.ops.max_concurrent_calls, config.ops.max_calls_per_caller) == (3, 2)
    assert config.ops.retry_after == timedelta(seconds=4)
    assert config.ops.metrics_enabled and config.ops.metrics_port == 9100
    assert config.ops.log_format == "text" and config.ops.call_log is False
    env = {"REALLOCATOR_METRICS_PORT": "9200", "REALLOCATOR_REFLECTION": "true",
           "REALLOCATOR_MAX_CONCURRENT_CALLS": "5"}  # fmt: skip
    config = load_config(path, env=env)
    assert (config.ops.metrics_port, config.security.reflection) == (9200, True)
    assert config.ops.max_concurrent_calls == 5
    config = load_config(path, env=env, metrics_port=9300, reflection=False, log_format="json")
    assert (config.ops.metrics_port, config.security.reflection) == (9300, False)
    assert config.ops.log_format == "json"


def test_serve_flags_reach_the_configuration(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["serve", "--no-reflection", "--metrics-port", "0", "--max-concurrent-calls", "2",
         "--log-format", "text"]
    )  # fmt: skip
    from reallocator.cli import _security_flags

    config = load_config(None, env={}, **_security_flags(args))
    assert config.security.reflection is False and config.ops.metrics_enabled
    assert config.ops.max_concurrent_calls == 2 and config.ops.log_format == "text"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[security.tokens]]\nname = "a"\nsha256 = "abc"\nroles = ["read"]', "sha256"),
        (f'[[security.tokens]]\nname = "a"\nsha256 = "{DIGEST}"\nroles = ["admin"]', "roles"),
        (f'[[security.tokens]]\nname = ""\nsha256 = "{DIGEST}"\nroles = ["read"]', "name"),
        (
            f'[[security.tokens]]\nname = "a"\nsha256 = "{DIGEST}"\nroles = ["read"]\n'
            f'[[security.tokens]]\nname = "b"\nsha256 = "{DIGEST}"\nroles = ["read"]',
            "same sha256",
        ),
        ('[[security.clients]]\nname = "x"\nroles = ["read"]', "tls_client_ca"),
        ('[security]\ntls_client_ca = "/etc/hosts"', "mutual TLS needs"),
        ("[security]\ntoken = 1", "security.token: unknown setting"),
        ("[overload]\nmax_concurrent_calls = -1", "must not be negative"),
        ("[overload]\nmax_arriving_calls = 200000", "max_arriving_calls: must be in 0-100000"),
        ("[overload]\nmax_connection_age_seconds = -5", "overload.max_connection_age_seconds"),
        ("[overload]\nmax_connection_age_grace_seconds = 1e3", "expected int"),
        ("[metrics]\nport = 70000", "metrics.port"),
        ('[logging]\nformat = "xml"', "logging.format"),
        ('[tracing]\nenabled = "yes"', "tracing.enabled: expected bool"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_toml(tmp_path, text), env={})


def test_bad_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="REALLOCATOR_REFLECTION"):
        load_config(env={"REALLOCATOR_REFLECTION": "maybe"})
    with pytest.raises(ConfigError, match="REALLOCATOR_METRICS_PORT"):
        load_config(env={"REALLOCATOR_METRICS_PORT": "x"})
    with pytest.raises(ConfigError, match="REALLOCATOR_MAX_CONNECTION_AGE_SECONDS"):
        load_config(env={"REALLOCATOR_MAX_CONNECTION_AGE_SECONDS": "soon"})


def test_slow_sender_settings_size_the_pool_and_grpc_bound() -> None:
    """The pool has a thread for every call the dispatch layer runs, queues and streams, plus
    max_arriving_calls for requests still arriving; grpc's bound sits max_queued_calls above."""
    from reallocator.server.operations import RESERVED_THREADS, Operations

    config = load_config(env={"REALLOCATOR_MAX_ARRIVING_CALLS": "100"})
    ops = Operations(config)
    assert config.ops.max_arriving_calls == 100
    base = config.max_workers + config.max_pending_calls + config.max_watch_streams
    assert ops.threads == base + 100 + RESERVED_THREADS
    assert ops.maximum_concurrent_rpcs == ops.threads + config.ops.max_queued_calls
    assert load_config(env={}).ops.max_connection_age_seconds == 1800


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("", False), ("10.1.2.3", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_plaintext_without_auth_off_loopback_warns_at_start(
    caplog: pytest.LogCaptureFixture, host: str, warned: bool
) -> None:
    caplog.set_level(logging.WARNING)
    running = start_server(load_config(env={}, host=host, port=0))
    running.stop(grace=0)
    warnings = [r.getMessage() for r in caplog.records if "INSECURE" in r.getMessage()]
    assert bool(warnings) is warned
    if warned:
        assert "without authentication" in warnings[0]


def test_the_readme_security_example_loads(tmp_path: Path) -> None:
    """The README's secure TOML is valid (its file paths pointed at files that exist)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Security", 1)[1]
    example = section.split("```toml", 1)[1].split("```", 1)[0]
    for name in ("server.pem", "server.key", "clients-ca.pem"):
        (tmp_path / name).write_text("x")
        example = example.replace(f"/etc/reallocator/tls/{name}", str(tmp_path / name))
    config = load_config(_toml(tmp_path, example), env={})
    assert config.security.tls and config.security.tls_client_ca is not None
    assert {t.name: t.roles for t in config.security.tokens} == {
        "orchestrator": {"read", "plan"},
        "alice@example.com": {"read", "review"},
    }
    assert [c.name for c in config.security.clients] == ["batch-replanner.internal"]
    assert config.security.reflection is False

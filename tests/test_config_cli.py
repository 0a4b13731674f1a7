"""Configuration (defaults < TOML < REALLOCATOR_* env < flags) and the `reallocator` command: help,
clear exit-2 errors naming the bad setting, the health probe, and a real `serve` process that
answers health checks and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

import reallocator.server.app
from reallocator.cli import main
from reallocator.config import MIB, ConfigError, ServerConfig, load_config
from reallocator.core.model import Policy, SeverityTiers
from reallocator.server.app import RunningServer

CLI = [sys.executable, "-m", "reallocator.cli"]


def _clean_env() -> dict[str, str]:
    keep = ("REALLOCATOR_DATABASE_URL",)  # the tests' scratch audit store (conftest.py)
    return {k: v for k, v in os.environ.items() if not k.startswith("REALLOCATOR_") or k in keep}


@pytest.fixture(autouse=True)
def _no_reallocator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REALLOCATOR_") and name != "REALLOCATOR_DATABASE_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """Replaces the blocking server loop: `main(["serve", ...])` records its config and returns."""
    configs: list[ServerConfig] = []
    monkeypatch.setattr(reallocator.server.app, "serve", configs.append)
    return configs


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reallocator.toml"
    path.write_text(text)
    return path


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["serve", "health"]),
        (["serve", "--help"], ["--port", "--config", "--host", "--max-workers", "REALLOCATOR_"]),
        (["health", "--help"], ["--port", "--service", "--timeout"]),
    ],
)
def test_help_exits_0(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def test_help_through_the_module_entry_point() -> None:
    done = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


# --- bad configuration: exit 2 naming the setting ------------------------------------------

BAD_ENV = [
    ("REALLOCATOR_PORT", "abc", "REALLOCATOR_PORT"),
    ("REALLOCATOR_PORT", "70000", "port"),
    ("REALLOCATOR_MAX_WORKERS", "0", "max_workers"),
    ("REALLOCATOR_SHARE_CALLS", "maybe", "REALLOCATOR_SHARE_CALLS"),
    ("REALLOCATOR_MAX_MESSAGE_BYTES", "1000", "max_message_bytes"),
    ("REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS", "-1", "REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS"),
    ("REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS", "nan", "REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS"),
]


@pytest.mark.parametrize(
    ("var", "value", "named"), BAD_ENV, ids=[f"{v}={x}" for v, x, _ in BAD_ENV]
)
def test_bad_environment_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[ServerConfig],
    var: str,
    value: str,
    named: str,
) -> None:
    monkeypatch.setenv(var, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and named in err, err
    assert not served


BAD_TOML = {
    "unknown_server_key": ("[server]\nprot = 50051\n", "prot"),
    "unknown_policy_key": ("[policy]\nnope = 1\n", "policy.nope"),
    "syntax_error": ("[server\nport = 1\n", "reallocator.toml"),
    "port_out_of_range": ("[server]\nport = 70000\n", "port"),
    "port_as_text": ('[server]\nport = "abc"\n', "port"),
    "host_as_number": ("[server]\nhost = 5\n", "host"),
    "share_calls_as_text": ('[server]\nshare_calls = "no"\n', "server.share_calls"),
    "negative_duration": ("[server]\ngrace_period_seconds = -1\n", "grace_period_seconds"),
    "duration_as_text": ('[server]\nsolver_time_limit_seconds = "soon"\n', "solver_time_limit"),
    "policy_value_as_text": ('[policy]\nover_threshold = "high"\n', "policy.over_threshold"),
    "policy_value_out_of_range": ("[policy]\nover_threshold = 0.5\n", "policy.over_threshold"),
    "policy_unknown_severity_key": (
        "[policy]\nseverity = { material = 0.1, bogus = 1 }\n",
        "policy.severity",
    ),
}


@pytest.mark.parametrize(("text", "named"), BAD_TOML.values(), ids=BAD_TOML.keys())
def test_bad_toml_exits_2_naming_the_setting(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    served: list[ServerConfig],
    text: str,
    named: str,
) -> None:
    assert main(["serve", "--config", str(_toml(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and named in err, err
    assert not served


def test_missing_config_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list[ServerConfig]
) -> None:
    missing = tmp_path / "nowhere.toml"
    assert main(["serve", "--config", str(missing)]) == 2
    assert "nowhere.toml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--port", "70000"], "port"), (["--max-message-bytes", "1000"], "max_message_bytes")],
)
def test_bad_flags_exit_2_naming_the_setting(
    capsys: pytest.CaptureFixture[str],
    served: list[ServerConfig],
    flags: list[str],
    named: str,
) -> None:
    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and named in err, err


def test_malformed_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "abc"])
    assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err


# --- precedence ------------------------------------------------------------------------------


def test_defaults() -> None:
    config = load_config(env={})
    assert (config.host, config.port, config.max_workers) == ("0.0.0.0", 50051, 2)
    assert config.max_message_bytes > 4 * MIB  # a 100k-deal request is ~11 MB
    assert config.default_policy == Policy()


def test_toml_over_defaults_env_over_toml_overrides_over_env(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        "[server]\n"
        'host = "10.0.0.1"\nport = 1000\nmax_workers = 2\nmax_message_bytes = 2097152\n'
        "solver_time_limit_seconds = 2.5\ngrace_period_seconds = 1\n",
    )
    env = {"REALLOCATOR_PORT": "2000", "REALLOCATOR_MAX_WORKERS": "3", "REALLOCATOR_HOST": ""}
    toml_only = load_config(path, env={})
    assert (toml_only.host, toml_only.port, toml_only.max_workers) == ("10.0.0.1", 1000, 2)
    assert toml_only.max_message_bytes == 2 * MIB
    assert toml_only.solver_time_limit == timedelta(seconds=2.5)
    assert toml_only.grace_period == timedelta(seconds=1)

    with_env = load_config(path, env=env)
    assert (with_env.host, with_env.port, with_env.max_workers) == ("10.0.0.1", 2000, 3)

    everything = load_config(path, env=env, port=3000, max_workers=None)
    assert (everything.host, everything.port, everything.max_workers) == ("10.0.0.1", 3000, 3)
    assert everything.solver_time_limit == timedelta(seconds=2.5)


def test_environment_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALLOCATOR_PORT", "4321")
    monkeypatch.setenv("REALLOCATOR_SOLVER_TIME_LIMIT_SECONDS", "0.5")
    config = load_config()
    assert config.port == 4321
    assert config.solver_time_limit == timedelta(seconds=0.5)
    assert load_config(env={}).port == 50051


def test_policy_table_sets_the_default_policy(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        "[policy]\nover_threshold = 2\nstalled_window_seconds = 3600\nmin_change = 5\n"
        'auto_apply_up_to = "MINOR"\nseverity = { material = 0.2, critical = 0.4 }\n',
    )
    policy = load_config(path, env={}).default_policy
    assert policy.over_threshold == 2.0 and isinstance(policy.over_threshold, float)
    assert policy.stalled_window == timedelta(hours=1)
    assert policy.min_change == 5
    assert policy.auto_apply_up_to == "MINOR"
    assert policy.severity == SeverityTiers(material=0.2, critical=0.4)
    assert policy.under_threshold == Policy().under_threshold


def test_serve_flags_override_env_and_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[ServerConfig]
) -> None:
    path = _toml(tmp_path, '[server]\nhost = "10.1.1.1"\nport = 1000\nmax_workers = 2\n')
    monkeypatch.setenv("REALLOCATOR_MAX_WORKERS", "3")
    monkeypatch.setenv("REALLOCATOR_PORT", "2000")
    assert main(["serve", "--config", str(path), "--port", "1234"]) == 0
    (config,) = served
    assert (config.host, config.port, config.max_workers) == ("10.1.1.1", 1234, 3)


@pytest.mark.parametrize(
    ("setting", "variable", "on", "off", "flag"),
    [
        ("share_calls", "REALLOCATOR_SHARE_CALLS", "true", "No", "--no-share-calls"),
        ("warm_up", "REALLOCATOR_WARM_UP", "yes", "0", "--no-warm-up"),
    ],
)
def test_a_switch_from_toml_env_and_the_flag(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: list[ServerConfig],
    setting: str,
    variable: str,
    on: str,
    off: str,
    flag: str,
) -> None:
    """share_calls and warm_up: on by default; `<setting> = false`, the variable or the flag
    turn it off, and the environment overrides the file both ways."""
    assert getattr(load_config(env={}), setting)
    toml = _toml(tmp_path, f"[server]\n{setting} = false\n")
    assert not getattr(load_config(toml, env={}), setting)
    assert getattr(load_config(toml, env={variable: on}), setting)
    assert not getattr(load_config(env={variable: off}), setting)
    assert main(["serve"]) == 0 and main(["serve", flag]) == 0
    assert [getattr(c, setting) for c in served] == [True, False]


DURATION_SPELLINGS = {
    "toml_server": ("[server]\ngrace_period = 3\n", "server.grace_period"),
    "toml_server_hours": ("[server]\nsolver_time_limit_hours = 1\n", "solver_time_limit_seconds"),
    "toml_policy_bare": ("[policy]\nstalled_window = 3600\n", "stalled_window_seconds"),
    "toml_policy_hours": ("[policy]\ncooldown_hours = 12\n", "cooldown_seconds"),
    "toml_policy_minutes": ("[policy]\nstalled_window_minutes = 5\n", "stalled_window_seconds"),
}


def test_a_setting_that_only_starts_like_a_duration_is_not_one(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[policy]\nmin_evidence_impressions = 5\nmin_evidence_seconds = 60\n")
    policy = load_config(path, env={}).default_policy
    assert policy.min_evidence_impressions == 5
    assert policy.min_evidence == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("text", "named"), DURATION_SPELLINGS.values(), ids=list(DURATION_SPELLINGS)
)
def test_durations_have_one_spelling(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(_toml(tmp_path, text), env={})


def test_durations_in_seconds_from_toml_env_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[ServerConfig]
) -> None:
    path = _toml(tmp_path, "[server]\nsolver_time_limit_seconds = 4\ngrace_period_seconds = 2\n")
    monkeypatch.setenv("REALLOCATOR_GRACE_PERIOD_SECONDS", "7")
    assert main(["serve", "--config", str(path), "--solver-time-limit-seconds", "1.5"]) == 0
    (config,) = served
    assert config.solver_time_limit == timedelta(seconds=1.5)
    assert config.grace_period == timedelta(seconds=7)
    assert main(["serve", "--grace-period-seconds", "-1"]) == 2


def test_interleave_after_from_toml_env_and_flag_reaches_the_admission_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[ServerConfig]
) -> None:
    assert load_config(env={}).interleave_after == timedelta(milliseconds=20)
    path = _toml(tmp_path, "[server]\ninterleave_after_seconds = 0.05\n")
    assert load_config(path, env={}).interleave_after == timedelta(seconds=0.05)
    env = {"REALLOCATOR_INTERLEAVE_AFTER_SECONDS": "0"}
    assert load_config(path, env=env).interleave_after == timedelta(0)
    monkeypatch.setenv("REALLOCATOR_INTERLEAVE_AFTER_SECONDS", "0.1")
    assert main(["serve", "--interleave-after-seconds", "0.2"]) == 0
    assert served[-1].interleave_after == timedelta(seconds=0.2)
    assert main(["serve", "--interleave-after-seconds", "-1"]) == 2
    with pytest.raises(ConfigError, match="interleave_after"):
        load_config(_toml(tmp_path, "[server]\ninterleave_after_ms = 5\n"), env={})


def test_load_config_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="REALLOCATOR_PORT"):
        load_config(env={"REALLOCATOR_PORT": "eighty"})


# --- health probe ----------------------------------------------------------------------------


def test_health_command_against_a_serving_server(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["health", "--port", str(server.port)]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    service = "reallocator.v1.ReallocatorService"
    assert main(["health", "--port", str(server.port), "--service", service]) == 0


def test_health_command_fails_for_unknown_service_or_no_server(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["health", "--port", str(server.port), "--service", "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert main(["health", "--port", str(free_port()), "--timeout", "2"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


# --- a real server process -------------------------------------------------------------------


def _wait_serving(proc: subprocess.Popen[str], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited early ({proc.returncode}): {proc.communicate()[1]}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail("server did not report SERVING in time")


def test_serve_answers_health_and_exits_0_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        _wait_serving(proc, port)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert time.monotonic() - started < 5
        assert f"127.0.0.1:{port}" in err  # the listening address is logged
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_on_a_port_in_use_fails_with_a_clear_message(server: RunningServer) -> None:
    done = subprocess.run(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert done.returncode == 1
    assert f"127.0.0.1:{server.port}" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr

"""TLS and mutual TLS through real channels, with certificates made for the test: good,
wrong-CA, expired and missing; client-certificate identities mapped to roles; certificates
reloaded on file change and on request (SIGHUP) without a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certs import Authority, Issued
from conftest import free_port, rpc_error
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ops_helpers import Recorder, ops_server, stub

from reallocator.client import open_channel
from reallocator.config import ConfigError, load_config
from reallocator.server.app import RunningServer
from reallocator.server.auth import hash_token
from reallocator.v1 import reallocator_service_pb2 as pb

SERVING = health_pb2.HealthCheckResponse.SERVING
TOKEN = "tls-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued | Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder / "ca"), Authority(folder / "other", "other CA")
    return {
        "ca": ca.pem,
        "other_ca": other.pem,
        "server": ca.issue("server", "localhost", server=True),
        "server_expired": ca.issue("server-old", "localhost", server=True, expired=True),
        "server_other": other.issue("server-other", "localhost", server=True),
        "client": ca.issue("client", "planner.example.com", server=False),
        "client_unknown": ca.issue("client-unknown", "stranger.example.com", server=False),
        "client_expired": ca.issue("client-old", "planner.example.com", server=False, expired=True),
        "client_other": other.issue("client-other", "planner.example.com", server=False),
    }


def _health(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


def _tls_toml(server: Issued, client_ca: Path | None = None, extra: str = "") -> str:
    lines = ["[security]", f'tls_cert = "{server.cert}"', f'tls_key = "{server.key}"']
    if client_ca is not None:
        lines.append(f'tls_client_ca = "{client_ca}"')
    return "\n".join(lines) + "\n" + extra


# --- server TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(pki: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    toml = _tls_toml(pki["server"])
    with ops_server(tmp_path_factory.mktemp("tls"), toml) as running:
        yield running


def test_tls_with_the_right_ca_answers(tls_server: RunningServer, pki: dict) -> None:
    with open_channel(f"localhost:{tls_server.port}", tls_ca=pki["ca"]) as channel:
        assert _health(channel) == SERVING


def test_tls_client_trusting_another_ca_cannot_connect(
    tls_server: RunningServer, pki: dict
) -> None:
    with open_channel(f"localhost:{tls_server.port}", tls_ca=pki["other_ca"]) as channel:
        assert rpc_error(lambda: _health(channel)).code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server: RunningServer) -> None:
    with grpc.insecure_channel(f"localhost:{tls_server.port}") as channel:
        assert rpc_error(lambda: _health(channel)).code() == grpc.StatusCode.UNAVAILABLE


def test_an_expired_server_certificate_is_refused_by_the_client(pki: dict, tmp_path: Path) -> None:
    with (
        ops_server(tmp_path, _tls_toml(pki["server_expired"])) as running,
        open_channel(f"localhost:{running.port}", tls_ca=pki["ca"]) as channel,
    ):
        assert rpc_error(lambda: _health(channel)).code() == grpc.StatusCode.UNAVAILABLE


def test_health_command_over_tls_with_a_token(tls_server: RunningServer, pki: dict) -> None:
    def health(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reallocator.cli", "health", "--host", "localhost",
             "--port", str(tls_server.port), *extra],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "REALLOCATOR_TOKEN": TOKEN},
        )  # fmt: skip

    good = health("--tls-ca", str(pki["ca"]))
    assert (good.returncode, good.stdout.strip()) == (0, "SERVING"), good.stderr
    bad = health("--tls-ca", str(pki["other_ca"]))
    assert bad.returncode == 1 and "UNAVAILABLE" in bad.stderr
    plain = health()
    assert plain.returncode == 1


def test_missing_certificate_files_are_a_configuration_error(tmp_path: Path, pki: dict) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text(
        f'[security]\ntls_cert = "{tmp_path / "nope.pem"}"\ntls_key = "{pki["server"].key}"\n'
    )
    with pytest.raises(ConfigError, match=r"security.tls_cert: no such file"):
        load_config(toml, env={})
    toml.write_text(f'[security]\ntls_cert = "{pki["server"].cert}"\n')
    with pytest.raises(ConfigError, match="give both or neither"):
        load_config(toml, env={})


# --- mutual TLS ------------------------------------------------------------------------------

CLIENTS = f"""
[[security.clients]]
name = "planner.example.com"
roles = ["read", "plan"]

[[security.tokens]]
name = "ops-person"
sha256 = "{hash_token(TOKEN)}"
roles = ["read", "plan", "review"]
"""


@pytest.fixture(scope="module")
def mtls_server(pki: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    toml = _tls_toml(pki["server"], pki["ca"], CLIENTS)
    with ops_server(tmp_path_factory.mktemp("mtls"), toml, recorder=True) as running:
        yield running


def _mtls(
    running: RunningServer, pki: dict, client: str | None, token: str | None = None
) -> grpc.Channel:
    issued = pki[client] if client else None
    return open_channel(
        f"localhost:{running.port}",
        tls_ca=pki["ca"],
        tls_cert=issued.cert if issued else None,
        tls_key=issued.key if issued else None,
        token=token,
    )


def test_mtls_client_certificate_identity_gets_its_roles(
    mtls_server: RunningServer, pki: dict
) -> None:
    Recorder.seen = []
    with _mtls(mtls_server, pki, "client") as channel:
        stub(channel).Replan(pb.ReplanRequest(), timeout=5)
        error = rpc_error(lambda: stub(channel).ReviewPlan(pb.ReviewPlanRequest(), timeout=5))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert Recorder.seen == [("Replan", "planner.example.com")]


def test_mtls_token_names_the_caller_over_the_certificate(
    mtls_server: RunningServer, pki: dict
) -> None:
    Recorder.seen = []
    with _mtls(mtls_server, pki, "client", token=TOKEN) as channel:
        stub(channel).ReviewPlan(pb.ReviewPlanRequest(), timeout=5)
    assert Recorder.seen == [("ReviewPlan", "ops-person")]


def test_mtls_unknown_certificate_identity_is_unauthenticated(
    mtls_server: RunningServer, pki: dict
) -> None:
    with _mtls(mtls_server, pki, "client_unknown") as channel:
        error = rpc_error(lambda: stub(channel).Replan(pb.ReplanRequest(), timeout=5))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "client", [None, "client_other", "client_expired"], ids=["missing", "wrong-ca", "expired"]
)
def test_mtls_refuses_the_handshake_without_a_valid_client_certificate(
    mtls_server: RunningServer, pki: dict, client: str | None
) -> None:
    Recorder.seen = []
    with _mtls(mtls_server, pki, client, token=TOKEN) as channel:
        error = rpc_error(lambda: _health(channel))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert Recorder.seen == []


# --- reload ----------------------------------------------------------------------------------


def _serving_issuer(port: int, pki: dict) -> str:
    """Which CA the server's certificate verifies against now (fresh channel each time)."""
    for name in ("ca", "other_ca"):
        with open_channel(f"localhost:{port}", tls_ca=pki[name]) as channel:
            try:
                _health(channel)
                return name
            except grpc.RpcError:
                continue
    return "none"


def test_certificates_reload_on_file_change_without_restart(pki: dict, tmp_path: Path) -> None:
    live = Issued(tmp_path / "live.pem", tmp_path / "live.key")
    shutil.copy(pki["server"].cert, live.cert)
    shutil.copy(pki["server"].key, live.key)
    with ops_server(tmp_path, _tls_toml(live)) as running:
        assert _serving_issuer(running.port, pki) == "ca"
        shutil.copy(pki["server_other"].cert, live.cert)
        shutil.copy(pki["server_other"].key, live.key)
        assert _serving_issuer(running.port, pki) == "other_ca"
        assert running.ops is not None and running.ops.reloader is not None
        assert running.ops.reloader.reloads >= 1


def test_a_broken_rotation_keeps_the_old_certificates(pki: dict, tmp_path: Path) -> None:
    live = Issued(tmp_path / "live.pem", tmp_path / "live.key")
    shutil.copy(pki["server"].cert, live.cert)
    shutil.copy(pki["server"].key, live.key)
    with ops_server(tmp_path, _tls_toml(live)) as running:
        live.cert.write_text("half-written")
        assert _serving_issuer(running.port, pki) == "ca"


def _padded(files: list[Path], folder: Path) -> list[Path]:
    """Copies of PEM files padded with newlines to one size (PEM readers skip text outside
    the BEGIN/END blocks), so a swap keeps the size the reloader stamps."""
    size = max(f.stat().st_size for f in files)
    out = []
    for f in files:
        copy = folder / f"padded-{f.parent.name}-{f.name}"
        copy.write_bytes(f.read_bytes() + b"\n" * (size - f.stat().st_size))
        out.append(copy)
    return out


def test_sighup_reloads_files_whose_stamps_did_not_change(pki: dict, tmp_path: Path) -> None:
    """A swap that keeps each file's size and modification time is only seen after SIGHUP."""
    old_cert, new_cert = _padded([pki["server"].cert, pki["server_other"].cert], tmp_path)
    old_key, new_key = _padded([pki["server"].key, pki["server_other"].key], tmp_path)
    live = Issued(tmp_path / "live.pem", tmp_path / "live.key")
    shutil.copy(old_cert, live.cert)
    shutil.copy(old_key, live.key)
    with ops_server(tmp_path, _tls_toml(live)) as running:
        assert _serving_issuer(running.port, pki) == "ca"
        stamps = [(p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (live.cert, live.key)]
        shutil.copy(new_cert, live.cert)
        shutil.copy(new_key, live.key)
        for path, (atime, mtime) in zip((live.cert, live.key), stamps, strict=True):
            os.utime(path, ns=(atime, mtime))
        assert _serving_issuer(running.port, pki) == "ca"  # same stamps: not reloaded yet
        previous = signal.getsignal(signal.SIGHUP)
        try:
            os.kill(os.getpid(), signal.SIGHUP)  # the handler start_server installed
            assert _serving_issuer(running.port, pki) == "other_ca"
        finally:
            signal.signal(signal.SIGHUP, previous)


def test_buf_curl_over_mutual_tls_with_a_token(mtls_server: RunningServer, pki: dict) -> None:
    """A client nobody here wrote: buf curl with the CA, a client certificate and a token;
    reflection answers it (authenticated) and Replan reaches the servicer as the token's name."""
    buf = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "buf"
    assert buf.exists(), f"{buf} missing: run the README's test set-up command (npm install ...)"
    Recorder.seen = []
    url = f"https://localhost:{mtls_server.port}/reallocator.v1.ReallocatorService/Replan"
    done = subprocess.run(
        [str(buf), "curl", "--protocol", "grpc", "--cacert", str(pki["ca"]),
         "--cert", str(pki["client"].cert), "--key", str(pki["client"].key),
         "-H", f"authorization: Bearer {TOKEN}", url, "-d", "{}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Recorder.seen == [("Replan", "ops-person")]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_command_with_tls_metrics_and_json_logs(pki: dict, workers: str) -> None:
    """`reallocator serve` with the TLS and metrics flags, in one process and in two sharing
    the port: health over TLS, /healthz over HTTP, JSON lines on stderr, exit 0 on SIGTERM."""
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REALLOCATOR_") or k == "REALLOCATOR_DATABASE_URL"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "reallocator.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--tls-cert", str(pki["server"].cert),
         "--tls-key", str(pki["server"].key), "--metrics-port", str(metrics_port),
         "--workers", workers],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status != SERVING:
            assert proc.poll() is None, proc.communicate()[1]
            with open_channel(f"localhost:{port}", tls_ca=pki["ca"]) as channel:
                try:
                    status = _health(channel)
                except grpc.RpcError:
                    time.sleep(0.2)
        assert status == SERVING
        if workers == "2":  # give the second worker time to start before the signal
            time.sleep(3)
        url = f"http://127.0.0.1:{metrics_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert reply.read() == b"SERVING\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        records = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert any("listening" in r["message"] and "'tls': True" in r["message"] for r in records)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

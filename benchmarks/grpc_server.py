"""A `reallocator serve` subprocess on loopback, for the benchmarks that measure over gRPC.

The server runs with its default configuration (only the port is chosen); the client channel
accepts messages up to the server's default limit, so a default client and server work together.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc

from reallocator.config import ServerConfig
from reallocator.v1 import reallocator_service_pb2_grpc as service_grpc

_MAIN = "import sys; from reallocator.cli import main; sys.exit(main())"

LIMIT = ServerConfig().max_message_bytes
"""The server's default max_message_bytes; the client uses the same."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(workers: int | None = None) -> Iterator[str]:
    """Starts `reallocator serve` on a free loopback port; yields its target; stops it."""
    port = free_port()
    cmd = [sys.executable, "-c", _MAIN, "--log-level", "WARNING", "serve",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    target = f"127.0.0.1:{port}"
    try:
        with channel(target) as ch:
            grpc.channel_ready_future(ch).result(timeout=60)
        yield target
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_send_message_length", LIMIT),
            ("grpc.max_receive_message_length", LIMIT),
        ],
    )


def stub(ch: grpc.Channel) -> service_grpc.ReallocatorServiceStub:
    return service_grpc.ReallocatorServiceStub(ch)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait_idle(seconds: float = 0.2) -> None:
    time.sleep(seconds)

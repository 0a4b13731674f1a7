"""What security and operations cost per call: the same cheap call (GetPlan against a servicer
that answers at once) through a server without the call interceptor, with it (no auth), with a
bearer token, and with TLS plus a token. It prints the median and p95 round trip per setup and
the difference to the bare server: the interceptor's overhead (auth, limits, metrics, the JSON
call log written to a discarded stream).

    .venv/bin/python benchmarks/interceptor_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import grpc

from reallocator.client import open_channel
from reallocator.config import load_config
from reallocator.server.app import RunningServer, start_server
from reallocator.server.auth import hash_token
from reallocator.server.logs import JsonFormatter
from reallocator.server.operations import Operations
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))
from certs import Authority

TOKEN = "benchmark-token-0123456789abcdefghij"


class Instant:
    """A servicer whose GetPlan answers at once: what is left is transport and interceptor."""

    def __init__(self, config: Any) -> None:
        pass

    def get_plan(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetPlanResponse()


@contextmanager
def server(toml: str, folder: Path, intercept: bool = True) -> Iterator[RunningServer]:
    path = folder / "r.toml"
    path.write_text(toml)
    config = load_config(path, env={}, host="127.0.0.1", port=0)
    patches = [mock.patch("reallocator.server.app.ReallocatorServicer", Instant)]
    if not intercept:
        patches.append(mock.patch.object(Operations, "interceptors", new=[]))
    for p in patches:
        p.start()
    running = start_server(config)
    for p in patches:
        p.stop()
    try:
        yield running
    finally:
        running.stop(grace=0)


def timed(call: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):
        call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


class FakeContext:
    """Just what the interceptor reads from a ServicerContext."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def set_trailing_metadata(self, metadata: object) -> None:
        pass

    def code(self) -> None:
        return None

    def is_active(self) -> bool:
        return True


def in_process(toml: str, folder: Path, metadata: tuple[tuple[str, str], ...], n: int) -> float:
    """CPU time of the interceptor's own work per call (no transport), in seconds."""
    path = folder / "r.toml"
    path.write_text(toml)
    ops = Operations(load_config(path, env={}, host="127.0.0.1", port=0))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: pb.GetPlanResponse())
    details = mock.Mock(method="/reallocator.v1.ReallocatorService/GetPlan")
    wrapped = ops.interceptor.intercept_service(lambda _: handler, details).unary_unary
    context = FakeContext(metadata)
    for _ in range(1000):
        wrapped(b"", context)
    start = time.perf_counter()
    for _ in range(n):
        wrapped(b"", context)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    sink = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115 (lives for the run)
    sink.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[sink], force=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    ca = Authority(folder)
    cert = ca.issue("server", "localhost", server=True)
    tokens = (
        f'[[security.tokens]]\nname = "bench"\nsha256 = "{hash_token(TOKEN)}"\nroles = ["read"]\n'
    )
    tls = f'[security]\ntls_cert = "{cert.cert}"\ntls_key = "{cert.key}"\n'
    setups = [
        ("no interceptor", "", False, {}),
        ("interceptor, no call log", "[logging]\ncalls = false\n", True, {}),
        ("interceptor, no auth", "", True, {}),
        ("interceptor + token", tokens, True, {"token": TOKEN}),
        ("TLS + token", tls + tokens, True, {"token": TOKEN, "tls_ca": ca.pem}),
    ]
    request = pb.GetPlanRequest(name="campaigns/c1/plans/p1")
    rows = []
    for label, toml, intercept, client in setups:
        with server(toml, folder, intercept) as running:
            host = "localhost" if "tls_ca" in client else "127.0.0.1"
            with open_channel(f"{host}:{running.port}", **client) as channel:
                stub = reallocator_service_pb2_grpc.ReallocatorServiceStub(channel)
                times = timed(partial(stub.GetPlan, request, timeout=10), args.calls)
        times.sort()
        rows.append((label, statistics.median(times), times[int(0.95 * len(times))]))
    base = rows[0][1]
    print(f"{args.calls} sequential GetPlan calls per setup, one client thread")
    print(f"{'setup':24} {'median us':>10} {'p95 us':>10} {'+median us':>11}")
    for label, median, p95 in rows:
        print(f"{label:24} {median * 1e6:10.0f} {p95 * 1e6:10.0f} {(median - base) * 1e6:11.0f}")
    n = 20_000
    print(f"\nthe interceptor's own work, in process ({n} calls, no transport), per call:")
    for label, toml, metadata in [
        ("no auth, no call log", "[logging]\ncalls = false\n", ()),
        ("no auth, call log", "", ()),
        ("token, call log", tokens, (("authorization", f"Bearer {TOKEN}"),)),
    ]:
        print(f"  {label:24} {in_process(toml, folder, metadata, n) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()

"""A Python caller's large requests (`reallocator.client.keep_large_buffers`): with glibc's
default allocator every serialisation of a ~17 MB ReplanRequest page-faults its buffer in
afresh (upb writes it into a new buffer each call); kept, the second call reuses the first's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reallocator.server.memory import _libc

PROBE = """
import resource, sys
sys.path.insert(0, sys.argv[2])
took = None
if sys.argv[1] == "keep":
    from reallocator.client import keep_large_buffers
    took = keep_large_buffers()
from builders import build_snapshot, random_snapshot_spec
from reallocator.v1 import reallocator_service_pb2 as pb
snapshot = build_snapshot(random_snapshot_spec(10_000, 1), "arrow", matrix_arrow=True)
request = pb.ReplanRequest(snapshot=snapshot)
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    request.SerializeToString()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
faults()
print(took, faults(), request.ByteSize())
"""


def _serialisation_faults(mode: str, env: dict[str, str] | None = None) -> tuple[str, int, int]:
    tests = str(Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, tests],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout.split()
    return out[0], int(out[1]), int(out[2])


@pytest.mark.skipif(_libc() is None, reason="glibc's allocator only")
def test_a_large_request_serialises_into_reused_memory() -> None:
    took, default, size = _serialisation_faults("default")
    assert size > 10 << 20  # ~2,500 pages and more
    assert default > 2_000  # glibc's defaults: the buffer mapped afresh each call
    took, kept, _ = _serialisation_faults("keep")
    assert took == "True"
    assert kept < 200


@pytest.mark.skipif(_libc() is None, reason="glibc's allocator only")
def test_a_callers_own_malloc_tunables_are_left_alone() -> None:
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.check=0"}
    took, _, _ = _serialisation_faults("keep", env)
    assert took == "False"

"""The server process's allocator settings (reallocator/server/memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reallocator.server.memory import GC_YOUNG_THRESHOLD, _libc

PROBE = """
import resource, sys
from reallocator.server.memory import keep_large_buffers
took = keep_large_buffers() if sys.argv[1] == "keep" else None
def faults_of_one_request(size=40 << 20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = bytearray(size)
    buffer[::4096] = b"x" * len(buffer[::4096])
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_request()
print(took, faults_of_one_request())
"""


def _second_request_faults(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(_libc() is None, reason="glibc's allocator only")
def test_a_large_request_buffer_is_reused_not_mapped_afresh() -> None:
    # 40 MB is 10,240 pages: glibc's default maps it afresh for every request.
    took, default = _second_request_faults("default")
    assert default > 5_000
    took, kept = _second_request_faults("keep")
    assert took == "True"
    assert kept < 500


@pytest.mark.skipif(_libc() is None, reason="glibc's allocator only")
def test_the_operators_own_malloc_tunables_are_left_alone() -> None:
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.check=0"}
    took, _ = _second_request_faults("keep", env)
    assert took == "False"


def test_the_collector_runs_in_larger_batches_keeping_the_older_generations() -> None:
    probe = (
        "import gc; gc.set_threshold(700, 11, 12)\n"
        "from reallocator.server.memory import collect_garbage_less_often\n"
        "collect_garbage_less_often(); print(*gc.get_threshold())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [int(v) for v in out] == [GC_YOUNG_THRESHOLD, 11, 12]

"""The server process's allocator settings (reallocator/server/memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from unittest.mock import MagicMock

import pytest

from reallocator.server.dispatch import Admission
from reallocator.server.memory import GC_YOUNG_THRESHOLD, _libc, should_trim

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


def test_freed_pages_go_back_when_calls_pause_or_at_least_every_minute() -> None:
    assert should_trim(True, quiet_for=2.5, since_trim=5.0, quiet=2.0, at_least_every=60.0)
    # calls still running, or only a short gap: the next call reuses the pages
    assert not should_trim(True, quiet_for=0.0, since_trim=5.0, quiet=2.0, at_least_every=60.0)
    assert not should_trim(True, quiet_for=1.0, since_trim=5.0, quiet=2.0, at_least_every=60.0)
    # calls that never pause: once a minute all the same
    assert should_trim(True, quiet_for=0.0, since_trim=61.0, quiet=2.0, at_least_every=60.0)
    # nothing ran since the last trim: nothing new to give back
    assert not should_trim(False, quiet_for=99.0, since_trim=99.0, quiet=2.0, at_least_every=60.0)


def test_admission_reports_calls_and_how_long_the_server_has_been_quiet() -> None:
    admission = Admission(2, 0)
    context = MagicMock()
    context.time_remaining.return_value = None
    context.is_active.return_value = True
    assert admission.activity()[0] == 0
    with admission.slot(context):
        assert admission.activity() == (1, 0.0)
    time.sleep(0.05)
    calls, quiet = admission.activity()
    assert calls == 1 and quiet >= 0.05

"""How a server process uses memory: glibc's allocator reuses large request buffers while calls
come and hands freed pages back while they do not (no-ops where glibc is absent: macOS, musl);
the garbage collector runs in larger batches."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

LARGE_BUFFER_BYTES = 256 << 20
"""Allocations up to this size come from the heap and are reused, not mapped afresh."""


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_large_buffers(*, one_arena: bool = True) -> bool:
    """Serves large requests from reused heap memory. glibc maps every allocation above 32 MB
    afresh and unmaps it when freed, so each 62 MB request (100k deals) page-faults its buffers
    in again: a loopback gRPC call carrying 62 MB to an empty handler took 82 ms, 24 ms with
    this (40 MB: 51 -> 17 ms; 10 MB: 5 ms either way); a 100k-deal SUMMARY Replan ~0.5 ->
    ~0.35 s. Allocations up to LARGE_BUFFER_BYTES stay on the heap, and the process keeps one
    arena (a thread's arena cannot grow past 64 MB, so a request read on a gRPC thread was
    mapped anyway; the server's Python runs under one GIL, so threads rarely contend for it).
    Called before the server's threads start. Skipped when the operator tuned malloc through
    GLIBC_TUNABLES. Freed memory still goes back to the OS when calls pause
    (`return_freed_memory`). Without `one_arena` the arenas are left as they are (a client's
    threads may allocate at once: `reallocator.client.keep_large_buffers`).
    Returns whether the settings took."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _libc()
    if libc is None:
        return False
    settings = [
        *([(_M_ARENA_MAX, 1)] if one_arena else []),
        (_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES),
        (_M_TRIM_THRESHOLD, 4 * LARGE_BUFFER_BYTES),
    ]
    took = all(libc.mallopt(option, value) == 1 for option, value in settings)
    if not took:
        log.warning("malloc: could not keep large buffers on the heap")
    return took


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""


def collect_garbage_less_often() -> None:
    """A large plan's messages and lists are millions of short-lived objects: with Python's
    default threshold the collector ran so often that it took ~0.3 s of a 100k-deal FULL
    encode (1.40 -> 1.10 s with this; a whole FULL call 1.73 -> 1.48 s in process). A 50-deal
    call sees no difference at the median. Cycles are still collected, in larger batches."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


TRIM_WHEN_QUIET = 2.0
"""Seconds without a call after which freed pages go back to the OS."""
TRIM_AT_LEAST_EVERY = 60.0
"""Under calls that never pause, freed pages still go back this often."""


def should_trim(
    worked: bool, quiet_for: float, since_trim: float, quiet: float, at_least_every: float
) -> bool:
    """Whether to trim now: only after calls since the last trim (an idle server has nothing new
    to give back), once they pause for `quiet` seconds or, if they never do, every
    `at_least_every` seconds."""
    return worked and (quiet_for >= quiet or since_trim >= at_least_every)


def return_freed_memory(
    activity: Callable[[], tuple[int, float]] | None = None,
    *,
    quiet: float = TRIM_WHEN_QUIET,
    at_least_every: float = TRIM_AT_LEAST_EVERY,
    poll: float = 1.0,
) -> None:
    """Hands freed heap pages back to the OS (glibc `malloc_trim`) once the server has been
    quiet for `quiet` seconds after calls, and at least every `at_least_every` seconds while
    calls keep coming. `activity` (Admission.activity) gives the calls admitted so far and how
    long the server has been quiet; without it, every `quiet` seconds.

    A rejected 100 MB request is freed, but glibc keeps the pages: over a 10-minute fuzz run
    (benchmarks/fuzz.py, under load) the resident size ended 28 % above its warm level without
    a trim, 17 % with one every 10 s. A trim between two calls costs the next one its buffers,
    though (`keep_large_buffers`: a 100k-deal FULL answer is hundreds of MB of objects to
    page-fault in again, ~0.1-0.3 s): so the trim waits for a pause."""
    libc = _libc()
    if libc is None:
        return
    trim = libc.malloc_trim

    def loop() -> None:
        trimmed_at, calls_then = time.monotonic(), -1
        while True:
            if activity is None:
                time.sleep(quiet)
                trim(0)
                continue
            time.sleep(poll)
            calls, quiet_for = activity()
            now = time.monotonic()
            if should_trim(calls != calls_then, quiet_for, now - trimmed_at, quiet, at_least_every):
                trim(0)
                trimmed_at, calls_then = now, calls

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()


__all__ = [
    "GC_YOUNG_THRESHOLD",
    "LARGE_BUFFER_BYTES",
    "TRIM_AT_LEAST_EVERY",
    "TRIM_WHEN_QUIET",
    "collect_garbage_less_often",
    "keep_large_buffers",
    "return_freed_memory",
    "should_trim",
]

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


def keep_large_buffers() -> bool:
    """Serves large requests from reused heap memory. glibc maps every allocation above 32 MB
    afresh and unmaps it when freed, so each 62 MB request (100k deals) page-faults its buffers
    in again: a loopback gRPC call carrying 62 MB to an empty handler took 82 ms, 24 ms with
    this (40 MB: 51 -> 17 ms; 10 MB: 5 ms either way); a 100k-deal SUMMARY Replan ~0.5 ->
    ~0.35 s. Allocations up to LARGE_BUFFER_BYTES stay on the heap, and the process keeps one
    arena (a thread's arena cannot grow past 64 MB, so a request read on a gRPC thread was
    mapped anyway; the server's Python runs under one GIL, so threads rarely contend for it).
    Called before the server's threads start. Skipped when the operator tuned malloc through
    GLIBC_TUNABLES. Freed memory still goes back to the OS (`return_freed_memory`).
    Returns whether the settings took."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _libc()
    if libc is None:
        return False
    took = all(
        libc.mallopt(option, value) == 1
        for option, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES),
            (_M_TRIM_THRESHOLD, 4 * LARGE_BUFFER_BYTES),
        )
    )
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


def return_freed_memory(every: float = 10.0) -> None:
    """Hands freed heap pages back to the OS every `every` seconds (glibc `malloc_trim`). A
    rejected 100 MB request is freed, but glibc keeps the pages in its arenas: over a 10-minute
    fuzz run (benchmarks/fuzz.py, under load) the resident size ended 28 % above its warm level
    without this, 17 % with it. With `keep_large_buffers` the first large call after a trim
    maps its buffers afresh and the calls after it reuse them."""
    libc = _libc()
    if libc is None:
        return
    trim = libc.malloc_trim

    def loop() -> None:
        while True:
            time.sleep(every)
            trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()


__all__ = [
    "GC_YOUNG_THRESHOLD",
    "LARGE_BUFFER_BYTES",
    "collect_garbage_less_often",
    "keep_large_buffers",
    "return_freed_memory",
]

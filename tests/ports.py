"""Ports for the servers tests and benchmarks start as processes."""

from __future__ import annotations

import itertools
import os
import random
import socket

_PORTS = itertools.count(random.Random(os.getpid()).randrange(20_000, 30_000, 7))


def free_port() -> int:
    """A port nothing listens on right now, below the ephemeral range (32768-60999 on Linux)
    and never the same twice in a run: a port the OS picks for bind(0) comes from the range
    outgoing connections take their local ports from, so a client elsewhere on the machine
    could hold it by the time the server binds (a test failed so: "Address already in use")."""
    while True:
        port = 20_000 + next(_PORTS) % 12_000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


__all__ = ["free_port"]

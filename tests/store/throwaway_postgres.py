"""A throwaway PostgreSQL server that a test can stop and start again (the same steps as the
`postgres_url` fixture of test_store_backends.py: a temporary folder, a free port of 127.0.0.1,
run through the postgres user when the tests run as root, as CI does).

Without PostgreSQL's binaries a test skips, saying why; with REALLOCATOR_REQUIRE_POSTGRES=1 (CI)
it fails instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_bindir() -> Path:
    """PostgreSQL's server binaries, or the test skips (fails in CI) saying what to install."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.environ.get("REALLOCATOR_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL's server binaries are missing (apt-get install postgresql)")
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


class ThrowawayPostgres:
    """initdb in a temporary folder; `start()`, `stop()` (fast: sessions are terminated, as an
    operator's restart does) and `start()` again on the same data; `remove()` at the end."""

    def __init__(self) -> None:
        self.bindir = require_bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="reallocator-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_postgres, str(self.bindir / tool), *args],
                       check=True, capture_output=True, timeout=120)  # fmt: skip

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.folder / "log"),
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder}", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def remove(self) -> None:
        subprocess.run([*self._as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)

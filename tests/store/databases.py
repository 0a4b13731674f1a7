"""Database fixtures the store tests import: a fresh SQLite file, a throwaway PostgreSQL.

The PostgreSQL server is started once per session from Debian's binaries on a temporary
directory and a free port of 127.0.0.1 (as the `postgres` user when running as root: it refuses
root), stopped with `-m immediate` and removed at the end. Without the binaries it is skipped
with the reason, unless REALLOCATOR_REQUIRE_POSTGRES=1 (CI) makes that a failure.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_counter = itertools.count()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """Base URL (no database) of a throwaway PostgreSQL server; None without the binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="reallocator-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    opts = f"-h 127.0.0.1 -p {port} -k {root}"
    log = str(root / "log")
    subprocess.run(
        _as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", log, "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL (no database) of a throwaway PostgreSQL server for the session."""
    with throwaway_postgres() as url:
        if url is None:
            reason = "PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin/initdb)"
            if os.environ.get("REALLOCATOR_REQUIRE_POSTGRES") == "1":
                pytest.fail(reason + " and REALLOCATOR_REQUIRE_POSTGRES=1")
            pytest.skip(reason + "; apt-get install postgresql to run these tests")
        yield url


def new_postgres_database(base: str) -> str:
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reallocator.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))

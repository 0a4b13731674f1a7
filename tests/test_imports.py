"""Start-up cost is an import-graph property: `reallocator --help` and `reallocator health` (the
Docker health check, 5 s timeout) must not load numpy, pandas, OR-Tools, pyarrow, the generated
API or the rest of the service. Checked on the modules loaded, in a fresh interpreter, so it
holds on any machine and under any load (benchmarks/cli_startup.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "ortools",
    "matplotlib",
    "reallocator.core",
    "reallocator.wire",
    "reallocator.v1",
    "reallocator.server",
    "reallocator.config",
)


def _loaded_after(code: str) -> set[str]:
    """Modules loaded by a fresh interpreter after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return set(loaded)


def _heavy(loaded: set[str], also: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        m for m in loaded if any(m == h or m.startswith(h + ".") for h in (*HEAVY, *also))
    )


def test_cli_help_imports_nothing_heavy() -> None:
    code = (
        "import contextlib, io\nfrom reallocator import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['simulate', '--help'])"
    )
    loaded = _loaded_after(code)
    assert "reallocator.cli" in loaded
    assert _heavy(loaded, also=("grpc", "google.protobuf")) == []


def test_health_command_imports_only_grpc_and_the_health_stubs() -> None:
    # A port nobody listens on: the command fails fast, after importing what it needs.
    code = (
        "import contextlib, io\nfrom reallocator import cli\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    cli.main(['health', '--port', '1', '--timeout', '0.2'])"
    )
    loaded = _loaded_after(code)
    assert "grpc_health.v1.health_pb2_grpc" in loaded
    # grpc and the health stubs (with protobuf) only: no numpy, pandas, OR-Tools or the API.
    assert _heavy(loaded) == []


@pytest.mark.parametrize("module", ["reallocator.cli", "reallocator.sim.args"])
def test_cli_modules_import_light(module: str) -> None:
    assert _heavy(_loaded_after(f"import {module}"), also=("grpc", "google.protobuf")) == []

"""`reallocator web`: its help stays light (no web stack, no numpy), bad settings are clear
errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reallocator import cli

WEB_STACK = ("starlette", "uvicorn", "sse_starlette", "jinja2", "plotly", "numpy", "pandas",
             "reallocator.web.app", "reallocator.core")  # fmt: skip


def test_web_help_imports_no_web_stack() -> None:
    code = (
        "import contextlib, io, json, sys\nfrom reallocator import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['web', '--help'])\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert "reallocator.web.cli" in loaded
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in WEB_STACK)]
    assert heavy == []


def test_bad_settings_exit_non_zero_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert cli.main(["web", "--database-url", db, "--poll-seconds", "0"]) == 2
    assert "--poll-seconds: must be > 0" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nnope = 1\n")
    assert cli.main(["web", "--config", str(bad)]) == 2
    assert "configuration error" in capsys.readouterr().err
    assert cli.main(["web", "--database-url", "nosuchdb://x"]) == 1
    assert "reallocator web:" in capsys.readouterr().err

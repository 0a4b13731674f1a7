"""The README's two set-up commands, .ci/run and the Dockerfile must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def _install_steps(command: str, venv: str) -> list[str]:
    """The pip/venv steps of a command, with the venv path and quiet/cache flags normalised."""
    steps = [s.strip() for s in command.split("&&")]
    out = []
    for step in steps:
        if "venv" not in step and "pip install" not in step:
            continue
        step = step.replace(venv, "VENV")
        step = re.sub(r"\s+(-q|--no-cache-dir)\b", "", step)
        out.append(step)
    return out


def test_readme_has_the_two_setup_commands() -> None:
    blocks = _sh_blocks()
    serve = [b for b in blocks if "reallocator serve" in b and "python3 -m venv" in b]
    tests = [b for b in blocks if "pytest" in b and "python3 -m venv" in b]
    assert len(serve) == 1 and len(tests) == 1
    assert serve[0].strip().endswith(".venv/bin/reallocator serve")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = next(b for b in _sh_blocks() if "pytest" in b and "python3 -m venv" in b).strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_dockerfile_installs_like_the_readme() -> None:
    serve = next(b for b in _sh_blocks() if "reallocator serve" in b and "python3 -m venv" in b)
    readme_steps = _install_steps(serve.replace(".venv/bin/reallocator serve", ""), ".venv")
    docker = (ROOT / "Dockerfile").read_text()
    run = next(line for line in docker.splitlines() if line.startswith("RUN python3 -m venv"))
    docker_steps = _install_steps(run.removeprefix("RUN "), "/opt/venv")
    assert docker_steps == readme_steps
    assert "USER 10001" in docker and "HEALTHCHECK" in docker

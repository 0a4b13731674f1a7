"""The README's two set-up commands, .ci/run and the Dockerfile must not drift apart."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


# --- metadata, dependencies and the pinned constraints ---------------------------------------

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / "constraints.txt"
UNBOUNDED_BY_DESIGN = {"tzdata"}  # calendar-versioned: a bound would freeze the time-zone rules


def _requirements(extras: bool) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    if extras:
        reqs += [
            Requirement(r) for group in PYPROJECT["optional-dependencies"].values() for r in group
        ]
    return reqs


def _pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_license_is_an_spdx_expression() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"


def test_runtime_dependencies_are_bounded_below_the_next_major_version() -> None:
    for req in _requirements(extras=False):
        if canonicalize_name(req.name) in UNBOUNDED_BY_DESIGN:
            continue
        uppers = [s for s in req.specifier if s.operator in ("<", "==", "~=")]
        assert uppers, f"{req}: needs an upper bound at the next major version"


def test_matplotlib_is_only_an_extra() -> None:
    assert "matplotlib" not in {canonicalize_name(r.name) for r in _requirements(extras=False)}
    extras = PYPROJECT["optional-dependencies"]
    for extra in ("sim", "dev"):
        assert any(Requirement(r).name == "matplotlib" for r in extras[extra]), extra


def test_constraints_pin_every_dependency_within_its_specifier() -> None:
    """constraints.txt (scripts/freeze_constraints.sh) pins a version of every dependency and
    extra that pyproject.toml allows; the README's install commands and the Dockerfile use it."""
    pins = _pins()
    for req in _requirements(extras=True):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned: run scripts/freeze_constraints.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]} outside {req.specifier}: "
            "run scripts/freeze_constraints.sh"
        )
    assert "-c constraints.txt" in (ROOT / "Dockerfile").read_text()
    assert all("-c constraints.txt" in b for b in _sh_blocks() if "python3 -m venv" in b)


def test_standard_scenarios_are_package_data() -> None:
    """`reallocator simulate steady` finds its scenario in the installed package, from any
    directory (pyproject's package-data globs must cover the scenario files)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["reallocator.sim"]
    shipped = ROOT / "reallocator" / "sim"
    files = sorted((shipped / "scenarios").glob("*.json"))
    assert {p.stem for p in files} >= {"steady", "flash_sale", "portfolio_500"}
    for path in files:
        rel = path.relative_to(shipped).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
    assert not (ROOT / "benchmarks" / "scenarios").exists()


def test_nothing_points_outside_the_repository() -> None:
    texts = [ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "Dockerfile"]
    texts += sorted((ROOT / "benchmarks").glob("*.py"))
    texts += sorted((ROOT / "reallocator" / "sim" / "data").glob("*.md"))
    for path in texts:
        text = path.read_text()
        assert "../" not in text and "/work/" not in text, path.name


def test_installed_wheel_simulates_a_standard_scenario_from_any_directory(tmp_path: Path) -> None:
    """Build the wheel, install it (without dependencies: this venv has them) into a folder of
    its own, and run `reallocator simulate steady` from an unrelated directory with it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, site, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    subprocess.run(
        [*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
        capture_output=True,
        env=env,
    )
    (wheel,) = wheels.glob("*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        env=env,
    )
    cwd.mkdir()
    code = (
        "import sys, reallocator\n"
        f"assert reallocator.__file__.startswith({str(site)!r}), reallocator.__file__\n"
        "from reallocator.cli import main\n"
        "sys.exit(main(['simulate', 'steady', '--seed', '0', '--strategies', 'static', "
        "'--no-plots', '--out', 'report']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "steady (median over 1 seed)" in done.stdout
    assert (cwd / "report" / "summary.csv").stat().st_size > 0

"""How fast the `reallocator` command starts: `--help`, and `health` (the Docker health check,
whose timeout is 5 s), as wall time of a fresh process, median of --repeat runs. Target: < 0.5 s.

`health` is timed against --port (default: a port nobody listens on, so the call fails at once
and the figure is the start-up plus one refused connection; start a server and pass its port to
time a real check).

    .venv/bin/python benchmarks/cli_startup.py [--repeat 7] [--port 50051]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _command() -> list[str]:
    script = shutil.which("reallocator", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "reallocator.cli"]


def _median_seconds(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(args, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--port", type=int, default=1)
    args = parser.parse_args()
    base = _command()
    rows = [
        ("reallocator --help", [*base, "--help"]),
        ("reallocator health", [*base, "health", "--port", str(args.port), "--timeout", "1"]),
        ("python -c pass (interpreter alone)", [sys.executable, "-c", "pass"]),
    ]
    print(f"{'command':<40} median of {args.repeat}")
    for name, command in rows:
        print(f"{name:<40} {_median_seconds(command, args.repeat):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

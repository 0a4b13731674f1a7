"""The crash-safety run at any length: `reallocator serve` SIGKILLed at seeded random moments
during a stream of recorded Replan, ReviewPlan and ConfirmApplied calls, restarted on the same
database each time, then every acknowledged call checked (tests/store/crash_run.py; the test
tests/store/test_crash_safety.py runs 6 kills per database). Prints kills, calls acknowledged
and cut by a kill, plans and rows stored, and the time taken.

    .venv/bin/python benchmarks/crash_safety.py [--kills 20] [--database sqlite|postgresql|URL]
                                                [--seed 1]

"postgresql" starts a throwaway server (needs PostgreSQL's server binaries). Exits 0 when every
check passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "store")]

from crash_run import crash_run  # noqa: E402
from throwaway_postgres import ThrowawayPostgres  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--database", default="sqlite", help="sqlite, postgresql or a URL")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    postgres = None
    if args.database == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='reallocator-crash-')}/crash.db"
    elif args.database == "postgresql":
        postgres = ThrowawayPostgres()
        postgres.start()
        url = postgres.url
    else:
        url = args.database
    try:
        figures = crash_run(url, seed=args.seed, kills=args.kills)
    except AssertionError as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        if postgres is not None:
            postgres.remove()
    print(json.dumps({"database": args.database, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

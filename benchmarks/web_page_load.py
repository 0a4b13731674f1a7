"""How fast the dashboard answers, server side: a campaign of --deals deals with --snapshots
recorded plans (built by the core, stored by SqlStore.record_plan), timed through Starlette's
TestClient. `cold` is the first view in a fresh process-level cache (the newest snapshot is
decoded and assessed then; the running dashboard does this in the background as plans arrive);
`warm` the median of --repeat later views. Target: a 1,000-deal campaign page under 300 ms.
The browser's own figures (first paint, charts drawn) are printed by tests/web's end-to-end test.

    .venv/bin/python benchmarks/web_page_load.py [--deals 1000] [--snapshots 3] [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "web")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()

    from starlette.testclient import TestClient
    from web_data import record_campaign

    from reallocator.store.sql import SqlStore
    from reallocator.web.app import Settings, create_app

    folder = Path(tempfile.mkdtemp(prefix="reallocator-web-bench-"))
    store = SqlStore.open(f"sqlite:///{folder / 'store.db'}")
    started = time.perf_counter()
    plans = record_campaign(store, "bench", args.deals, args.snapshots, 5)
    print(f"recorded {args.snapshots} plans of {args.deals:,} deals in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    plan = plans[-1].name

    def timed(client: TestClient, url: str) -> float:
        started = time.perf_counter()
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return (time.perf_counter() - started) * 1000

    pages = {
        "campaign list": "/",
        "campaign page": "/campaigns/bench",
        "deals page (sorted by pacing)": f"/campaigns/bench/deals?plan={plan}&sort=pacing&page=3",
        "decision history": "/campaigns/bench/history",
    }
    for name, url in pages.items():
        fresh = TestClient(create_app(store, Settings(warm=False)))
        cold = timed(fresh, url)
        warm = statistics.median(timed(fresh, url) for _ in range(args.repeat))
        print(f"{name:32s} cold {cold:7.1f} ms   warm {warm:7.1f} ms (median of {args.repeat})")
    store.close()


if __name__ == "__main__":
    main()

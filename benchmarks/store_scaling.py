"""Audit store scaling: bytes and time to store and read back a plan, on SQLite and PostgreSQL.

For each campaign size (the `assess_scaling.make_snapshot` campaign, planned by `build_plan`):
bytes stored per plan (plan_codec: Arrow IPC zstd + JSON) and per snapshot (zstd), the time
Replan spends recording it (encode + one transaction), and the time GetPlan takes to read it
back in PLAN_VIEW_SUMMARY and PLAN_VIEW_FULL (read + decode + encode the message). PostgreSQL
runs on a throwaway server when Debian's binaries are installed (see tests/store/databases.py).
Targets: a 100k-deal plan stores in under 15 MB and 1 s; GetPlan SUMMARY under 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from assess_scaling import decode_wire, make_snapshot

from reallocator.core.lifecycle.states import PlanState
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan
from reallocator.store import NewPlan, SqlStore
from reallocator.store.plan_codec import decode_plan, encode_plan, encode_summary
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.plan import encode_plan as wire_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "store"))
from databases import new_postgres_database, throwaway_postgres


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(
    store: SqlStore, plan: Plan, snapshot_bytes: bytes, repeat: int
) -> tuple[float, float, float, float, float]:
    """plan MB, snapshot MB, store s, GetPlan SUMMARY ms, GetPlan FULL s."""

    def record() -> str:
        body = encode_plan(plan)
        # a fresh snapshot each time: measure its insert, not the deduplication
        snap = snapshot_bytes + str(time.perf_counter_ns()).encode()
        new = NewPlan(
            plan.campaign_id, plan.as_of, body, PlanState.PROPOSED, "", snap,
            summary=encode_summary(plan),
        )  # fmt: skip
        return store.record_plan(new, "bench", datetime.now(UTC)).name

    name = record()
    store_s = best(record, repeat)

    def summary() -> None:
        rec = store.get_plan(name, summary=True)
        assert rec.body is not None
        wire_plan(decode_plan(rec.body, summary=True), deals="none").SerializeToString()

    def full() -> None:
        rec = store.get_plan(name)
        assert rec.body is not None
        wire_plan(decode_plan(rec.body)).SerializeToString()

    summary_ms = best(summary, repeat) * 1000
    full_s = best(full, 1)
    with store.engine.connect() as conn:
        snap_bytes = (
            conn.execute(sa.text("SELECT length(body) FROM snapshots ORDER BY create_time DESC"))
            .scalars()
            .first()
        )
    plan_mb = len(encode_plan(plan)) / 1e6
    return plan_mb, (snap_bytes or 0) / 1e6, store_s, summary_ms, full_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls = {"sqlite": f"sqlite:///{tmp / 'bench.db'}"}
        base = None if args.no_postgres else stack.enter_context(throwaway_postgres())
        if base is not None:
            urls["postgresql"] = new_postgres_database(base)
        elif not args.no_postgres:
            print("PostgreSQL binaries not installed: SQLite only")
        stores = {k: SqlStore(u) for k, u in urls.items()}
        header = ("db", "deals", "plan MB", "snap MB", "store s", "SUMMARY ms", "FULL s")
        print("".join(f"{h:>12}" for h in header))
        for n in args.sizes:
            snapshot_bytes = encode_snapshot(make_snapshot(n), "arrow").SerializeToString()
            plan = build_plan(decode_wire(snapshot_bytes))
            for db, store in stores.items():
                row = (db, n, *measure(store, plan, snapshot_bytes, args.repeat))
                print(f"{row[0]:>12}{row[1]:>12}" + "".join(f"{v:>12.3f}" for v in row[2:]))
        for store in stores.values():
            store.close()


if __name__ == "__main__":
    main()

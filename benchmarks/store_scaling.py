"""Audit store cost per plan at 1k, 10k and 100k deals, on SQLite and (if installed) PostgreSQL.

For each size: the bytes a stored plan takes (`plan_codec`: Arrow IPC + zstd, rationale text
included) and a stored snapshot (zstd of the request's protobuf bytes), the time to store a plan
(encode + one transaction: snapshot, plan, events, seller requests) and to read it back as the
API's Plan message in PLAN_VIEW_SUMMARY (what ListPlans/ReviewPlan answer) and PLAN_VIEW_FULL.
Targets: a 100k-deal plan stores in under 15 MB and under 1 s; GetPlan SUMMARY under 50 ms.

    .venv/bin/python benchmarks/store_scaling.py [--sizes 1000 10000 100000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa
from assess_scaling import make_snapshot

from reallocator.core.plan.builder import build_plan
from reallocator.server.lifecycle import plan_message
from reallocator.store import plan_codec
from reallocator.store import schema as t
from reallocator.store.base import NewPlan
from reallocator.store.sql import open_store
from reallocator.wire.encode import encode_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls = {"sqlite": f"sqlite:///{folder / 'bench.db'}"}
        if not args.no_postgres:
            from postgres import postgres_bin, postgres_server

            if postgres_bin() is not None:
                urls["postgresql"] = stack.enter_context(postgres_server())
            else:
                print("PostgreSQL not installed: SQLite only")
        header = ("db", "deals", "plan MB", "snap MB", "wire MB", "store s", "summary ms",
                  "full s")  # fmt: skip
        print("".join(f"{h:>12}" for h in header))
        for n in args.sizes:
            snapshot = make_snapshot(n)
            wire = encode_snapshot(snapshot, "arrow").SerializeToString(deterministic=True)
            plan = build_plan(snapshot)
            for db, url in urls.items():
                store = open_store(url)
                t0 = time.perf_counter()
                body = plan_codec.encode_plan(plan)
                new = NewPlan(plan.campaign_id, body, "", "", wire)
                stored = store.save_plan(new, "bench")
                t1 = time.perf_counter()
                got = store.get_plan(stored.name, summary=True)
                summary = plan_message(got, "none")
                t2 = time.perf_counter()
                full = plan_message(store.get_plan(stored.name), "all")
                t3 = time.perf_counter()
                with store.engine.connect() as conn:
                    snap = conn.execute(
                        sa.select(sa.func.max(sa.func.length(t.snapshots.c.body)))
                    ).scalar_one()
                assert summary.allocated == plan.allocated
                row = (len(body) / 1e6, snap / 1e6, full.ByteSize() / 1e6, t1 - t0,
                       (t2 - t1) * 1e3, t3 - t2)  # fmt: skip
                print(f"{db:>12}{n:>12}" + "".join(f"{v:>12.3f}" for v in row))
                store.close()


if __name__ == "__main__":
    main()

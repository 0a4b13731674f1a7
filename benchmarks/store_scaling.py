"""What the audit store costs per plan: bytes stored per plan and per snapshot, the time to
store a plan (its parts encoded, then one transaction), and the time to read it back, at 1k,
10k and 100k deals, on SQLite (the embedded default) and PostgreSQL.

The campaign is `assess_scaling.make_snapshot` (48 h of hourly delivery per deal), planned by
the core as Replan plans it (`build_plan(text=False)`), with a 6-hour schedule window. "store"
is `plan_codec.split` plus `SqlStore.record_plan` (snapshot, assessment, plan, events, seller
requests: one transaction), "plan alone" the next plan made from the same snapshot (stored
already); "GetPlan SUMMARY" is the median of `SqlStore.get_plan(name, "none")`
in process, "gRPC" the same over a real channel to a server on that database, and "GetPlan
FULL" one read of the whole plan with every rationale rendered again. Targets: a 100k-deal plan
stores in under 15 MB and under 1 s, and reads back as a summary in under 50 ms.

PostgreSQL: `--postgres-url URL`, or a throwaway server started here when Debian's binaries are
installed (/usr/lib/postgresql/*/bin; as root through the postgres user), else skipped.

    .venv/bin/python benchmarks/store_scaling.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from assess_scaling import make_snapshot

from reallocator.core.pacing.assessment import assess
from reallocator.core.plan.builder import build_plan
from reallocator.store import plan_codec
from reallocator.store.schema import plans, snapshots
from reallocator.store.sql import NewPlan, SqlStore
from reallocator.wire.assessment import encode_assessment
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.plan import encode_plan

MB = 1_000_000


@contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    bindir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="reallocator-bench-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust"], **run)  # type: ignore[call-overload]  # fmt: skip
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(folder / "log"), "-o", f"-h 127.0.0.1 -p {port} -k {folder}",
                    "start"], **run)  # type: ignore[call-overload]  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m",
                        "fast", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def measure(store: SqlStore, n: int, label: str) -> None:
    snapshot = make_snapshot(n, seed=3)
    snapshot_bytes = encode_snapshot(snapshot, compression="zstd").SerializeToString()
    assessment = assess(snapshot)
    plan = build_plan(
        snapshot, text=False, assessment=assessment, schedule_window=timedelta(hours=6)
    )
    msg = encode_plan(plan, deals="none")
    started = time.perf_counter()
    new = NewPlan(
        msg=msg,
        parts=plan_codec.split(plan, msg),
        snapshot=snapshot_bytes,
        assessment=encode_assessment(assessment, include_deals=False).SerializeToString(),
    )
    lc = store.record_plan(new, actor="bench")
    store_s = time.perf_counter() - started
    started = time.perf_counter()  # the next plan from the same snapshot: the plan alone
    again = NewPlan(msg=msg, parts=plan_codec.split(plan, msg), snapshot=snapshot_bytes)
    lc = store.record_plan(again, actor="bench")
    plan_s = time.perf_counter() - started
    with store.engine.connect() as c:
        row = c.execute(
            sa.select(
                sa.func.length(plans.c.payload),
                sa.func.length(plans.c.deals_table),
                sa.func.length(plans.c.schedules_table),
                plans.c.snapshot_hash,
            ).where(plans.c.name == lc.name)
        ).one()
        snap = c.execute(
            sa.select(sa.func.length(snapshots.c.payload)).where(snapshots.c.content_hash == row[3])
        ).scalar()
    plan_bytes = int(row[0]) + int(row[1]) + int(row[2] or 0)
    reads = []
    for _ in range(15):
        t = time.perf_counter()
        store.get_plan(lc.name, "none")
        reads.append(time.perf_counter() - t)
    t = time.perf_counter()
    full = store.get_plan(lc.name, "all")
    full_s = time.perf_counter() - t
    wire_ms = statistics.median(_get_over_grpc(store.engine.url, lc.name)) * 1e3
    print(
        f"{label:<10} {n:>7} {plan_bytes / MB:>9.2f} {int(snap) / MB:>10.2f} "
        f"{full.ByteSize() / MB:>10.1f} {store_s:>8.3f} {plan_s:>8.3f} "
        f"{statistics.median(reads) * 1e3:>9.1f} {wire_ms:>9.1f} "
        f"{full_s:>8.2f}",
        flush=True,
    )


def _get_over_grpc(url: object, name: str, repeat: int = 15) -> list[float]:
    """GetPlan SUMMARY as a caller sees it: a server on the same database, a real channel on
    loopback, warm calls (the round trip, including the client's parse)."""
    import grpc

    from reallocator.config import load_config
    from reallocator.server.app import start_server
    from reallocator.v1 import reallocator_service_pb2 as pb
    from reallocator.v1 import reallocator_service_pb2_grpc as rpc

    shown = url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
    running = start_server(load_config(env={}, port=0, host="127.0.0.1", database_url=shown))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = rpc.ReallocatorServiceStub(channel)
            request = pb.GetPlanRequest(name=name, view=pb.PLAN_VIEW_SUMMARY)
            stub.GetPlan(request, timeout=30)
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                stub.GetPlan(request, timeout=30)
                times.append(time.perf_counter() - t)
            return times
    finally:
        running.stop(grace=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--postgres-url", default="")
    args = parser.parse_args()
    print(
        f"{'database':<10} {'deals':>7} {'plan MB':>9} {'snapshot':>10} {'FULL msg':>10} "
        f"{'store s':>8} {'plan s':>8} {'get ms':>9} {'gRPC ms':>9} {'full s':>8}"
    )
    print(f"{'':<10} {'':>7} {'stored':>9} {'MB stored':>10} {'MB wire':>10} "
          f"{'all':>8} {'alone':>8} {'SUMMARY':>9} {'SUMMARY':>9} {'read':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        store = SqlStore.open(f"sqlite:///{Path(folder) / 'bench.db'}")
        for n in args.sizes:
            measure(store, n, "sqlite")
        store.close()
    with throwaway_postgres() if not args.postgres_url else _given(args.postgres_url) as url:
        if url is None:
            print("postgresql: skipped (no server binaries; pass --postgres-url)")
            return
        store = SqlStore.open(url)
        for n in args.sizes:
            measure(store, n, "postgresql")
        store.close()


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()

"""What a campaign's age costs a Replan: the seller requests it reads from the audit store, the
history each recorded plan keeps, and the plan made from them, as the requests sent pile up.

A campaign of `--deals` deals (30 % guaranteed, `assess_scaling.make_snapshot`) has had plans
an hour apart, each approved and each asking 10 of its guaranteed deals for a change, with the
sellers' answers (a fifth of them rejections); the requests are written straight into the
store's tables (SQLite, the embedded default, or `--postgres-url`). For each count of requests
sent it prints, against the store's whole history of the campaign (what releases before 0006
read and kept per plan), the rows a Replan now reads (`SqlStore.campaign_past(before=as_of)`:
per deal the last request, per deal and kind the last rejection), the median time of that read,
the bytes of the history table the plan stores, and the thread CPU of the plan made from them
(`build_plan(text=False)`; the plans are identical, tests/core/test_request_history.py).

Then the plans applied: `--applied N` plans of `--applied-deals` deals each, an hour apart,
approved and confirmed applied, and the Replan's read of the last day (`PlanLifecycle.supply`:
the moves the hysteresis looks back on, the last application), from the moved rows each plan
keeps since migration 0007 and, in the same run, from the whole deals tables (as plans stored
before 0007 are read).

    .venv/bin/python benchmarks/history_scaling.py [--requests 100 1000 10000 30000]
        [--deals 1000] [--applied 24] [--applied-deals 10000 100000] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
from assess_scaling import make_snapshot

from reallocator.core.model import CampaignSnapshot, DealType
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import RequestHistory
from reallocator.lifecycle import PlanLifecycle
from reallocator.store import plan_codec
from reallocator.store.plan_codec import StoredInputs, inputs_parts
from reallocator.store.schema import plans, seller_requests
from reallocator.store.sql import NewPlan, SqlStore
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.plan import encode_plan

HOUR = 3_600_000_000
PER_PLAN = 10


def populate(store: SqlStore, snapshot: CampaignSnapshot, campaign: str, requests: int) -> None:
    """`requests` requests sent by approved hourly plans ending an hour before the snapshot."""
    rng = np.random.default_rng(len(campaign))
    deals = snapshot.deals
    guaranteed = deals["deal_type"].to_numpy() == int(DealType.PROGRAMMATIC_GUARANTEED)
    ids = deals.loc[guaranteed, "deal_id"].astype(str).to_numpy()
    as_of = round(snapshot.as_of.timestamp() * 1e6)
    n_plans = max(1, requests // PER_PLAN)
    plan_rows, request_rows = [], []
    for p in range(n_plans):
        name = f"campaigns/{campaign}/plans/bench-{p:06d}"
        at = as_of - (n_plans - p) * HOUR
        plan_rows.append(
            dict(
                name=name, campaign_id=campaign, seq=p, state="SUPERSEDED", status="OPTIMAL",
                etag="bench", create_time=at, update_time=at, as_of=at, actor="bench",
                previous_plan="", snapshot_hash="bench", size=0, payload=b"", deal_count=len(deals),
                kind="REPLAN", approve_time=at,
            )
        )  # fmt: skip
        answers = rng.choice(["PENDING", "ACCEPTED", "REJECTED", "PARTIAL", "ACCEPTED"], PER_PLAN)
        for j, deal in enumerate(rng.choice(ids, min(PER_PLAN, len(ids)), replace=False)):
            request_rows.append(
                dict(
                    plan_name=name, request_id=f"r{j}", campaign_id=campaign, deal_id=str(deal),
                    kind=str(rng.choice(["INCREASE", "DECREASE"])),
                    target_total=int(rng.integers(10**8, 10**10)), requested_at=at,
                    response=str(answers[j]), accepted_total=int(rng.integers(10**8, 10**10)),
                    response_time=at + HOUR // 2, message="", actor="seller", sent=True,
                )
            )  # fmt: skip
    with store.engine.begin() as tx:
        tx.execute(plans.insert(), plan_rows)
        tx.execute(seller_requests.insert(), request_rows)


def median_ms(call: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(clock() - start)
    return statistics.median(times) * 1e3


def history_bytes(history: RequestHistory) -> int:
    return len(inputs_parts(StoredInputs(history=history.requests, deals=history.moves))[0])


def measure(
    store: SqlStore, snapshot: CampaignSnapshot, before: int | None, repeats: int
) -> list[str]:
    """Rows read, read ms, KB kept and plan ms of one way of reading the history."""

    def read() -> RequestHistory:
        return store.campaign_past(snapshot.campaign_id, before=before).history

    history = read()

    def plan() -> object:
        return build_plan(snapshot, history=history, text=False)

    return [
        f"{len(history.requests):>9}",
        f"{median_ms(read, repeats, time.perf_counter):>8.2f}",
        f"{history_bytes(history) / 1e3:>8.1f}",
        f"{median_ms(plan, 5, time.thread_time):>8.1f}",
    ]


def applied_reads(store: SqlStore, n_deals: int, n_plans: int, repeats: int) -> None:
    """`n_plans` applied plans of `n_deals` deals an hour apart; the supply of the next Replan
    read from their moved rows, then from their whole tables."""
    snapshot = make_snapshot(n_deals, seed=1)
    campaign = f"applied-{n_deals}-{time.time_ns()}"
    snapshot = replace(snapshot, campaign_id=campaign)
    for k in range(n_plans):
        at = replace(snapshot, as_of=snapshot.as_of + timedelta(hours=k))
        plan = build_plan(at, text=False)
        msg = encode_plan(plan, deals="none")
        new = NewPlan(
            msg=msg,
            parts=plan_codec.split(plan, msg),
            snapshot=encode_snapshot(at).SerializeToString(),
        )
        lc = store.record_plan(new, actor="bench")
        store.review(lc.name, True, etag=lc.etag, actor="bench", comment="")
        store.confirm_applied(lc.name, actor="bench", apply_time=None)
    nxt = replace(snapshot, as_of=snapshot.as_of + timedelta(hours=n_plans))
    lifecycle = PlanLifecycle(store)
    moved = median_ms(lambda: lifecycle.supply(nxt), repeats, time.perf_counter)
    with store.engine.begin() as tx:
        tx.execute(plans.update().where(plans.c.campaign_id == campaign).values(moved_table=None))
    whole = median_ms(lambda: lifecycle.supply(nxt), repeats, time.perf_counter)
    print(f"{n_deals:>9} {n_plans:>8} | {moved:>14.1f} {whole:>14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[100, 1_000, 10_000, 30_000])
    parser.add_argument("--deals", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--applied", type=int, default=24, help="plans applied in the day")
    parser.add_argument("--applied-deals", type=int, nargs="*", default=[10_000])
    parser.add_argument("--postgres-url", default="")
    args = parser.parse_args()
    snapshot = make_snapshot(args.deals, seed=0, guaranteed=0.3)
    before = round(snapshot.as_of.timestamp() * 1e6)
    print(f"{args.deals} deals, {'PostgreSQL' if args.postgres_url else 'SQLite'}")
    print(
        f"{'requests':>9} | {'rows read':>9} {'read ms':>8} {'kept KB':>8} {'plan ms':>8} | "
        f"{'all rows':>9} {'read ms':>8} {'kept KB':>8} {'plan ms':>8}"
    )
    with tempfile.TemporaryDirectory() as folder:
        store = SqlStore.open(args.postgres_url or f"sqlite:///{Path(folder) / 'bench.db'}")
        for count in args.requests:
            campaign = f"history-{count}-{time.time_ns()}"
            populate(store, snapshot, campaign, count)
            mine = replace(snapshot, campaign_id=campaign)
            row = [
                *measure(store, mine, before, args.repeats),
                *measure(store, mine, None, args.repeats),
            ]
            print(f"{count:>9} | {' '.join(row[:4])} | {' '.join(row[4:])}")
        if args.applied_deals:
            print(f"\n{'deals':>9} {'applied':>8} | {'supply ms':>14} {'supply ms':>14}")
            print(f"{'':>9} {'in 24 h':>8} | {'moved rows':>14} {'whole tables':>14}")
        for n_deals in args.applied_deals:
            applied_reads(store, n_deals, args.applied, max(3, args.repeats // 3))
        store.close()


if __name__ == "__main__":
    main()

"""How AssessPacing scales with the number of deals: assess time for 1k, 10k and 100k deals.

Each snapshot is a realistic campaign: a 10-day flight in America/New_York with a daypart
(06:00-24:00), hour-of-day traffic weights, a lifetime budget plus a daily cap, 100 sellers,
10 channels, and 48 hourly buckets of delivery per deal; deals pace on, over and under their
curve and a few have stalled. The target is 100k deals assessed in under 1 s on 2 cores.

It also times the worst case for alert messages: the same campaign with every deal stalled.

The table is built from rows of named timings so other stages (e.g. decoding the wire form)
can be added as columns: `run(sizes, stages)` times every stage function on each snapshot.

It prints decode (parse + convert + validate the Arrow IPC wire form), assess (the verdicts as
columns: frames and alert words are built when read) and answer (assess, then the BASIC
PacingAssessment message as AssessPacing builds it: campaign, seller and channel verdicts and
every alert with its words) times, the best of `--repeat` warm runs each.

`--grpc` then times AssessPacing BASIC as a caller sees it: a started `reallocator serve` (one
worker), a real channel on loopback, the snapshot in the Arrow form with ZSTD bodies as
replan_scaling sends it, warm calls repeated (median and p99 of the round trip).

    .venv/bin/python benchmarks/assess_scaling.py [--sizes 1000 10000 100000] [--repeat 3]
        [--grpc] [--grpc-repeats 11]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from reallocator.core.model import (
    GROUP_COLUMNS,
    Budget,
    CampaignSnapshot,
    DealType,
    DeliverySeries,
    PacingMode,
    PacingSpec,
    Period,
    Policy,
    empty_deals,
)
from reallocator.core.pacing import assess, build_curve
from reallocator.v1 import assessment_pb2, snapshot_pb2
from reallocator.wire.assessment import encode_assessment
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

TZ = "America/New_York"
HOURS = 48

Stage = Callable[[CampaignSnapshot], object]


def make_snapshot(n_deals: int, seed: int = 0, guaranteed: float = 0.0) -> CampaignSnapshot:
    """A campaign with `n_deals` deals and 48 h of hourly delivery, built directly with numpy.
    Every deal is PREFERRED (buyer-paced) but a `guaranteed` share of them, drawn at random,
    which are PROGRAMMATIC_GUARANTEED: those get seller requests, the others none."""
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(TZ)
    start = datetime(2026, 3, 4, tzinfo=zone)
    end = start + timedelta(days=10)
    as_of = datetime(2026, 3, 9, 15, 20, tzinfo=zone)  # day 6, after the DST change
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 6:] = True
    traffic = np.concatenate([np.full(6, 0.2), np.linspace(0.6, 1.4, 12), np.linspace(1.3, 0.5, 6)])
    allocation = np.maximum(rng.lognormal(np.log(2e9), 1.0, n_deals), 1e6).astype(np.int64)
    total = int(allocation.sum())
    spec = PacingSpec(
        mode=PacingMode.EVEN,
        start=start,
        end=end,
        budgets=(Budget(Period.LIFETIME, total), Budget(Period.DAY, int(total / 8))),
        custom_weights=traffic,
        daypart=daypart,
    )
    curve = build_curve(spec, TZ)
    horizon = curve.horizon_at(as_of)
    as_of_s = as_of.timestamp()
    window_start = as_of_s - (as_of_s % 3600) - (HOURS - 1) * 3600
    hour_edges = np.minimum(window_start + 3600.0 * np.arange(HOURS + 1), as_of_s)
    share_steps = np.diff(curve.share(hour_edges, horizon))  # (HOURS,)

    pace = rng.lognormal(0.0, 0.08, n_deals)  # each deal's delivery vs its curve
    pace[rng.random(n_deals) < 0.05] *= 0.4  # some deals badly under
    noise = rng.gamma(20.0, 1 / 20.0, (n_deals, HOURS))
    spend = allocation[:, None] * share_steps[None, :] * pace[:, None] * noise
    stalled = rng.random(n_deals) < 0.01
    spend[stalled, -8:] = 0.0
    price = rng.uniform(1e6, 8e6, n_deals)  # eCPM micros
    impressions = spend * 1000.0 / price[:, None]
    to_date = allocation * float(curve.share(as_of_s, horizon)) * pace

    deals = empty_deals(n_deals)
    deals["seller_id"] = np.array([f"seller{i}" for i in rng.integers(0, 100, n_deals)], object)
    deals["channel_id"] = np.array([f"channel{i}" for i in rng.integers(0, 10, n_deals)], object)
    deals["allocation"] = allocation
    deals["spend_micros"] = to_date.astype(np.int64)
    deals["impressions"] = (to_date * 1000.0 / price).astype(np.int64)
    deals["price_micros"] = price.astype(np.int64)
    if guaranteed > 0:  # its own stream: the other columns stay those of guaranteed=0
        pg = np.random.default_rng([seed, 1]).random(n_deals) < guaranteed
        deals["deal_type"] = np.where(pg, int(DealType.PROGRAMMATIC_GUARANTEED), deals["deal_type"])

    def groups(ids: pd.Series) -> pd.DataFrame:
        index = pd.Index(sorted(ids.unique()), dtype=object)
        return pd.DataFrame({c: np.nan for c in GROUP_COLUMNS}, index=index).astype(GROUP_COLUMNS)

    series = DeliverySeries(
        window_start=datetime.fromtimestamp(window_start, tz=zone),
        bucket=timedelta(hours=1),
        spend_micros=spend,
        impressions=impressions,
        avails=impressions * 10.0,
        wins=impressions,
    )
    return CampaignSnapshot(
        campaign_id="bench",
        as_of=as_of,
        timezone=TZ,
        currency="USD",
        deals=deals,
        sellers=groups(deals["seller_id"]),
        channels=groups(deals["channel_id"]),
        pacing=spec,
        delivery=series,
        policy=Policy(),
    )


def outage(snapshot: CampaignSnapshot, hours: int = 8) -> CampaignSnapshot:
    """The same campaign after `hours` without a single impression: every deal alerts."""
    series = snapshot.delivery
    assert series is not None
    spend, impressions = series.spend_micros.copy(), series.impressions.copy()
    spend[:, -hours:] = 0.0
    impressions[:, -hours:] = 0.0
    dark = replace(series, spend_micros=spend, impressions=impressions)
    return replace(snapshot, delivery=dark)


def best_time(stage: Stage, snapshot: CampaignSnapshot, repeat: int) -> float:
    """Fastest of `repeat` runs, seconds (after one warm-up run)."""
    stage(snapshot)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        stage(snapshot)
        times.append(time.perf_counter() - t0)
    return min(times)


def run(sizes: Sequence[int], stages: dict[str, Stage], repeat: int = 3) -> list[dict[str, float]]:
    """One row per size: n_deals plus a timing (seconds) per named stage."""
    rows = []
    for n in sizes:
        snapshot = make_snapshot(n)
        row: dict[str, float] = {"n_deals": float(n)}
        for name, stage in stages.items():
            row[name] = best_time(stage, snapshot, repeat)
        rows.append(row)
    return rows


def print_table(rows: Sequence[dict[str, float]]) -> None:
    """Print n_deals and every timing column (ms), whatever stages the rows carry."""
    names = [k for k in rows[0] if k != "n_deals"]
    header = f"{'deals':>8}" + "".join(f"{name + ' (ms)':>20}" for name in names)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{int(row['n_deals']):>8}" + "".join(f"{row[n] * 1e3:>20.1f}" for n in names))


def decode_wire(data: bytes) -> CampaignSnapshot:
    """What the server does with a request's bytes: parse, convert, validate."""
    errors = Violations()
    snapshot = decode_snapshot(snapshot_pb2.CampaignSnapshot.FromString(data), Policy(), errors)
    if snapshot is None:
        raise SystemExit(f"benchmark snapshot failed validation: {errors.items[:3]}")
    return snapshot


def answer(snapshot: CampaignSnapshot) -> assessment_pb2.PacingAssessment:
    """What AssessPacing BASIC computes after decoding: the assessment and its message (the
    alerts' words included)."""
    return encode_assessment(assess(snapshot), include_deals=False)


def grpc_times(sizes: Sequence[int], repeats: int) -> None:
    """AssessPacing BASIC over a real channel to a started server: p50 and p99 of `repeats`."""
    import grpc
    from replan_scaling import MIB, started_server, timed

    from reallocator.v1 import reallocator_service_pb2 as pb
    from reallocator.v1 import reallocator_service_pb2_grpc as rpc

    options = [
        ("grpc.max_receive_message_length", 256 * MIB),
        ("grpc.max_send_message_length", 256 * MIB),
    ]
    print(f"\nAssessPacing BASIC over gRPC, 1 worker, {repeats} warm calls")
    print(f"{'deals':>8}{'p50 ms':>12}{'p99 ms':>12}{'request MB':>13}{'response MB':>13}")
    with started_server(1) as target, grpc.insecure_channel(target, options) as channel:
        stub = rpc.ReallocatorServiceStub(channel)
        for n in sizes:
            request = pb.AssessPacingRequest(
                snapshot=encode_snapshot(make_snapshot(n), "arrow", compression="auto"),
                view=assessment_pb2.ASSESSMENT_VIEW_BASIC,
            )
            p50, p99, reply = timed(lambda r=request: stub.AssessPacing(r, timeout=600), repeats)
            size = reply.ByteSize() if hasattr(reply, "ByteSize") else 0
            print(f"{n:>8}{p50 * 1e3:>12.1f}{p99 * 1e3:>12.1f}{request.ByteSize() / 1e6:>13.2f}"
                  f"{size / 1e6:>13.2f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grpc", action="store_true", help="also time AssessPacing over gRPC")
    parser.add_argument("--grpc-repeats", type=int, default=11)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        snapshot = make_snapshot(n)
        wire = encode_snapshot(snapshot, "arrow").SerializeToString()
        row: dict[str, float] = {"n_deals": float(n)}
        row["decode"] = best_time(lambda _s, w=wire: decode_wire(w), snapshot, args.repeat)
        decoded = decode_wire(wire)
        row["assess"] = best_time(assess, decoded, args.repeat)
        row["answer"] = best_time(answer, decoded, args.repeat)
        row["decode+answer"] = row["decode"] + row["answer"]
        rows.append(row)
    print(f"Arrow IPC wire form ({HOURS} h of hourly series per deal); target: 100k deals < 1 s")
    print_table(rows)
    largest = make_snapshot(args.sizes[-1])
    alerts = assess(largest).alerts
    counts = alerts["status"].value_counts().to_dict()
    print(f"\n{len(alerts)} alerts at {args.sizes[-1]} deals, by status: {counts}")
    dark = outage(largest)
    seconds = best_time(answer, dark, args.repeat)
    print(
        f"worst case, every deal stalled: answer {seconds * 1e3:.1f} ms, "
        f"{len(assess(dark).alerts)} alerts with messages"
    )
    if args.grpc:
        grpc_times(args.sizes, args.grpc_repeats)


if __name__ == "__main__":
    main()

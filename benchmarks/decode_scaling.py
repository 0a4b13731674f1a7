"""Decode time of a campaign snapshot in each wire form, at 1k, 10k and 100k deals.

Times what the server does with a request's bytes: parse the protobuf, convert the deals into the
canonical table and validate every field (the full `decode_snapshot`). Forms:
  messages  one Deal message per deal
  columns   DealsTable.columns (packed repeated columns)
  arrow     DealsTable.arrow_ipc (an Arrow IPC stream, as pandas/pyarrow users produce it)
Each deal carries 48 hourly buckets of recent delivery.

Run: .venv/bin/python benchmarks/decode_scaling.py [--sizes 1000 10000 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from reallocator.core.model import Policy
from reallocator.v1 import common_pb2, snapshot_pb2
from reallocator.wire.encode import arrow_stream
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

AS_OF = datetime(2026, 11, 20, 12, tzinfo=UTC)
BUCKETS = 48


def columns(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    allocation = rng.integers(1_000_000_000, 50_000_000_000, n)
    return {
        "deal_id": np.array([f"deal-{i:07d}" for i in range(n)], dtype=object),
        "seller_id": np.array([f"seller-{i % 100:03d}" for i in range(n)], dtype=object),
        "channel_id": np.array([f"channel-{i % 10}" for i in range(n)], dtype=object),
        "seller_order_id": np.array([f"order-{i}" for i in range(n)], dtype=object),
        "deal_type": rng.integers(1, 5, n),
        "premium": rng.random(n) < 0.1,
        "allocation": allocation,
        "max_allocation": allocation * 2,
        "spend_micros": (allocation * rng.uniform(0.2, 0.6, n)).astype(np.int64),
        "impressions": rng.integers(10_000, 5_000_000, n),
        "ecpm_micros": rng.integers(1_000_000, 20_000_000, n),
        "value_per_unit": rng.uniform(0.5, 2.0, n),
        "avails": rng.integers(1_000_000, 50_000_000, n),
        "wins": rng.integers(10_000, 5_000_000, n),
        "participation_rate": rng.uniform(0.2, 1.0, n),
        "series_spend": rng.integers(0, 100_000_000, (n, BUCKETS)),
        "series_impressions": rng.integers(0, 20_000, (n, BUCKETS)),
    }


def _header(msg: snapshot_pb2.CampaignSnapshot, n: int) -> None:
    msg.campaign_id = "bench"
    msg.as_of.FromDatetime(AS_OF)
    msg.currency_code = "USD"
    msg.time_zone = "America/New_York"
    msg.pacing.budget_type = common_pb2.BUDGET_TYPE_SPEND
    msg.pacing.start_time.FromDatetime(AS_OF - timedelta(days=10))
    msg.pacing.end_time.FromDatetime(AS_OF + timedelta(days=20))
    msg.pacing.budgets.add(period=common_pb2.PERIOD_LIFETIME, amount=n * 60_000_000_000)
    for s in range(100):
        msg.sellers.add(seller_id=f"seller-{s:03d}")
    for c in range(10):
        msg.channels.add(channel_id=f"channel-{c}")


def as_messages(c: dict[str, np.ndarray], series: bool) -> bytes:
    n = len(c["deal_id"])
    msg = snapshot_pb2.CampaignSnapshot()
    _header(msg, n)
    window = AS_OF - timedelta(hours=BUCKETS)
    for i in range(n):
        d = msg.deals.add(
            deal_id=c["deal_id"][i],
            seller_id=c["seller_id"][i],
            channel_id=c["channel_id"][i],
            seller_order_id=c["seller_order_id"][i],
            deal_type=int(c["deal_type"][i]),
            premium=bool(c["premium"][i]),
            allocation=int(c["allocation"][i]),
            max_allocation=int(c["max_allocation"][i]),
            ecpm_micros=int(c["ecpm_micros"][i]),
            value_per_unit=float(c["value_per_unit"][i]),
        )
        d.delivered.spend_micros = int(c["spend_micros"][i])
        d.delivered.impressions = int(c["impressions"][i])
        d.supply.avails = int(c["avails"][i])
        d.supply.wins = int(c["wins"][i])
        d.supply.participation_rate = float(c["participation_rate"][i])
        if not series:
            continue
        s = d.recent_delivery
        s.window_start.FromDatetime(window)
        s.bucket_width.FromTimedelta(timedelta(hours=1))
        s.spend_micros.extend(c["series_spend"][i].tolist())
        s.impressions.extend(c["series_impressions"][i].tolist())
        s.avails.extend([0] * BUCKETS)
        s.wins.extend(c["series_impressions"][i].tolist())
    return msg.SerializeToString()


def _matrix(msg: snapshot_pb2.CampaignSnapshot, c: dict[str, np.ndarray], arrow: bool) -> None:
    m = msg.deals_table.recent_delivery
    m.window_start.FromDatetime(AS_OF - timedelta(hours=BUCKETS))
    m.bucket_width.FromTimedelta(timedelta(hours=1))
    m.bucket_count = BUCKETS
    series = {
        "spend_micros": c["series_spend"].ravel(),
        "impressions": c["series_impressions"].ravel(),
        "avails": np.zeros(c["series_spend"].size, dtype=np.int64),
        "wins": c["series_impressions"].ravel(),
    }
    if arrow:
        # Per-bucket counts fit int32; only spend needs int64. zstd keeps the stream small.
        narrow = {k: v if k == "spend_micros" else v.astype(np.int32) for k, v in series.items()}
        m.arrow_ipc = arrow_stream(pa.table(narrow), compression="zstd")
        return
    for name, values in series.items():
        getattr(m, name).extend(values.tolist())


_TABLE_COLUMNS = [
    k
    for k in (
        "deal_id",
        "seller_id",
        "channel_id",
        "seller_order_id",
        "deal_type",
        "premium",
        "allocation",
        "max_allocation",
        "spend_micros",
        "impressions",
        "ecpm_micros",
        "value_per_unit",
        "avails",
        "wins",
        "participation_rate",
    )
]


def as_columns(c: dict[str, np.ndarray], series: bool) -> bytes:
    n = len(c["deal_id"])
    msg = snapshot_pb2.CampaignSnapshot()
    _header(msg, n)
    cols = msg.deals_table.columns
    for name in _TABLE_COLUMNS:
        getattr(cols, name).extend(c[name].tolist())
    cols.has_max_allocation.extend([True] * n)
    if series:
        _matrix(msg, c, arrow=False)
    return msg.SerializeToString()


def as_arrow(c: dict[str, np.ndarray], series: bool) -> bytes:
    n = len(c["deal_id"])
    msg = snapshot_pb2.CampaignSnapshot()
    _header(msg, n)
    msg.deals_table.arrow_ipc = arrow_stream(pa.table({name: c[name] for name in _TABLE_COLUMNS}))
    if series:
        _matrix(msg, c, arrow=True)
    return msg.SerializeToString()


def decode(data: bytes) -> int:
    msg = snapshot_pb2.CampaignSnapshot.FromString(data)
    errors = Violations()
    snapshot = decode_snapshot(msg, Policy(), errors)
    if snapshot is None:
        raise SystemExit(f"benchmark snapshot failed validation: {errors.items[:3]}")
    return len(snapshot.deals)


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'deals':>8} {'series':>7} {'form':>9} {'MB':>7} {'ms best':>9} {'ms median':>10}")
    for n in args.sizes:
        c = columns(n)
        for series in (False, True):
            results = {}
            label = f"{BUCKETS}h" if series else "none"
            for form, encode in (
                ("messages", as_messages),
                ("columns", as_columns),
                ("arrow", as_arrow),
            ):
                data = encode(c, series)
                assert decode(data) == n
                best, median = best_of(lambda d=data: decode(d), args.repeat)  # type: ignore[misc]
                results[form] = best
                print(
                    f"{n:>8} {label:>7} {form:>9} {len(data) / 1e6:>7.1f} {best * 1e3:>9.1f} "
                    f"{median * 1e3:>10.1f}"
                )
            print(
                f"{'':>8} {'':>7} columns {results['messages'] / results['columns']:.1f}x, "
                f"arrow {results['messages'] / results['arrow']:.1f}x faster than messages"
            )


if __name__ == "__main__":
    main()

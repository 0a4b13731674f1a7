"""An always-on campaign with a daily budget (no dates: planned over today) and a recent series
that reaches into yesterday: supply does not reset when the day's budget does, so the forecast
reads yesterday's buckets too, and a night without supply (a stall each morning, unknown to the
dayparts) is left out of the rate rather than everything before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from builders import DealSpec, RecentDelivery, SnapshotSpec, build_snapshot

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.prepare import prepare
from reallocator.v1 import common_pb2, pacing_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

USD = 10**6
AT = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 13:00: thirteen hours into today's budget
HOURS = 24  # the series: 13:00 yesterday to now
CPM = 20  # USD per thousand impressions


def _daily_pool(
    per_hour: np.ndarray, allocation: list[float], spent_today: list[float], cpm: float = CPM
) -> CampaignSnapshot:
    """Deals of one 1,000 USD daily pool; `per_hour` (deals x hours, USD) their delivery up to
    now, at full participation (every bid request won), at `cpm` USD a thousand impressions."""
    pacing = pacing_pb2.PacingTarget(
        budget_type=common_pb2.BUDGET_TYPE_SPEND,
        mode=common_pb2.PACING_MODE_EVEN,
        budgets=[pacing_pb2.Budget(period=common_pb2.PERIOD_DAY, amount=1_000 * USD)],
    )
    spend = np.round(per_hour * USD).astype(np.int64)
    imps = np.round(per_hour * 1_000 / cpm).astype(np.int64)
    deals = tuple(
        DealSpec(
            deal_id=f"d{i}",
            seller_id="s1",
            channel_id="ctv",
            allocation=int(a * USD),
            spend_micros=int(s * USD),
            impressions=int(s * 1_000 / cpm),
            ecpm_micros=round(cpm * USD),
            value_per_unit=1.0,
            participation_rate=1.0,
        )
        for i, (a, s) in enumerate(zip(allocation, spent_today, strict=True))
    )
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("s1",),
        channel_ids=("ctv",),
        as_of=AT,
        time_zone="UTC",
        pacing=pacing,
        delivery=RecentDelivery(
            window_start=AT - timedelta(hours=per_hour.shape[1]),
            bucket_width=timedelta(hours=1),
            spend_micros=spend,
            impressions=imps,
            avails=imps,
            wins=imps,
        ),
    )
    errors = Violations()
    snapshot = decode_snapshot(build_snapshot(spec), Policy(), errors)
    assert snapshot is not None, errors.items
    return snapshot


def _hours(night: bool, per_hour: float) -> np.ndarray:
    """Delivery from 13:00 yesterday: `per_hour` every hour, or none from 00:00 to 06:00."""
    clock = (np.arange(HOURS) + 13) % 24
    return np.where(night & (clock < 6), 0.0, per_hour)


def test_yesterdays_buckets_count_as_evidence() -> None:
    """A deal that delivered 1 USD an hour since 13:00 yesterday at a 500 USD CPM (13 USD today:
    26 impressions, under the 30 a forecast needs, `forecast_min_impressions`; 48 over the 24
    hours): read on all 24 hours it is measured (1 USD an hour, about 11 more today) and the
    plan cuts it from the 300 USD it holds. The same deal whose series starts at midnight has
    26 impressions in 13 hours: too few for a rate, but a shortfall even read up by the count's
    upper bound (`thin_shortfall`), so it is cut too, on half the evidence: less far."""
    delivery = np.stack([_hours(False, 1.0), _hours(False, 40.0)])

    def pool(series: np.ndarray) -> CampaignSnapshot:
        return _daily_pool(series, [300.0, 700.0], [13.0, 520.0], cpm=500.0)

    today = build_plan(pool(delivery[:, 11:])).deals
    assert today["reason"].iloc[0] != "UNCHANGED"
    snapshot = pool(delivery)
    prepared = prepare(
        snapshot, assessment=None, history=None, forecast=None, windows=None,
        time_limit=10.0, checkpoint=lambda _: None,
    )  # fmt: skip
    table = prepared.forecast_table
    assert table["evidence_hours"].tolist() == [24.0, 24.0]
    assert table["method"].astype(str).tolist() == ["rate", "rate"]
    assert table["observed_rate"].iloc[0] == 1.0 * USD
    # Shrunk half way towards what it holds (24 h of evidence against a 24 h prior); on the
    # 13 hours since midnight, 13 / 37 of the way.
    yesterday = build_plan(snapshot).deals["new_total"].iloc[0]
    assert yesterday < 175 * USD < today["new_total"].iloc[0] < 300 * USD


def test_a_night_without_supply_is_left_out_of_the_rate() -> None:
    """No supply from 00:00 to 06:00 (six silent hours: a stall the deal came out of), 3 USD an
    hour otherwise: the rate is read on the eighteen live hours, yesterday afternoon's
    included, not only on the seven since 06:00."""
    snapshot = _daily_pool(
        np.stack([_hours(True, 3.0), _hours(False, 40.0)]),
        allocation=[300.0, 700.0],
        spent_today=[21.0, 520.0],
    )
    prepared = prepare(
        snapshot, assessment=None, history=None, forecast=None, windows=None,
        time_limit=10.0, checkpoint=lambda _: None,
    )  # fmt: skip
    table = prepared.forecast_table
    assert table["evidence_hours"].iloc[0] == 18.0
    assert table["observed_rate"].iloc[0] == 3.0 * USD

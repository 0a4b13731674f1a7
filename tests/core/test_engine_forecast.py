"""Capacity forecast: unthrottled rate over the remaining opportunity, capped by avails and
declared inventory; fallbacks below minimum evidence; zero when stalled or inactive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from reallocator.core.engine import ForecastInputs, forecast_capacity
from reallocator.core.model import BudgetType, DealStatus, DeliverySeries, Policy, empty_deals

POLICY = Policy(min_evidence=timedelta(hours=6), min_evidence_impressions=1000)


def inputs(n: int, **kw: object) -> ForecastInputs:
    base: dict[str, object] = {
        "observed_rate": np.full(n, 100.0),
        "participation_rate": np.full(n, np.nan),
        "avails_rate": np.full(n, np.nan),
        "win_rate": np.full(n, np.nan),
        "units_per_win": np.full(n, np.nan),
        "available_inventory": np.full(n, -1, np.int64),
        "booked": np.full(n, 777, np.int64),
        "evidence_hours": np.full(n, 24.0),
        "evidence_impressions": np.full(n, 10_000, np.int64),
        "stalled": np.zeros(n, bool),
        "active": np.ones(n, bool),
    }
    base.update(kw)
    return ForecastInputs(**base)  # type: ignore[arg-type]


def test_throttled_deal_could_deliver_more() -> None:
    cap, why = forecast_capacity(
        inputs(2, participation_rate=np.array([0.25, np.nan])), 10.0, POLICY
    )
    assert cap.tolist() == [4000, 1000]  # 100/h / 0.25 * 10 h; unknown participation = 1
    assert why["method"].tolist() == ["rate", "rate"]
    assert why["unthrottled_rate"].tolist() == [400.0, 100.0]


def test_avails_and_declared_inventory_cap_the_rate() -> None:
    x = inputs(
        3,
        avails_rate=np.array([50.0, np.nan, np.nan]),
        win_rate=np.array([0.5, np.nan, np.nan]),
        units_per_win=np.array([2.0, np.nan, np.nan]),
        available_inventory=np.array([-1, 300, -1], np.int64),
    )
    cap, _ = forecast_capacity(x, np.array([10.0, 10.0, 2.5]), POLICY)
    assert cap.tolist() == [500, 300, 250]  # 50*10*0.5*2; inventory; per-deal hours


def test_low_evidence_uses_declared_then_booked() -> None:
    x = inputs(
        3,
        evidence_hours=np.array([2.0, 2.0, 24.0]),
        evidence_impressions=np.array([10_000, 10_000, 10], np.int64),
        available_inventory=np.array([300, -1, -1], np.int64),
    )
    cap, why = forecast_capacity(x, 10.0, POLICY)
    assert cap.tolist() == [300, 777, 777]
    assert why["method"].tolist() == ["declared", "booked", "booked"]


def test_stalled_and_inactive_deals_forecast_zero() -> None:
    x = inputs(2, stalled=np.array([True, False]), active=np.array([True, False]))
    cap, why = forecast_capacity(x, 10.0, POLICY)
    assert cap.tolist() == [0, 0]
    assert why["method"].tolist() == ["stalled", "inactive"]


def test_inputs_from_a_snapshot_series() -> None:
    deals = empty_deals(2)
    deals["impressions"] = [5000, 5000]
    deals["spend_micros"] = [1_000_000, 2_000_000]
    deals["allocation"] = [5_000_000, 5_000_000]
    deals["bids"] = [100, 100]
    deals["wins"] = [50, 50]
    deals["status"] = np.array([DealStatus.ACTIVE, DealStatus.PAUSED], np.int8)
    hours = 12
    spend = np.array([[100.0] * hours, [10.0] * 6 + [0.0] * 6])
    series = DeliverySeries(
        window_start=datetime(2026, 11, 1, tzinfo=UTC),
        bucket=timedelta(hours=1),
        spend_micros=spend,
        impressions=spend / 10,
        avails=np.full((2, hours), 40.0),
        wins=np.full((2, hours), 4.0),
    )
    x = ForecastInputs.from_snapshot(deals, series, BudgetType.SPEND, POLICY)
    assert x.observed_rate.tolist() == [100.0, 5.0]
    assert x.evidence_hours.tolist() == [12.0, 12.0]
    assert x.stalled.tolist() == [False, True]  # nothing in the last 6 hours
    assert x.booked.tolist() == [4_000_000, 3_000_000]
    cap, _ = forecast_capacity(x, 10.0, POLICY)
    assert cap.tolist() == [1000, 0]

"""The fused, lazy assessment gives exactly what the frame-per-kind one gave
(reference_assessment.py): every frame (values, dtypes, index, column order), every scalar, every
alert and its words, over random campaigns (budget types, modes, dayparts, flights, time zones,
restarts, statuses, gaps in the series, snapshots before, inside and after the flight)."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from reallocator.core import figures
from reallocator.core.model import (
    GROUP_COLUMNS,
    Budget,
    BudgetType,
    CampaignSnapshot,
    DeliverySeries,
    Flight,
    PacingMode,
    PacingSpec,
    Period,
    Policy,
    empty_deals,
)
from reallocator.core.pacing import ASSESSMENT_COLUMNS, EntityKind, assess
from reallocator.core.pacing.assessment import AlertSeverity, _utc_minutes
from reallocator.core.pacing.calendar import to_datetime
from reallocator.v1 import assessment_pb2, common_pb2
from reallocator.wire.assessment import (
    BUDGET_TYPE,
    KIND,
    SEVERITY,
    STATUS,
    encode_assessment,
    timestamp,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_assessment as reference
from reference_encoding import verdicts

T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def campaign(draw: Any) -> CampaignSnapshot:
    """A random campaign snapshot, built from a hypothesis draw and a numpy seed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = int(rng.integers(1, 41))
    bt = draw(st.sampled_from([BudgetType.SPEND, BudgetType.IMPRESSIONS, BudgetType.CLICKS]))
    mode = draw(st.sampled_from(list(PacingMode)))
    tz = draw(st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]))
    days = draw(st.integers(2, 12))
    start, end = T0, T0 + timedelta(days=days)
    as_of = T0 + timedelta(hours=float(rng.uniform(-0.05, 1.05)) * days * 24)
    total = int(rng.integers(10**6, 10**10))
    budgets: tuple[Budget, ...] = (Budget(Period.LIFETIME, total),)
    if draw(st.booleans()):
        budgets += (Budget(Period.DAY, int(total / days * rng.uniform(0.8, 2.0))),)
    flights: tuple[Flight, ...] = ()
    if draw(st.booleans()):  # two flights with their own budgets, a gap between them
        mid = T0 + timedelta(days=days // 2)
        flights = (
            Flight("f1", start, mid, (Budget(Period.LIFETIME, total // 2),)),
            Flight("f2", mid + 6 * HOUR, end, (Budget(Period.LIFETIME, total - total // 2),)),
        )
        budgets = ()
    daypart = None
    if draw(st.booleans()):
        daypart = np.zeros((7, 24), dtype=bool)
        daypart[:, 6:22] = True
    weighted = mode is PacingMode.CUSTOM or draw(st.booleans())
    weights = rng.uniform(0.2, 2.0, 24) if weighted else None
    pacing = PacingSpec(
        budget_type=bt,
        mode=mode,
        start=start,
        end=end,
        budgets=budgets,
        flights=flights,
        custom_weights=weights,
        daypart=daypart,
        catch_up_fraction=draw(st.sampled_from([1.0, 0.95])),
    )

    frame = empty_deals(n)
    alloc = rng.integers(0, 10**9, n)
    alloc[rng.random(n) < 0.1] = 0
    share = rng.uniform(0.0, 1.4, n) * min(max((as_of - start) / (end - start), 0.0), 1.0)
    delivered = (alloc * share).astype(np.int64)
    delivered[rng.random(n) < 0.1] = 0
    price = rng.integers(500_000, 9_000_000, n)
    frame["deal_id"] = [f"d{i}" for i in range(n)]
    frame["seller_id"] = [f"s{i}" for i in rng.integers(0, max(1, n // 4), n)]
    frame["channel_id"] = [f"c{i}" for i in rng.integers(0, 3, n)]
    frame["status"] = rng.choice(np.array([1, 1, 1, 2, 3], dtype=np.int8), n)
    frame["allocation"] = alloc
    frame["price_kind"] = rng.choice(np.array([1, 2], dtype=np.int8), n)
    frame["price_micros"] = price
    if bt is BudgetType.SPEND:
        frame["spend_micros"] = delivered
        frame["impressions"] = delivered * 1000 // price
    else:
        frame["impressions"] = delivered * (1 if bt is BudgetType.IMPRESSIONS else 300)
        frame["spend_micros"] = frame["impressions"] * price // 1000
        frame["clicks"] = delivered
    # Bid requests to date reported for most deals (the stall verdict across a plan reads them).
    frame["avails"] = np.where(rng.random(n) < 0.8, frame["impressions"].to_numpy() * 10, 0)
    applied = rng.random(n) < draw(st.sampled_from([0.0, 0.3]))
    # Half of the plans within the last 8 hours: inside the stall window of a deal silent
    # for them (the series below silences 10 % of the deals for 8 hours).
    recent = rng.random(n) < 0.5
    ago = np.where(recent, rng.integers(0, 8 * 3_600, n), rng.integers(0, 3 * 86_400, n))
    applied_at = int(as_of.timestamp()) - ago
    frame["plan_applied_at"] = np.where(applied, applied_at, -1)
    frame["delivered_at_plan"] = np.where(applied, delivered // 2, 0)

    delivery = None
    buckets = draw(st.sampled_from([0, 6, 48]))
    if buckets:
        per_hour = rng.gamma(2.0, 1.0, (n, buckets)) * (alloc[:, None] / (days * 24.0))
        per_hour[rng.random(n) < 0.1, -8:] = 0.0  # stalls
        per_hour[rng.random(n) < 0.1, :] = np.nan  # deals without a series
        spend = per_hour if bt is BudgetType.SPEND else per_hour * price[:, None] / 1000
        impressions = per_hour * 1000 / price[:, None] if bt is BudgetType.SPEND else per_hour
        delivery = DeliverySeries(
            window_start=as_of - buckets * HOUR + timedelta(minutes=int(rng.integers(0, 60))),
            bucket=HOUR,
            spend_micros=spend,
            impressions=impressions,
            avails=impressions * 10,
            wins=impressions,
        )
    groups = pd.DataFrame({c: pd.Series(dtype=t) for c, t in GROUP_COLUMNS.items()})
    return CampaignSnapshot(
        campaign_id="c1",
        as_of=as_of,
        timezone=tz,
        currency="USD",
        deals=frame,
        sellers=groups,
        channels=groups.copy(),
        pacing=pacing,
        delivery=delivery,
        policy=Policy(confidence_threshold=draw(st.sampled_from([30.0, 60.0]))),
    )


_RANK = {AlertSeverity.CRITICAL: 0, AlertSeverity.MATERIAL: 1, AlertSeverity.MINOR: 2}
_SEVERITIES_BY_RANK = {rank: severity for severity, rank in _RANK.items()}


def assert_same(fast: Any, slow: Any) -> None:
    for name in (
        "campaign_id", "as_of", "horizon_start", "horizon_end", "budget_type", "currency",
        "share_now", "opportunity_elapsed_hours", "opportunity_remaining_hours",
        "rate_window_hours", "ceiling",
    ):  # fmt: skip
        assert getattr(fast, name) == getattr(slow, name), name
    for name in ("deals", "sellers", "channels", "campaign", "alerts"):
        pd.testing.assert_frame_equal(getattr(fast, name), getattr(slow, name), check_exact=True)
    assert fast.alert_list() == slow.alert_list()
    assert fast.n_alerts == len(slow.alerts)
    ranks = [_RANK[AlertSeverity(str(v))] for v in slow.alerts["severity"]]
    assert fast.most_severe == (_SEVERITIES_BY_RANK[min(ranks)] if ranks else None)
    for kind, frame in ((EntityKind.DEAL, slow.deals), (EntityKind.SELLER, slow.sellers)):
        for name in ASSESSMENT_COLUMNS:
            np.testing.assert_array_equal(fast.column(kind, name), frame[name].to_numpy())
    for include_deals in (False, True):
        encoded = encode_assessment(fast, include_deals)
        assert encoded == frame_encoding(slow, include_deals)
        # the bytes stored and sent, not only an equal message
        want = frame_encoding(slow, include_deals).SerializeToString(deterministic=True)
        assert encoded.SerializeToString(deterministic=True) == want


def frame_encoding(result: Any, include_deals: bool) -> assessment_pb2.PacingAssessment:
    """The message as the adapter built it before: from the frames and the typed alerts, each
    verdict added on its own (reference_encoding.py)."""
    msg = assessment_pb2.PacingAssessment(
        campaign_id=result.campaign_id,
        as_of=timestamp(result.as_of),
        horizon_end_time=timestamp(result.horizon_end),
        horizon_start_time=timestamp(result.horizon_start),
        budget_type=BUDGET_TYPE[result.budget_type],
        currency_code=result.currency,
        expected_share=result.share_now,
        opportunity_remaining_hours=result.opportunity_remaining_hours,
    )
    msg.campaign.CopyFrom(verdicts(result.campaign, EntityKind.CAMPAIGN)[0])
    msg.sellers.extend(verdicts(result.sellers, EntityKind.SELLER))
    msg.channels.extend(verdicts(result.channels, EntityKind.CHANNEL))
    if include_deals:
        msg.deals.extend(verdicts(result.deals, EntityKind.DEAL))
    for alert in result.alert_list():
        msg.alerts.add(
            entity=common_pb2.EntityRef(kind=KIND[alert.entity_kind], id=alert.entity_id),
            status=STATUS[str(alert.status)],
            severity=SEVERITY[str(alert.severity)],
            reason_code=str(alert.reason),
            message=alert.message,
            confidence=alert.confidence,
            create_time=timestamp(result.as_of),
        )
    return msg


@settings(max_examples=150, deadline=None)
@given(data=st.data(), words=st.booleans())
def test_fast_assessment_equals_the_reference(data: st.DataObject, words: bool) -> None:
    try:
        snapshot = campaign(data.draw)
        slow = reference.assess(snapshot, alert_messages=words)
    except ValueError:  # a random spec no curve can follow (the fast path must say so too)
        event("no curve")
        with pytest.raises(ValueError):
            assess(snapshot, alert_messages=words)
        return
    event(f"{len(slow.alerts)} alerts" if len(slow.alerts) < 3 else "3+ alerts")
    assert_same(assess(snapshot, alert_messages=words), slow)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_alert_words_formatted_a_column_at_a_time_are_the_reference(data: st.DataObject) -> None:
    """Any number of alerts takes the numpy formatter (`figures.texts`, which a campaign uses
    from 250 values up): the reference's words, f-string by f-string."""
    try:
        snapshot = campaign(data.draw)
        slow = reference.assess(snapshot, alert_messages=True)
    except ValueError:  # a random spec no curve can follow
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "COLUMN_FROM", 0)
        fast = assess(snapshot, alert_messages=True)
        assert_same(fast, slow)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), words=st.booleans())
def test_an_answer_without_the_deals_dates_only_its_own_rows(
    data: st.DataObject, words: bool
) -> None:
    """Encoded first (no column read before), an answer without the deals' verdicts computes
    projected_exhaustion at its groups' and alerts' rows only (`_Columns.at`): the bytes of the
    reference's, and each row as the whole column has it."""
    try:
        snapshot = campaign(data.draw)
        slow = reference.assess(snapshot, alert_messages=words)
    except ValueError:  # a random spec no curve can follow
        return
    fast = assess(snapshot, alert_messages=words)
    columns = fast.verdicts[EntityKind.DEAL].evaluated.columns
    encoded = encode_assessment(fast, include_deals=False).SerializeToString(deterministic=True)
    assert "projected_exhaustion" not in columns  # dated row by row, nothing kept
    assert encoded == frame_encoding(slow, False).SerializeToString(deterministic=True)
    n = len(columns["alert"])
    rows = np.asarray(data.draw(st.lists(st.integers(0, n - 1), max_size=20)), dtype=np.int64)
    some = columns.at("projected_exhaustion", rows)
    np.testing.assert_array_equal(some, columns["projected_exhaustion"][rows])


def test_alert_frames_are_equal_when_nothing_alerts_and_when_everything_does() -> None:
    quiet = replace(
        reference_snapshot(), policy=Policy(confidence_threshold=100.0)
    )  # no verdict passes the gate
    assert_same(assess(quiet), reference.assess(quiet))
    assert assess(quiet).n_alerts == 0
    loud = reference_snapshot(stalled=True)
    fast = assess(loud)
    assert fast.n_alerts > 20
    assert_same(fast, reference.assess(loud))


def test_thousands_of_deals_with_restarted_plans_are_the_reference() -> None:
    """Past the short-column factorize and with plans applied inside the windows."""
    snapshot = reference_snapshot(n=3_000)
    fast = assess(snapshot)
    assert fast.n_alerts > 100
    assert_same(fast, reference.assess(snapshot))


def test_exhaustion_severity_and_alert_order_are_made_when_first_read() -> None:
    """A plan never reads projected_exhaustion, a severity or the alerts' order (it counts
    them): the assessment makes them on the first read, as the reference makes them."""
    snapshot = reference_snapshot()
    fast = assess(snapshot, alert_messages=False)
    evaluated = fast.verdicts[EntityKind.DEAL].evaluated
    columns = evaluated.columns
    for name in ("status", "confidence", "recent_rate", "pacing_ratio", "required_rate"):
        fast.column(EntityKind.DEAL, name)  # what a plan reads
    assert fast.n_alerts > 0
    assert fast.table is not None and "_sorted" not in vars(fast.table)
    assert "projected_exhaustion" not in columns and "severity" not in evaluated.codes
    slow = reference.assess(snapshot)
    assert str(fast.most_severe) == min(slow.alerts["severity"], key=_RANK.__getitem__)
    assert "severity" in evaluated.codes and "_sorted" in vars(fast.table)
    first = fast.column(EntityKind.DEAL, "projected_exhaustion")
    assert "projected_exhaustion" in columns and not first.flags.writeable
    assert fast.column(EntityKind.DEAL, "projected_exhaustion").base is first.base  # kept
    want = slow.deals["projected_exhaustion"].to_numpy()
    np.testing.assert_array_equal(first, want)
    with pytest.raises(KeyError):
        columns["no such column"]
    # A label column is a new pick each read, read-only as the numbers are.
    status = fast.column(EntityKind.DEAL, "status")
    assert not status.flags.writeable and status.tolist() == slow.deals["status"].tolist()


def reference_snapshot(stalled: bool = False, n: int = 40) -> CampaignSnapshot:
    """A campaign in New York, every deal with a series; `stalled`: all went dark."""
    rng = np.random.default_rng(7)
    as_of = T0 + timedelta(days=4, hours=15)
    frame = empty_deals(n)
    frame["deal_id"] = [f"deal-{i}" for i in range(n)]
    frame["seller_id"] = [f"s{i % 7}" if n < 100 else f"s{i % 301}" for i in range(n)]
    frame["channel_id"] = [f"c{i % 3}" for i in range(n)]
    frame["allocation"] = rng.integers(10**8, 10**9, n)
    frame["spend_micros"] = (frame["allocation"] * rng.uniform(0.2, 0.7, n)).astype(np.int64)
    applied = (as_of.timestamp() - 3600 * rng.choice([3, 30], n)).astype(np.int64)
    frame["plan_applied_at"] = np.where(rng.random(n) < 0.2, applied, -1)
    frame["delivered_at_plan"] = frame["spend_micros"] // 2
    frame["impressions"] = frame["spend_micros"] // 2000
    frame["price_micros"] = 2_000_000
    values = rng.gamma(4.0, 1.0, (n, 48)) * 1e6
    if stalled:
        values[:, -8:] = 0.0
    groups = pd.DataFrame({c: pd.Series(dtype=t) for c, t in GROUP_COLUMNS.items()})
    return CampaignSnapshot(
        campaign_id="c1",
        as_of=as_of,
        timezone="America/New_York",
        currency="USD",
        deals=frame,
        sellers=groups,
        channels=groups.copy(),
        pacing=PacingSpec(
            start=T0,
            end=T0 + timedelta(days=10),
            budgets=(Budget(Period.LIFETIME, int(frame["allocation"].sum())),),
        ),
        delivery=DeliverySeries(
            window_start=as_of - 48 * HOUR,
            bucket=HOUR,
            spend_micros=values,
            impressions=values / 2000,
            avails=values,
            wins=values / 2000,
        ),
        policy=Policy(),
    )


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=4), min_size=1, max_size=150))
def test_short_group_columns_factorize_as_pandas_does(ids: list[str]) -> None:
    from reallocator.core.pacing.assessment import _factorize

    column = pd.Series(ids, dtype="str")
    codes, uniques = _factorize(pd.DataFrame({"seller_id": column}), "seller_id")
    want_codes, want_uniques = pd.factorize(column, sort=True)
    np.testing.assert_array_equal(codes, want_codes)
    assert uniques.tolist() == list(want_uniques)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 60),
    st.sampled_from([900, 3600]),
    st.floats(-2.0, 70.0),
    st.floats(-5.0, 70.0),
    st.floats(0.0, 30.0),
)
def test_bucket_weights_from_one_grid_are_the_reference_weights(
    n_buckets: int, step: int, as_of_h: float, a_h: float, width_h: float
) -> None:
    """The buckets' times computed once (`_bucket_grid`) give each window the weights the
    reference computes from the series for every window."""
    from reallocator.core.model import DeliverySeries
    from reallocator.core.pacing.assessment import _bucket_grid, _bucket_weights

    start = datetime(2026, 11, 2, tzinfo=UTC)
    empty = np.zeros((1, n_buckets))
    series = DeliverySeries(start, timedelta(seconds=step), empty, empty, empty, empty)
    t0 = start.timestamp()
    as_of, a = t0 + as_of_h * 3600.0, t0 + a_h * 3600.0
    b = a + width_h * 3600.0
    grid = _bucket_grid(start.timestamp(), series, as_of)
    got = _bucket_weights(grid, a, b)
    np.testing.assert_array_equal(got, reference._bucket_weights(series, as_of, a, b))
    # Several windows at once (a row each) are each window's own weights, bit for bit.
    ends = np.array([[a, b], [b - 86_400.0, a], [a - 3600.0, b + 1800.0]])
    rows = _bucket_weights(grid, ends[:, :1], ends[:, 1:])
    for row, (lo, hi) in zip(rows, ends.tolist(), strict=True):
        assert row.tobytes() == _bucket_weights(grid, lo, hi).tobytes()


def _strftime_minutes(seconds: np.ndarray) -> list[str]:
    """The per-instant path `_utc_minutes` replaces: a datetime and its strftime each."""
    return [f"{to_datetime(s):%Y-%m-%d %H:%M}" if np.isfinite(s) else "" for s in seconds.tolist()]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-1e10, max_value=3e11),
            st.integers(min_value=0, max_value=4_000_000_000).map(
                lambda m: m * 60.0 - 0.5e-6  # a minute's last half microsecond: rounds over
            ),
            st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 253_402_300_799.0]),
        ),
        max_size=40,
    )
)
def test_utc_minutes_are_each_datetimes_strftime(values: list[float]) -> None:
    seconds = np.array(values, dtype=np.float64)
    try:
        expected = _strftime_minutes(seconds)
    except (OverflowError, ValueError, OSError) as exc:  # past what a datetime holds
        with pytest.raises(type(exc)):
            _utc_minutes(seconds)
        return
    assert _utc_minutes(seconds) == expected

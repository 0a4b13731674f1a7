"""The pacing assessment as it was before it was fused and made lazy (main at 13b889c), kept
as the oracle `test_pacing_assessment_fast.py` compares `reallocator.core.pacing.assess` with:
every frame, scalar and alert must be identical. Not used by the package; the enums, columns and
curves are the package's own (a verdict is equal only if its labels are the same objects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from reallocator.core.interrupt import Checkpoint, never
from reallocator.core.model import (
    DELIVERED_COLUMN,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DeliverySeries,
    Policy,
    PriceKind,
    values_of,
)
from reallocator.core.pacing import confidence as conf
from reallocator.core.pacing.assessment import (
    Alert,
    AlertSeverity,
    EntityKind,
    PacingStatus,
    Reason,
)
from reallocator.core.pacing.calendar import (
    BoolArray,
    FloatArray,
    PacingCalendar,
    default_span,
    to_datetime,
    to_unix,
)
from reallocator.core.pacing.curves import PacingCurve, build_curve, deal_expected

UNIT_COLUMN = DELIVERED_COLUMN
"""The deals column that counts delivery in each budget type's unit (model.DELIVERED_COLUMN)."""

ASSESSMENT_COLUMNS: tuple[str, ...] = (
    "allocation",  # budget units over the horizon (campaign: its budgets' expected total)
    "expected",  # expected delivery by as_of, budget units
    "actual",  # delivered, budget units
    "expected_spend_micros",  # expected converted at the observed (or priced) cost per unit
    "actual_spend_micros",
    "pacing_ratio",  # actual / expected (0 when both are 0, inf when only expected is 0)
    "status",  # PacingStatus (categorical of the enum's values)
    "recent_rate",  # budget units per opportunity hour (active hour of average traffic), recent
    # window; comparable with required_rate
    "recent_rate_clock",  # budget units per wall-clock hour over the same window
    "projected_end",  # actual + recent_rate * remaining opportunity hours, capped by allocation
    "projected_exhaustion",  # unix s when the allocation runs out at that rate; NaN: not before
    # the horizon ends; as_of when already delivered
    "required_rate",  # units per opportunity hour to finish exactly on the allocation
    "confidence",  # 0..100
    "conf_gap",  # components, 0..1 (see confidence.py)
    "conf_outlook",
    "conf_trend",
    "conf_evidence",
    "evidence_hours",  # active hours the verdict rests on
    "evidence_events",  # impressions (actual or expected, whichever is larger)
    "severity",  # AlertSeverity of an OVER/UNDER/STALLED verdict, "" otherwise (categorical)
    "reason",  # Reason of an OVER/UNDER/STALLED verdict, "" otherwise (categorical)
    "alert",  # True when the verdict passes the policy's confidence and evidence gates
)

ALERT_COLUMNS: tuple[str, ...] = (
    "entity_kind",
    "entity_id",
    "status",
    "severity",
    "reason",
    "message",
    "confidence",
    "pacing_ratio",
    "expected",
    "actual",
    "projected_end",
    "allocation",
)

RECENT_WINDOW = timedelta(hours=6)
"""Default window of the recent rate (widened to the whole series when it has no opportunity)."""

MIN_WINDOW_OPPORTUNITY_HOURS = 1.0
"""A rate measured over less opportunity than this is noise: widen the window or fall back."""

_STATUSES = [str(s) for s in PacingStatus]
_SEVERITIES = ["", *(str(s) for s in AlertSeverity)]
_REASONS = ["", *(str(r) for r in Reason)]
_STATUS_DTYPE = pd.CategoricalDtype(pd.Index(_STATUSES))
_SEVERITY_DTYPE = pd.CategoricalDtype(pd.Index(_SEVERITIES))
_REASON_DTYPE = pd.CategoricalDtype(pd.Index(_REASONS))
_STATUS_CODE = {PacingStatus(s): i for i, s in enumerate(_STATUSES)}
_SEVERITY_CODE = {AlertSeverity(s): i for i, s in enumerate(_SEVERITIES) if s}
_REASON_CODE = {Reason(r): i for i, r in enumerate(_REASONS) if r}
_SEVERITY_RANK = {AlertSeverity.CRITICAL: 0, AlertSeverity.MATERIAL: 1, AlertSeverity.MINOR: 2}
_KIND_RANK = {
    EntityKind.CAMPAIGN: 0,
    EntityKind.CHANNEL: 1,
    EntityKind.SELLER: 2,
    EntityKind.DEAL: 3,
}


@dataclass(frozen=True, eq=False)
class Assessment:
    """The full assessment. Frames are indexed by deal_id / seller_id / channel_id / campaign_id
    and carry ASSESSMENT_COLUMNS (deals also seller_id and channel_id); `alerts` carries
    ALERT_COLUMNS, most severe first, then broadest entity, then most confident.
    """

    campaign_id: str
    as_of: datetime
    horizon_start: datetime  # the flight (or campaign span) the allocations refer to
    horizon_end: datetime
    budget_type: BudgetType
    currency: str
    share_now: float  # campaign's expected share of the horizon delivered by as_of
    opportunity_elapsed_hours: float
    opportunity_remaining_hours: float
    rate_window_hours: float  # opportunity hours behind recent_rate (0: lifetime average used)
    ceiling: bool  # UNDER judged on projections (ASAP-like shape)
    deals: pd.DataFrame
    campaign: pd.DataFrame
    alerts: pd.DataFrame
    curve: PacingCurve | None = field(default=None, repr=False)
    """The pacing curve the verdicts used (over `default_span`): the plan reuses it."""
    groups: dict[str, _Verdicts] = field(default_factory=dict, repr=False)
    """The seller and channel verdicts, framed on first read (a plan rarely reads them: their
    two frames were ~10 % of a 50-deal plan)."""

    @cached_property
    def sellers(self) -> pd.DataFrame:
        return self.groups["sellers"].frame

    @cached_property
    def channels(self) -> pd.DataFrame:
        return self.groups["channels"].frame

    def alert_list(self) -> list[Alert]:
        """Alerts as typed records (for the gRPC adapter)."""
        return [
            Alert(
                EntityKind(k),
                str(i),
                PacingStatus(s),
                AlertSeverity(v),
                Reason(r),
                str(m),
                float(c),
            )
            for k, i, s, v, r, m, c in zip(
                self.alerts["entity_kind"],
                self.alerts["entity_id"],
                self.alerts["status"],
                self.alerts["severity"],
                self.alerts["reason"],
                self.alerts["message"],
                self.alerts["confidence"],
                strict=True,
            )
        ]


@dataclass(frozen=True)
class _Context:
    """Campaign-level scalars shared by every row (one curve, one calendar)."""

    curve: PacingCurve
    policy: Policy
    budget_type: BudgetType
    currency: str
    as_of: float
    h0: float
    h1: float
    share_now: float
    elapsed_active_hours: float
    elapsed_opportunity: float
    remaining_opportunity: float
    opportunity_now: float
    opportunity_end: float
    rate_window: tuple[float, float] | None
    rate_window_opportunity: float
    rate_window_clock_hours: float
    stall_window: tuple[float, float] | None
    tol_over: float
    tol_under: float

    @property
    def calendar(self) -> PacingCalendar:
        return self.curve.calendar


@dataclass
class _Rows:
    """Additive quantities of a set of entities: deals, or group sums of deals."""

    allocation: FloatArray
    expected: FloatArray
    actual: FloatArray
    expected_spend: FloatArray
    actual_spend: FloatArray
    events: FloatArray
    window_units: FloatArray
    window_expected: FloatArray
    stall_impressions: FloatArray
    stall_lambda: FloatArray
    should_deliver: FloatArray  # count of members that should deliver in the stalled window
    has_series: FloatArray  # count of members with a delivery series

    def grouped(self, codes: np.ndarray, size: int) -> _Rows:
        def total(x: FloatArray) -> FloatArray:
            sums = np.bincount(codes, weights=np.nan_to_num(x), minlength=size)
            return np.asarray(sums, dtype=np.float64)

        return _Rows(**{name: total(value) for name, value in vars(self).items()})


def assess(
    snapshot: CampaignSnapshot,
    *,
    recent_window: timedelta = RECENT_WINDOW,
    checkpoint: Checkpoint = never,
    alert_messages: bool = True,
) -> Assessment:
    """Assess pacing of every deal, seller, channel and the campaign at `snapshot.as_of`.
    `checkpoint` is called between phases (core/interrupt.py): it may raise Interrupted.
    `alert_messages` False leaves the alerts' messages empty (a planner that only counts the
    alerts does not pay for 100k sentences)."""
    spec = snapshot.pacing
    as_of = float(to_unix(snapshot.as_of))
    span = default_span(spec, snapshot.timezone, snapshot.as_of)
    checkpoint("pacing curve")
    curve = build_curve(spec, snapshot.timezone, span=span)
    checkpoint("deal verdicts")
    ctx = _context(snapshot, curve, recent_window)

    deals = snapshot.deals
    bt = spec.budget_type
    alloc = values_of(deals, "allocation", np.float64)
    actual = deals[UNIT_COLUMN[bt]].to_numpy(np.float64)
    spend = values_of(deals, "spend_micros", np.float64)
    impressions = values_of(deals, "impressions", np.float64)
    plan_at = values_of(deals, "plan_applied_at", np.float64)
    at_plan = values_of(deals, "delivered_at_plan", np.float64)
    status = values_of(deals, "status")
    horizon = (ctx.h0, ctx.h1)

    def expected_at(t: float | FloatArray) -> FloatArray:
        return deal_expected(curve, horizon, t, alloc, plan_at, at_plan)

    def expected_over(a: float, b: float) -> FloatArray:
        """Expected delivery in [a, b]; for a plan applied inside it, only since the plan."""
        since = np.where(restarted & (plan_at > a), plan_at, a)
        return np.maximum(expected_at(b) - expected_at(since), 0.0)

    restarted = (plan_at >= ctx.h0) & (plan_at <= as_of) & (plan_at < ctx.h1)
    expected = expected_at(as_of)
    ipu = _impressions_per_unit(deals, bt, actual, impressions)
    cost = _cost_per_unit(deals, bt, actual, spend)
    clock_start = np.where(restarted, plan_at, ctx.h0)
    evidence_hours = np.maximum(
        float(ctx.calendar.active_hours_at(as_of)) - ctx.calendar.active_hours_at(clock_start),
        0.0,
    )

    n = len(deals)
    window_units = np.zeros(n)
    window_expected = np.zeros(n)
    stall_impressions = np.zeros(n)
    stall_expected = np.zeros(n)
    has_series = np.zeros(n, dtype=bool)
    trend_ok = np.zeros(n, dtype=bool)
    series = snapshot.delivery
    if series is not None:
        units, impr_series, has_series = _series_matrices(series, bt, n, actual, impressions)
        if ctx.rate_window is not None:
            a, b = ctx.rate_window
            window_units = units @ _bucket_weights(series, as_of, a, b)
            window_expected = expected_over(a, b)
            trend_ok = has_series & ~(restarted & (plan_at > a))
        if ctx.stall_window is not None:
            a, b = ctx.stall_window
            stall_impressions = impr_series @ _bucket_weights(series, as_of, a, b)
            stall_expected = expected_over(a, b)
            # A deal silent across a plan applied inside the window, offered no bid requests
            # before it: its silence was not the plan's, so the stall is judged over the
            # whole window, the plan's pace extended back to its start, with the window's
            # hours as evidence. Only where bid requests are reported: some to date for the
            # deal, or for any deal of the campaign.
            offered = np.nan_to_num(np.asarray(series.avails, np.float64))
            reported = np.nan_to_num(deals["avails"].to_numpy(np.float64)) > 0
            reported = reported | reported.any()
            hours = float(ctx.calendar.active_hours_at(b) - ctx.calendar.active_hours_at(a))
            for i in range(n):
                if not (restarted[i] and plan_at[i] > a and stall_impressions[i] <= 0):
                    continue
                if not reported[i] or offered[i] @ _bucket_weights(series, as_of, a, plan_at[i]):
                    continue
                room = max(alloc[i] - at_plan[i], 0.0)
                s_a, s_b = (float(curve.share(t, horizon)) for t in (a, b))
                extended = room * (s_b - s_a) / (1.0 - s_a) if 1.0 - s_a > 1e-12 else room
                stall_expected[i] = max(stall_expected[i], extended)
                evidence_hours[i] = max(evidence_hours[i], hours)
    should = (
        has_series
        & (status == DealStatus.ACTIVE)
        & (stall_expected > 0)
        & (actual < alloc)
        & (ctx.stall_window is not None)
    )
    rows = _Rows(
        allocation=alloc,
        expected=expected,
        actual=actual,
        expected_spend=expected * cost,
        actual_spend=spend,
        events=np.fmax(impressions, expected * ipu),
        window_units=window_units,
        window_expected=window_expected,
        stall_impressions=stall_impressions,
        stall_lambda=np.where(should, stall_expected * ipu, 0.0),
        should_deliver=should.astype(np.float64),
        has_series=has_series.astype(np.float64),
    )
    deal_ids = deals["deal_id"].astype(str).to_numpy()
    deal_verdicts = _evaluate(
        rows,
        ctx,
        EntityKind.DEAL,
        deal_ids,
        evidence_hours,
        paused=status == DealStatus.PAUSED,
        ended=status == DealStatus.ENDED,
        trend_ok=trend_ok,
        leading={
            # A str column as it is (no round trip through objects); others as numpy.
            name: deals[name].array if deals[name].dtype == "str" else deals[name].to_numpy()
            for name in ("seller_id", "channel_id")
        },
    )

    checkpoint("group verdicts")
    groups: list[_Verdicts] = []
    for column, kind in (("seller_id", EntityKind.SELLER), ("channel_id", EntityKind.CHANNEL)):
        codes, uniques = pd.factorize(deals[column], sort=True)
        group_rows = rows.grouped(codes, len(uniques))
        ids = np.asarray(uniques, dtype=object).astype(str)
        hours = np.full(len(uniques), ctx.elapsed_active_hours)
        members_trend = np.bincount(codes, weights=trend_ok, minlength=len(uniques)) > 0
        groups.append(_evaluate(group_rows, ctx, kind, ids, hours, trend_ok=members_trend))

    campaign_rows = _campaign_rows(rows, ctx, curve, bt)
    campaign_verdicts = _evaluate(
        campaign_rows,
        ctx,
        EntityKind.CAMPAIGN,
        np.array([snapshot.campaign_id]),
        np.array([ctx.elapsed_active_hours]),
        trend_ok=np.array([bool(trend_ok.any())]),
    )
    verdicts = {
        EntityKind.DEAL: deal_verdicts,
        EntityKind.SELLER: groups[0],
        EntityKind.CHANNEL: groups[1],
        EntityKind.CAMPAIGN: campaign_verdicts,
    }
    return Assessment(
        campaign_id=snapshot.campaign_id,
        as_of=snapshot.as_of,
        horizon_start=to_datetime(ctx.h0),
        horizon_end=to_datetime(ctx.h1),
        budget_type=bt,
        currency=snapshot.currency,
        share_now=ctx.share_now,
        opportunity_elapsed_hours=ctx.elapsed_opportunity,
        opportunity_remaining_hours=ctx.remaining_opportunity,
        rate_window_hours=ctx.rate_window_opportunity,
        ceiling=curve.ceiling,
        deals=deal_verdicts.frame,
        campaign=campaign_verdicts.frame,
        alerts=_alerts(verdicts, ctx, alert_messages),
        curve=curve,
        groups={"sellers": groups[0], "channels": groups[1]},
    )


def _context(snapshot: CampaignSnapshot, curve: PacingCurve, recent: timedelta) -> _Context:
    policy = snapshot.policy
    cal = curve.calendar
    as_of = float(to_unix(snapshot.as_of))
    h0, h1 = curve.horizon_at(as_of)
    opp_now = float(cal.opportunity_at(min(max(as_of, h0), h1)))
    opp_start = float(cal.opportunity_at(h0))
    opp_end = float(cal.opportunity_at(h1))
    tol_over, tol_under = conf.tolerances(policy)

    rate_window: tuple[float, float] | None = None
    rate_opp = 0.0
    stall_window: tuple[float, float] | None = None
    series = snapshot.delivery
    if series is not None:
        lo = max(float(to_unix(series.window_start)), h0)
        hi = min(
            float(to_unix(series.window_start)) + series.n_buckets * series.bucket.total_seconds(),
            as_of,
            h1,
        )
        for a in (max(as_of - recent.total_seconds(), lo), lo):
            opp = float(cal.opportunity_hours(a, hi)) if hi > a else 0.0
            if opp >= MIN_WINDOW_OPPORTUNITY_HOURS:
                rate_window, rate_opp = (a, hi), opp
                break
        # A stall verdict needs the whole window of evidence: a window cut short by the start
        # of the flight (or of the series) would read a deal that has not had its first
        # delivery hour yet - night supply at an hourly replan - as STALLED.
        a_s = as_of - policy.stalled_window.total_seconds()
        if a_s >= lo and hi > a_s:
            stall_window = (a_s, hi)
    return _Context(
        curve=curve,
        policy=policy,
        budget_type=snapshot.pacing.budget_type,
        currency=snapshot.currency,
        as_of=as_of,
        h0=h0,
        h1=h1,
        share_now=float(curve.share(as_of, (h0, h1))),
        elapsed_active_hours=float(
            cal.active_hours_at(min(max(as_of, h0), h1)) - cal.active_hours_at(h0)
        ),
        elapsed_opportunity=opp_now - opp_start,
        remaining_opportunity=opp_end - opp_now,
        opportunity_now=opp_now,
        opportunity_end=opp_end,
        rate_window=rate_window,
        rate_window_opportunity=rate_opp,
        rate_window_clock_hours=(rate_window[1] - rate_window[0]) / 3600.0 if rate_window else 0.0,
        stall_window=stall_window,
        tol_over=tol_over,
        tol_under=tol_under,
    )


def _impressions_per_unit(
    deals: pd.DataFrame, bt: BudgetType, actual: FloatArray, impressions: FloatArray
) -> FloatArray:
    """Impressions per budget unit: observed, else from an eCPM price; NaN when unknowable."""
    if bt is BudgetType.IMPRESSIONS:
        return np.ones(actual.size)
    price = values_of(deals, "price_micros", np.float64)
    ecpm = values_of(deals, "price_kind") == PriceKind.ECPM
    priced = np.full(actual.size, np.nan)
    if bt is BudgetType.SPEND:
        priced = np.where(ecpm & (price > 0), 1000.0 / np.where(price > 0, price, 1.0), np.nan)
    observed = (actual > 0) & (impressions > 0)
    return np.where(observed, impressions / np.where(observed, actual, 1.0), priced)


def _cost_per_unit(
    deals: pd.DataFrame, bt: BudgetType, actual: FloatArray, spend: FloatArray
) -> FloatArray:
    """Micros per budget unit: observed, else from the price; NaN when unknowable."""
    if bt is BudgetType.SPEND:
        return np.ones(actual.size)
    price = values_of(deals, "price_micros", np.float64)
    kind = values_of(deals, "price_kind")
    priced = np.where(kind == PriceKind.PER_UNIT, price, np.nan)
    if bt is BudgetType.IMPRESSIONS:
        priced = np.where(kind == PriceKind.ECPM, price / 1000.0, priced)
    observed = actual > 0
    return np.where(observed, spend / np.where(observed, actual, 1.0), priced)


def _series_matrices(
    series: DeliverySeries, bt: BudgetType, n: int, actual: FloatArray, impressions: FloatArray
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """(units, impressions, has_series): the series in budget units (NaN rows zeroed).

    The series carries spend and impressions only; other units are impressions scaled by the
    deal's observed units per impression.
    """
    impr = np.asarray(series.impressions, dtype=np.float64)
    if impr.shape[0] != n:
        raise ValueError(f"delivery series has {impr.shape[0]} rows for {n} deals")
    has = ~np.all(np.isnan(impr), axis=1)
    impr = np.nan_to_num(impr)
    if bt is BudgetType.SPEND:
        units = np.nan_to_num(np.asarray(series.spend_micros, dtype=np.float64))
    elif bt is BudgetType.IMPRESSIONS:
        units = impr
    else:
        per = np.where(impressions > 0, actual / np.where(impressions > 0, impressions, 1.0), 0.0)
        units = impr * per[:, None]
    return units, impr, has


def _bucket_weights(series: DeliverySeries, as_of: float, a: float, b: float) -> FloatArray:
    """Share of each bucket inside [a, b], assuming delivery is uniform within a bucket.

    The bucket holding `as_of` only covers time up to `as_of` (data is to date).
    """
    step = series.bucket.total_seconds()
    start = float(to_unix(series.window_start)) + step * np.arange(series.n_buckets)
    end = np.minimum(start + step, as_of)
    length = end - start
    overlap = np.clip(np.minimum(end, b) - np.maximum(start, a), 0.0, None)
    return np.where(length > 0, overlap / np.where(length > 0, length, 1.0), 0.0)


def _campaign_rows(rows: _Rows, ctx: _Context, curve: PacingCurve, bt: BudgetType) -> _Rows:
    """The campaign as one row: its own budgets' curve when it has budgets, else deal sums."""
    total = rows.grouped(np.zeros(rows.actual.size, dtype=np.int64), 1)
    if not curve.budget_units:
        return total
    h0, h1 = ctx.h0, ctx.h1
    allocation = curve.total((h0, h1))
    expected = float(curve.share(ctx.as_of, (h0, h1))) * allocation
    window_expected = total.window_expected
    if ctx.rate_window is not None:
        a, b = ctx.rate_window
        window_expected = np.array([float(curve.cumulative(b) - curve.cumulative(a))])
    expected_spend = np.array([expected]) if bt is BudgetType.SPEND else total.expected_spend
    return _Rows(
        allocation=np.array([allocation]),
        expected=np.array([expected]),
        actual=total.actual,
        expected_spend=expected_spend,
        actual_spend=total.actual_spend,
        events=total.events,
        window_units=total.window_units,
        window_expected=window_expected,
        stall_impressions=total.stall_impressions,
        stall_lambda=total.stall_lambda,
        should_deliver=total.should_deliver,
        has_series=total.has_series,
    )


def _evaluate(
    rows: _Rows,
    ctx: _Context,
    kind: EntityKind,
    ids: np.ndarray,
    evidence_hours: FloatArray,
    *,
    paused: BoolArray | None = None,
    ended: BoolArray | None = None,
    trend_ok: BoolArray | None = None,
    leading: dict[str, np.ndarray] | None = None,
) -> _Verdicts:
    """Verdicts, projections and confidence for rows of additive quantities (vectorised);
    `leading` columns come first (the deals' seller and channel)."""
    policy = ctx.policy
    n = rows.actual.size
    alloc, expected, actual = rows.allocation, rows.expected, rows.actual
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            expected > 0,
            actual / np.where(expected > 0, expected, 1.0),
            np.where(actual > 0, np.inf, 0.0),
        )

    # Rate per opportunity hour: recent window when it is usable, else flight-to-date average.
    elapsed = ctx.elapsed_opportunity
    average = actual / elapsed if elapsed > 0 else np.full(n, np.nan)
    windowed = (rows.has_series > 0) & (ctx.rate_window is not None)
    recent = rows.window_units / ctx.rate_window_opportunity if ctx.rate_window else average
    rate = np.where(windowed, recent, average)
    remaining_opp = max(ctx.remaining_opportunity, 0.0)
    # Uncapped for the confidence signals; the reported figure is capped by the allocation
    # (delivery stops there), never below what is already delivered.
    projected = actual + np.nan_to_num(rate) * remaining_opp
    projected_capped = np.minimum(projected, np.maximum(alloc, actual))
    remaining = np.maximum(alloc - actual, 0.0)
    required = remaining / remaining_opp if remaining_opp > 0 else np.full(n, np.nan)
    exhaustion = _exhaustion(ctx, alloc, actual, remaining, rate)

    # Status, in precedence order.
    over_th, under_th = policy.over_threshold, policy.under_threshold
    stalled = (rows.should_deliver > 0) & (rows.stall_impressions <= 0)
    delivered = (alloc > 0) & (actual >= alloc)
    on_curve = (expected > 0) & (ratio < under_th)
    under = (alloc > 0) & (projected < under_th * alloc) if ctx.curve.ceiling else on_curve
    conditions = [
        np.full(n, ctx.as_of >= ctx.h1) | (ended if ended is not None else False),
        np.full(n, ctx.as_of < ctx.h0) | ((ctx.share_now <= 0) & (actual <= 0)),
        stalled,
        ratio > over_th,
        delivered,
        under,
    ]
    choices = [
        PacingStatus.COMPLETED,
        PacingStatus.NOT_STARTED,
        PacingStatus.STALLED,
        PacingStatus.OVER,
        PacingStatus.COMPLETED,
        PacingStatus.UNDER,
    ]
    status = np.select(
        conditions, [_STATUS_CODE[c] for c in choices], _STATUS_CODE[PacingStatus.ON_PACE]
    )

    # Signals (log-ratios) and confidence.
    tol_o, tol_u = ctx.tol_over, ctx.tol_under
    outlook_x = conf.log_ratio(projected, alloc)
    gap_x = outlook_x if ctx.curve.ceiling else conf.log_ratio(actual, expected)
    if ctx.curve.ceiling:
        trend_x = conf.log_ratio(rate * ctx.elapsed_opportunity, actual)
    else:
        trend_x = conf.log_ratio(rows.window_units * expected, rows.window_expected * actual)
    usable_trend = windowed if trend_ok is None else windowed & trend_ok
    trend_x = np.where(usable_trend, trend_x, np.nan)
    is_over = status == _STATUS_CODE[PacingStatus.OVER]
    is_under = status == _STATUS_CODE[PacingStatus.UNDER]
    direction = np.where(is_over, 1.0, -1.0)
    judged = is_over | is_under
    gap = np.where(
        judged, conf.beyond(gap_x, direction, tol_o, tol_u), conf.within(gap_x, tol_o, tol_u)
    )
    outlook = np.where(
        judged,
        conf.beyond(outlook_x, direction, tol_o, tol_u),
        conf.within(outlook_x, tol_o, tol_u),
    )
    trend = np.where(
        judged, conf.toward(trend_x, direction, tol_o, tol_u), conf.within(trend_x, tol_o, tol_u)
    )
    ev = conf.evidence(evidence_hours, rows.events, policy)
    score = conf.combine(gap, outlook, trend, ev)
    is_stalled = status == _STATUS_CODE[PacingStatus.STALLED]
    stalled_score = conf.stalled(rows.stall_lambda, evidence_hours, policy)
    fact = np.isin(
        status, [_STATUS_CODE[PacingStatus.COMPLETED], _STATUS_CODE[PacingStatus.NOT_STARTED]]
    )
    score = np.where(is_stalled, stalled_score, np.where(fact, 100.0, score))
    gap = np.where(is_stalled, stalled_score / 100.0, gap)
    for component in (gap, outlook, trend):
        component[fact] = np.nan
    outlook[is_stalled] = np.nan
    trend[is_stalled] = np.nan

    # Severity, reason and the gates.
    deviation = np.where(is_over, gap_x / tol_o, -gap_x / tol_u)
    severity = np.select(
        [is_stalled, judged & (deviation >= 3.0), judged & (deviation >= 1.5), judged],
        [
            _SEVERITY_CODE[AlertSeverity.CRITICAL],
            _SEVERITY_CODE[AlertSeverity.CRITICAL],
            _SEVERITY_CODE[AlertSeverity.MATERIAL],
            _SEVERITY_CODE[AlertSeverity.MINOR],
        ],
        0,
    )
    paused_mask = paused if paused is not None else np.zeros(n, dtype=bool)
    under_reason = Reason.PROJECTED_UNDERDELIVERY if ctx.curve.ceiling else Reason.UNDERPACING
    reason = np.select(
        [is_stalled, is_over & delivered, is_over, is_under & paused_mask, is_under],
        [
            _REASON_CODE[Reason.STALLED],
            _REASON_CODE[Reason.EARLY_EXHAUSTION],
            _REASON_CODE[Reason.OVERPACING],
            _REASON_CODE[Reason.PAUSED],
            _REASON_CODE[under_reason],
        ],
        0,
    )
    min_hours = policy.min_evidence.total_seconds() / 3600.0
    alert = (
        (reason != 0)
        & (score > policy.confidence_threshold)
        & (evidence_hours >= min_hours)
        & (np.nan_to_num(rows.events) >= policy.min_evidence_impressions)
    )
    index = pd.Index(
        ids,
        name={
            EntityKind.DEAL: "deal_id",
            EntityKind.SELLER: "seller_id",
            EntityKind.CHANNEL: "channel_id",
        }.get(kind, "campaign_id"),
    )
    columns = {
            **(leading or {}),
            "allocation": alloc,
            "expected": expected,
            "actual": actual,
            "expected_spend_micros": rows.expected_spend,
            "actual_spend_micros": rows.actual_spend,
            "pacing_ratio": ratio,
            "status": _categorical(status, _STATUS_DTYPE),
            "recent_rate": rate,
            "recent_rate_clock": rows.window_units / ctx.rate_window_clock_hours
            if ctx.rate_window_clock_hours > 0
            else np.full(n, np.nan),
            "projected_end": projected_capped,
            "projected_exhaustion": exhaustion,
            "required_rate": required,
            "confidence": score,
            "conf_gap": gap,
            "conf_outlook": outlook,
            "conf_trend": trend,
            "conf_evidence": ev,
            "evidence_hours": np.broadcast_to(evidence_hours, (n,)).astype(np.float64),
            "evidence_events": rows.events,
            "severity": _categorical(severity, _SEVERITY_DTYPE),
            "reason": _categorical(reason, _REASON_DTYPE),
            "alert": alert,
        }  # fmt: skip
    return _Verdicts(
        index=index,
        columns=columns,
        codes={"status": status, "severity": severity, "reason": reason},
        ids=np.asarray(ids),
        stall_lambda=rows.stall_lambda,
    )


@dataclass(frozen=True, eq=False)
class _Verdicts:
    """A verdict frame and the arrays it was built from: the alerts read the arrays (a frame
    getitem per column cost more than the alerts' own work at 50 deals)."""

    index: pd.Index
    columns: dict[str, Any]
    codes: dict[str, np.ndarray]  # status, severity, reason codes (into _STATUSES, ...)
    ids: np.ndarray
    stall_lambda: FloatArray

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Built once, when first read (the arrays are never changed after `_evaluate`)."""
        return pd.DataFrame(self.columns, index=self.index)


def _categorical(codes: np.ndarray, dtype: pd.CategoricalDtype) -> pd.Categorical[str]:
    """Label columns as categoricals built from codes: no per-row string work, and one dtype
    per label list (building its categories each call was ~3 % of a 50-deal plan)."""
    # pandas-stubs types the dtype by its codes, not its labels
    return pd.Categorical.from_codes(  # type: ignore[return-value]
        np.asarray(codes, dtype=np.int64),
        dtype=dtype,  # type: ignore[arg-type]
    )


def _exhaustion(
    ctx: _Context, alloc: FloatArray, actual: FloatArray, remaining: FloatArray, rate: FloatArray
) -> FloatArray:
    """When the allocation runs out if the rate follows the opportunity curve (NaN: not before
    the horizon ends; as_of when already delivered)."""
    done = (alloc > 0) & (actual >= alloc)
    moving = (rate > 0) & ~done & (alloc > 0)
    with np.errstate(over="ignore", divide="ignore"):
        needed = remaining / np.where(moving, rate, 1.0)
    target = np.where(moving, ctx.opportunity_now + needed, np.nan)
    target = np.where(target <= ctx.opportunity_end * (1 + 1e-12) + 1e-9, target, np.nan)
    when = ctx.calendar.time_at_opportunity(target)
    return np.where(done, ctx.as_of, np.where(moving, np.maximum(when, ctx.as_of), np.nan))


def _messages(
    kind: EntityKind,
    hit: dict[str, np.ndarray],
    stall_lambda: FloatArray,
    ctx: _Context,
) -> list[str]:
    """A human sentence with the numbers behind each alert.

    Built from plain Python lists with the number formats inline (about 3 us an alert), so a
    campaign-wide outage alerting on 100k deals still fits the latency budget.
    """
    money = ctx.budget_type is BudgetType.SPEND
    scale = 1e-6 if money else 1.0
    unit = f" {ctx.currency}" if money else f" {ctx.budget_type.lower()}"
    amt = ",.2f" if money else ",.0f"
    per = ",.2f" if money else ",.1f"

    def column(name: str) -> list[float]:
        values: list[float] = (hit[name] * scale).tolist()
        return values

    def rates(name: str) -> list[str]:
        return [f"{v:{per}}{unit}/h" if math.isfinite(v) else "n/a" for v in column(name)]

    def percent(values: FloatArray) -> list[str]:
        return [f"{v:.0%}" if math.isfinite(v) else "n/a" for v in values.tolist()]

    actual, expected = column("actual"), column("expected")
    alloc, proj = column("allocation"), column("projected_end")
    rate, required = rates("recent_rate"), rates("required_rate")
    ratio = percent(hit["pacing_ratio"])
    with np.errstate(divide="ignore", invalid="ignore"):
        end_share = percent(hit["projected_end"] / hit["allocation"])
    confidence = hit["confidence"].tolist()
    runs_out = hit["projected_exhaustion"].tolist()
    lam = stall_lambda.tolist()
    who = [f"{kind.lower()} {i}" for i in hit["entity_id"].tolist()]
    hours = f"{ctx.policy.stalled_window.total_seconds() / 3600.0:g}"
    out: list[str] = []
    for i, reason in enumerate(hit["reason"].tolist()):
        if reason == Reason.STALLED:
            msg = (
                f"{who[i]} delivered no impressions in the last {hours} h while about "
                f"{lam[i]:,.0f} were expected; {actual[i]:{amt}}{unit} of "
                f"{alloc[i]:{amt}}{unit} delivered"
            )
        elif reason == Reason.EARLY_EXHAUSTION:
            msg = (
                f"{who[i]} already delivered its whole allocation: {actual[i]:{amt}}{unit} of "
                f"{alloc[i]:{amt}}{unit}, {ratio[i]} of the {expected[i]:{amt}}{unit} expected "
                "by now"
            )
        elif reason == Reason.OVERPACING:
            when = runs_out[i]
            tail = (
                f"; at {rate[i]} it runs out at {to_datetime(when):%Y-%m-%d %H:%M} UTC"
                if math.isfinite(when)
                else ""
            )
            msg = (
                f"{who[i]} is over pace: {actual[i]:{amt}}{unit} delivered vs "
                f"{expected[i]:{amt}}{unit} expected ({ratio[i]}){tail}"
            )
        elif reason == Reason.PROJECTED_UNDERDELIVERY:
            msg = (
                f"{who[i]} is projected to deliver {proj[i]:{amt}}{unit} of "
                f"{alloc[i]:{amt}}{unit} ({end_share[i]}) at the recent {rate[i]}; "
                f"it needs {required[i]}"
            )
        else:
            paused = " and paused" if reason == Reason.PAUSED else ""
            msg = (
                f"{who[i]} is under pace{paused}: {actual[i]:{amt}}{unit} delivered vs "
                f"{expected[i]:{amt}}{unit} expected ({ratio[i]}); at the recent {rate[i]} "
                f"it ends at {proj[i]:{amt}}{unit} of {alloc[i]:{amt}}{unit}, "
                f"needs {required[i]}"
            )
        out.append(f"{msg} (confidence {confidence[i]:.0f})")
    return out


_ALERT_NUMBERS = (
    "confidence", "pacing_ratio", "expected", "actual", "projected_end", "allocation",
    "recent_rate", "required_rate", "projected_exhaustion",
)  # fmt: skip


_LABELS = {
    "status": np.asarray(_STATUSES, dtype=object),
    "severity": np.asarray(_SEVERITIES, dtype=object),
    "reason": np.asarray(_REASONS, dtype=object),
}


def _alerts(
    verdicts: dict[EntityKind, _Verdicts], ctx: _Context, words: bool = True
) -> pd.DataFrame:
    """Alerts of every entity that passed the gates: most severe first, then the broadest
    (campaign, channels, sellers, deals: a campaign-wide outage leads), then most confident.

    Built from numpy columns and one DataFrame at the end: a Replan of 50 deals spent more on
    the per-kind frames and their concatenation than on the words."""
    parts: list[dict[str, np.ndarray]] = []
    for kind, v in verdicts.items():
        mask = np.asarray(v.columns["alert"], dtype=bool)
        if not mask.any():
            continue
        stall_lambda = np.asarray(v.stall_lambda, dtype=np.float64)[mask]
        hit = {name: np.asarray(v.columns[name], dtype=np.float64)[mask] for name in _ALERT_NUMBERS}
        hit["entity_id"] = v.ids.astype(str).astype(object)[mask]
        for column, labels in _LABELS.items():
            hit[column] = labels[v.codes[column][mask]]
        hit["message"] = (
            np.array(_messages(kind, hit, stall_lambda, ctx), dtype=object)
            if words
            else np.full(int(mask.sum()), "", dtype=object)
        )
        hit["entity_kind"] = np.full(int(mask.sum()), str(kind), dtype=object)
        parts.append(hit)
    text = {"entity_kind", "entity_id", "status", "severity", "reason", "message"}
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c in text else np.float64) for c in ALERT_COLUMNS}
        )
    columns = {c: np.concatenate([p[c] for p in parts]) for c in ALERT_COLUMNS}
    severity_rank = {str(k): v for k, v in _SEVERITY_RANK.items()}
    kind_rank = {str(k): v for k, v in _KIND_RANK.items()}
    severity = np.array([severity_rank.get(s, np.nan) for s in columns["severity"].tolist()])
    breadth = np.array([kind_rank.get(k, np.nan) for k in columns["entity_kind"].tolist()])
    order = np.lexsort((-columns["confidence"], breadth, severity))
    return pd.DataFrame({c: values[order] for c, values in columns.items()})

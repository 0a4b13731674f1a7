"""The capacity a plan places budget against: per deal, the engine's forecast (or the caller's
own), capped by what sellers answered to earlier requests, with the columns of how each was
reached (`FORECAST_DTYPES`).

Read by `prepare.py`; its columns ride along to the plan (stall outlooks, the unspendable
reasons, the requests' avails forecast).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.engine import ForecastInputs
from reallocator.core.engine.bounds import SPENT_COLUMN
from reallocator.core.engine.forecast import (
    METHODS,
    RATIONALE_DTYPES,
    confident_cuts,
    forecast_columns,
    pooled,
    rate_read_from,
    starved_rate,
    with_totals_rate,
)
from reallocator.core.model import (
    CampaignSnapshot,
    DealType,
    DeliverySeries,
    factorize,
    labels_by_code,
    nan_to_num,
    positions,
    text_column,
    values_of,
)
from reallocator.core.pacing.assessment import Assessment, EntityKind, PacingStatus
from reallocator.core.pacing.calendar import (
    PacingCalendar,
    build_calendar,
    campaign_span,
    to_unix,
)
from reallocator.core.pacing.curves import PacingCurve
from reallocator.core.plan.model import RequestHistory, SellerResponse

# Enum members as the plain values numpy compares them by: an array compared with an IntEnum or
# StrEnum member takes numpy ~3 us at 50 deals, with its int or str ~1 us (the same result).
_GUARANTEED = int(DealType.PROGRAMMATIC_GUARANTEED)
_UNDER, _STALLED, _NOT_STARTED = (
    s.value for s in (PacingStatus.UNDER, PacingStatus.STALLED, PacingStatus.NOT_STARTED)
)


def seller_paced(deals: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """The deals their seller paces: the guaranteed ones (a move on one is a seller request)."""
    out: npt.NDArray[np.bool_] = values_of(deals, "deal_type") == _GUARANTEED
    return out


FORECAST_DTYPES: dict[str, str] = RATIONALE_DTYPES | {
    "held_to_current": "bool",
    "capped_by_response": "bool",
    "asked_total": "int64",
    "answer_share": "float64",
    "answer_seconds": "float64",
}
"""`deal_capacity`'s columns: the engine's forecast table (RATIONALE_DTYPES; "capacity" before
the seller answers cap it), which deals the confidence band held or an answer capped, the
target total of each deal's unanswered seller request (-1: none awaited) and, for a guaranteed
deal whose capacity the time its seller takes to answer limited, the share of its supply beyond
its present pace that is left once the seller answers (NaN: not limited; `answer_limited`), and
how long a guaranteed deal's seller takes to answer, in seconds (`answer_times`; NaN: no
guaranteed deal in the campaign)."""


def _last_requests(history: RequestHistory | None) -> pd.DataFrame | None:
    """Per deal its last seller request (ties in time: the last listed), or None."""
    if history is None or not len(history.requests):
        return None
    ordered = history.requests.sort_values("requested_at", kind="stable")
    last: pd.DataFrame = ordered.groupby("deal_id").tail(1)
    return last


def _awaiting(
    history: RequestHistory | None, deals: pd.DataFrame, last: pd.DataFrame | None = None
) -> npt.NDArray[np.bool_]:
    """Deals whose last seller request is still unanswered (snapshot order); `last`: the
    history's `_last_requests` when the caller has them already."""
    last = _last_requests(history) if last is None else last
    return _awaited_totals(deals, last) >= 0


def _awaited_totals(deals: pd.DataFrame, last: pd.DataFrame | None) -> npt.NDArray[np.int64]:
    """Per deal (snapshot order) the target total its last seller request asks for while it is
    unanswered, -1 where none is awaited; `last`: the history's `_last_requests`."""
    out = np.full(len(deals), -1, dtype=np.int64)
    if last is None:
        return out
    waiting = last.loc[last["response"].astype(str) == SellerResponse.PENDING]
    pos = positions(waiting["deal_id"], text_column(deals, "deal_id"))
    ok = pos >= 0
    out[pos[ok]] = waiting["target_total"].to_numpy(np.int64)[ok]
    return out


def _series_calendar(
    snapshot: CampaignSnapshot, curve: PacingCurve, series: DeliverySeries
) -> PacingCalendar:
    """The calendar the recent series' buckets are read on: the curve's, or for a campaign
    without dates (planned over the current instance of its budget period) one reaching back
    to the series' start. Supply does not reset when a day's budget does: read on today's
    calendar alone, yesterday's buckets would be outside it and every morning the forecast
    would start again from nothing."""
    calendar = curve.calendar
    if campaign_span(snapshot.pacing) is not None:
        return calendar
    first = float(to_unix(series.window_start))
    if first >= calendar.start:
        return calendar
    return build_calendar(snapshot.pacing, snapshot.timezone, series.window_start, calendar.end)


def deal_capacity(
    snapshot: CampaignSnapshot,
    assessment: Assessment,
    curve: PacingCurve,
    history: RequestHistory | None,
    moved: npt.NDArray[np.int8],
    given: npt.NDArray[np.int64] | None = None,
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Forecast per deal (or the caller's, `given`); seller answers cap it (a REJECTED increase
    keeps the deal at its current plan, a PARTIAL one at what the seller accepted). Returns the
    capacity, the columns of how it was reached (`FORECAST_DTYPES`, read-only arrays: the plan
    reads a few and builds no table of them) and which deals an answer capped."""
    deals, policy = snapshot.deals, snapshot.policy
    active = None
    weights = None
    per_opportunity = 1.0
    read_from = 0
    if snapshot.delivery is not None:
        series = snapshot.delivery
        opportunity = _series_calendar(snapshot, curve, series).bucket_opportunity(
            series.window_start, series.bucket, series.n_buckets
        )
        active = opportunity > 0
        read_from = rate_read_from(series.bucket, series.n_buckets)
        read = opportunity[read_from:]
        # The forecast measures rates per active clock hour of the buckets it reads; the
        # remaining time is in opportunity hours (traffic-weighted): convert, or a night-heavy
        # window reads low.
        read_active, read_total = np.count_nonzero(read), float(read.sum())
        if read_total > 0:
            clock = read_active * series.bucket.total_seconds() / 3600.0
            per_opportunity = clock / read_total
            weights = opportunity / (read_total / read_active)
    is_status = _status_test(assessment)
    # Zero capacity (a cut to the spend) only on a confident stall, never on a verdict that
    # lacks its evidence.
    confidence = nan_to_num(assessment.column(EntityKind.DEAL, "confidence"))
    stalled_now = is_status(_STALLED)
    stalled = stalled_now & (confidence >= policy.confidence_threshold)
    inputs = ForecastInputs.from_snapshot(
        deals,
        snapshot.delivery,
        snapshot.pacing.budget_type,
        policy,
        active_buckets=active,
        bucket_weights=weights,
        read_from=read_from,
        stalled_now=stalled if policy.stall_outlook else None,
    )
    if per_opportunity != 1.0:  # the series' rates, per opportunity hour
        inputs = replace(
            inputs,
            observed_rate=inputs.observed_rate * per_opportunity,
            avails_rate=inputs.avails_rate * per_opportunity,
            rate_se=None if inputs.rate_se is None else inputs.rate_se * per_opportunity,
        )
    spent = values_of(deals, SPENT_COLUMN[snapshot.pacing.budget_type], np.int64)
    elapsed = assessment.opportunity_elapsed_hours
    inputs = with_totals_rate(
        inputs, spent.astype(np.float64), values_of(deals, "avails", np.float64), elapsed
    )
    rate, avails_rate = inputs.observed_rate, inputs.avails_rate
    remaining = np.maximum(values_of(deals, "allocation", np.int64) - spent, 0)
    # A deal the plan starved (nothing left to spend), or one that delivered nothing without a
    # confident stall, is forecast from its supply, not from the delivery the plan prevented.
    # One that never won yet (its first hours were at night, or a stall cut it before it could)
    # is read at the campaign's typical win rate and units per win.
    supply_rate = avails_rate * pooled(inputs.win_rate) * pooled(inputs.units_per_win)
    to_date = spent / elapsed if elapsed > 0 else np.full(len(deals), np.nan)
    starved = ((remaining <= 0) | (rate == 0)) & ~stalled & inputs.active
    paced = seller_paced(deals)  # guaranteed: read by the forecast and the answer time
    rate = starved_rate(rate, supply_rate, np.where(spent > 0, to_date, np.nan), starved)
    from_supply = starved & np.isfinite(rate) & (rate > 0)
    # A starved deal's series measures the plan: its spread says nothing about its supply.
    rate_se = None if inputs.rate_se is None else np.where(starved, np.nan, inputs.rate_se)
    inputs = replace(
        inputs,
        stalled=stalled,
        observed_rate=rate,
        avails_rate=avails_rate,
        rate_se=rate_se,
        from_supply=from_supply,
        seller_paced=paced,
        # Comparisons rather than np.isin: over text it sorts both sides (~15 us a call).
        keeping_pace=~(is_status(_UNDER) | stalled_now | is_status(_NOT_STARTED)),
    )
    capacity, table = forecast_columns(inputs, assessment.opportunity_remaining_hours, policy)
    behind = 0.0
    if len(assessment.column(EntityKind.CAMPAIGN, "expected")):
        # How far the campaign is behind its curve, as a share of its budget.
        expected, actual, booked = (
            float(assessment.column(EntityKind.CAMPAIGN, c)[0])
            for c in ("expected", "actual", "allocation")
        )
        behind = (expected - actual) / max(booked, 1.0)
    last_requests = _last_requests(history)  # read twice below: the awaited and the answered
    asked = _awaited_totals(deals, last_requests)
    capacity, held = confident_cuts(
        inputs, table, remaining, policy, moved, behind, awaiting=asked >= 0
    )
    # The caller's own forecasts: per deal in the snapshot (capacity_forecast >= 0), or all of
    # them through build_plan(forecast=...).
    if given is not None:
        own = np.maximum(np.asarray(given, dtype=np.int64), 0)
        if own.shape != (len(deals),):
            raise ValueError(f"forecast needs one value per deal ({len(deals)})")
    else:
        own = values_of(deals, "capacity_forecast", np.int64)
    # Not for a paused or ended deal: it forecasts no capacity whatever the caller expects of
    # it (given one, the stretch and the first solve raised an ended deal beyond its booking).
    mine = (own >= 0) & inputs.active
    method = table["method"]
    if mine.any():
        capacity = np.where(mine, own, capacity)
        method = pd.Categorical.from_codes(
            np.where(mine, METHODS.index("given"), method.codes), dtype=method.dtype, validate=False
        )
    answer_share = np.full(len(deals), np.nan)
    # How long each deal's seller takes to answer (read once: the plan's decreases read it too).
    waits = answer_times(deals, history, policy.answer_time) if paced.any() else answer_share
    if paced.any() and policy.answer_time > timedelta(0):
        # What the seller delivers until it answers: its commitment (or the ask awaited), or
        # more where it already runs faster (an OVER deal loses nothing waiting).
        hours = np.asarray(table["remaining_hours"], dtype=np.float64)
        pace = np.floor(nan_to_num(inputs.observed_rate) * hours).astype(np.int64)
        floor = np.maximum(np.maximum(remaining, asked - spent), pace)
        share = np.broadcast_to(share_after_answer(curve, snapshot.as_of, waits), len(deals))
        limited = answer_limited(capacity, floor, paced, share)
        answer_share = np.where(limited < capacity, share, np.nan)  # what the words say
        capacity = limited
    capacity_column = capacity.copy()  # before the seller answers cap it
    capped = np.zeros(len(deals), dtype=bool)
    if last_requests is not None:
        last = last_requests  # spent and remaining as read above
        pos = positions(last["deal_id"], text_column(deals, "deal_id"))
        ok = pos >= 0
        last, pos = last[ok], pos[ok]
        response = last["response"].astype(str).to_numpy()
        increase = last["kind"].astype(str).to_numpy() == "INCREASE"
        rejected = increase & (response == SellerResponse.REJECTED)
        partial = increase & (response == SellerResponse.PARTIAL)
        limit = np.where(
            partial,
            np.maximum(values_of(last, "accepted_total", np.int64) - spent[pos], 0),
            remaining[pos],
        )
        hit = (rejected | partial) & (limit < capacity[pos])
        capacity[pos[hit]] = limit[hit]
        capped[pos[hit]] = True
    columns = dict(table)
    columns |= {
        "method": method,
        "capacity": capacity_column,
        "held_to_current": held,
        "capped_by_response": capped,
        "asked_total": asked,
        "answer_share": np.where(capped, np.nan, answer_share),
        "answer_seconds": waits,
        # The outlook speaks for the capacity only where nothing else set it.
        "stall_outlook": np.where(mine | capped | held, np.nan, columns["stall_outlook"]),
    }
    return capacity, _frozen(columns, FORECAST_DTYPES), capped


def answer_times(
    deals: pd.DataFrame, history: RequestHistory | None, default: timedelta
) -> npt.NDArray[np.float64]:
    """Per deal (snapshot order) how long its seller takes to answer, in seconds: the median
    time its seller took over the answered requests the history holds (`answered_at`), else
    `default` (`Policy.answer_time`). Read per seller: one that answers within the hour is
    asked until the flight's last hour, one that takes a day stops being asked a day before."""
    out = np.full(len(deals), default.total_seconds(), dtype=np.float64)
    if history is None or "answered_at" not in history.requests.columns:
        return out
    h = history.requests
    waited = values_of(h, "answered_at", np.float64) - values_of(h, "requested_at", np.float64)
    pos = positions(h["deal_id"], text_column(deals, "deal_id"))
    known = (pos >= 0) & np.isfinite(waited) & (waited >= 0)
    if not known.any():
        return out
    # The median per seller, on arrays (a pandas groupby cost ~1 ms a 50-deal plan): the
    # sellers of the answered rows coded, then each deal's seller found among them.
    seller = text_column(deals, "seller_id")
    group, sellers = factorize(np.asarray(seller[pos[known]], dtype=object))
    wait = waited[known]
    order = np.lexsort((wait, group))
    group, wait = group[order], wait[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)]
    median = (wait[(starts + ends - 1) // 2] + wait[(starts + ends) // 2]) / 2
    found = positions(seller, sellers)
    has = found >= 0
    out[has] = median[found[has]]
    return out


def share_after_answer(
    curve: PacingCurve, as_of: datetime, answer_time: float | npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Share of the flight's remaining opportunity that is still ahead once a request asked at
    `as_of` is answered, `answer_time` seconds later (each deal's, or one for all): 0 when the
    answer comes after the flight."""
    now = float(to_unix(as_of))
    end = curve.horizon_at(as_of)[1]
    cal = curve.calendar
    left = float(cal.opportunity_hours(now, end))
    answered = now + np.asarray(answer_time, dtype=np.float64)
    if left <= 0:
        return np.zeros(answered.shape)
    after = np.asarray(cal.opportunity_hours(np.minimum(answered, end), end), dtype=np.float64)
    out: npt.NDArray[np.float64] = np.where(answered < end, np.clip(after / left, 0.0, 1.0), 0.0)
    return out


def answer_limited(
    capacity: npt.NDArray[np.int64],
    floor: npt.NDArray[np.int64],
    paced: npt.NDArray[np.bool_],
    share: float | npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """A guaranteed deal's capacity above `floor` (what its seller delivers at its present
    pace: its commitment, an ask it has yet to answer, or its rate where that is more), limited
    to `share` of it: the seller keeps that pace until it answers an increase, so only the
    supply left after the answer can deliver more, and the budget held for the ask buys
    nothing meanwhile. In a half-day flight (`random_scenarios.py --seed 21`, world 11) a
    guaranteed deal asked at hour 1 for twice its commitment held that money until its seller
    refused, 7.5 h later, while the buyer-paced deals cut to fund it stopped buying: 93.6 % of
    the budget spent where the booking spent 99.6 %; limited, 99.6 %."""
    above = np.maximum(capacity - floor, 0)
    limited = floor + np.floor(above * share).astype(np.int64)
    out: npt.NDArray[np.int64] = np.where(paced & (above > 0), limited, capacity)
    return out


def _status_test(assessment: Assessment) -> Callable[[str], npt.NDArray[np.bool_]]:
    """Which deals have a pacing verdict, as a function of the verdict: compared per code of
    the assessment's status column (three verdicts at 100k deals ~2.6 -> ~0.4 ms), else per
    deal (text: a Python compare per deal)."""
    status = assessment.column(EntityKind.DEAL, "status")  # no frame built
    codes = assessment.codes(EntityKind.DEAL, "status")
    by_code = labels_by_code(codes, status)
    if by_code is None:
        return lambda verdict: np.asarray(status == verdict, dtype=bool)
    return lambda verdict: np.asarray(by_code == verdict, dtype=bool)[codes]


def _frozen(columns: dict[str, Any], dtypes: dict[str, str]) -> dict[str, Any]:
    """The columns in `dtypes`' order, numeric ones with those dtypes and read-only (as a
    table's values are to its readers); "keep" ones (the method's categorical) as they are."""
    out: dict[str, Any] = {}
    for name, dtype in dtypes.items():
        value = columns[name]
        if dtype != "keep":
            value = np.array(value, dtype=dtype)  # a copy: no reader's edit reaches the source
            value.flags.writeable = False
        out[name] = value
    return out


__all__ = [
    "answer_limited",
    "answer_times",
    "deal_capacity",
    "seller_paced",
    "share_after_answer",
]

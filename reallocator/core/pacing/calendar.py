"""The campaign-time grid every pacing curve is built on: active time, dayparts and periods.

Why a grid: all deals of a campaign share one curve *shape*, so the expensive, timezone-aware part
(which instants are active, how much traffic an hour carries, which local day/week/month an
instant belongs to) is computed once per campaign on a grid of slots, and every per-deal quantity
is then a cheap vectorised interpolation on that grid.

The grid cuts time at every quarter hour (UTC) plus at the campaign's own breakpoints (start, end,
flight boundaries, budget changes). Every timezone in use today has an offset that is a whole
number of quarter hours, so each slot lies inside a single local hour: daypart masks, hour-of-week
weights and local period boundaries (including DST changes) are exact, and inside a slot every
rate is constant, so cumulative quantities are exactly piecewise linear.

Times are unix seconds (float64) internally; public helpers accept aware datetimes too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.model import PacingSpec, Period

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
TimeLike: TypeAlias = datetime | float | int | Sequence[float] | npt.NDArray[Any]
"""An aware datetime, unix seconds, or an array of unix seconds."""

SLOT_SECONDS = 900
"""Base grid step: a quarter hour, the granularity of every real-world UTC offset."""

_FLIGHT_KEY_STRIDE = 1 << 40
"""Keeps period keys of different flights apart when one key array covers all flights."""

_MAX_RELATIVE_WEIGHT = 1e12
"""An inactive hour's weight relative to the largest active one, at most (only its finiteness
matters: it is never active)."""


def to_unix(at: TimeLike) -> FloatArray:
    """Unix seconds as a float64 array (0-d for a scalar); rejects naive datetimes.

    A naive datetime has no instant; silently assuming UTC would shift dayparts by hours.
    """
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"naive datetime {at!r}: pacing needs timezone-aware instants")
        return np.asarray(at.timestamp(), dtype=np.float64)
    return np.asarray(at, dtype=np.float64)


def to_datetime(seconds: float) -> datetime:
    """An aware UTC datetime from unix seconds (for messages and boundaries)."""
    return datetime.fromtimestamp(float(seconds), tz=UTC)


@dataclass(frozen=True, eq=False)
class PacingCalendar:
    """Slots over a campaign span with what pacing needs to know about each slot.

    `edges` has n+1 strictly increasing unix seconds; every other per-slot array has n entries.
    `weight` is the expected traffic of an hour relative to an average active hour (1.0 without
    custom weights), so one *opportunity hour* is an active hour of average traffic. The
    `cum_*` arrays are cumulative hours at the edges, so any interval's active or opportunity
    hours are an `np.interp` away.
    """

    timezone: str
    edges: FloatArray
    active: BoolArray
    weight: FloatArray
    offset: IntArray  # UTC offset of the slot, seconds (local = utc + offset)
    wall_day: IntArray  # local date, days since 1970-01-01
    hour_of_day: IntArray
    weekday: IntArray  # Monday = 0
    flight: IntArray  # index of the (sorted) flight holding the slot; -1 outside; 0 without flights
    horizons: tuple[tuple[float, float], ...]  # flights with budgets, else the one span (unix s)
    cum_active: FloatArray
    cum_opportunity: FloatArray

    @property
    def n_slots(self) -> int:
        return int(self.edges.size - 1)

    @property
    def start(self) -> float:
        return float(self.edges[0])

    @property
    def end(self) -> float:
        return float(self.edges[-1])

    @property
    def hours(self) -> FloatArray:
        """Slot durations in hours."""
        return np.diff(self.edges) / 3600.0

    @property
    def opportunity(self) -> FloatArray:
        """Opportunity hours carried by each slot (0 when inactive)."""
        return np.diff(self.cum_opportunity)

    def period_key(self, period: Period) -> IntArray:
        """An integer per slot that changes exactly when the local period instance changes.

        HOUR keys also change with the UTC offset, so the repeated hour at a DST fall-back is two
        hours. WEEK runs Sunday 00:00 to Saturday 24:00; MONTH is the calendar month. LIFETIME is
        one instance per flight (or one over the span without flights).
        """
        if period is Period.HOUR:
            wall_hour = (self._mid() + self.offset) // 3600
            return wall_hour.astype(np.int64) * 4096 + (self.offset // 60 + 1024)
        if period is Period.DAY:
            return self.wall_day.copy()
        if period is Period.WEEK:
            return (self.wall_day + 4) // 7  # 1970-01-04 was a Sunday
        if period is Period.MONTH:
            months = self.wall_day.astype("datetime64[D]").astype("datetime64[M]")
            return months.astype(np.int64)
        return np.maximum(self.flight, 0).astype(np.int64)

    def flight_scoped_key(self, period: Period) -> IntArray:
        """`period_key` made distinct per flight, so an instance never spans two flights."""
        scoped = self.period_key(period) + np.maximum(self.flight, 0) * _FLIGHT_KEY_STRIDE
        return np.asarray(scoped, dtype=np.int64)

    def active_hours_at(self, at: TimeLike) -> FloatArray:
        """Active hours from the span start to `at` (flat outside the span)."""
        return np.interp(to_unix(at), self.edges, self.cum_active)

    def opportunity_at(self, at: TimeLike) -> FloatArray:
        """Opportunity hours from the span start to `at` (flat outside the span)."""
        return np.interp(to_unix(at), self.edges, self.cum_opportunity)

    def opportunity_hours(self, start: TimeLike, end: TimeLike) -> FloatArray:
        """Opportunity hours in [start, end] (0 when end <= start)."""
        return np.maximum(self.opportunity_at(end) - self.opportunity_at(start), 0.0)

    def bucket_opportunity(self, start: TimeLike, bucket: timedelta, n_buckets: int) -> FloatArray:
        """Opportunity hours in each of `n_buckets` equal buckets from `start`.

        Tells which buckets of a delivery series were active (> 0) and how much traffic they
        should have carried, so a rate measured over them is per opportunity hour.
        """
        edges = float(to_unix(start)) + bucket.total_seconds() * np.arange(n_buckets + 1)
        return np.diff(self.opportunity_at(edges))

    def time_at_opportunity(self, cumulative: FloatArray) -> FloatArray:
        """Earliest instant at which cumulative opportunity reaches each value (NaN if never).

        The inverse of `opportunity_at`, vectorised: used to date a projected exhaustion that
        follows the opportunity curve rather than the wall clock.
        """
        target = np.asarray(cumulative, dtype=np.float64)
        cum = self.cum_opportunity
        idx = np.searchsorted(cum, target, side="left")
        out = np.full(target.shape, np.nan)
        ok = (idx <= self.n_slots) & np.isfinite(target)
        at_start = ok & (idx == 0)
        out[at_start] = self.edges[0]
        inner = ok & (idx > 0)
        j = idx[inner] - 1
        span = cum[j + 1] - cum[j]
        frac = np.where(span > 0, (target[inner] - cum[j]) / np.where(span > 0, span, 1.0), 0.0)
        out[inner] = self.edges[j] + np.clip(frac, 0.0, 1.0) * (self.edges[j + 1] - self.edges[j])
        return out

    def horizon_at(self, at: float) -> tuple[float, float]:
        """The flight containing `at`, else the next one, else the last one (unix seconds).

        A snapshot between flights is judged against the coming flight (NOT_STARTED); one after
        the last flight against that flight (COMPLETED). Without flight budgets the horizon is
        the whole span, as for the engine's `bounds.horizon`.
        """
        for start, end in self.horizons:
            if at < end:
                return start, end
        return self.horizons[-1]

    def _mid(self) -> FloatArray:
        return (self.edges[:-1] + self.edges[1:]) / 2.0


def campaign_span(spec: PacingSpec) -> tuple[datetime, datetime] | None:
    """Earliest start and latest end over the campaign dates and its flights (None if open)."""
    starts = [f.start for f in spec.flights] + ([spec.start] if spec.start else [])
    ends = [f.end for f in spec.flights] + ([spec.end] if spec.end else [])
    if not starts or not ends:
        return None
    return min(starts), max(ends)


_PERIOD_RANK: dict[Period, int] = {
    Period.HOUR: 0,
    Period.DAY: 1,
    Period.WEEK: 2,
    Period.MONTH: 3,
    Period.LIFETIME: 4,
}


def period_rank(period: Period) -> int:
    """Longer periods rank higher; the longest budget carries the pacing mode's shape."""
    return _PERIOD_RANK[period]


def period_bounds(period: Period, tz: str, at: datetime) -> tuple[datetime, datetime]:
    """The local period instance (HOUR/DAY/WEEK/MONTH) containing `at`, as aware UTC datetimes.

    Used when a campaign has no dates: its horizon is then the current instance of its longest
    budget period (an always-on campaign with a daily budget is judged day by day).
    """
    if period is Period.LIFETIME:
        raise ValueError("a LIFETIME budget needs campaign or flight dates")
    zone = ZoneInfo(tz)
    local = to_datetime(float(to_unix(at))).astimezone(zone)
    if period is Period.HOUR:
        utc = local.astimezone(UTC)
        start_utc = utc - timedelta(
            minutes=local.minute, seconds=local.second, microseconds=local.microsecond
        )
        return start_utc, start_utc + timedelta(hours=1)
    day = local.date()
    if period is Period.DAY:
        first, last = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        first = day - timedelta(days=(day.weekday() + 1) % 7)  # back to Sunday
        last = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)

    def midnight(d: Any) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)

    return midnight(first), midnight(last)


def default_span(spec: PacingSpec, tz: str, as_of: datetime) -> tuple[datetime, datetime]:
    """The span to pace over: the campaign's dates, else the current longest-period instance."""
    span = campaign_span(spec)
    if span is not None:
        return span
    periods = [b.period for b in spec.budgets] + [c.period for c in spec.budget_changes]
    if not periods:
        raise ValueError("a campaign without dates needs at least one periodic budget")
    return period_bounds(max(periods, key=period_rank), tz, as_of)


def _expand_weights(weights: npt.NDArray[np.float64] | None) -> FloatArray:
    """Custom weights as 168 hour-of-week values (Monday 00h first); ones when absent."""
    if weights is None:
        return np.ones(168)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size == 24:
        w = np.tile(w, 7)
    if w.size != 168:
        raise ValueError(f"custom_weights needs 24 or 168 values, got {w.size}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("custom_weights must be finite and non-negative")
    return w


def _daypart_mask(daypart: npt.NDArray[np.bool_] | None) -> BoolArray:
    if daypart is None:
        return np.ones(168, dtype=bool)
    mask = np.asarray(daypart, dtype=bool)
    if mask.shape != (7, 24):
        raise ValueError(f"daypart must have shape (7, 24), got {mask.shape}")
    return mask.ravel()


_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})


def _local_offsets(mid: FloatArray, tz: str) -> IntArray:
    """UTC offset (seconds) at each instant, vectorised through pandas' tz database (on the
    index's integers: two fewer index conversions than through naive timestamps)."""
    if tz in _UTC_NAMES:
        return np.zeros(mid.size, dtype=np.int64)
    utc = pd.to_datetime(mid, unit="s", utc=True)
    local = utc.tz_convert(ZoneInfo(tz)).tz_localize(None)
    offsets = (local.asi8 - utc.asi8) / _PER_SECOND[utc.unit]
    return np.rint(np.asarray(offsets, dtype=np.float64)).astype(np.int64)


def build_calendar(
    spec: PacingSpec,
    tz: str,
    start: TimeLike,
    end: TimeLike,
    breakpoints: Iterable[float] = (),
) -> PacingCalendar:
    """The slot grid over [start, end] for `spec` in timezone `tz`.

    Active = inside a flight (when the spec has flights) and inside the daypart. Opportunity
    weights come from `custom_weights` whatever the mode: they describe expected traffic, which
    projections follow even when the pace itself is EVEN. They are normalised so that an average
    active hour of the week weighs 1.
    """
    lo, hi = float(to_unix(start)), float(to_unix(end))
    if not hi > lo:
        raise ValueError("the pacing span must end after it starts")
    flights = sorted(spec.flights, key=lambda f: f.start)
    bounds = [(float(to_unix(f.start)), float(to_unix(f.end))) for f in flights]
    for (_, end0), (start1, _) in pairwise(bounds):
        if start1 < end0:
            raise ValueError("flights must not overlap")
    if any(e <= s for s, e in bounds):
        raise ValueError("every flight must end after it starts")
    extra = [t for t in breakpoints if lo < t < hi]
    extra += [t for pair in bounds for t in pair if lo < t < hi]
    marks = np.arange(np.ceil(lo / SLOT_SECONDS) * SLOT_SECONDS, hi, SLOT_SECONDS)
    edges = np.unique(np.concatenate([[lo, hi], marks, np.asarray(extra, dtype=np.float64)]))

    mid = (edges[:-1] + edges[1:]) / 2.0
    offset = _local_offsets(mid, tz)
    wall = np.floor(mid).astype(np.int64) + offset
    wall_day = wall // 86400
    hour_of_day = (wall % 86400) // 3600
    weekday = (wall_day + 3) % 7  # 1970-01-01 was a Thursday
    how = weekday * 24 + hour_of_day

    mask168 = _daypart_mask(spec.daypart)
    weights168 = _expand_weights(spec.custom_weights)
    active_weights = weights168[mask168]
    if active_weights.size == 0 or float(active_weights.sum()) <= 0.0:
        raise ValueError("no active hour carries any weight: nothing can ever deliver")
    # Relative to the largest active weight first: the mean of subnormal weights (5e-324 is a
    # valid weight) underflows to 0 and the curve became NaN. An hour outside the dayparts is
    # never active; its weight is capped so that it stays finite.
    top = float(active_weights.max())
    with np.errstate(over="ignore"):
        scaled = np.minimum(weights168 / top, _MAX_RELATIVE_WEIGHT)
    weights168 = scaled / float(scaled[mask168].mean())

    if bounds:
        starts = np.array([s for s, _ in bounds])
        ends = np.array([e for _, e in bounds])
        idx = np.searchsorted(starts, mid, side="right") - 1
        inside = (idx >= 0) & (mid < ends[np.maximum(idx, 0)])
        flight = np.where(inside, idx, -1).astype(np.int64)
        # Flights with budgets are horizons of their own (allocations are per flight); flights
        # without budgets only say when the campaign may deliver.
        horizons = tuple(bounds) if any(f.budgets for f in flights) else ((lo, hi),)
    else:
        flight = np.zeros(mid.size, dtype=np.int64)
        horizons = ((lo, hi),)

    active = mask168[how] & (flight >= 0)
    weight = weights168[how]
    hours = np.diff(edges) / 3600.0
    cum_active = np.concatenate([[0.0], np.cumsum(hours * active)])
    cum_opportunity = np.concatenate([[0.0], np.cumsum(hours * active * weight)])
    return PacingCalendar(
        timezone=tz,
        edges=edges,
        active=active,
        weight=weight,
        offset=offset,
        wall_day=wall_day,
        hour_of_day=hour_of_day,
        weekday=weekday,
        flight=flight,
        horizons=horizons,
        cum_active=cum_active,
        cum_opportunity=cum_opportunity,
    )

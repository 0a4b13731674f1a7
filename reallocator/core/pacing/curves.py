"""Pacing curves: expected cumulative delivery at any instant, for every pacing mode.

Model (all of it computed once per campaign on a `PacingCalendar`, then interpolated):

* *Pace time* runs only over active minutes (dayparts, inside flights), in the campaign timezone.
  EVEN/FRONT/BACK/ASAP weigh every active minute equally; CUSTOM weighs them by the opportunity
  (hour-of-day or hour-of-week traffic) weights.
* A *shape* F maps the elapsed share u of an instance's pace time to the share of its budget:
  EVEN ``min(1, u / catch_up)``; FRONT_LOADED(s, f) ``s`` evenly over the first f, the rest evenly
  after; BACK_LOADED(u) = 1 - FRONT(1 - u); ASAP a ceiling available at once (a jump at the first
  active instant); CUSTOM linear in opportunity-weighted time. A FRONT head with f = 0 is likewise
  a ceiling (a jump of s).
* Every budget (campaign-level per period, and each flight's own budgets) is a *level*: a set of
  period instances (each local hour/day/week/month, each flight, or the whole span) whose
  budget-to-date follows a shape. The level(s) with the longest period carry the mode's shape;
  shorter budgets are caps spread evenly over their instance's pace time (ASAP: ceilings).
* Budgets combine as the tightest wins: expected cumulative D(t) is the largest delivery that
  stays within every level's budget-to-date in every instance,
  ``D(t) = min_k [ D(start of k's instance) + E_k(t) ]``. So $1000 over 10 days with a $200
  daily cap paces $100/day (EVEN with catch_up_fraction 1; the default 0.95 paces $105.26/day,
  under the cap), and with a $50 daily cap spends $500 in total.
* Flights pace to their own budgets (instances never cross a flight boundary: nothing rolls over).
  A periodic instance cut by the span or a flight keeps its full amount (no proration), and a
  cap's shortfall in one period is not redistributed, though a longer budget that fell behind
  because of a cap may catch up later where the cap allows.
* The EVEN catch-up buffer belongs to the mode's shape, so only the longest budget carries it;
  CUSTOM follows its weights without a buffer.
* `paced_period` moves the mode's shape to a shorter budget (DSP *daily* pacing): that budget's
  instances follow the shape, longer budgets become ceilings available at once (so delivery
  stops when they run out: $200/day with $1000 lifetime is $200/day until day 5), shorter ones
  stay even caps. Unset, the longest budget is paced (*lifetime* pacing).
* With a SPEND goal `max_spend_micros` is one more budget over the whole span, a ceiling (it
  bounds the curve, so every total read from it, but paces nothing by itself).
* Mid-flight budget changes (BudgetChange): EVEN follows the new amount's curve as if it had
  always applied (a catch-up jump on an increase, a pause on a decrease); SMOOTH re-divides what
  remains of the new amount over the rest of the instance along its shape (a step in rate).
* Deals follow the campaign shape scaled to their allocation; after a plan is applied a deal's
  curve restarts from what it had delivered then (`deal_expected`).

Values inside a slot are linear between the slot's start and end values; jumps happen only at
slot edges and the curve is right-continuous (the value *at* an instant includes a jump there).
Where a cap starts to bind inside a quarter-hour slot the curve takes the chord, which stays
within every budget.
"""

from __future__ import annotations

import math
import operator
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

import numpy as np

from reallocator.core.model import (
    Budget,
    BudgetChange,
    BudgetChangeBehavior,
    BudgetType,
    PacingMode,
    PacingSpec,
    Period,
)
from reallocator.core.pacing.calendar import (
    BoolArray,
    FloatArray,
    IntArray,
    PacingCalendar,
    TimeLike,
    build_calendar,
    campaign_span,
    default_span,
    period_rank,
    to_datetime,
    to_unix,
)

_EPS = 1e-12


@dataclass(frozen=True)
class Shape:
    """A piecewise-linear map from elapsed pace-time share u in [0, 1] to delivered share.

    `knots_f[0] > 0` is a *head*: that share becomes available at the first active instant at
    once (a ceiling, as for ASAP); the curve is 0 before it.
    """

    knots_u: tuple[float, ...]
    knots_f: tuple[float, ...]

    @property
    def head(self) -> float:
        return self.knots_f[0]

    @property
    def is_ceiling(self) -> bool:
        """Whether part of the budget is a ceiling, so UNDER must be judged on projections."""
        return self.head > 0.0

    def __call__(self, u: FloatArray, started: BoolArray | None = None) -> FloatArray:
        """F(u); `started` marks right limits at u = 0 (just after the first active instant)."""
        values = np.interp(u, self.knots_u, self.knots_f)
        if self.head > 0.0:
            begun = u > 0.0 if started is None else (u > 0.0) | started
            values = np.where(begun, values, 0.0)
        return values


LINEAR = Shape((0.0, 1.0), (0.0, 1.0))
CEILING = Shape((0.0, 1.0), (1.0, 1.0))


def _front(share: float, fraction: float) -> Shape:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"front/back share must be in [0, 1], got {share}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"front fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return Shape((0.0, 1.0), (share, 1.0))
    return Shape((0.0, fraction, 1.0), (0.0, share, 1.0))


def mode_shape(spec: PacingSpec) -> Shape:
    """The shape of the pacing mode (applied to the longest budget period)."""
    if spec.mode is PacingMode.ASAP:
        return CEILING
    if spec.mode is PacingMode.EVEN:
        c = spec.catch_up_fraction
        if not 0.0 < c <= 1.0:
            raise ValueError(f"catch_up_fraction must be in (0, 1], got {c}")
        return LINEAR if c == 1.0 else Shape((0.0, c, 1.0), (0.0, 1.0, 1.0))
    if spec.mode is PacingMode.FRONT_LOADED:
        return _front(spec.front_share, spec.front_fraction)
    if spec.mode is PacingMode.BACK_LOADED:
        # BACK(u) = 1 - FRONT(1 - u) with the same (s, f): share s over the last f of pace time.
        s, f = spec.back_share, spec.back_fraction
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"front/back share must be in [0, 1], got {s}")
        if not 0.0 < f <= 1.0:
            raise ValueError(f"back_fraction must be in (0, 1], got {f}")
        if f == 1.0:  # FRONT(s, 1) reversed: 1 - s at once, then s evenly
            return Shape((0.0, 1.0), (1.0 - s, 1.0))
        return Shape((0.0, 1.0 - f, 1.0), (0.0, 1.0 - s, 1.0))
    return LINEAR  # CUSTOM: linear in opportunity-weighted pace time


@dataclass
class _LevelSpec:
    """One budget level before evaluation: which slots it covers and its amounts over time.

    `amounts` maps a flight index to the level's current amount there (key -1: campaign-level,
    the same amount everywhere). `changes` pairs each BudgetChange with the flight it is scoped
    to (-1: the whole campaign).
    """

    period: Period
    key: IntArray
    covered: BoolArray
    amounts: dict[int, float]
    changes: list[tuple[int, BudgetChange]] = field(default_factory=list)
    ceiling: bool = False  # a cap available at once whatever the mode (max_spend_micros)


@dataclass
class _Level:
    first: IntArray  # per slot: index of its instance's first slot, -1 if not covered
    e_start: FloatArray  # budget-to-date within the instance, right after the slot starts
    e_end: FloatArray  # ... just before the slot ends


@dataclass(frozen=True, eq=False)
class PacingCurve:
    """Expected cumulative delivery (budget units) of a campaign over its calendar.

    `budget_units` is False when the spec has no budget at all: the span then carries a unit
    budget and only shares are meaningful. `ceiling` is True when the shape has an
    ASAP-like head, so under-delivery is judged on the projected end total, not on the curve.
    """

    calendar: PacingCalendar
    cum_start: FloatArray
    cum_end: FloatArray
    shape: Shape
    budget_units: bool
    _horizons: dict[tuple[float, float], tuple[float, float]] = field(
        default_factory=dict, init=False, repr=False
    )  # (base, total) per horizon, filled on first read; a replaced curve starts empty

    @property
    def ceiling(self) -> bool:
        return self.shape.is_ceiling

    def cumulative(self, at: TimeLike, *, left: bool = False) -> FloatArray:
        """Expected cumulative delivery at `at` (right-continuous; `left` gives left limits)."""
        t = to_unix(at)
        if t.ndim == 0:
            return np.asarray(self.cumulative_at(float(t), left), dtype=np.float64)
        edges, n = self.calendar.edges, self.calendar.n_slots
        if left:
            idx = np.searchsorted(edges, t, side="left") - 1
            idx = np.where(t > edges[0], idx, -1)
        else:
            idx = np.searchsorted(edges, t, side="right") - 1
        j = idx.clip(0, n - 1)  # np.clip's own method, without its wrappers (~1 us a call)
        width = edges[j + 1] - edges[j]
        frac = ((t - edges[j]) / width).clip(0.0, 1.0)
        value = self.cum_start[j] + (self.cum_end[j] - self.cum_start[j]) * frac
        value = np.where(idx < 0, 0.0, np.where(idx >= n, self.cum_end[-1], value))
        return np.asarray(value, dtype=np.float64)

    def cumulative_at(self, t: float, left: bool = False) -> float:
        """`cumulative` of one instant (unix seconds) as a float, with scalar arithmetic (the
        same IEEE operations as the array path, so the same value, without a dozen array
        calls: the assessment reads the curve at a few instants per call)."""
        edges, n = self.calendar.edges, self.calendar.n_slots
        if left:
            idx = int(edges.searchsorted(t, side="left")) - 1
            if not t > edges[0]:
                idx = -1
        else:
            idx = int(edges.searchsorted(t, side="right")) - 1
        if idx < 0:
            return 0.0
        if idx >= n:
            return float(self.cum_end[-1])
        e0 = float(edges[idx])
        frac = (t - e0) / (float(edges[idx + 1]) - e0)
        frac = 0.0 if frac < 0.0 else (1.0 if frac > 1.0 else frac)
        start = float(self.cum_start[idx])
        return start + (float(self.cum_end[idx]) - start) * frac

    def _base_total(self, h0: float, h1: float) -> tuple[float, float]:
        """Expected delivery before the horizon and within it (kept per horizon: a curve is
        immutable, and every deal's share reads the same two numbers)."""
        key = (h0, h1)
        known = self._horizons.get(key)
        if known is None:
            base = self.cumulative_at(h0, True)
            known = (base, self.cumulative_at(h1, True) - base)
            self._horizons[key] = known
        return known

    def horizon_at(self, at: TimeLike) -> tuple[float, float]:
        """The flight (or span) a snapshot at `at` is judged against; see PacingCalendar."""
        return self.calendar.horizon_at(float(to_unix(at)))

    def total(self, horizon: tuple[float, float] | None = None) -> float:
        """Expected delivery over the horizon (default: the whole span), budget units."""
        h0, h1 = horizon or (self.calendar.start, self.calendar.end)
        return self._base_total(float(h0), float(h1))[1]  # kept per horizon: the same difference

    def share(self, at: TimeLike, horizon: tuple[float, float] | None = None) -> FloatArray:
        """Share of the horizon's expected total delivered by `at`, in [0, 1].

        The default horizon is the whole span; the assessment passes the current flight.
        """
        at_s = to_unix(at)
        if at_s.ndim == 0 and math.isfinite(float(at_s)):
            return np.asarray(self.share_at(float(at_s), horizon), dtype=np.float64)
        h0, h1 = horizon or (self.calendar.start, self.calendar.end)
        base, total = self._base_total(float(h0), float(h1))
        t = np.minimum(at_s, h1)
        value = np.where(t >= h1, base + total, self.cumulative(t, left=False))
        if total <= _EPS:
            return np.where(t >= h1, 1.0, 0.0).astype(np.float64)
        return np.asarray(np.clip((value - base) / total, 0.0, 1.0), dtype=np.float64)

    def share_at(self, at: float, horizon: tuple[float, float] | None = None) -> float:
        """`share` of one finite instant (unix seconds) as a float: the same value, with scalar
        arithmetic and no array around it (an assessment reads the shares of a few instants)."""
        h0, h1 = horizon or (self.calendar.start, self.calendar.end)
        base, total = self._base_total(float(h0), float(h1))
        when = min(at, float(h1))
        # At h1 itself take the left limit: a jump at the end belongs to the next flight.
        reached = base + total if when >= h1 else self.cumulative_at(when, False)
        if total <= _EPS:
            return 1.0 if when >= h1 else 0.0
        ratio = (reached - base) / total
        return 0.0 if ratio < 0.0 else (1.0 if ratio > 1.0 else ratio)


def _runs(key: IntArray, covered: BoolArray) -> tuple[IntArray, IntArray]:
    """Instance runs: contiguous covered slots with one key. Returns (first index, last index)."""
    n = key.size
    idx = np.arange(n)
    prev_key = np.concatenate([[key[0] - 1], key[:-1]]) if n else key
    prev_cov = np.concatenate([[False], covered[:-1]]) if n else covered
    new = covered & (~prev_cov | (key != prev_key))
    first = np.maximum.accumulate(np.where(new, idx, 0))
    first = np.where(covered, first, -1)
    next_new = np.concatenate([new[1:] | ~covered[1:], [True]]) if n else new
    last_marks = np.where(covered & next_new, idx, n)
    last = np.minimum.accumulate(last_marks[::-1])[::-1]
    last = np.where(covered, last, -1)
    return first.astype(np.int64), last.astype(np.int64)


def _amounts_at(level: _LevelSpec, times: FloatArray, flights: IntArray) -> FloatArray:
    """Budget amount in force at each instance start; changes replay the amount's history.

    Before a budget's first change its `old_amount` applies, between changes the earlier
    change's `new_amount`, after the last one the budget's current amount (as the wire contract
    says: current amounts are those in the budgets).
    """
    if -1 in level.amounts:
        out = np.full(times.size, level.amounts[-1])
    else:
        out = np.array([level.amounts.get(int(f), np.nan) for f in flights], dtype=np.float64)
    for scope in sorted({f for f, _ in level.changes}):
        changes = sorted((c for f, c in level.changes if f == scope), key=lambda c: c.at)
        at = np.array([float(to_unix(c.at)) for c in changes])
        seq = np.array(
            [changes[0].old_amount] + [c.new_amount for c in changes[:-1]] + [level.amounts[scope]],
            dtype=np.float64,
        )
        replay = seq[np.searchsorted(at, times, side="right")]
        out = np.where((flights == scope) | (scope < 0), replay, out)
    return out


def _evaluate_level(
    cal: PacingCalendar,
    level: _LevelSpec,
    pace: FloatArray,
    shape: Shape,
    behavior: BudgetChangeBehavior,
) -> _Level:
    """Budget-to-date of one level in every slot, changes included (vectorised over slots)."""
    first, last = _runs(level.key, level.covered)
    cov = level.covered
    cum = np.concatenate([[0.0], np.cumsum(pace)])
    safe_first = np.maximum(first, 0)
    base = cum[safe_first]
    total = cum[np.maximum(last, 0) + 1] - base
    before = cum[:-1] - base
    after = cum[1:] - base
    denom = np.where(total > 0, total, 1.0)
    u_start = np.where(total > 0, before / denom, 0.0)
    u_end = np.where(total > 0, after / denom, 0.0)
    f_start = shape(u_start, (before > 0) | (pace > 0))
    f_end = shape(u_end, after > 0)

    run_starts = np.flatnonzero(cov & (np.arange(cov.size) == first))
    amounts = _amounts_at(level, cal.edges[run_starts], cal.flight[run_starts])
    amount = np.zeros(cov.size)
    if run_starts.size:
        amount[cov] = amounts[np.searchsorted(run_starts, first[cov])]
    e_start = amount * f_start
    e_end = amount * f_end

    # Each change rewrites its instance from its slot on; a later applicable change in the same
    # instance rewrites again from its own slot, so a change only needs writing up to the next
    # one (each slot written once: linear in changes + slots, where rewriting to the instance's
    # end made 5,000 changes cost seconds). The result is the same as applying them in turn.
    ordered = sorted(level.changes, key=lambda fc: fc[1].at)
    last_at = {scope: change.at for scope, change in ordered}  # per scope: its latest change
    applied: list[tuple[int, int, float]] = []  # (slot, instance end, amount after the change)
    for scope, change in ordered:
        i = int(np.searchsorted(cal.edges, float(to_unix(change.at))))
        if i <= 0 or i >= cal.n_slots or not (cov[i] and cov[i - 1]) or first[i] != first[i - 1]:
            continue  # before/after the span or at an instance start: handled by `amounts`
        if scope >= 0 and int(cal.flight[i]) != scope:
            continue
        # The amount a change leads to: its new_amount, or the current amount after the last.
        new = float(change.new_amount) if change.at < last_at[scope] else level.amounts[scope]
        applied.append((i, int(last[i]) + 1, new))
    for k, (i, stop, new) in enumerate(applied):
        if k + 1 < len(applied) and applied[k + 1][0] < stop:
            stop = applied[k + 1][0]  # the next change (same instance) takes over from there
        spent = float(e_end[i - 1])  # budget-to-date at the change
        if behavior is BudgetChangeBehavior.EVEN:
            e_start[i:stop] = np.maximum(spent, new * f_start[i:stop])
            e_end[i:stop] = np.maximum(spent, new * f_end[i:stop])
        else:
            f_at = float(f_start[i])
            room = max(new - spent, 0.0)
            if 1.0 - f_at > _EPS:
                e_start[i:stop] = spent + room * (f_start[i:stop] - f_at) / (1.0 - f_at)
                e_end[i:stop] = spent + room * (f_end[i:stop] - f_at) / (1.0 - f_at)
            else:  # the shape had already finished: what is added is available at once
                e_start[i:stop] = spent + room
                e_end[i:stop] = spent + room
    return _Level(first=first, e_start=e_start, e_end=e_end)


def _combine(levels: list[_Level], n: int) -> tuple[FloatArray, FloatArray]:
    """Tightest budget wins: D = min_k(D before k's instance + k's budget-to-date).

    Loops over chunks between instance starts (days, hours...), vectorised inside a chunk; a
    single budget needs no loop at all.
    """
    if len(levels) == 1 and bool(np.all(levels[0].first >= 0)):
        # One budget: instances simply add up (each starts where the previous one ended).
        lv = levels[0]
        idx = np.arange(n)
        ends = np.flatnonzero(np.append(lv.first[1:] != lv.first[:-1], True))
        carried = np.concatenate([[0.0], np.cumsum(lv.e_end[ends])[:-1]])
        base = carried[np.searchsorted(ends, idx)]
        return base + lv.e_start, base + lv.e_end
    idx = np.arange(n)
    boundary = np.zeros(n, dtype=bool)
    boundary[0] = True
    for lv in levels:
        boundary |= lv.first == idx
        boundary[1:] |= (lv.first[1:] >= 0) != (lv.first[:-1] >= 0)
    cuts = np.append(np.flatnonzero(boundary), n)
    d_start = np.zeros(n)
    d_end = np.zeros(n)
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        prev = float(d_end[a - 1]) if a > 0 else 0.0
        lo: FloatArray | None = None
        hi: FloatArray | None = None
        for lv in levels:
            f = int(lv.first[a])
            if f < 0:
                continue
            start_value = float(d_end[f - 1]) if f > 0 else 0.0
            s, e = start_value + lv.e_start[a:b], start_value + lv.e_end[a:b]
            lo = s if lo is None else np.minimum(lo, s)
            hi = e if hi is None else np.minimum(hi, e)
        if lo is None or hi is None:  # no budget covers these (inactive) slots
            d_start[a:b] = prev
            d_end[a:b] = prev
        else:
            d_start[a:b] = np.maximum(lo, prev)
            d_end[a:b] = np.maximum(np.maximum.accumulate(hi), prev)
    return d_start, d_end


def _level_specs(spec: PacingSpec, cal: PacingCalendar) -> tuple[list[_LevelSpec], bool]:
    """Every budget level of the spec; a unit LIFETIME per flight when there is no budget.

    A BudgetChange applies to the campaign-level budget of its period (empty flight_id) or to
    that flight's budget of its period; a change of a budget that does not exist is ignored.
    """
    n = cal.n_slots
    everywhere = np.ones(n, dtype=bool)
    levels: list[_LevelSpec] = []
    for budget in _unique(spec.budgets, "campaign"):
        if budget.period is Period.LIFETIME:
            key = np.zeros(n, np.int64)
        else:
            key = cal.period_key(budget.period)
        changes = [
            (-1, c) for c in spec.budget_changes if c.period is budget.period and not c.flight_id
        ]
        levels.append(
            _LevelSpec(budget.period, key, everywhere, {-1: float(budget.amount)}, changes)
        )
    flights = sorted(spec.flights, key=lambda f: f.start)
    owned = [{b.period: float(b.amount) for b in _unique(f.budgets, f.flight_id)} for f in flights]
    for period in sorted({p for o in owned for p in o}, key=period_rank):
        amounts = {i: o[period] for i, o in enumerate(owned) if period in o}
        covered = np.isin(cal.flight, sorted(amounts))
        index = {flights[i].flight_id: i for i in amounts}  # one lookup per change
        scoped = [
            (index[c.flight_id], c)
            for c in spec.budget_changes
            if c.period is period and c.flight_id in index
        ]
        levels.append(_LevelSpec(period, cal.flight_scoped_key(period), covered, amounts, scoped))
    if levels and spec.max_spend_micros is not None and spec.budget_type is BudgetType.SPEND:
        # The money cap of a SPEND goal is a budget in the same unit: a ceiling over the span.
        cap = {-1: float(spec.max_spend_micros)}
        levels.append(
            _LevelSpec(Period.LIFETIME, np.zeros(n, np.int64), everywhere, cap, ceiling=True)
        )
    if levels:
        return levels, True
    return [_LevelSpec(Period.LIFETIME, np.zeros(n, np.int64), everywhere, {-1: 1.0})], False


def _paced_rank(spec: PacingSpec, specs: Sequence[_LevelSpec]) -> int:
    """Rank of the period whose budget carries the mode's shape: `paced_period`, else the
    longest budget's."""
    ranks = {period_rank(ls.period) for ls in specs if not ls.ceiling}
    if spec.paced_period is None:
        return max(ranks) if ranks else period_rank(Period.LIFETIME)
    rank = period_rank(spec.paced_period)
    if rank not in ranks:
        raise ValueError(f"paced_period {spec.paced_period}: no budget of that period")
    return rank


def _unique(budgets: Sequence[Budget], owner: str) -> list[Budget]:
    seen: set[Period] = set()
    for b in budgets:
        if b.period in seen:
            raise ValueError(f"{owner}: more than one {b.period} budget")
        if b.amount < 0:
            raise ValueError(f"{owner}: negative {b.period} budget")
        seen.add(b.period)
    return list(budgets)


def build_curve(
    spec: PacingSpec,
    tz: str,
    *,
    span: tuple[TimeLike, TimeLike] | None = None,
    as_of: datetime | None = None,
) -> PacingCurve:
    """The campaign's expected cumulative delivery curve (build once, evaluate many times).

    `span` defaults to the campaign dates/flights; a campaign without dates needs `as_of`, and is
    then paced over the current instance of its longest budget period.
    """
    if span is None:
        dated = campaign_span(spec)
        if dated is None and as_of is None:
            raise ValueError("a campaign without dates needs `span` or `as_of`")
        span = dated if dated is not None else default_span(spec, tz, as_of)  # type: ignore[arg-type]
    key = _curve_key(spec, tz, span)
    if key is None:
        return _build_curve(spec, tz, span)
    with _CACHE_LOCK:
        curve = _CACHE.get(key)
        if curve is not None:
            _CACHE.move_to_end(key)
            return curve
    curve = _build_curve(spec, tz, span)
    _remember(key, curve)
    return curve


CACHE_SLOTS = 400_000
"""Most calendar slots the curve cache holds (a 10-day flight is ~1,000 slots, the longest
span a request may name ~176,000; a slot costs ~100 bytes over the calendar and curve, so at
most ~40 MB a process)."""

CACHE_ENTRIES = 256
"""Most curves it holds: the campaigns a worker replans in turn keep theirs (a new campaign's
curve costs ~0.4 ms, the whole 50-deal assessment with a cached one ~0.5 ms)."""

_CACHE: OrderedDict[Hashable, PacingCurve] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _curve_key(spec: PacingSpec, tz: str, span: tuple[TimeLike, TimeLike]) -> Hashable | None:
    """What a curve depends on: every field of the spec (arrays by value), the timezone and the
    span. None when a field cannot be keyed (the curve is then built, and fails, as before)."""
    try:
        values: list[Hashable] = list(_spec_fields(spec))  # one C call for every field
        for i in _ARRAY_FIELDS:
            if values[i] is not None:
                array = np.asarray(values[i])
                values[i] = (array.dtype.str, array.shape, array.tobytes())
        key = (tuple(values), tz, float(to_unix(span[0])), float(to_unix(span[1])))
        hash(key)
    except (TypeError, ValueError):
        return None
    return key


_SPEC_FIELDS = tuple(f.name for f in fields(PacingSpec))
_spec_fields = operator.attrgetter(*_SPEC_FIELDS)
_ARRAY_FIELDS = tuple(_SPEC_FIELDS.index(name) for name in ("custom_weights", "daypart"))
"""The fields keyed by their arrays' bytes (an array is no key)."""


def _remember(key: Hashable, curve: PacingCurve) -> None:
    """Keeps a built curve (read-only: every later caller shares its arrays), least recently
    used first out, within CACHE_ENTRIES and CACHE_SLOTS."""
    if curve.calendar.n_slots > CACHE_SLOTS // 4:
        return
    for value in (*vars(curve.calendar).values(), curve.cum_start, curve.cum_end):
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    with _CACHE_LOCK:
        _CACHE[key] = curve
        slots = sum(c.calendar.n_slots for c in _CACHE.values())
        while len(_CACHE) > CACHE_ENTRIES or slots > CACHE_SLOTS:
            _, dropped = _CACHE.popitem(last=False)
            slots -= dropped.calendar.n_slots


def _build_curve(spec: PacingSpec, tz: str, span: tuple[TimeLike, TimeLike]) -> PacingCurve:
    """`build_curve` without the cache."""
    breakpoints = [float(to_unix(c.at)) for c in spec.budget_changes]
    cal = build_calendar(spec, tz, span[0], span[1], breakpoints)
    shape = mode_shape(spec)
    weight = cal.weight if spec.mode is PacingMode.CUSTOM else 1.0
    pace = cal.hours * cal.active * weight
    specs, in_units = _level_specs(spec, cal)
    covered = np.zeros(cal.n_slots, dtype=bool)
    for ls in specs:
        covered |= ls.covered
    if bool(np.any(cal.active & ~covered)):
        raise ValueError(
            "some active time is covered by no budget (a flight without budgets "
            "while the campaign has none)"
        )
    paced = _paced_rank(spec, specs)
    inner = CEILING if spec.mode is PacingMode.ASAP else LINEAR

    def level_shape(ls: _LevelSpec) -> Shape:
        rank = period_rank(ls.period)
        if ls.ceiling or rank > paced:
            return CEILING  # longer than the paced budget: a ceiling, as a lifetime cap is
        return shape if rank == paced else inner

    levels = [_evaluate_level(cal, ls, pace, level_shape(ls), spec.change_behavior) for ls in specs]
    d_start, d_end = _combine(levels, cal.n_slots)
    return PacingCurve(cal, d_start, d_end, shape, in_units)


# --- Convenience API (spec in, numbers out). Build a PacingCurve once when evaluating often. ---


def expected_cumulative(spec: PacingSpec, tz: str, at: TimeLike) -> FloatArray:
    """Expected cumulative campaign delivery (budget units) at `at` (datetime or unix s array)."""
    return build_curve(spec, tz, as_of=_anchor(at)).cumulative(at)


def expected_share(
    spec: PacingSpec,
    tz: str,
    at: TimeLike,
    *,
    horizon: tuple[TimeLike, TimeLike] | None = None,
) -> FloatArray:
    """Share of the horizon's expected total delivered by `at`, in [0, 1].

    `horizon` defaults to the whole campaign span (all flights); pass a flight's bounds to get
    the share within that flight, which is what a deal's allocation follows.
    """
    curve = build_curve(spec, tz, as_of=_anchor(at))
    h = None if horizon is None else (float(to_unix(horizon[0])), float(to_unix(horizon[1])))
    return curve.share(at, h)


def remaining_opportunity(
    spec: PacingSpec,
    tz: str,
    as_of: datetime,
    horizon_end: datetime | None = None,
) -> float:
    """Opportunity hours left between `as_of` and `horizon_end` (default: end of current flight).

    One opportunity hour = one active hour of average traffic (custom weights, dayparts and
    flights applied). A rate per opportunity hour times this is a projection that follows the
    traffic curve: night-time snapshots do not extrapolate the night's low rate.
    """
    curve = build_curve(spec, tz, as_of=as_of)
    end = curve.horizon_at(as_of)[1] if horizon_end is None else float(to_unix(horizon_end))
    return float(curve.calendar.opportunity_hours(as_of, end))


def remaining_opportunity_share(
    spec: PacingSpec, tz: str, as_of: datetime, horizon_end: datetime | None = None
) -> float:
    """Share of the current flight's opportunity hours still ahead of `as_of`, in [0, 1]."""
    curve = build_curve(spec, tz, as_of=as_of)
    h0, h1 = curve.horizon_at(as_of)
    end = h1 if horizon_end is None else float(to_unix(horizon_end))
    total = float(curve.calendar.opportunity_hours(h0, h1))
    if total <= 0:
        return 0.0
    return float(curve.calendar.opportunity_hours(max(float(to_unix(as_of)), h0), end)) / total


def opportunity_profile(
    spec: PacingSpec,
    tz: str,
    start: datetime,
    end: datetime,
    bucket: timedelta = timedelta(hours=1),
) -> tuple[FloatArray, FloatArray]:
    """Opportunity hours per bucket over [start, end): (bucket start unix s, opportunity hours).

    The hourly shape of the coming window, for forecasts and delivery schedules that spread a
    rate over it; a bucket outside the campaign or its dayparts carries 0.
    """
    curve = build_curve(spec, tz, as_of=start)
    return profile(curve.calendar, start, end, bucket)


def profile(
    cal: PacingCalendar, start: TimeLike, end: TimeLike, bucket: timedelta = timedelta(hours=1)
) -> tuple[FloatArray, FloatArray]:
    """`opportunity_profile` on an already built calendar."""
    lo, hi = float(to_unix(start)), float(to_unix(end))
    step = bucket.total_seconds()
    if step <= 0 or hi <= lo:
        raise ValueError("need a positive bucket and end after start")
    edges = np.append(np.arange(lo, hi, step), hi)
    return edges[:-1], np.diff(cal.opportunity_at(edges))


def deal_expected(
    curve: PacingCurve,
    horizon: tuple[float, float],
    at: float | FloatArray,
    allocation: FloatArray,
    plan_applied_at: FloatArray,
    delivered_at_plan: FloatArray,
) -> FloatArray:
    """Each deal's expected cumulative delivery at `at` (budget units), vectorised over deals.

    `at` is one instant for all deals or one per deal (unix seconds). Deals follow the campaign
    share scaled to their allocation. A deal whose plan was applied at t0 (inside the horizon,
    not after `at`) restarts from what it had delivered then:
    ``dap + (allocation - dap) * (s(at) - s(t0)) / (1 - s(t0))``, so an accepted plan starts on
    pace. A restart with no shape left (s(t0) = 1) makes the rest available at once.
    """
    h0, h1 = horizon
    when = np.asarray(at, dtype=np.float64)
    s_now = curve.share(when, horizon)
    alloc = np.asarray(allocation, dtype=np.float64)
    t0 = np.asarray(plan_applied_at, dtype=np.float64)
    dap = np.asarray(delivered_at_plan, dtype=np.float64)
    expected = alloc * s_now
    restarted = (t0 >= h0) & (t0 <= when) & (t0 < h1)
    if not bool(np.any(restarted)):
        return np.asarray(expected, dtype=np.float64)
    s0 = curve.share(np.where(restarted, t0, h0), horizon)
    room = np.maximum(alloc - dap, 0.0)
    left = 1.0 - s0
    progress = np.where(left > _EPS, (s_now - s0) / np.where(left > _EPS, left, 1.0), 1.0)
    restart = dap + room * np.clip(progress, 0.0, 1.0)
    return np.asarray(np.where(restarted, restart, expected), dtype=np.float64)


def _anchor(at: TimeLike) -> datetime | None:
    """An instant to place a dateless campaign's span (the first evaluation time)."""
    if isinstance(at, datetime):
        return at
    values = np.atleast_1d(to_unix(at))
    if values.size == 0:
        return None
    return to_datetime(float(values.min()))

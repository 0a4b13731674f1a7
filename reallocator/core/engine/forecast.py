"""Capacity forecast: what each deal can still deliver in the horizon, in budget units.

    unthrottled = observed_rate / participation          (we throttled it; it could do more)
    by_rate     = unthrottled * remaining_opportunity_hours
    by_avails   = avails_rate * remaining_opportunity_hours * win_rate * units_per_win
    capacity    = min(by_rate, by_avails, available_inventory)       with enough evidence
                = available_inventory, else max(that, booked)        seller-paced, keeping pace
                = available_inventory, else booked                   below minimum evidence
                = 0                                                  stalled or not active

`remaining_opportunity_hours` is the opportunity-weighted active time left in the horizon
(dayparts and the traffic curve applied): the pacing module computes it; here it is a number or
one per deal. Participation below `MIN_PARTICIPATION` is floored there, so a deal we barely let
bid does not extrapolate to absurd volumes. Unknown inputs (NaN) do not cap. The inputs are
returned beside the capacity for the plan's rationale. Minimum evidence: `policy.min_evidence`
hours and `forecast_min_impressions(policy)` impressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.engine.problem import BoolArray, FloatArray, IntArray
from reallocator.core.model import (
    DELIVERED_COLUMN,
    UNITS_LIMIT,
    BudgetType,
    DealStatus,
    DeliverySeries,
    Policy,
    flag_counts,
    nan_to_num,
    select,
    table_of,
    values_of,
)

MIN_PARTICIPATION = 0.05
FORECAST_EVIDENCE_PERCENT = 3
"""The share of `policy.min_evidence_impressions` (what a pacing verdict needs before it alerts
a person), in percent, that a deal's own rate needs before it forecasts the deal's capacity: 30
of the default 1,000. A rate read on n impressions is off by about 1/sqrt(n) from the count
alone (30: 18 %), and that noise is in its standard error, which bounds cuts and growth
(`confident_cuts`) and weighs the rate against what the deal holds (`shrink_to_current`). At
the verdict's 1,000 a small campaign's deals were never measured: each stayed at what it held,
plan after plan, while the plans moved money only by stalls, and a silent deal grew on the
stretch from its own last holding. Chosen on random worlds (seeds 2, 6, 13, 15: mean margin
over the fixed booking +1.42 points at 1,000, +1.48 at 300, +1.83 at 100, +2.02 at 30); held
out (seeds 1, 3, 4, 5, 14, 16): +1.95 at 1,000, +2.10 at 100, +2.23 at 30; the tuning and
evaluation sets the same at 30 and 100 (README, "Stable plans")."""


THIN_COUNT_Z = 2.0
"""How many standard errors of its count a deal's few impressions are read up by before a rate
that fell short of what the deal holds counts as measured with fewer impressions than
`forecast_min_impressions` (`thin_shortfall`): n impressions are read as n + z sqrt(n) + z^2,
above a Poisson count's score-interval upper limit (n + z^2/2 + z sqrt(n + z^2/4)), which is
~97.7 % one-sided at z = 2 (`cut_confidence`'s default)."""


def thin_shortfall(
    forecast: FloatArray, booked: IntArray, impressions: IntArray, looked: BoolArray
) -> BoolArray:
    """The deals measured by a long look at few impressions: observed for `min_evidence` hours
    or more (`looked`, their rate known), with fewer impressions than a forecast needs but at
    least one, and a forecast that even their count's upper bound (THIN_COUNT_Z) keeps short of
    what they hold (`booked`). Their shortfall is evidence: a deal that bought 16 impressions
    in 80 hours will not buy the 8 USD it holds in the 90 left. Read as no evidence, its
    forecast was what it held, and in a stall of every deal (its stall outlook a share of what
    it held, its share of the budget beyond the forecasts in proportion to that) it kept and
    grew it plan after plan: `random_scenarios.py --seed 34` world 0, two deals that had bought
    0.2 USD in all came to hold 40 of the 41 USD left; when supply returned, the deals that had
    it held slivers."""
    n = impressions.astype(np.float64)
    z = THIN_COUNT_Z
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = nan_to_num(forecast, nan=np.inf) * (1.0 + z / np.sqrt(n) + z * z / n)
    out: BoolArray = looked & (n >= 1) & (upper < booked)
    return out


def forecast_min_impressions(policy: Policy) -> int:
    """Impressions a deal's delivery needs before its rate forecasts its capacity."""
    # In integers, rounded up: a float share of a large count can land a unit off.
    return -(-policy.min_evidence_impressions * FORECAST_EVIDENCE_PERCENT // 100)


METHODS = ["rate", "declared", "booked", "stalled", "inactive", "given", "commitment"]
"""How a capacity was reached; "given": the caller's own forecast (build_plan(forecast=...));
"commitment": a seller-paced deal keeping pace, at least what remains of its commitment."""
_METHOD_DTYPE = pd.CategoricalDtype(pd.Index(METHODS))
_CODE = {m: i for i, m in enumerate(METHODS)}
RATIONALE_DTYPES: dict[str, str] = {
    "method": "keep",  # categorical over METHODS
    "observed_rate": "float64",
    "participation_rate": "float64",
    "unthrottled_rate": "float64",
    "remaining_hours": "float64",
    "by_rate": "float64",
    "by_avails": "float64",
    "available_inventory": "int64",
    "booked": "int64",
    "evidence_hours": "float64",
    "capacity": "int64",
    "stall_outlook": "float64",  # share of its forecast a confident stall keeps; NaN: none
}
"""Columns of forecast_capacity's table (how each capacity was reached)."""
_ACTIVE = int(DealStatus.ACTIVE)  # numpy compares an IntEnum member ~3x slower than its int


@dataclass(frozen=True, eq=False)
class ForecastInputs:
    """Per-deal arrays (length n). Rates are per active hour of the recent window."""

    observed_rate: FloatArray  # budget units per active hour; NaN = no series
    participation_rate: FloatArray  # share of auctions we took part in; NaN = unknown (1)
    avails_rate: FloatArray  # bid requests per active hour; NaN = unknown
    win_rate: FloatArray  # wins per bid; NaN = unknown
    units_per_win: FloatArray  # budget units per win (1 for impressions); NaN = unknown
    available_inventory: IntArray  # seller-declared remaining, budget units; -1 = unknown
    booked: IntArray  # remaining booked allocation, budget units
    evidence_hours: FloatArray  # hours of delivery observed
    evidence_impressions: IntArray
    stalled: BoolArray
    active: BoolArray
    seller_paced: BoolArray | None = None  # guaranteed: the rate is the seller's pace
    keeping_pace: BoolArray | None = None  # delivering what its allocation needs (not UNDER)
    rate_se: FloatArray | None = None  # standard error of observed_rate (bucket to bucket)
    from_supply: BoolArray | None = None  # observed_rate read from supply (starved_rate)
    stall_hours: FloatArray | None = None  # active hours since the last delivery in the series

    @classmethod
    def from_snapshot(
        cls,
        deals: pd.DataFrame,
        delivery: DeliverySeries | None,
        budget_type: BudgetType,
        policy: Policy,
        *,
        active_buckets: npt.NDArray[np.bool_] | None = None,
        bucket_weights: FloatArray | None = None,
        read_from: int = 0,
        stalled_now: BoolArray | None = None,
    ) -> ForecastInputs:
        """Inputs from the deals table and the recent delivery series.

        `active_buckets` marks which series buckets were inside the campaign's dayparts (all
        when None): rates are per active hour, so they project over active hours only.
        `bucket_weights` is each bucket's expected traffic relative to an average active bucket
        (the hour-of-week curve): the rate's standard error is measured on the buckets divided
        by it, so the daily traffic cycle does not read as noise. Rates are read on the
        buckets from `read_from` on (0: all); the whole series tells stalls from daily holes.
        `stalled_now` marks the deals whose silence at the end of the series is a stall (the
        assessment's confident verdict): their rate is read outside it, see `_running_stalls`.
        """
        n = len(deals)
        imps = values_of(deals, "impressions", np.float64)
        column = DELIVERED_COLUMN[budget_type]
        units_total = values_of(deals, column, np.float64)
        wins_total = values_of(deals, "wins", np.float64)
        bids = values_of(deals, "bids", np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            win_rate = np.where(bids > 0, wins_total / bids, np.nan)
            units_per_win = np.where(wins_total > 0, units_total / wins_total, np.nan)
        rate = np.full(n, np.nan)
        avails_rate = np.full(n, np.nan)
        evidence = np.zeros(n)
        rate_se = np.full(n, np.nan)
        stalled = np.zeros(n, dtype=bool)
        stall_hours = np.zeros(n)
        evidence_imps = values_of(deals, "impressions", np.int64)
        if delivery is not None and delivery.n_buckets:
            per_imp = None
            if budget_type is not BudgetType.SPEND:
                # Impressions series, converted to the unit through each deal's observed ratio.
                with np.errstate(divide="ignore", invalid="ignore"):
                    per_imp = np.where(imps > 0, units_total / imps, np.nan)
            reading = _SeriesReading(
                delivery=delivery,
                per_imp=per_imp,
                active=(
                    np.ones(delivery.n_buckets, bool) if active_buckets is None else active_buckets
                ),
                weights=bucket_weights,
                read_from=read_from,
                policy=policy,
                plan_applied_at=values_of(deals, "plan_applied_at", np.int64),
                evidence_impressions=evidence_imps,
                stalled_now=None if stalled_now is None else np.asarray(stalled_now, bool),
            )
            rate, avails_rate, evidence, rate_se, stalled, stall_hours, evidence_imps = (
                reading.in_blocks(n)
            )
            # No bid request over buckets the deal delivered in is a gap in their reporting
            # (a count reported late, or rounded away), not a deal without supply: unknown,
            # as the totals read them (`with_totals_rate`). Read as 0 it made the supply
            # forecast 0 and cut the deal to its spend (random world `--seed 37` #0: 60
            # guaranteed deals, each stall's outside read on one late bucket with spend and no
            # bid request; 55 asked to stop).
            avails_rate = np.where((avails_rate == 0) & (rate > 0), np.nan, avails_rate)
        return cls(
            observed_rate=rate,
            participation_rate=values_of(deals, "participation_rate", np.float64),
            avails_rate=avails_rate,
            win_rate=win_rate,
            units_per_win=units_per_win,
            available_inventory=values_of(deals, "available_inventory", np.int64),
            booked=np.maximum(
                0, values_of(deals, "allocation", np.int64) - units_total.astype(np.int64)
            ),
            evidence_hours=evidence,
            evidence_impressions=evidence_imps,
            stalled=stalled,
            active=values_of(deals, "status") == _ACTIVE,
            rate_se=rate_se,
            stall_hours=stall_hours,
        )


BLOCK_ROWS = 8192
"""Deals the series are read for at a time (`_SeriesReading.in_blocks`): a block's matrices
(8192 x 48 buckets, ~1.5 MB as uint32) are reused from cache, where a whole 100k-deal matrix
is fresh memory each pass touches first (page faults) and reads back from RAM."""

_Measures = tuple[FloatArray, FloatArray, FloatArray, FloatArray, BoolArray, FloatArray, IntArray]
"""What the series say per deal: rate, avails rate, evidence hours, the rate's standard error,
stalled, stall hours and evidence impressions (`ForecastInputs`' fields of the same names)."""


@dataclass(frozen=True, eq=False)
class _SeriesReading:
    """What `ForecastInputs.from_snapshot` reads from the delivery series (its arguments; the
    per-deal ones whole, for every deal)."""

    delivery: DeliverySeries
    per_imp: FloatArray | None  # budget units per impression (None: the series is spend)
    active: BoolArray
    weights: FloatArray | None
    read_from: int
    policy: Policy
    plan_applied_at: IntArray
    evidence_impressions: IntArray
    stalled_now: BoolArray | None = None  # deals in a confident stall (`_running_stalls`)

    def in_blocks(self, n: int) -> _Measures:
        """`measures` for every deal, BLOCK_ROWS deals at a time: each deal's figures are read
        from its own row alone (the same numbers in any blocks). With `_masked`, 100k deals x
        48 buckets in a plan ~73 -> ~53 ms (thread CPU). The deals that came out of a stall
        are then measured outside it together (`_measured_outside`: its weighted hours are a
        matrix product, whose last bits depend on the rows multiplied together)."""
        starts = range(0, n, BLOCK_ROWS) if n > BLOCK_ROWS else [0]
        blocks = [self.measures(slice(i, i + BLOCK_ROWS)) for i in starts]
        measures = cast(
            _Measures, tuple(np.concatenate(p) for p in zip(*(m for m, _ in blocks), strict=True))
        )
        came_out = [(i, s) for i, (_, s) in zip(starts, blocks, strict=True) if s is not None]
        if not came_out:
            return measures
        rows = np.concatenate([i + np.flatnonzero(s.any(axis=1)) for i, s in came_out])
        stalls = np.concatenate([s[s.any(axis=1)] for _, s in came_out])
        rate, avails_rate, n_hours, rate_se = measures[:4]
        series, _, seen, masked, av = self._matrices(rows)
        keep = slice(self.read_from if 0 < self.read_from < self.delivery.n_buckets else 0, None)
        weights = None if self.weights is None else self.weights[keep]
        outside = _measured_outside(
            stalls, series[:, keep], masked[:, keep], seen[:, keep], av[:, keep],
            self.delivery.bucket.total_seconds() / 3600.0, weights,
            (rate[rows], avails_rate[rows], n_hours[rows]),
        )  # fmt: skip
        for column, values in zip((rate, avails_rate, n_hours, rate_se), outside, strict=True):
            column[rows] = values
        return measures

    def _matrices(
        self, rows: slice | IntArray
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], BoolArray, npt.NDArray[Any], npt.NDArray[Any]]:
        """The series of the deals `rows` in the forecast's unit, their impressions, which
        buckets are seen, the series and the bid requests with 0 where not seen."""
        delivery, act = self.delivery, self.active
        if self.per_imp is None:
            series = delivery.spend_micros[rows]
        else:
            series = delivery.impressions[rows] * self.per_imp[rows, None]
        if series.dtype.kind == "f":
            seen = ~np.isnan(series) & act[None, :]
        else:  # integers (the matrix form): every bucket known, no NaN pass
            seen = np.broadcast_to(act[None, :], series.shape)
        # Integers with every bucket active are summed as they are (exact; sums of an
        # hour's micros over a series stay far below 2**53, so the same numbers); otherwise
        # NaN only where not seen: masked once, summed plainly (nansum's NaN pass is moot).
        whole = series.dtype.kind in "iu" and bool(act.all())
        masked = series if whole else _masked(series, seen)
        avails = delivery.avails[rows]
        if avails.dtype.kind in "iu":
            av = avails if whole else avails * seen  # integers: x 1 or x 0, as np.where picks
        else:
            av = np.where(seen, avails, 0)
        return series, delivery.impressions[rows], seen, masked, av

    def measures(self, rows: slice) -> tuple[_Measures, BoolArray | None]:
        """The series' figures for the deals `rows`, and the buckets of the stalls they came
        out of among those the rate is read on (None: none did), which the caller measures
        them outside: the figures of those deals here are read over the stalls."""
        delivery, act, policy = self.delivery, self.active, self.policy
        read_from, bucket_weights = self.read_from, self.weights
        evidence_imps = self.evidence_impressions[rows]
        hours = delivery.bucket.total_seconds() / 3600.0
        series, shown, seen, masked, av = self._matrices(rows)
        n_hours = _observed_hours(series, seen, act, hours)
        tail = max(1, math.ceil(policy.stalled_window / delivery.bucket))
        stalled = (n_hours >= tail * hours) & _none_delivered(masked[:, -tail:])
        stall_hours = _silent_hours(masked, seen, act, hours)
        stalls = _past_stalls(masked, seen, tail, av, _buckets_a_day(delivery.bucket, tail))
        stalls = _idle_before_plan(
            stalls, masked, av, delivery, self.plan_applied_at[rows], read_from, tail
        )
        if self.stalled_now is not None:
            stalls = _running_stalls(stalls, masked, seen, self.stalled_now[rows])
        if 0 < read_from < delivery.n_buckets:
            # The rate is read on the last buckets only (read_from on); the earlier ones
            # told a daily hole from a stall above.
            keep = slice(read_from, None)
            series, seen, masked, av, act, shown = (
                m[..., keep] for m in (series, seen, masked, av, act, shown)
            )  # fmt: skip
            if bucket_weights is not None:
                bucket_weights = bucket_weights[keep]
            if stalls is not None:
                stalls = stalls[:, keep]
                if not stalls.any():
                    stalls = None
            n_hours = _observed_hours(series, seen, act, hours)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(n_hours > 0, _sums(masked) / n_hours, np.nan)
            avails_rate = np.where(n_hours > 0, _row_sums(av) / n_hours, np.nan)
        # A deal live again after a stall inside the series is measured outside it (the
        # caller, `_measured_outside`): the silent hours were the outage, not its rate (read
        # over them, a deal whose supply returned stays at what the stall left it), and the
        # hours before it are evidence of what the deal does when it is live.
        rate_se = _rate_se(series, seen, hours, bucket_weights)
        # The series' own impressions (on the buckets the rate is read on) count as
        # evidence beside the totals to date: a campaign whose budget is a day's counts its
        # totals from midnight, while the series may hold the day before. Read only where
        # the totals fall short of the minimum.
        short = np.flatnonzero(evidence_imps < forecast_min_impressions(policy))
        if short.size:
            counted = np.asarray(shown[short], dtype=np.float64)
            read_on = seen[short] & ~np.isnan(counted)
            if stalls is not None:
                read_on &= ~stalls[short]
            in_series = np.where(read_on, counted, 0.0).sum(axis=1).astype(np.int64)
            evidence_imps = evidence_imps.copy()  # values_of's view is read-only
            evidence_imps[short] = np.maximum(evidence_imps[short], in_series)
        measures = (rate, avails_rate, n_hours, rate_se, stalled, stall_hours, evidence_imps)
        return measures, stalls


def _masked(series: npt.NDArray[Any], seen: BoolArray) -> npt.NDArray[Any]:
    """The series with 0 where not seen. Integers of 32 bits or fewer stay integers: every sum
    the forecast takes of them (at most 2**32 a bucket, so below 2**53 for any series up to a
    million buckets) is exact in either type, so the same numbers, and the matrix is half the
    size of a float64 one (100k x 48: ~7.5 -> ~3.7 ms, and the passes reading it faster)."""
    if series.dtype.kind in "iu" and series.dtype.itemsize <= 4 and series.shape[1] < 2**20:
        masked: npt.NDArray[Any] = series * seen  # x 1 or x 0: np.where's picks, ~1.7x faster
        return masked
    out: npt.NDArray[Any] = np.where(seen, series, 0.0)
    return out


def _none_delivered(masked: npt.NDArray[Any]) -> BoolArray:
    """Rows whose sum is at most 0. Unsigned integers: those with no bucket above 0, counted by
    einsum over the flags' bytes (~1.6 -> ~0.9 ms at 100k x 6 where a sum along short rows is
    slow); others by their sum."""
    if masked.dtype.kind == "u":
        out: BoolArray = flag_counts(masked > 0) == 0
        return out
    return np.asarray(masked.sum(axis=1) <= 0)


def _sums(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`values.sum(axis=1)`: integers by einsum, in the sum's own dtype (exact in any order;
    ~2.3 -> ~1.2 ms at 100k x 24, where a ufunc reduction along short rows is slow), floats
    by the sum itself (its order)."""
    if values.dtype.kind in "iub":
        wide = np.uint64 if values.dtype.kind == "u" else np.int64  # as the sum widens them
        summed: npt.NDArray[Any] = np.einsum("ij->i", values, dtype=wide)
        return summed
    out: npt.NDArray[Any] = values.sum(axis=1)
    return out


def _row_sums(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`np.nansum(values, axis=1)`: integers hold no NaN, so their plain sum (`_sums`: the same
    numbers, without nansum's Python-level checks, ~3 us a call on short arrays)."""
    if values.dtype.kind in "iub":
        return _sums(values)
    return np.asarray(np.nansum(values, 1))


def _observed_hours(
    series: npt.NDArray[Any], seen: BoolArray, active: BoolArray, hours: float
) -> FloatArray:
    """Hours of each deal's series observed in active buckets: counted per row for floats
    (NaN is unknown), the active buckets' hours for every row of an integer matrix."""
    if series.dtype.kind == "f":
        out: FloatArray = seen.sum(axis=1) * hours
        return out
    return np.full(series.shape[0], float(active.sum()) * hours)


def _silent_hours(
    masked: FloatArray, seen: BoolArray, active: BoolArray, hours: float
) -> FloatArray:
    """Active hours since each deal's last delivery in the series (all of its observed hours
    when it never delivered). Two passes over the matrix (a comparison and an argmax); the
    buckets after the last delivery are counted on the 1-D active mask (an unknown bucket
    there counts as silent)."""
    delivered = masked > 0
    n_buckets = delivered.shape[1]
    last = n_buckets - 1 - np.argmax(delivered[:, ::-1], axis=1)
    # Where none delivered, `last` (argmax 0) points at the last bucket, which did not: the
    # flag at `last` is whether any did (a gather, ~1 ms less than a pass at 100k deals).
    ever = delivered[np.arange(delivered.shape[0]), last]
    after = np.concatenate([np.cumsum(active[::-1])[::-1][1:], [0]])  # active buckets after j
    out: FloatArray = np.where(ever, after[last], _seen_counts(seen)) * hours
    return out


def _seen_counts(seen: BoolArray) -> IntArray:
    """Each row's seen buckets: one row's count repeated when every row shares one mask (the
    matrix form, a broadcast: summed per row it is a full pass, ~1.7 ms at 100k x 48)."""
    if seen.ndim == 2 and seen.shape[0] > 0 and seen.strides[0] == 0:
        return np.full(seen.shape[0], int(np.count_nonzero(seen[0])), dtype=np.int64)
    out: IntArray = seen.sum(axis=1)
    return out


def rate_read_from(bucket: timedelta, n_buckets: int) -> int:
    """The first bucket a deal's rate is read on: the series' last day when it holds more
    (one whole daily cycle, so no hour of the day counts twice; 48 h of buckets are
    recommended so that the day before can tell a nightly hole from a stall), else all."""
    per_day = _buckets_a_day(bucket, 0)
    return n_buckets - per_day if per_day and n_buckets > per_day else 0


def _buckets_a_day(bucket: timedelta, tail: int) -> int:
    """Buckets in a day, when a whole number of them makes one and a stall window is shorter
    (0: no daily recurrence is read)."""
    seconds = bucket.total_seconds()
    per_day = round(86_400.0 / seconds) if seconds > 0 else 0
    if per_day <= tail or abs(per_day * seconds - 86_400.0) > 1e-6:
        return 0
    return per_day


def _past_stalls(
    masked: FloatArray,
    seen: BoolArray,
    tail: int,
    offered: npt.NDArray[Any],
    day: int = 0,
) -> BoolArray | None:
    """Per deal and bucket, whether the bucket lies in a stall the deal came out of: a run of at
    least `tail` observed buckets with neither delivery nor supply (bid requests) that a live
    bucket follows (None when no deal has one). Supply counts as life: a deal the plan left
    with nothing to spend bids on nothing, yet its bid requests show the stall is over.
    `masked` and `offered` are 0 where not `seen`: unobserved buckets carry a run without
    adding to it. A stall still running at the end of the series is not one of them (the
    stall outlook speaks for it). Only the rows with `tail` silent buckets at all are read.

    With `day` buckets a day (0: none), a silent bucket whose bucket a day earlier or a day
    later is silent too, with a live bucket between the two, is a daily hole (a deal without
    night supply), carried like an unobserved one: its hours stay in the rate, which is then
    the deal's daily average. A silence longer than a day is a stall all through (nothing
    lived between its buckets a day apart)."""
    live = (masked > 0) | (offered > 0)  # bid requests (0 where not seen; NaN compares False)
    silent = seen & ~live
    # Only rows with `tail` silent buckets can hold a stall, and a daily hole only takes silent
    # buckets away: the holes are looked for in those rows alone (~1 % of a 100k-deal plan's,
    # where three passes over every row cost ~3 ms).
    rows = np.flatnonzero(flag_counts(silent) >= tail)
    if rows.size == 0:
        return None
    live, silent = live[rows], silent[rows]
    if day and silent.shape[1] > day:
        # Silent a day apart with a live bucket between: both are the hole. Without one the
        # two lie in one silence longer than a day, a stall (read as holes, a five-day stall
        # that ended this morning kept its 17 silent hours of the day read in the deal's rate:
        # a third of its rate since; `random_scenarios.py --seed 34` world 0).
        lived = np.cumsum(live, axis=1, dtype=np.int32)
        again = silent[:, day:] & silent[:, :-day] & (lived[:, day - 1 : -1] > lived[:, :-day])
        np.logical_not(again, out=again)
        silent[:, day:] &= again
        silent[:, :-day] &= again
        enough = flag_counts(silent) >= tail
        rows, live, silent = rows[enough], live[enough], silent[enough]
        if rows.size == 0:
            return None
    # Across the deals, a bucket a row (a series has tens of buckets and a plan up to 100k
    # deals: numpy's accumulations along short rows cost several times more), in whole-matrix
    # integer steps (a loop over the buckets cost ~7 numpy calls a bucket, ~5 ms at 100k deals
    # read in blocks). Forward: the quiet buckets of each run so far (all quiet buckets so far
    # less those before the last live bucket); backward: each bucket's run total where the
    # run ends (the next bucket followed by a live one), and whether one does.
    alive, quiet = np.ascontiguousarray(live.T), np.ascontiguousarray(silent.T)
    n_buckets = alive.shape[0]
    quiet_so_far = np.cumsum(quiet, axis=0, dtype=np.int32)
    before = np.maximum.accumulate(np.where(alive, quiet_so_far, 0), axis=0)  # live: none new
    so_far = quiet_so_far - before
    ends = np.zeros(alive.shape, dtype=bool)
    ends[:-1] = alive[1:]  # bucket j's run ends at j, before a live bucket
    end = np.where(ends, np.arange(n_buckets)[:, None], n_buckets)
    end = np.minimum.accumulate(end[::-1], axis=0)[::-1]  # the first end at or after j
    ended = end < n_buckets  # the run the series ends in: still going, never a past stall
    total = np.take_along_axis(so_far, np.minimum(end, n_buckets - 1), axis=0)
    stall = ended & (total >= tail) & quiet
    if not stall.any():
        return None
    out = np.zeros(masked.shape, dtype=bool)
    out[rows] = stall.T
    return out


def _running_stalls(
    stalls: BoolArray | None, masked: FloatArray, seen: BoolArray, stalled: BoolArray
) -> BoolArray | None:
    """`stalls` with the silence each `stalled` deal's series ends in (its observed buckets
    after its last delivery): its rate is then read outside the stall, like a stall it came
    out of, and the stall outlook scales that rate by the share of the time left it is
    expected to deliver in.

    Read over the stall's silent hours, the rate already counts the stall once (a six-hour
    stall takes a quarter off a day's rate) and the outlook counted it again; a stall as long
    as the read window read a rate of 0, so the outlook kept nothing and a whole-campaign
    outage cut every deal to its spend at once, then regrew them from nothing. Where the
    stall fills the read window no bucket is left: the rate is unknown and the deal is read
    on its totals (`with_totals_rate`)."""
    rows = np.flatnonzero(stalled)
    if rows.size == 0:
        return stalls
    delivered = masked[rows] > 0
    n_buckets = delivered.shape[1]
    last = np.where(
        delivered.any(axis=1), n_buckets - 1 - np.argmax(delivered[:, ::-1], axis=1), -1
    )
    after = (np.arange(n_buckets)[None, :] > last[:, None]) & seen[rows]
    out = np.zeros(masked.shape, dtype=bool) if stalls is None else stalls.copy()
    out[rows] |= after
    return out


def _idle_before_plan(
    stalls: BoolArray | None,
    masked: FloatArray,
    offered: npt.NDArray[Any],
    delivery: DeliverySeries,
    plan_applied_at: npt.NDArray[np.int64],
    read_from: int,
    tail: int,
) -> BoolArray | None:
    """A deal that delivered nothing on the read buckets before its current plan was applied,
    while it was offered supply in a stall window or more of them, was idle by the plan's doing
    (left nothing to spend): those buckets measure the plan, not the deal, and are left out of
    its rate like a stall it came out of. Its buckets without supply are not the plan's (a
    night without supply, a stall): the stall scan reads them."""
    start = delivery.window_start.timestamp()
    width = delivery.bucket.total_seconds()
    n = masked.shape[1]
    with np.errstate(invalid="ignore"):
        at = np.floor((plan_applied_at - start) / width)
    first = np.where(plan_applied_at >= 0, at, -1).astype(np.int64)
    rows = np.flatnonzero((first - read_from >= tail) & (first < n))
    if rows.size == 0:
        return stalls
    columns = np.arange(n)[None, :]
    window = (columns < first[rows, None]) & (columns >= read_from)
    supplied = window & (np.asarray(offered[rows]) > 0)  # NaN compares False
    idle = ~((masked[rows] > 0) & window).any(axis=1)
    idle &= np.count_nonzero(supplied, axis=1) >= tail
    if not idle.any():
        return stalls
    out = np.zeros(masked.shape, dtype=bool) if stalls is None else stalls.copy()
    out[rows[idle]] |= supplied[idle]
    return out


def _measured_outside(
    stalls: BoolArray,
    series: FloatArray,
    masked: FloatArray,
    seen: BoolArray,
    offered: npt.NDArray[Any],
    hours: float,
    weights: FloatArray | None,
    measured: tuple[FloatArray, FloatArray, FloatArray],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The rate, avails rate and evidence hours (`measured`, as read over the whole series) of
    the deals that came out of a stall, read anew over the buckets outside their stalls, and
    every deal's standard error over the buckets its rate is read on. The
    rates are per traffic-weighted hour of those buckets (a morning after a night's outage is
    not an average hour), which the caller's conversion to opportunity hours leaves as delivery
    per opportunity hour of them."""
    rate, avails_rate, n_hours = (m.copy() for m in measured)
    rows = np.flatnonzero(stalls.any(axis=1))
    every = rows.size == stalls.shape[0]  # no row copies
    shared = seen.strides[0] == 0  # one mask for all rows (the matrix form)
    part = (seen[:1] if shared else seen[rows]) & ~stalls[rows]
    count = np.count_nonzero(part, axis=1)
    weighted = (count if weights is None else part @ np.asarray(weights, np.float64)) * hours
    spent = np.einsum("ij,ij->i", masked if every else masked[rows], part, dtype=np.float64)
    asked = offered if every else offered[rows]
    if asked.dtype.kind == "f" and np.isnan(asked).any():  # unknown bid requests count 0
        asked = np.where(np.isnan(asked), 0.0, asked)
    asked_total = np.einsum("ij,ij->i", asked, part, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate[rows] = np.where(weighted > 0, spent / weighted, np.nan)
        avails_rate[rows] = np.where(weighted > 0, asked_total / weighted, np.nan)
    n_hours[rows] = count * hours
    if every:
        rate_se = _rate_se(series, part, hours, weights)
    else:
        rate_se = _rate_se(series, seen, hours, weights)
        rate_se[rows] = _rate_se(series[rows], part, hours, weights)
    return rate, avails_rate, n_hours, rate_se


def stall_outlook(stall_hours: FloatArray, remaining_hours: FloatArray) -> FloatArray:
    """Expected share of the remaining time a stalled deal will deliver again.

    A stall's length says how long it is likely to last: with no model of its cause, a stall
    seen for s hours is as likely to last another s as to end sooner (a Pareto, "Lindy",
    hazard: P(still stalled t hours on) = s / (s + t)). The expected share of the R hours left
    with delivery is then 1 - (s/R) ln(1 + R/s): a six-hour stall a week from the end keeps
    88 % of a deal's forecast, two silent days with four left keep 45 %, and a stall as long
    as what is left keeps 31 %. So a night without supply or a short outage moves a little
    money and a long stall drains the deal step by step, instead of one cut to its spend that
    is reversed when supply returns (and, planned from a forecast of 0, may never be)."""
    s = np.maximum(np.asarray(stall_hours, np.float64), 1.0)
    r = np.maximum(np.asarray(remaining_hours, np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = np.where(r > 0, 1.0 - (s / np.where(r > 0, r, 1.0)) * np.log1p(r / s), 0.0)
    out: FloatArray = np.clip(nan_to_num(share, nan=0.0), 0.0, 1.0)
    return out


def _rate_se(
    series: FloatArray, seen: BoolArray, hours: float, weights: FloatArray | None
) -> FloatArray:
    """Standard error of the mean rate per hour: the spread of the traffic-normalised buckets
    over sqrt(count); NaN with fewer than two buckets.

    `np.nanstd`'s own steps (zeros for the unusable buckets, row sums, deviations, squares,
    row sums: the same numbers), without its NaN passes: ~10 passes over a 100k x 48 matrix
    down to 5."""
    w = np.ones(series.shape[1]) if weights is None else np.asarray(weights, np.float64)
    shared = seen.ndim == 2 and seen.shape[0] > 0 and seen.strides[0] == 0  # one row for all
    weighed = w > 0
    usable = (seen[:1] if shared else seen) & weighed[None, :]
    everywhere = bool(usable.all())
    with np.errstate(divide="ignore", invalid="ignore"):
        # Widened, then divided in place: the same numbers as a divide that widens as it goes,
        # which costs twice as much.
        per_hour = series.astype(np.float64)
        np.divide(per_hour, (hours * np.where(weighed, w, 1.0))[None, :], out=per_hour)
        if not everywhere:
            if shared:
                per_hour[:, ~usable[0]] = 0.0
            else:
                per_hour[~usable] = 0.0
        count = np.full(series.shape[0], int(usable.sum())) if shared else usable.sum(axis=1)
        mean = per_hour.sum(axis=1, keepdims=True) / count[:, None]
        if shared:
            # Subtracted everywhere, and the unusable buckets zeroed again: a masked subtract
            # costs more than both.
            np.subtract(per_hour, mean, out=per_hour)
            if not everywhere:
                per_hour[:, ~usable[0]] = 0.0
        else:
            np.subtract(per_hour, mean, out=per_hour, where=True if everywhere else usable)
        np.multiply(per_hour, per_hour, out=per_hour)
        var = per_hour.sum(axis=1) / (count - 1)
        out: FloatArray = np.where(count >= 2, np.sqrt(var) / np.sqrt(count), np.nan)
    return out


TOTALS_HOURLY_CV = 0.5
"""The hour-to-hour spread (coefficient of variation of a deal's traffic-normalised hourly rate)
assumed for a deal known only by its totals: no series, so none is measured. The simulator's
series measure 0.26-0.29 at the median and 0.36-0.46 at the 90th percentile (steady, flash
sale, discount, night pool); 0.5 errs towards holding a cut."""


def with_totals_rate(
    inputs: ForecastInputs,
    spent: FloatArray,
    avails: FloatArray,
    elapsed_hours: float,
) -> ForecastInputs:
    """Deals with no recent series measured by their totals: the rate to date (delivered over
    the opportunity hours elapsed in the flight), bid requests likewise, the hours elapsed as
    the evidence, and a standard error from `TOTALS_HOURLY_CV` and the count of units won.

    Without it such deals have no evidence at all and every forecast falls back to what the deal
    holds: a caller that sends only totals would get plans that never move, however far a deal
    is from its pace. A deal that joined the flight late reads low by the hours it missed."""
    rows = ~np.isfinite(inputs.observed_rate) & inputs.active
    if elapsed_hours <= 0 or not rows.any():
        return inputs
    hours = float(elapsed_hours)
    rate = np.where(rows, spent / hours, inputs.observed_rate)
    per_avail = np.where(avails > 0, avails / hours, np.nan)
    avails_rate = np.where(rows, per_avail, inputs.avails_rate)
    count = np.maximum(inputs.evidence_impressions.astype(np.float64), 1.0)
    se = rate * np.sqrt(TOTALS_HOURLY_CV**2 / hours + 1.0 / count)
    base_se = np.full(rows.shape, np.nan) if inputs.rate_se is None else inputs.rate_se
    return replace(
        inputs,
        observed_rate=rate,
        avails_rate=avails_rate,
        evidence_hours=np.where(rows, hours, inputs.evidence_hours),
        rate_se=np.where(rows, se, base_se),
    )


def starved_rate(
    rate: FloatArray,
    supply_rate: FloatArray,
    to_date_rate: FloatArray,
    starved: BoolArray,
) -> FloatArray:
    """The rate to forecast a deal from when the plan itself (not the market) stopped it: a
    deal with nothing left to spend, or one that delivered nothing without a confident stall.

    Its recent delivery measures the plan, not its supply: read as capacity it would keep the
    deal at its spend for good (a death spiral). Its supply says what it could do: bid requests
    x win rate x units per win, else its own flight-to-date rate (the pace it kept while it had
    budget). The larger of these and the observed rate; the observed rate where neither is known.
    """
    alt = np.where(np.isfinite(supply_rate) & (supply_rate > 0), supply_rate, to_date_rate)
    usable = starved & np.isfinite(alt) & (alt > 0)
    out: FloatArray = np.where(usable, np.fmax(rate, alt), rate)
    return out


def pooled(values: FloatArray) -> FloatArray:
    """Each deal's own figure where it has one (finite, > 0), else the median of those that do
    (NaN when none does): a deal that has not won yet is read at the campaign's typical rate."""
    values = np.asarray(values, np.float64)
    known = np.isfinite(values) & (values > 0)
    if not known.any():
        return values
    out: FloatArray = np.where(known, values, float(np.median(values[known])))
    return out


def hold_unconfident_cuts(
    capacity: IntArray,
    current: IntArray,
    upper: FloatArray,
    eligible: BoolArray,
    lower: FloatArray | None = None,
) -> tuple[IntArray, BoolArray]:
    """Capacity raised back to the deal's current allocation where the forecast's upper
    confidence bound (`upper`, budget units) still reaches it: a cut needs a confident shortfall.

    Without this the forecast's noise moves money: a deal reads short at 06:00 and is cut, reads
    long at 12:00 and the money comes back - each move a reversal and, on a guaranteed deal, a
    seller request. Only `eligible` deals (forecast from their own rate, not stalled, not
    declared) are held; where the cut is confident the forecast stands. Returns the capacity and
    which deals were held."""
    held = eligible & (capacity < current) & (nan_to_num(upper, nan=np.inf) >= current)
    out: IntArray = np.where(held, current, capacity).astype(np.int64)
    if lower is not None:
        # Growth needs evidence too: beyond the current allocation only up to the lower bound.
        grow = eligible & (capacity > current)
        # An unknown spread (NaN: fewer than two buckets, or a rate not read from the series)
        # does not restrict growth.
        low = np.floor(np.clip(nan_to_num(lower, nan=UNITS_LIMIT), 0.0, UNITS_LIMIT))
        out = np.where(grow, np.maximum(current, np.minimum(capacity, low)), out).astype(np.int64)
        held = held | (grow & (out < capacity))
    return out, held


def _flag(values: BoolArray | None, inputs: ForecastInputs) -> BoolArray:
    if values is None:
        return np.zeros(inputs.booked.shape, dtype=bool)
    return np.asarray(values, dtype=bool)


def forecast_capacity(
    inputs: ForecastInputs,
    remaining_opportunity_hours: float | FloatArray,
    policy: Policy,
) -> tuple[IntArray, pd.DataFrame]:
    """Capacity per deal (int64 budget units) and a table of how each was reached."""
    capacity, columns = forecast_columns(inputs, remaining_opportunity_hours, policy)
    return capacity, table_of(columns, RATIONALE_DTYPES)


def participation(inputs: ForecastInputs) -> FloatArray:
    """Each deal's participation rate as the forecast divides by it: unknown (NaN) is 1, and
    below MIN_PARTICIPATION is floored there."""
    out: FloatArray = np.clip(
        nan_to_num(inputs.participation_rate, nan=1.0), MIN_PARTICIPATION, 1.0
    )
    return out


def _per_deal(hours: float | FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """The remaining hours, one per deal: a number repeated (np.full, where broadcast_to is a
    Python-level call), else the caller's array broadcast."""
    if np.ndim(hours) == 0:
        return np.full(shape, float(hours))
    out: FloatArray = np.broadcast_to(np.asarray(hours, np.float64), shape)
    return out


def forecast_columns(
    inputs: ForecastInputs,
    remaining_opportunity_hours: float | FloatArray,
    policy: Policy,
) -> tuple[IntArray, dict[str, Any]]:
    """`forecast_capacity`'s table as its columns (RATIONALE_DTYPES): the plan adds its own
    columns and builds one table, not two."""
    hours = _per_deal(remaining_opportunity_hours, inputs.booked.shape)
    part = participation(inputs)
    unthrottled = inputs.observed_rate / part
    by_rate = unthrottled * hours
    by_avails = inputs.avails_rate * hours * inputs.win_rate * inputs.units_per_win
    declared = inputs.available_inventory >= 0
    inventory = np.where(declared, inputs.available_inventory.astype(np.float64), np.inf)
    forecast = np.fmin(np.fmin(by_rate, nan_to_num(by_avails, nan=np.inf)), inventory)
    # A seller paces its guaranteed deal to the commitment, so the deal's rate (and the bid
    # requests the seller sends) measure that pace, not the supply: planned on them, a deal
    # that keeps pace reads as capacity-bound at its pace and every plan trims it a little
    # further. Keeping pace shows supply of at least what remains of the commitment; the
    # seller's declaration, when there is one, says how much more (or less). Falling behind
    # is evidence of a shortfall: then the rate caps it like any deal.
    keeping = _flag(inputs.seller_paced, inputs) & _flag(inputs.keeping_pace, inputs)
    committed = np.where(declared, inventory, np.fmax(forecast, inputs.booked))
    forecast = np.where(keeping, committed, forecast)

    min_hours = policy.min_evidence.total_seconds() / 3600.0
    measured = np.isfinite(inputs.observed_rate)
    evident = (
        (inputs.evidence_hours >= min_hours)
        & (inputs.evidence_impressions >= forecast_min_impressions(policy))
        & measured
    )
    # Fewer impressions than that, seen over long enough, still measure a shortfall.
    looked = (inputs.evidence_hours >= min_hours) & measured & ~evident
    if looked.any():
        evident |= thin_shortfall(forecast, inputs.booked, inputs.evidence_impressions, looked)
    # A rate read from supply needs no delivery of its own: the plan prevented that delivery,
    # and falling back to the booking would read the starved deal's nothing left as its supply.
    if inputs.from_supply is not None:
        evident |= np.asarray(inputs.from_supply, dtype=bool) & measured
    fallback = np.where(declared, inventory, inputs.booked.astype(np.float64))
    capacity = np.where(evident, forecast, fallback)
    if inputs.stall_hours is not None and policy.stall_outlook:
        outlook = stall_outlook(inputs.stall_hours, hours)
        capacity = np.where(inputs.stalled, capacity * outlook, capacity)
        kept = np.where(inputs.stalled & inputs.active, outlook, np.nan)
        dead = ~inputs.active
    else:
        kept = np.full(capacity.shape, np.nan)
        dead = inputs.stalled | ~inputs.active
    capacity = np.where(dead, 0.0, capacity)
    capacity = np.floor(np.clip(nan_to_num(capacity, nan=0.0), 0.0, UNITS_LIMIT))
    units = capacity.astype(np.int64)

    # Codes into METHODS straight away: no string per deal, no second pass comparing them.
    code = select(
        [
            ~inputs.active,
            inputs.stalled,
            evident & keeping & declared,
            evident & keeping & (forecast > nan_to_num(by_rate, nan=-1.0)),
            evident,
            declared,
        ],
        [_CODE[m] for m in ("inactive", "stalled", "declared", "commitment", "rate", "declared")],
        default=_CODE["booked"],
    )
    rationale = {
        # The codes are METHODS' own (above): nothing to validate.
        "method": pd.Categorical.from_codes(code, dtype=_METHOD_DTYPE, validate=False),
        "observed_rate": inputs.observed_rate,
        "participation_rate": inputs.participation_rate,
        "unthrottled_rate": unthrottled,
        "remaining_hours": hours,
        "by_rate": by_rate,
        "by_avails": by_avails,
        "available_inventory": inputs.available_inventory,
        "booked": inputs.booked,
        "evidence_hours": inputs.evidence_hours,
        "capacity": units,
        "stall_outlook": kept,
    }
    return units, rationale


def method_is(method: pd.Categorical, name: str) -> BoolArray:
    """Which deals' forecast method is `name` (one of METHODS): by code, where comparing the
    labels is a Python compare per deal."""
    out: BoolArray = np.asarray(method.codes) == _CODE[name]
    return out


def confident_cuts(
    inputs: ForecastInputs,
    table: dict[str, Any],
    current: IntArray,
    policy: Policy,
    last_move: npt.NDArray[np.int8] | None = None,
    behind: float = 0.0,
    awaiting: BoolArray | None = None,
) -> tuple[IntArray, BoolArray]:
    """`hold_unconfident_cuts` for the deals forecast from their own rate: the bounds are
    (rate +/- z x standard error) / participation x remaining hours, z = `policy.cut_confidence`
    (0 keeps the raw forecast); then `shrink_to_current`, then `hold_band` (`last_move`: the
    sign of each deal's last recent move, for the wider band against it; `behind`: how far the
    campaign is behind its curve, share of its budget, see BAND_RELEASE_GAP; `awaiting`: deals
    with a seller request unanswered, never held by the band). A declared inventory
    below the allocation is the seller's word and a stall is judged elsewhere: neither is held
    by the confidence bounds (a guaranteed deal's declaration only by the band)."""
    capacity = np.array(table["capacity"], dtype=np.int64)
    declared = inputs.available_inventory
    method = table["method"]
    live = inputs.active & ~inputs.stalled
    eligible = method_is(method, "rate") & live & ((declared < 0) | (declared >= current))
    hours = np.asarray(table["remaining_hours"], dtype=np.float64)
    out, held = capacity, np.zeros(capacity.shape, dtype=bool)
    if policy.cut_confidence > 0 and inputs.rate_se is not None:
        part = participation(inputs)
        spread = policy.cut_confidence * inputs.rate_se
        upper = (inputs.observed_rate + spread) / part * hours
        lower = (inputs.observed_rate - spread) / part * hours
        out, held = hold_unconfident_cuts(capacity, current, upper, eligible, lower)
    # A seller's declaration is the seller's word (and the prior a rate would shrink towards):
    # it is not shrunk.
    out = shrink_to_current(out, current, inputs.evidence_hours, policy, eligible)
    # Seller-paced deals move through seller requests: the band holds them either way.
    paced = _flag(inputs.seller_paced, inputs)
    by_seller = method_is(method, "declared") | method_is(method, "commitment")
    seller = paced & by_seller & live
    if awaiting is not None:
        # A request still unanswered may be accepted after this plan: held at its current
        # commitment, the deal's plan would give the money the request asks for to other deals
        # (an overspend when the seller says yes).
        seller &= ~awaiting
    # Behind its curve, the campaign needs every unit placed where it can be spent.
    buyer = eligible & (behind <= BAND_RELEASE_GAP)
    out, banded = hold_band(
        out,
        current,
        policy.move_band * np.clip(hours / BAND_TAPER_HOURS, 0.0, 1.0),
        policy.reversal_band,
        buyer | seller,
        last_move,
        both_ways=seller,
    )
    return out, held | banded


BAND_TAPER_HOURS = 24.0
"""Over the last opportunity hours of the horizon the dead band narrows to 0 in proportion to
the hours left: a cut held there has no replan left to recover the money (night_pool, 2 seeds:
utilisation 99.5% -> 99.7% of the oracle's with the taper)."""

BAND_RELEASE_GAP = 0.02
"""A campaign behind its curve by more than this share of its budget holds no buyer-paced cut:
money a deal will not spend must move while there is time to spend it. Without this release a
persistent shortfall inside the band is never corrected (night_pool, 2 seeds: utilisation 98.6%
of the oracle's, worst gap 8.9%; with it 99.5%, 5.1%). Guaranteed deals stay in their band:
asking a seller is the move the band exists to spare."""


def hold_band(
    capacity: IntArray,
    current: IntArray,
    band: float | FloatArray,
    reversal_band: float,
    eligible: BoolArray,
    last_move: npt.NDArray[np.int8] | None = None,
    both_ways: BoolArray | None = None,
) -> tuple[IntArray, BoolArray]:
    """A dead band with hysteresis on the capacity estimate of an eligible deal, relative to
    its current allocation (what it still holds): an estimate below it by at most `band` (one
    share, or one per deal) x
    the allocation keeps it (a cut needs a shortfall beyond the band), and a change against
    the deal's last recent move (`last_move` < 0: it was cut, > 0: it was raised) keeps it
    unless it clears `reversal_band`, in either direction. `both_ways` deals (paced by their
    seller, moved by seller requests) are also held when the estimate is above by at most
    `band`: each such move is a request, and most come back with the next day's declaration.

    The estimate still moves by a few percent between replans on noise the standard error
    does not see (the traffic curve's error, a day unlike the last): each cut is budget given
    to the marginal deal, and most of it comes back at the next replan. Growth has no band:
    holding it back leaves the campaign behind its curve (steady, 2 seeds: worst gap 3.6% ->
    4.8% at 0.1), while a held cut keeps money where supply usually returns (gap 3.6% ->
    3.1% at 0.2). Returns the capacity and which deals were held."""
    cur = current.astype(np.float64)
    short = cur - capacity
    if both_ways is not None:
        short = np.where(both_ways, np.abs(short), short)
    held = (short > 0) & (short <= np.maximum(band, 0.0) * cur)
    if last_move is not None and reversal_band > 0:
        against = ((last_move < 0) & (capacity > current)) | (
            (last_move > 0) & (capacity < current)
        )
        held |= against & (np.abs(capacity - cur) <= reversal_band * cur)
    held &= eligible & (current > 0)
    out: IntArray = np.where(held, current, capacity).astype(np.int64)
    return out, held


def shrink_to_current(
    capacity: IntArray,
    current: IntArray,
    evidence_hours: FloatArray,
    policy: Policy,
    eligible: BoolArray,
) -> IntArray:
    """The capacity estimate combined with the current plan's, weighted by evidence:

        capacity' = current + w (capacity - current),   w = H / (H + H0)

    H the hours of delivery the rate was measured on, H0 = `policy.forecast_prior`. The current
    allocation is the last plan's estimate for a deal it holds at its capacity (and the booking
    before any plan), so across replans this is an exponentially weighted estimate (each new
    24 h window weighs 24 / (24 + H0)), shrinking towards the booking when evidence is thin.
    A stall (0), a seller's declaration and the caller's own forecasts are not shrunk."""
    h0 = policy.forecast_prior.total_seconds() / 3600.0
    if h0 <= 0:
        return capacity
    h = np.maximum(nan_to_num(evidence_hours, nan=0.0), 0.0)
    w = h / (h + h0)
    shrunk = np.floor(current + w * (capacity - current.astype(np.float64)))
    out: IntArray = np.where(eligible, np.maximum(shrunk, 0.0), capacity).astype(np.int64)
    return out

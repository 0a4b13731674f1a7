"""PacingTarget message -> PacingSpec, checking every field on the way."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from reallocator.core.model import (
    Budget,
    BudgetChange,
    BudgetChangeBehavior,
    BudgetType,
    Flight,
    PacingMode,
    PacingSpec,
    Period,
)
from reallocator.v1 import common_pb2, pacing_pb2
from reallocator.wire.limits import DEFAULT_LIMITS, MAX_AMOUNT, WireLimits
from reallocator.wire.timefields import to_datetime
from reallocator.wire.violations import Violations

BUDGET_TYPES = {
    common_pb2.BUDGET_TYPE_UNSPECIFIED: BudgetType.SPEND,
    common_pb2.BUDGET_TYPE_SPEND: BudgetType.SPEND,
    common_pb2.BUDGET_TYPE_IMPRESSIONS: BudgetType.IMPRESSIONS,
    common_pb2.BUDGET_TYPE_CLICKS: BudgetType.CLICKS,
    common_pb2.BUDGET_TYPE_COMPLETES: BudgetType.COMPLETES,
    common_pb2.BUDGET_TYPE_REQUESTS: BudgetType.REQUESTS,
}
PERIODS = {
    common_pb2.PERIOD_HOUR: Period.HOUR,
    common_pb2.PERIOD_DAY: Period.DAY,
    common_pb2.PERIOD_WEEK: Period.WEEK,
    common_pb2.PERIOD_MONTH: Period.MONTH,
    common_pb2.PERIOD_LIFETIME: Period.LIFETIME,
}
MODES = {
    common_pb2.PACING_MODE_UNSPECIFIED: PacingMode.EVEN,
    common_pb2.PACING_MODE_ASAP: PacingMode.ASAP,
    common_pb2.PACING_MODE_EVEN: PacingMode.EVEN,
    common_pb2.PACING_MODE_FRONT_LOADED: PacingMode.FRONT_LOADED,
    common_pb2.PACING_MODE_BACK_LOADED: PacingMode.BACK_LOADED,
    common_pb2.PACING_MODE_CUSTOM: PacingMode.CUSTOM,
}
CHANGE_BEHAVIORS = {
    common_pb2.BUDGET_CHANGE_BEHAVIOR_UNSPECIFIED: BudgetChangeBehavior.EVEN,
    common_pb2.BUDGET_CHANGE_BEHAVIOR_EVEN: BudgetChangeBehavior.EVEN,
    common_pb2.BUDGET_CHANGE_BEHAVIOR_SMOOTH: BudgetChangeBehavior.SMOOTH,
}


def _budgets(
    msgs: Sequence[pacing_pb2.Budget], path: str, has_dates: bool, errors: Violations
) -> tuple[Budget, ...]:
    out: list[Budget] = []
    seen: dict[Period, int] = {}
    for i, b in enumerate(msgs):
        p = f"{path}[{i}]"
        period = PERIODS.get(b.period)
        if period is None:
            errors.add(f"{p}.period", "must be one of HOUR, DAY, WEEK, MONTH, LIFETIME")
            continue
        if period in seen:
            errors.add(
                f"{p}.period",
                f"a second {period} budget (first at {path}[{seen[period]}]); "
                "at most one budget per period",
            )
            continue
        seen[period] = i
        if b.amount < 0:
            errors.add(f"{p}.amount", f"must not be negative (got {b.amount})")
            continue
        if b.amount > MAX_AMOUNT:
            errors.add(f"{p}.amount", f"must be at most 2**53 ({MAX_AMOUNT})")
            continue
        if period is Period.LIFETIME and not has_dates:
            errors.add(f"{p}.period", "a LIFETIME budget needs start and end dates (or flights)")
            continue
        out.append(Budget(period, int(b.amount)))
    return tuple(out)


def _unit_interval(
    value: float, path: str, errors: Violations, *, open_low: bool = False, open_high: bool = False
) -> None:
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not math.isfinite(value) or not (low_ok and high_ok):
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        errors.add(path, f"must be in {lo}0, 1{hi} (got {value})")


@dataclass(frozen=True)
class _Decoded:
    """A pacing target found valid (against one snapshot's as_of, so without one as well):
    what every snapshot sending it shares. `changes`: its budget changes (all of them, by
    time), each with its index in the message."""

    spec: PacingSpec
    changes: tuple[tuple[int, BudgetChange], ...]


_DECODED: dict[tuple[bytes, str, WireLimits], _Decoded] = {}
"""Valid pacing targets per message bytes, path and limits: a campaign sends the same target
(budgets, dates, dayparts, curve) with every snapshot, and decoding it cost ~70 us of a 50-deal
snapshot's ~1 ms where its bytes cost ~2 us. Only the checks against as_of run per call. A
bounded handful are kept."""


def decode_pacing(
    msg: pacing_pb2.PacingTarget,
    path: str,
    as_of: datetime | None,
    errors: Violations,
    limits: WireLimits = DEFAULT_LIMITS,
) -> PacingSpec:
    """The pacing target as a PacingSpec; each bad field is added to `errors`."""
    key = (msg.SerializeToString(deterministic=True), path, limits)
    known = _DECODED.get(key)
    if known is not None:
        return _at(known, path, as_of, errors, limits)
    mark = errors.mark()
    changes: list[tuple[int, BudgetChange]] = []
    spec = _decode(msg, path, as_of, errors, limits, changes)
    # Valid against this as_of, it is valid without it, with the same fields: as_of only
    # drops a late budget change, which is a violation, and widens the span checked.
    if not errors.since(mark):
        if len(_DECODED) >= 64:
            _DECODED.clear()
        _DECODED[key] = _Decoded(_read_only(spec), tuple(changes))
    return spec


def _read_only(spec: PacingSpec) -> PacingSpec:
    """`spec` with its arrays read-only, as calls share it."""
    for array in (spec.custom_weights, spec.daypart):
        if array is not None:
            array.flags.writeable = False
    return spec


def _at(
    known: _Decoded, path: str, as_of: datetime | None, errors: Violations, limits: WireLimits
) -> PacingSpec:
    """A shared decoded target checked against `as_of`, as `_decode` checks it: no budget
    change after it (each one named, and left out), then the span (WireLimits.max_span_days)."""
    spec = known.spec
    mark = errors.mark()
    if as_of is not None and known.changes:
        for i, change in sorted(known.changes):
            if change.at > as_of:
                errors.add(
                    f"{path}.budget_changes[{i}].change_time",
                    "must not be after the snapshot's as_of",
                )
        if errors.since(mark):
            kept = tuple(change for _, change in known.changes if change.at <= as_of)
            spec = dataclasses.replace(spec, budget_changes=kept)
    if not errors.since(mark):
        _check_span(
            path, as_of, spec.start, spec.end, spec.flights, spec.budget_changes, limits, errors
        )
    return spec


def _decode(
    msg: pacing_pb2.PacingTarget,
    path: str,
    as_of: datetime | None,
    errors: Violations,
    limits: WireLimits,
    indexed: list[tuple[int, BudgetChange]] | None = None,
) -> PacingSpec:
    """Decodes and checks every field (those against `as_of` when given); `indexed` receives
    the budget changes with their index in the message, by time."""
    mark = errors.mark()
    budget_type = BUDGET_TYPES.get(msg.budget_type)
    if budget_type is None:
        errors.add(f"{path}.budget_type", f"unknown value {msg.budget_type}")
        budget_type = BudgetType.SPEND
    mode = MODES.get(msg.mode)
    if mode is None:
        errors.add(f"{path}.mode", f"unknown value {msg.mode}")
        mode = PacingMode.EVEN
    behavior = CHANGE_BEHAVIORS.get(msg.budget_change_behavior)
    if behavior is None:
        errors.add(f"{path}.budget_change_behavior", f"unknown value {msg.budget_change_behavior}")
        behavior = BudgetChangeBehavior.EVEN

    start = (
        to_datetime(msg.start_time, f"{path}.start_time", errors)
        if msg.HasField("start_time")
        else None
    )
    end = (
        to_datetime(msg.end_time, f"{path}.end_time", errors) if msg.HasField("end_time") else None
    )
    if start is not None and end is not None and end <= start:
        errors.add(
            f"{path}.end_time",
            f"must be after start_time ({end.isoformat()} <= {start.isoformat()})",
        )
    # A campaign LIFETIME budget spans the campaign dates, or else its flights.
    dated = (start is not None and end is not None) or len(msg.flights) > 0
    budgets = _budgets(msg.budgets, f"{path}.budgets", dated, errors)
    if not dated and not any(b.period is not Period.LIFETIME for b in budgets):
        errors.add(
            f"{path}.budgets",
            "a campaign without start and end dates (or flights) needs a periodic budget "
            "(HOUR, DAY, WEEK or MONTH): it is paced over that period",
        )
    for name, count, limit in (
        ("flights", len(msg.flights), limits.max_flights),
        ("budget_changes", len(msg.budget_changes), limits.max_budget_changes),
    ):
        if count > limit:
            errors.add(f"{path}.{name}", f"at most {limit} entries ({name}), got {count}")
            return _empty_spec()
    flights = _flights(msg, path, errors)

    catch_up = msg.even.catch_up_fraction if msg.even.HasField("catch_up_fraction") else 0.95
    _unit_interval(catch_up, f"{path}.even.catch_up_fraction", errors, open_low=True)
    front_share = msg.front_loaded.share if msg.front_loaded.HasField("share") else 0.35
    front_fraction = msg.front_loaded.fraction if msg.front_loaded.HasField("fraction") else 0.25
    back_share = msg.back_loaded.share if msg.back_loaded.HasField("share") else 0.35
    back_fraction = msg.back_loaded.fraction if msg.back_loaded.HasField("fraction") else 0.25
    _unit_interval(front_share, f"{path}.front_loaded.share", errors)
    # fraction 0: the share is an ASAP head (a ceiling), the ad-server front-loaded rule.
    _unit_interval(front_fraction, f"{path}.front_loaded.fraction", errors, open_high=True)
    _unit_interval(back_share, f"{path}.back_loaded.share", errors)
    _unit_interval(
        back_fraction, f"{path}.back_loaded.fraction", errors, open_low=True, open_high=True
    )

    custom = _custom_curve(msg, path, mode, errors)
    daypart = _dayparting(msg, path, errors)
    dated_changes = _budget_changes(msg, path, as_of, {f.flight_id for f in flights}, errors)
    if indexed is not None:
        indexed.extend(dated_changes)
    changes = tuple(change for _, change in dated_changes)

    max_spend: int | None = None
    if msg.HasField("max_spend_micros"):
        if msg.max_spend_micros < 0:
            errors.add(
                f"{path}.max_spend_micros", f"must not be negative (got {msg.max_spend_micros})"
            )
        if msg.max_spend_micros > MAX_AMOUNT:
            errors.add(f"{path}.max_spend_micros", f"must be at most 2**53 ({MAX_AMOUNT})")
        max_spend = int(msg.max_spend_micros)
    paced_period = _paced_period(msg, path, budgets, flights, errors)
    if not errors.since(mark):  # one report per problem: a reversed date is not also too long
        _check_span(path, as_of, start, end, flights, changes, limits, errors)

    return PacingSpec(
        budget_type=budget_type,
        mode=mode,
        start=start,
        end=end,
        budgets=budgets,
        flights=flights,
        front_share=front_share,
        front_fraction=front_fraction,
        back_share=back_share,
        back_fraction=back_fraction,
        catch_up_fraction=catch_up,
        custom_weights=custom,
        daypart=daypart,
        change_behavior=behavior,
        budget_changes=changes,
        max_spend_micros=max_spend,
        paced_period=paced_period,
    )


def _paced_period(
    msg: pacing_pb2.PacingTarget,
    path: str,
    budgets: tuple[Budget, ...],
    flights: tuple[Flight, ...],
    errors: Violations,
) -> Period | None:
    """The budget period the mode's shape paces (None: the longest); it must have a budget."""
    if msg.paced_period == common_pb2.PERIOD_UNSPECIFIED:
        return None
    period = PERIODS.get(msg.paced_period)
    if period is None:
        errors.add(f"{path}.paced_period", f"unknown value {msg.paced_period}")
        return None
    have = {b.period for b in budgets} | {b.period for f in flights for b in f.budgets}
    if period not in have:
        listed = ", ".join(sorted(str(p) for p in have)) or "none"
        errors.add(
            f"{path}.paced_period",
            f"must be the period of one of the budgets ({listed}); got {period}",
        )
        return None
    return period


def _empty_spec() -> PacingSpec:
    """A placeholder for a rejected pacing target (the request fails; nothing reads it)."""
    return PacingSpec(budget_type=BudgetType.SPEND, mode=PacingMode.EVEN)


def _check_span(
    path: str,
    as_of: datetime | None,
    start: datetime | None,
    end: datetime | None,
    flights: tuple[Flight, ...],
    changes: tuple[BudgetChange, ...],
    limits: WireLimits,
    errors: Violations,
) -> None:
    """Work and memory of pacing grow with the time it spans (one calendar slot per hour or
    less): from the earliest to the latest instant it names, as_of included."""
    instants = [t for t in (as_of, start, end) if t is not None]
    instants += [t for f in flights for t in (f.start, f.end)] + [c.at for c in changes]
    if len(instants) < 2:
        return
    span = max(instants) - min(instants)
    if span > timedelta(days=limits.max_span_days):
        errors.add(
            path,
            f"spans {span.days} days from its earliest to its latest date (as_of, start, end, "
            f"flights, budget changes), more than {limits.max_span_days} (max_span_days)",
        )


def _flights(msg: pacing_pb2.PacingTarget, path: str, errors: Violations) -> tuple[Flight, ...]:
    flights: list[tuple[int, Flight]] = []
    ids: dict[str, int] = {}
    for i, f in enumerate(msg.flights):
        p = f"{path}.flights[{i}]"
        if not f.flight_id:
            errors.add(f"{p}.flight_id", "required")
        elif f.flight_id in ids:
            errors.add(
                f"{p}.flight_id",
                f"duplicate flight_id {f.flight_id!r} (first at flights[{ids[f.flight_id]}])",
            )
        else:
            ids[f.flight_id] = i
        if not f.HasField("start_time"):
            errors.add(f"{p}.start_time", "required")
        if not f.HasField("end_time"):
            errors.add(f"{p}.end_time", "required")
        fs = (
            to_datetime(f.start_time, f"{p}.start_time", errors)
            if f.HasField("start_time")
            else None
        )
        fe = to_datetime(f.end_time, f"{p}.end_time", errors) if f.HasField("end_time") else None
        budgets = _budgets(f.budgets, f"{p}.budgets", fs is not None and fe is not None, errors)
        if fs is None or fe is None:
            continue
        if fe <= fs:
            errors.add(
                f"{p}.end_time", f"must be after start_time ({fe.isoformat()} <= {fs.isoformat()})"
            )
            continue
        flights.append((i, Flight(f.flight_id, fs, fe, budgets)))
    flights.sort(key=lambda pair: pair[1].start)
    for (_, a), (j, b) in itertools.pairwise(flights):
        if b.start < a.end:
            errors.add(
                f"{path}.flights[{j}].start_time",
                f"flight {b.flight_id!r} overlaps flight {a.flight_id!r} "
                f"(starts {b.start.isoformat()} before it ends {a.end.isoformat()})",
            )
    return tuple(f for _, f in flights)


MIN_RELATIVE_WEIGHT = 1e-9
"""A custom curve's non-zero hour weighs at least this share of its largest: an hour of
1e-213 made a rate read over it overflow (delivery per opportunity hour) where 0 means what
was meant, no traffic."""


def _custom_curve(
    msg: pacing_pb2.PacingTarget, path: str, mode: PacingMode, errors: Violations
) -> np.ndarray | None:
    weights = np.asarray(msg.custom_curve.hour_weights, dtype=np.float64)
    p = f"{path}.custom_curve.hour_weights"
    if weights.size == 0:
        if mode is PacingMode.CUSTOM:
            errors.add(p, "required by PACING_MODE_CUSTOM (24 or 168 weights)")
        return None
    if weights.size not in (24, 168):
        errors.add(
            p, f"must hold 24 (hour of day) or 168 (hour of week) weights, got {weights.size}"
        )
        return None
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        errors.add(f"{p}[{i}]", f"must be finite and non-negative (got {weights[i]})")
        return None
    if weights.sum() <= 0:
        errors.add(p, "must not be all zero")
        return None
    top = float(weights.max())
    tiny = (weights > 0) & (weights < top * MIN_RELATIVE_WEIGHT)
    if tiny.any():
        i = int(np.flatnonzero(tiny)[0])
        errors.add(
            f"{p}[{i}]",
            f"must be 0 or at least {MIN_RELATIVE_WEIGHT:g} of the largest weight ({top:g}); "
            f"got {weights[i]:g}",
        )
        return None
    return weights


def _dayparting(msg: pacing_pb2.PacingTarget, path: str, errors: Violations) -> np.ndarray | None:
    if not msg.HasField("dayparting"):
        return None
    p = f"{path}.dayparting.windows"
    if len(msg.dayparting.windows) == 0:
        errors.add(p, "at least one active window is required when dayparting is set")
        return None
    active = np.zeros((7, 24), dtype=bool)
    for i, w in enumerate(msg.dayparting.windows):
        # google.type.DayOfWeek: MONDAY=1 .. SUNDAY=7; model rows are Monday=0.
        if not 1 <= w.day <= 7:
            errors.add(f"{p}[{i}].day", "must be MONDAY..SUNDAY")
            continue
        if not 0 <= w.start_hour <= 23:
            errors.add(f"{p}[{i}].start_hour", f"must be in 0-23 (got {w.start_hour})")
            continue
        if not w.start_hour < w.end_hour <= 24:
            errors.add(
                f"{p}[{i}].end_hour", f"must be after start_hour and at most 24 (got {w.end_hour})"
            )
            continue
        span = active[w.day - 1, w.start_hour : w.end_hour]
        if span.any():
            errors.add(f"{p}[{i}]", "overlaps another window on the same day")
            continue
        span[:] = True
    return active


def _budget_changes(
    msg: pacing_pb2.PacingTarget,
    path: str,
    as_of: datetime | None,
    flight_ids: set[str],
    errors: Violations,
) -> list[tuple[int, BudgetChange]]:
    """The valid budget changes with their index in the message, by time."""
    out: list[tuple[int, BudgetChange]] = []
    for i, c in enumerate(msg.budget_changes):
        p = f"{path}.budget_changes[{i}]"
        period = PERIODS.get(c.period)
        if period is None:
            errors.add(f"{p}.period", "must be one of HOUR, DAY, WEEK, MONTH, LIFETIME")
            continue
        if c.old_amount < 0 or c.new_amount < 0:
            field = "old_amount" if c.old_amount < 0 else "new_amount"
            errors.add(f"{p}.{field}", "must not be negative")
            continue
        if c.old_amount > MAX_AMOUNT or c.new_amount > MAX_AMOUNT:
            field = "old_amount" if c.old_amount > MAX_AMOUNT else "new_amount"
            errors.add(f"{p}.{field}", f"must be at most 2**53 ({MAX_AMOUNT})")
            continue
        if c.flight_id and c.flight_id not in flight_ids:
            errors.add(f"{p}.flight_id", f"unknown flight {c.flight_id!r}")
            continue
        if not c.HasField("change_time"):
            errors.add(f"{p}.change_time", "required")
            continue
        at = to_datetime(c.change_time, f"{p}.change_time", errors)
        if at is None:
            continue
        if as_of is not None and at > as_of:
            errors.add(f"{p}.change_time", "must not be after the snapshot's as_of")
            continue
        out.append((i, BudgetChange(at, period, int(c.old_amount), int(c.new_amount), c.flight_id)))
    out.sort(key=lambda item: item[1].at)
    return out

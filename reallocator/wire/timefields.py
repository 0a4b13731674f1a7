"""Timestamp and Duration fields to aware datetimes and timedeltas, reporting bad ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from reallocator.wire.limits import EARLIEST, LATEST, MAX_DURATION
from reallocator.wire.violations import Violations

# Narrower than the Timestamp range (0001-9999): dates and durations computed from a request
# (as_of + schedule_window, start + buckets x width, ...) must stay within Python's datetime.
_MIN_SECONDS = int(EARLIEST.timestamp())
_MAX_SECONDS = int(LATEST.timestamp())


def to_datetime(ts: Timestamp, path: str, errors: Violations) -> datetime | None:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        errors.add(
            path,
            f"timestamp out of range ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}, nanos in [0, 1e9))",
        )
        return None
    return ts.ToDatetime(tzinfo=UTC)


def to_timedelta(
    d: Duration, path: str, errors: Violations, *, positive: bool = False
) -> timedelta | None:
    if abs(d.seconds) > MAX_DURATION.total_seconds() or abs(d.nanos) >= 1_000_000_000:
        errors.add(path, f"duration out of range (at most {MAX_DURATION.days} days)")
        return None
    value = d.ToTimedelta()
    if positive and value <= timedelta(0):
        errors.add(path, "must be positive")
        return None
    if not positive and value < timedelta(0):
        errors.add(path, "must not be negative")
        return None
    return value

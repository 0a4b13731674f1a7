"""Timestamp and Duration fields to aware datetimes and timedeltas, reporting bad ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from reallocator.wire.violations import Violations

_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z, the Timestamp range (google/protobuf docs)
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z


def to_datetime(ts: Timestamp, path: str, errors: Violations) -> datetime | None:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        errors.add(path, "timestamp out of range (0001-01-01 to 9999-12-31, nanos in [0, 1e9))")
        return None
    return ts.ToDatetime(tzinfo=UTC)


def to_timedelta(
    d: Duration, path: str, errors: Violations, *, positive: bool = False
) -> timedelta | None:
    if abs(d.seconds) > 315_576_000_000 or abs(d.nanos) >= 1_000_000_000:
        errors.add(path, "duration out of range")
        return None
    value = d.ToTimedelta()
    if positive and value <= timedelta(0):
        errors.add(path, "must be positive")
        return None
    if not positive and value < timedelta(0):
        errors.add(path, "must not be negative")
        return None
    return value

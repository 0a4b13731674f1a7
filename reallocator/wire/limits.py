"""How much one request may ask of the server: sizes, counts and spans checked before the work
they would cause is done (work and memory grow with them: a flight ending in year 9999 used to
grow the process to 13 GB), and the numeric ranges later arithmetic relies on.

The first group are settings (`ServerConfig`, documented in the .proto comments and the README);
the ranges are fixed, because the computation needs them whatever the deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MIB = 1024 * 1024

MAX_AMOUNT = 2**53
"""Largest amount (micros, impressions, ...) one field, and the sum of one column over all deals,
may hold: the solver's exact range (core/engine/problem.MAX_TOTAL), about 9 billion dollars in
micros. Sums of several such amounts then stay far inside int64."""
MAX_PRICE_MICROS = 10**12
"""Largest eCPM or cost per unit (a million currency units): price x amount stays finite and
far inside what float64 counts exactly enough for pacing."""
MAX_VALUE_PER_UNIT = 1e100
"""Largest value of one budget unit ("any consistent scale", so far beyond any real scale). The
engine plans in a power-of-two unit of its own (core/engine/problem.py), the same plan at every
scale; this keeps the answer's figures (objective, marginal values: value x amount x deals)
finite in float64."""
MAX_STEP_REL = 1e6
"""Largest relative step limit (a share of the allocation; 1e6 is no limit at all): x amount
stays finite."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Timestamps a request may carry: adding any accepted duration stays within Python's datetime."""
MAX_DURATION = timedelta(days=3660)
"""Longest duration a request may carry (ten years)."""


@dataclass(frozen=True)
class WireLimits:
    """Per-request limits (ServerConfig settings of the same names)."""

    max_arrow_bytes: int = 256 * MIB
    """Decompressed bytes all Arrow IPC streams of one request may declare (checked before any
    is inflated): twice the default message limit; a 100k-deal table with a 48 h matrix is
    about 180 MB."""
    max_id_length: int = 256
    """Characters of one identifier (campaign, deal, seller, channel, order, flight)."""
    max_span_days: int = 1830
    """Days from the earliest to the latest instant of a campaign's pacing (dates, flights,
    budget changes and as_of): the pacing calendar grows with it."""
    max_buckets: int = 10_000
    """Buckets of a recent-delivery series."""
    max_budget_changes: int = 1_000
    """Entries of pacing.budget_changes."""
    max_flights: int = 1_000
    """Entries of pacing.flights."""
    max_schedule_window_hours: int = 168
    """Longest ReplanRequest.schedule_window: schedules hold one value per deal and hour."""


DEFAULT_LIMITS = WireLimits()

__all__ = [
    "DEFAULT_LIMITS",
    "EARLIEST",
    "LATEST",
    "MAX_AMOUNT",
    "MAX_DURATION",
    "MAX_PRICE_MICROS",
    "MAX_STEP_REL",
    "MAX_VALUE_PER_UNIT",
    "WireLimits",
]

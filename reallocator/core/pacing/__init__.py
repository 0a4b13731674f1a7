"""Pacing curves and pacing assessment: the pure core behind the AssessPacing RPC.

* `calendar`: the campaign-time grid (active minutes, dayparts, DST-aware periods, opportunity).
* `curves`: expected cumulative delivery for every pacing mode and budget combination.
* `confidence`: the documented 0–100 confidence formula.
* `assessment`: `assess(snapshot)` -> per deal/seller/channel/campaign verdicts and alerts.
"""

from reallocator.core.pacing.assessment import (
    ALERT_COLUMNS,
    ASSESSMENT_COLUMNS,
    UNIT_COLUMN,
    Alert,
    AlertSeverity,
    Assessment,
    EntityKind,
    PacingStatus,
    Reason,
    assess,
)
from reallocator.core.pacing.calendar import (
    PacingCalendar,
    build_calendar,
    campaign_span,
    default_span,
    period_bounds,
)
from reallocator.core.pacing.curves import (
    PacingCurve,
    Shape,
    build_curve,
    deal_expected,
    expected_cumulative,
    expected_share,
    mode_shape,
    opportunity_profile,
    profile,
    remaining_opportunity,
    remaining_opportunity_share,
)

__all__ = [
    "ALERT_COLUMNS",
    "ASSESSMENT_COLUMNS",
    "UNIT_COLUMN",
    "Alert",
    "AlertSeverity",
    "Assessment",
    "EntityKind",
    "PacingCalendar",
    "PacingCurve",
    "PacingStatus",
    "Reason",
    "Shape",
    "assess",
    "build_calendar",
    "build_curve",
    "campaign_span",
    "deal_expected",
    "default_span",
    "expected_cumulative",
    "expected_share",
    "mode_shape",
    "opportunity_profile",
    "period_bounds",
    "profile",
    "remaining_opportunity",
    "remaining_opportunity_share",
]

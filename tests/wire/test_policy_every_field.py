"""Every Policy field survives the wire: a policy with each field away from its default decodes
back to itself, so a field added to the core without its wire form fails here."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from reallocator.core.model import Policy, SeverityTiers
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.violations import Violations

AWAY: dict[str, object] = {
    "over_threshold": 1.25,
    "under_threshold": 0.8,
    "stalled_window": timedelta(hours=8),
    "min_evidence": timedelta(hours=3),
    "min_evidence_impressions": 500,
    "confidence_threshold": 70.0,
    "step_abs": 1_000_000,
    "step_rel": 0.5,
    "step_rel_per_hour": 0.2,
    "step_rel_per_day": 0.6,
    "churn_deal": 1e-7,
    "churn_relative": 0.3,
    "churn_channel": 2e-7,
    "request_tolerance": 0.2,
    "min_change": 5_000,
    "cooldown": timedelta(hours=36),
    "answer_time": timedelta(hours=3),
    "severity": SeverityTiers(material=0.15, critical=0.4),
    "auto_apply_up_to": "MINOR",
    "relax_group": 2.0,
    "relax_commitment": 20.0,
    "relax_limit": 200.0,
    "beyond_forecast": 0.5,
    "forecast_prior": timedelta(hours=48),
    "cut_confidence": 3.0,
    "move_band": 0.1,
    "reversal_band": 0.5,
    "reversal_window": timedelta(hours=12),
    "reversal_churn": 1.0,
    "churn_request": 3.0,
    "pace_ahead": 1.5,
    "protect_deviation": 0.3,
    "protect_window": timedelta(hours=3),
    "cap_unmeetable_minimums": False,
    "stall_outlook": False,
}


def test_every_field_is_listed_here() -> None:
    assert set(AWAY) == {f.name for f in dataclasses.fields(Policy)}


def test_every_field_survives_the_round_trip() -> None:
    away = Policy(**AWAY)  # type: ignore[arg-type]
    for name, value in AWAY.items():
        assert getattr(Policy(), name) != value, name
    errors = Violations()
    assert decode_policy(encode_policy(away), Policy(), errors) == away
    assert not errors.items, errors.items

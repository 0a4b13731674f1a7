"""Policy message -> Policy, unset fields taking the server's defaults."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

from reallocator.core.model import Policy, SeverityTiers
from reallocator.v1 import common_pb2, policy_pb2
from reallocator.wire.limits import MAX_STEP_REL, MAX_VALUE_PER_UNIT
from reallocator.wire.timefields import to_timedelta
from reallocator.wire.violations import FieldViolation, Violations

_AUTO_APPLY = {
    common_pb2.SEVERITY_UNSPECIFIED: "",
    common_pb2.SEVERITY_MINOR: "MINOR",
    common_pb2.SEVERITY_MATERIAL: "MATERIAL",
    common_pb2.SEVERITY_CRITICAL: "CRITICAL",
}


def _number(
    value: float,
    path: str,
    errors: Violations,
    *,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        bound = f"{'>' if low_open else '>='} {low}"
        if not math.isinf(high):
            bound += f" and {'<' if high_open else '<='} {high}"
        errors.add(path, f"must be finite, {bound} (got {value})")
    return value


_DECODED: dict[tuple[bytes, str], tuple[Policy, Policy, tuple[FieldViolation, ...]]] = {}
"""Decoded policies per message bytes and path, with the defaults they were decoded over and
their violations: callers send the same policy (most often none) call after call, and decoding
it costs ~35 us where its bytes cost ~1 us. A Policy is frozen, so calls share it."""


def decode_policy(
    msg: policy_pb2.Policy, defaults: Policy, errors: Violations, path: str = "policy"
) -> Policy:
    """The policy `msg` asks for over `defaults` (its unset fields), checked: each bad field is
    added to `errors`."""
    key = (msg.SerializeToString(deterministic=True), path)
    known = _DECODED.get(key)
    if known is None or known[0] is not defaults:
        found = Violations()
        known = (defaults, _decode(msg, defaults, found, path), tuple(found.items))
        if len(_DECODED) >= 64:
            _DECODED.clear()
        _DECODED[key] = known
    errors.items.extend(known[2])
    return known[1]


def _decode(msg: policy_pb2.Policy, defaults: Policy, errors: Violations, path: str) -> Policy:
    changes: dict[str, object] = {}

    def opt(
        container: object,
        name: str,
        key: str,
        sub: str,
        low: float = 0.0,
        high: float = math.inf,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        if container.HasField(name):  # type: ignore[attr-defined]
            value = getattr(container, name)
            p = f"{path}.{sub}{name}"
            changes[key] = _number(
                value, p, errors, low=low, high=high, low_open=low_open, high_open=high_open
            )

    def duration(
        name: str, key: str, positive: bool = False, container: object = msg, sub: str = ""
    ) -> None:
        if container.HasField(name):  # type: ignore[attr-defined]
            value = to_timedelta(
                getattr(container, name), f"{path}.{sub}{name}", errors, positive=positive
            )
            if value is not None:
                changes[key] = value

    # Thresholds of exactly 1 would flag every deal: the band around "on pace" must be open.
    opt(msg, "over_threshold", "over_threshold", "", low=1.0, low_open=True)
    opt(
        msg,
        "under_threshold",
        "under_threshold",
        "",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    opt(msg, "confidence_threshold", "confidence_threshold", "", low=0.0, high=100.0)
    duration("stalled_window", "stalled_window", positive=True)
    duration("min_evidence", "min_evidence")
    if msg.HasField("min_evidence_impressions"):
        if msg.min_evidence_impressions < 0:
            errors.add(f"{path}.min_evidence_impressions", "must not be negative")
        changes["min_evidence_impressions"] = int(msg.min_evidence_impressions)
    if msg.step_limits.HasField("max_step_abs"):
        if msg.step_limits.max_step_abs < 0:
            errors.add(f"{path}.step_limits.max_step_abs", "must not be negative")
        changes["step_abs"] = int(msg.step_limits.max_step_abs)
    # Upper bounds far past any meaning (a step of a million times the allocation is no limit;
    # churn on the values' own scale, at most MAX_VALUE_PER_UNIT) keep weight x amount finite.
    for name, key in (
        ("max_step_rel", "step_rel"),
        ("max_step_rel_per_hour", "step_rel_per_hour"),
        ("max_step_rel_per_day", "step_rel_per_day"),
    ):
        opt(msg.step_limits, name, key, "step_limits.", high=MAX_STEP_REL)
    opt(msg.churn, "deal", "churn_deal", "churn.", high=MAX_VALUE_PER_UNIT)
    opt(msg.churn, "channel", "churn_channel", "churn.", high=MAX_VALUE_PER_UNIT)
    opt(msg.requests, "rate_tolerance", "request_tolerance", "requests.")
    if msg.requests.HasField("min_change"):
        if msg.requests.min_change < 0:
            errors.add(f"{path}.requests.min_change", "must not be negative")
        changes["min_change"] = int(msg.requests.min_change)
    duration("cooldown", "cooldown", container=msg.requests, sub="requests.")
    duration("answer_time", "answer_time", container=msg.requests, sub="requests.")

    material = (
        msg.severity.material_share
        if msg.severity.HasField("material_share")
        else defaults.severity.material
    )
    critical = (
        msg.severity.critical_share
        if msg.severity.HasField("critical_share")
        else defaults.severity.critical
    )
    _number(material, f"{path}.severity.material_share", errors)
    _number(critical, f"{path}.severity.critical_share", errors)
    if math.isfinite(material) and math.isfinite(critical) and critical < material:
        errors.add(
            f"{path}.severity.critical_share",
            f"must be >= material_share ({critical} < {material})",
        )
    changes["severity"] = SeverityTiers(material=material, critical=critical)

    for name, key in (
        ("group_bounds", "relax_group"),
        ("deal_commitments", "relax_commitment"),
        ("deal_limits", "relax_limit"),
    ):
        opt(msg.relaxation, name, key, "relaxation.", low_open=True, high=MAX_VALUE_PER_UNIT)
    opt(msg, "beyond_forecast", "beyond_forecast", "", low=0.0, high=100.0)
    opt(msg, "pace_ahead", "pace_ahead", "", low=1.0, high=10.0)
    if msg.HasField("cap_unmeetable_minimums"):
        changes["cap_unmeetable_minimums"] = bool(msg.cap_unmeetable_minimums)
    if msg.HasField("stall_outlook"):
        changes["stall_outlook"] = bool(msg.stall_outlook)
    opt(msg, "churn_relative", "churn_relative", "", low=0.0, high=10.0)
    opt(msg, "cut_confidence", "cut_confidence", "", low=0.0, high=10.0)
    duration("forecast_prior", "forecast_prior")
    opt(msg, "protect_deviation", "protect_deviation", "", low=0.0, high=100.0)
    duration("protect_window", "protect_window", positive=True)
    opt(msg, "move_band", "move_band", "", low=0.0, high=1.0)
    opt(msg, "reversal_band", "reversal_band", "", low=0.0, high=1.0)
    duration("reversal_window", "reversal_window")
    opt(msg, "reversal_churn", "reversal_churn", "", low=0.0, high=100.0)
    opt(msg, "churn_request", "churn_request", "", low=0.0, high=100.0)

    auto = _AUTO_APPLY.get(msg.auto_apply.max_severity)
    if auto is None:
        errors.add(
            f"{path}.auto_apply.max_severity", f"unknown value {msg.auto_apply.max_severity}"
        )
    elif auto:
        changes["auto_apply_up_to"] = auto

    policy = dataclasses.replace(defaults, **changes)  # type: ignore[arg-type]
    if policy.under_threshold > policy.over_threshold:
        errors.add(f"{path}.under_threshold", "must not exceed over_threshold")
    if policy.stalled_window <= timedelta(0):
        errors.add(f"{path}.stalled_window", "must be positive")
    return policy


def encode_policy(policy: Policy) -> policy_pb2.Policy:
    """The inverse of decode_policy (every field set), e.g. to check a configured default."""
    msg = policy_pb2.Policy(
        over_threshold=policy.over_threshold,
        under_threshold=policy.under_threshold,
        min_evidence_impressions=policy.min_evidence_impressions,
        confidence_threshold=policy.confidence_threshold,
        step_limits=policy_pb2.StepLimits(
            max_step_abs=policy.step_abs,
            max_step_rel=policy.step_rel,
            max_step_rel_per_hour=policy.step_rel_per_hour,
            max_step_rel_per_day=policy.step_rel_per_day,
        ),
        churn=policy_pb2.ChurnWeights(deal=policy.churn_deal, channel=policy.churn_channel),
        requests=policy_pb2.RequestPolicy(
            rate_tolerance=policy.request_tolerance, min_change=policy.min_change
        ),
        severity=policy_pb2.SeverityTiers(
            material_share=policy.severity.material, critical_share=policy.severity.critical
        ),
        relaxation=policy_pb2.RelaxationOrder(
            group_bounds=policy.relax_group,
            deal_commitments=policy.relax_commitment,
            deal_limits=policy.relax_limit,
        ),
        beyond_forecast=policy.beyond_forecast,
        pace_ahead=policy.pace_ahead,
        cap_unmeetable_minimums=policy.cap_unmeetable_minimums,
        stall_outlook=policy.stall_outlook,
        churn_relative=policy.churn_relative,
        cut_confidence=policy.cut_confidence,
        protect_deviation=policy.protect_deviation,
        move_band=policy.move_band,
        reversal_band=policy.reversal_band,
        reversal_churn=policy.reversal_churn,
        churn_request=policy.churn_request,
    )
    msg.protect_window.FromTimedelta(policy.protect_window)
    msg.stalled_window.FromTimedelta(policy.stalled_window)
    msg.forecast_prior.FromTimedelta(policy.forecast_prior)
    msg.reversal_window.FromTimedelta(policy.reversal_window)
    msg.min_evidence.FromTimedelta(policy.min_evidence)
    msg.requests.cooldown.FromTimedelta(policy.cooldown)
    msg.requests.answer_time.FromTimedelta(policy.answer_time)
    severity = {v: k for k, v in _AUTO_APPLY.items()}
    msg.auto_apply.max_severity = severity.get(
        policy.auto_apply_up_to, common_pb2.SEVERITY_UNSPECIFIED
    )
    return msg

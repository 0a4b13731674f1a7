"""How sure a pacing verdict is: a transparent 0–100 score from four named signals.

Every signal is a log-ratio, so "twice too fast" and "half too slow" weigh alike, measured in
units of the policy's tolerance band: tol_over = ln(over_threshold),
tol_under = -ln(under_threshold).
For a verdict with direction d (+1 OVER, -1 UNDER), with sigma the logistic function, K = 2:

* gap (spend vs expected): x = ln(actual / expected); s_gap = sigma(K (d x / tol - 1)),
  0.5 exactly at the threshold, -> 1 far beyond it. (Ceiling modes use the outlook instead.)
* outlook (remaining budget vs remaining time): y = ln(projected_end / allocation), where the
  projection follows the remaining opportunity curve; s_outlook = sigma(K (d y / tol - 1)).
* trend (of the recent rate): z = ln(recent pace ratio / cumulative pace ratio), i.e. is the
  entity currently falling further behind (or further ahead)? s_trend = sigma(K d z / tol),
  0.5 when it holds its gap.
* evidence: e = min(1, active hours / policy.min_evidence)
                * min(1, impressions (actual or expected) / policy.min_evidence_impressions).

    confidence = 100 * e * (0.5 s_gap + 0.3 s_outlook + 0.2 s_trend)

ON_PACE uses in-band scores instead: s = 1 - sigma(K (|x| / tol_side - 1)) (0.5 at the band's
edge, 0.88 at its centre). A missing signal (no series, zero allocation) counts as 0.5: it neither
supports nor contradicts. STALLED is a Poisson statement: with lambda impressions expected over the
stalled window, seeing none has probability exp(-lambda), so
confidence = 100 (1 - exp(-lambda)) min(1, active hours / policy.min_evidence).
COMPLETED and NOT_STARTED are facts (100).

The components are kept as columns so an alert's rationale can cite them.
"""

from __future__ import annotations

import numpy as np

from reallocator.core.model import Policy, nan_to_num
from reallocator.core.pacing.calendar import BoolArray, FloatArray

K = 2.0
"""Steepness of the logistic scores: one tolerance band past the threshold gives 0.88."""

WEIGHTS = (0.5, 0.3, 0.2)
"""Weights of gap, outlook and trend (they sum to 1)."""

_CLIP = 50.0


def tolerances(policy: Policy) -> tuple[float, float]:
    """(tol_over, tol_under): the policy's band as positive log-ratios."""
    if not policy.over_threshold > 1.0 or not 0.0 < policy.under_threshold < 1.0:
        raise ValueError("need over_threshold > 1 and 0 < under_threshold < 1")
    return float(np.log(policy.over_threshold)), float(-np.log(policy.under_threshold))


def log_ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """ln(num / den), clipped; NaN where the ratio is undefined (0/0, x/0 with x<=0, negatives)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log(num) - np.log(den)
    undefined = ((num == 0) & (den == 0)) | (num < 0) | (den < 0)
    return _clip(np.where(undefined, np.nan, value))


def sigmoid(x: FloatArray) -> FloatArray:
    clipped = _clip(np.asarray(x, dtype=np.float64))
    return np.asarray(1.0 / (1.0 + np.exp(-clipped)), dtype=np.float64)


def _clip(x: FloatArray, lo: float = -_CLIP, hi: float = _CLIP) -> FloatArray:
    """`np.clip(x, lo, hi)`: its min(max(x, lo), hi), NaN kept, as two ufunc calls (the clip
    method's Python wrapper cost more than both on the assessment's short rows)."""
    return np.asarray(np.minimum(np.maximum(x, lo), hi), dtype=np.float64)


def beyond(x: FloatArray, direction: FloatArray, tol_over: float, tol_under: float) -> FloatArray:
    """Score that x lies past the threshold in `direction` (+1 over, -1 under); NaN -> 0.5."""
    tol = np.where(direction > 0, tol_over, tol_under)
    score = sigmoid(K * (direction * x / tol - 1.0))
    return np.where(np.isnan(x), 0.5, score)


def toward(x: FloatArray, direction: FloatArray, tol_over: float, tol_under: float) -> FloatArray:
    """Score that x points in `direction` at all (0.5 at x = 0); NaN -> 0.5."""
    tol = np.where(direction > 0, tol_over, tol_under)
    score = sigmoid(K * direction * x / tol)
    return np.where(np.isnan(x), 0.5, score)


def within(x: FloatArray, tol_over: float, tol_under: float) -> FloatArray:
    """Score that x lies inside the tolerance band (ON_PACE); NaN -> 0.5."""
    tol = np.where(x > 0, tol_over, tol_under)
    score = 1.0 - sigmoid(K * (np.abs(x) / tol - 1.0))
    return np.where(np.isnan(x), 0.5, score)


def scores(
    x: FloatArray,
    judged: BoolArray,
    over: BoolArray,
    shift: FloatArray,
    tol_over: float,
    tol_under: float,
) -> FloatArray:
    """Rows of signals (`x`, one row per signal, one column per verdict) scored at once: where
    the verdict is judged (OVER or UNDER, `over` telling which) `beyond` with a row's `shift`
    1, `toward` with 0; elsewhere `within`. The same IEEE operations per element as those
    three (a direction of +-1 negates exactly, and K = 2 scales exactly), in one logistic pass
    over every row instead of two passes per row (~60 fewer numpy calls an assessment)."""
    ahead = np.where(judged, over, x > 0)  # the side of the band whose tolerance applies
    # d x / tol, or |x| / tol, as one division: x / -tol is -(x / tol) exactly (but for the
    # sign of a zero, which the logistic cannot tell: exp(-0.0) is exp(0.0)).
    tol = np.where(ahead, tol_over, -tol_under)
    score = sigmoid(K * (x / tol - np.where(judged, shift, 1.0)))
    return np.where(np.isnan(x), 0.5, np.where(judged, score, 1.0 - score))


def evidence_time(active_hours: FloatArray, policy: Policy) -> FloatArray:
    """min(1, active hours / policy.min_evidence): young verdicts are noise whatever they say."""
    need_h = policy.min_evidence.total_seconds() / 3600.0
    hours = np.asarray(active_hours, dtype=np.float64)
    if need_h <= 0:
        return np.ones_like(hours)
    return _clip(hours / need_h, 0.0, 1.0)


def evidence(active_hours: FloatArray, events: FloatArray, policy: Policy) -> FloatArray:
    """How much the verdict rests on: hours of active delivery time and impressions, each capped."""
    return evidence_of(evidence_time(active_hours, policy), nan_to_num(events), policy)


def evidence_of(time_evidence: FloatArray, events: FloatArray, policy: Policy) -> FloatArray:
    """`evidence` from its `evidence_time` (which the stalled score reads too) and events
    without NaN (`nan_to_num`'s, which the alert gate reads too)."""
    need_n = float(policy.min_evidence_impressions)
    by_count = _clip(events / need_n, 0.0, 1.0) if need_n > 0 else np.ones_like(events)
    return np.asarray(time_evidence * by_count, dtype=np.float64)


def combine(gap: FloatArray, outlook: FloatArray, trend: FloatArray, ev: FloatArray) -> FloatArray:
    """confidence = 100 * evidence * (0.5 gap + 0.3 outlook + 0.2 trend)."""
    w_gap, w_out, w_trend = WEIGHTS
    return np.asarray(
        100.0 * ev * (w_gap * gap + w_out * outlook + w_trend * trend), dtype=np.float64
    )


def stalled(
    expected_impressions: FloatArray, active_hours: FloatArray, policy: Policy
) -> FloatArray:
    """Poisson confidence that zero impressions is not chance, times the time evidence:
    100 (1 - exp(-lambda)) min(1, hours / min_evidence)."""
    return stalled_of(expected_impressions, evidence_time(active_hours, policy))


def stalled_of(expected_impressions: FloatArray, time_evidence: FloatArray) -> FloatArray:
    """`stalled` from its `evidence_time` (which the evidence score reads too)."""
    lam = np.asarray(expected_impressions, dtype=np.float64)
    chance = -np.expm1(-np.maximum(lam, 0.0))
    return np.asarray(100.0 * chance * time_evidence, dtype=np.float64)

"""The two pacers buying platforms use, vectorised over deals, one decision per step.

Each step a deal's pacer is given its target spend for the step (its remaining allocation spread
over the remaining opportunity curve, see `step_targets`) and picks a *delivery share*: the share
of what the deal could buy at full participation and full bid. It decides before the step and
learns after it, so it lags whatever traffic and prices do meanwhile.

* `ProbabilisticPacer` (throttling): takes part in a share p of the auctions. It keeps an
  exponentially weighted estimate of the unthrottled spend per opportunity hour (observed spend
  / p) and sets p = clip(target / (estimate x next step's opportunity), p_min, 1).
* `DiscountPacer` (bid shading): bids m x the full bid, m in [m_min, 1]; winning m ** elasticity
  of the auctions it would win at the full bid (the price paid is the market's, second price).
  A PID controller moves log m on the relative gap (target - spend) / target, with the integral
  clamped (anti-windup).

Neither ever spends beyond the deal's remaining allocation (the caller caps the step).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from reallocator.sim.scenario import PacerSpec

FloatArray = npt.NDArray[np.float64]

_EPS = 1e-9
_I_MAX = 4.0


def step_targets(remaining: FloatArray, weight: FloatArray, left: FloatArray) -> FloatArray:
    """Target spend per deal for the step: remaining x (opportunity of the step / opportunity
    left in the flight from the step on). Zero when nothing remains; all of it in the last
    step with opportunity."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(left > _EPS, weight / np.where(left > _EPS, left, 1.0), 1.0)
    out: FloatArray = np.maximum(remaining, 0.0) * np.clip(share, 0.0, 1.0)
    return out


class ProbabilisticPacer:
    def __init__(self, n: int, spec: PacerSpec, prior_rate: FloatArray) -> None:
        self.spec = spec
        self.rate = np.asarray(prior_rate, dtype=np.float64).copy()  # unthrottled spend / opp h
        self.share = np.ones(n)

    @property
    def participation(self) -> FloatArray:
        return self.share

    def control(self, target: FloatArray, weight: FloatArray) -> FloatArray:
        expected = self.rate * weight
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(expected > _EPS, target / np.where(expected > _EPS, expected, 1.0), 1.0)
        p = np.clip(p, self.spec.min_participation, 1.0)
        self.share = np.where(target > 0, p, 0.0)
        return self.share

    def observe(self, unthrottled: FloatArray, weight: FloatArray) -> None:
        """`unthrottled`: what the deal would have spent at full participation this step
        (observed spend / participation, as the platform infers it)."""
        seen = (self.share > 0) & (weight > _EPS)
        sample = unthrottled / np.where(weight > _EPS, weight, 1.0)
        a = self.spec.smoothing
        self.rate = np.where(seen, (1.0 - a) * self.rate + a * sample, self.rate)


class DiscountPacer:
    def __init__(self, n: int, spec: PacerSpec) -> None:
        self.spec = spec
        self.log_m = np.full(n, np.log(spec.initial_multiplier))
        self.integral = np.zeros(n)
        self.last_error = np.zeros(n)
        self.share = np.ones(n)

    @property
    def multiplier(self) -> FloatArray:
        out: FloatArray = np.exp(self.log_m)
        return out

    @property
    def participation(self) -> FloatArray:
        """Bid shading takes part in every auction."""
        return np.where(self.share > 0, 1.0, 0.0)

    def control(self, target: FloatArray, weight: FloatArray) -> FloatArray:
        del weight
        share = self.multiplier**self.spec.bid_elasticity
        self.share = np.where(target > 0, share, 0.0)
        return self.share

    def observe_gap(self, target: FloatArray, spend: FloatArray) -> None:
        """PID step on the relative gap of the step just run (deals with a target only)."""
        s = self.spec
        active = target > _EPS
        error = np.where(active, (target - spend) / np.where(active, target, 1.0), 0.0)
        error = np.clip(error, -2.0, 1.0)
        integral = np.clip(self.integral + error, -_I_MAX, _I_MAX)
        delta = s.kp * error + s.ki * integral + s.kd * (error - self.last_error)
        lo, hi = np.log(s.min_multiplier), 0.0
        self.log_m = np.where(active, np.clip(self.log_m + delta, lo, hi), self.log_m)
        self.integral = np.where(active, integral, self.integral)
        self.last_error = np.where(active, error, self.last_error)

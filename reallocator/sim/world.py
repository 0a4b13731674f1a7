"""The world of one simulated campaign: deals, their true supply and prices at every step.

`build_world(scenario, seed)` draws everything random up front, so every strategy run on the
same world meets exactly the same traffic, prices, drift, stalls and seller answers.

Per deal d and step t (all arrays (n_deals, n_steps), money in micros)::

    avails[d, t]     = base_d * w_p(d)(t) * traffic_noise * drift * (1 - stalled) * supply
    price[d, t]      = ecpm_d / 1000 * cpm_level(t) * price_noise * event ** price_elasticity
    full_spend[d, t] = avails * win_rate_d * price        (spend at full participation and bid)

`w_p(t)` is a real hour-of-week opportunity curve (profiles.py) in opportunity hours per step;
the noises are AR(1) in logs with the real series' sigma and phi, mean-corrected to 1; drift is a
log random walk; stalls zero a deal's supply for hours; `supply` is the product of collapses and
events (bursts, shocks). `base_d` is chosen so a deal's nominal capacity (no noise, drift or
events) is its draw; bookings fill the budget in proportion to nominal capacity x value ** tilt,
each deal at most `booking_max` of its nominal capacity.

Value: one unit of spend on deal d is worth `value_per_dollar_d` (an impression is worth its price
x that: the market prices the hour), so the value of a plan is linear in spend per deal and the
hindsight LP over per-deal totals is an exact bound (oracle.py).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.signal import lfilter  # type: ignore[import-untyped]

from reallocator.core.model import GROUP_COLUMNS, INT64_MAX, DealType
from reallocator.sim import profiles
from reallocator.sim.scenario import CHANNEL_NAMES, MICROS, Scenario, Selector, elapsed

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

ACCEPT_DRAWS = 64
"""Seller decisions pre-drawn per deal: request k on a deal uses draw k (mod this)."""


@dataclass(frozen=True, eq=False)
class World:
    scenario: Scenario
    seed: int
    # time grid
    start: datetime
    step: timedelta
    n_steps: int
    how: IntArray  # (T,) local hour of week of each step, Monday 00h = 0
    # ids and structure
    deal_ids: ObjArray
    seller_ids: tuple[str, ...]
    channel_ids: tuple[str, ...]
    seller: IntArray  # (n,) codes
    channel: IntArray
    pg: BoolArray
    deal_type: IntArray  # DealType codes
    # economics
    booked: IntArray  # (n,) micros, sums to the budget
    nominal_capacity: FloatArray
    value_per_dollar: FloatArray
    ecpm: FloatArray  # nominal (contracted) eCPM, micros per thousand impressions
    win_rate: FloatArray
    min_allocation: IntArray
    max_allocation: IntArray
    seller_limits: pd.DataFrame  # GROUP_COLUMNS, budget units
    channel_limits: pd.DataFrame
    # opportunity curves
    campaign_weights: FloatArray  # (168,) the campaign's planned curve (PacingSpec.custom_weights)
    plan_weight: FloatArray  # (T,) campaign opportunity hours per step
    deal_profile: IntArray  # (n,) row of profile_weight
    profile_weight: FloatArray  # (P, T) opportunity hours per step
    profile_left: FloatArray  # (P, T + 1) opportunity hours from step t to the end
    # truth
    avails: FloatArray  # (n, T)
    price: FloatArray  # (n, T) micros per impression
    full_spend: FloatArray  # (n, T)
    capacity_left: FloatArray  # (n, T + 1): sum of full_spend from step t on
    stalled: BoolArray  # (n, T)
    # sellers
    delay_steps: IntArray  # (n,) response delay of the deal's seller
    accept_increase: float
    accept_decrease: float
    accept_resume: float
    declares: BoolArray  # (n,) the seller declares available inventory for this (PG) deal
    inventory_error: FloatArray  # (n, days + 1) multiplicative error of declarations
    accept_draws: FloatArray  # (n, ACCEPT_DRAWS) uniforms
    delivery_noise: FloatArray  # (n, T) seller-side pacing noise (PG)

    @property
    def n_deals(self) -> int:
        return int(self.deal_ids.size)

    @property
    def budget(self) -> int:
        return self.scenario.budget_micros

    @property
    def end(self) -> datetime:
        return self.at(self.n_steps)

    @property
    def step_hours(self) -> float:
        return self.step.total_seconds() / 3600.0

    def at(self, t: int) -> datetime:
        """Step t's instant, in the flight's zone (elapsed time, not wall-clock)."""
        return elapsed(self.start, t * self.step)

    @property
    def value_per_unit(self) -> FloatArray:
        """Value per budget unit (micro) - the engine's objective weight."""
        out: FloatArray = self.value_per_dollar / MICROS
        return out

    @property
    def planned(self) -> FloatArray:
        """(T,) planned campaign spend per step: budget x the curve's share of the step."""
        out: FloatArray = self.budget * self.plan_weight / self.plan_weight.sum()
        return out

    @property
    def true_capacity(self) -> FloatArray:
        """(n,) what each deal could spend over the whole flight at full participation."""
        out: FloatArray = self.capacity_left[:, 0]
        return out


def select(world_like: _Structure, selector: Selector) -> BoolArray:
    """Deals matching a selector (ids, sellers, channels, type; then the `count` largest)."""
    s = world_like
    mask = np.ones(s.deal_ids.size, dtype=bool)
    if selector.deals:
        mask &= np.isin(s.deal_ids, np.array(selector.deals, dtype=object))
    if selector.sellers:
        codes = [s.seller_ids.index(x) for x in selector.sellers if x in s.seller_ids]
        mask &= np.isin(s.seller, codes)
    if selector.channels:
        codes = [s.channel_ids.index(x) for x in selector.channels if x in s.channel_ids]
        mask &= np.isin(s.channel, codes)
    if selector.deal_type == "pg":
        mask &= s.pg
    elif selector.deal_type == "non_pg":
        mask &= ~s.pg
    if selector.count > 0 and mask.sum() > selector.count:
        order = np.argsort(-np.where(mask, s.booked.astype(np.float64), -1.0), kind="stable")
        keep = np.zeros_like(mask)
        keep[order[: selector.count]] = True
        mask &= keep
    return mask


@dataclass(frozen=True, eq=False)
class _Structure:
    deal_ids: ObjArray
    seller_ids: tuple[str, ...]
    channel_ids: tuple[str, ...]
    seller: IntArray
    channel: IntArray
    pg: BoolArray
    booked: IntArray


def _waterfill(weight: FloatArray, cap: FloatArray, total: float) -> FloatArray:
    """x = min(s * weight, cap) with sum x = total (bisection on s); needs sum cap >= total."""
    lo, hi = 0.0, 1.0
    while np.minimum(hi * weight, cap).sum() < total:
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if np.minimum(mid * weight, cap).sum() < total:
            lo = mid
        else:
            hi = mid
    out: FloatArray = np.minimum(hi * weight, cap)
    return out


def _integer_total(x: FloatArray, total: int) -> IntArray:
    """Floor to integers, the remainder to the largest fractions (sum exactly `total`)."""
    base = np.floor(x).astype(np.int64)
    short = int(total - base.sum())
    if short > 0:
        order = np.argsort(-(x - base), kind="stable")[:short]
        base[order] += 1
    return base


def _ar1(rng: np.random.Generator, shape: tuple[int, int], sigma: float, phi: float) -> FloatArray:
    """Stationary AR(1) paths along axis 1, exp-ready: returns x - sigma^2 / 2."""
    if sigma <= 0:
        return np.zeros(shape)
    eps = rng.standard_normal(shape)
    u = eps * (sigma * math.sqrt(max(0.0, 1.0 - phi * phi)))
    u[:, 0] = eps[:, 0] * sigma
    x = np.asarray(lfilter([1.0], [1.0, -phi], u, axis=1), dtype=np.float64)
    out: FloatArray = x - 0.5 * sigma * sigma
    return out


def _ramp(hours: FloatArray, start: float, ramp: float) -> FloatArray:
    """0 before `start`, 1 after `start + ramp`, linear in between."""
    if ramp <= 0:
        return (hours >= start).astype(np.float64)
    out: FloatArray = np.clip((hours - start) / ramp, 0.0, 1.0)
    return out


def build_world(scenario: Scenario, seed: int) -> World:
    sc, pf = scenario, scenario.portfolio
    seq = np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(sc.name.encode()),))
    r_struct, r_traffic, r_price, r_drift, r_stall, r_seller, r_accept, r_noise = (
        np.random.default_rng(s) for s in seq.spawn(8)
    )
    n, n_sellers, n_channels = pf.deals, pf.sellers, pf.channels
    budget = float(sc.budget_micros)

    # --- structure ---------------------------------------------------------------------------
    width = max(3, len(str(n - 1)))
    deal_ids = np.array([f"D{i:0{width}d}" for i in range(n)], dtype=object)
    seller_ids = tuple(f"S{i:02d}" for i in range(n_sellers))
    channel_ids = tuple(
        CHANNEL_NAMES[i] if n_channels <= len(CHANNEL_NAMES) else f"ch{i}"
        for i in range(n_channels)
    )
    seller = np.concatenate(
        [np.arange(n_sellers), r_struct.integers(0, n_sellers, n - n_sellers)]
    ).astype(np.int64)
    home = seller % n_channels
    stray = r_struct.random(n) >= pf.seller_channel_affinity
    channel = np.where(stray, r_struct.integers(0, n_channels, n), home).astype(np.int64)
    pg = r_struct.random(n) < pf.pg_share
    auction = np.where(
        r_struct.random(n) < 0.5, DealType.PREFERRED, DealType.PRIVATE_AUCTION
    ).astype(np.int64)
    deal_type = np.where(pg, int(DealType.PROGRAMMATIC_GUARANTEED), auction).astype(np.int64)
    sizes = r_struct.lognormal(0.0, pf.capacity_sigma, n)
    nominal = sizes / sizes.sum() * pf.capacity_ratio * budget
    channel_value = r_struct.lognormal(0.0, pf.channel_value_sigma, n_channels)
    value = r_struct.lognormal(-0.5 * pf.value_sigma**2, pf.value_sigma, n) * channel_value[channel]
    lo, hi = np.log(pf.ecpm[0]), np.log(pf.ecpm[1])
    ecpm = np.exp(r_struct.uniform(lo, hi, n)) * MICROS
    win = r_struct.uniform(pf.win_rate[0], pf.win_rate[1], n)
    booked_f = _waterfill(nominal * value**pf.value_tilt, pf.booking_max * nominal, budget)
    booked = _integer_total(booked_f, sc.budget_micros)
    structure = _Structure(deal_ids, seller_ids, channel_ids, seller, channel, pg, booked)

    # --- limits ------------------------------------------------------------------------------
    min_alloc = np.zeros(n, dtype=np.int64)
    max_alloc = np.full(n, INT64_MAX, dtype=np.int64)
    for limit in sc.constraints.deals:
        mask = select(structure, limit.select)
        if limit.min_share_of_booked is not None:
            value_min = np.floor(booked * limit.min_share_of_booked).astype(np.int64)
            min_alloc = np.where(mask, value_min, min_alloc)
        if limit.max_share_of_booked is not None:
            value_max = np.ceil(booked * limit.max_share_of_booked).astype(np.int64)
            max_alloc = np.where(mask, value_max, max_alloc)

    def group_table(ids: tuple[str, ...], specs: dict[str, object], what: str) -> pd.DataFrame:
        frame = pd.DataFrame(
            {c: np.full(len(ids), np.nan) for c in GROUP_COLUMNS}, index=pd.Index(ids, name=what)
        )
        for key, spec in specs.items():
            if key not in frame.index:
                continue
            for column in ("min_share", "max_share"):
                v = getattr(spec, column)
                if v is not None:
                    frame.loc[key, column] = float(v)
        return frame.astype(GROUP_COLUMNS)

    seller_limits = group_table(seller_ids, dict(sc.constraints.sellers), "seller_id")
    channel_limits = group_table(channel_ids, dict(sc.constraints.channels), "channel_id")

    # --- time and opportunity ---------------------------------------------------------------
    T = sc.n_steps
    step_h = sc.flight.step_minutes / 60.0
    stamps = pd.date_range(sc.start, periods=T, freq=sc.step)
    local = stamps.tz_convert(sc.flight.timezone)
    how = (local.day_of_week * 24 + local.hour).to_numpy().astype(np.int64)
    hours: FloatArray = np.arange(T, dtype=np.float64) * step_h  # from the flight start
    names = sorted({sc.traffic.profile, *sc.traffic.channel_profiles.values()})
    per_channel = [sc.traffic.channel_profiles.get(c, sc.traffic.profile) for c in channel_ids]
    deal_profile = np.array([names.index(per_channel[c]) for c in channel], dtype=np.int64)
    curves = np.stack([profiles.traffic_weights(name) for name in names])  # (P, 168)
    profile_weight = curves[:, how] * step_h
    profile_left = np.concatenate(
        [np.cumsum(profile_weight[:, ::-1], axis=1)[:, ::-1], np.zeros((len(names), 1))], axis=1
    )
    share = booked / booked.sum()
    campaign_weights = np.bincount(deal_profile, weights=share, minlength=len(names)) @ curves
    plan_weight = campaign_weights[how] * step_h

    # --- truth -------------------------------------------------------------------------------
    tn = profiles.traffic_noise().at_step(sc.flight.step_minutes)
    traffic_log = _ar1(r_traffic, (n, T), tn.sigma * sc.traffic.noise_scale, tn.phi)
    cn = profiles.cpm_noise(sc.traffic.cpm_profile).at_step(sc.flight.step_minutes)
    price_log = _ar1(r_price, (n, T), cn.sigma * sc.traffic.cpm_noise_scale, cn.phi)
    dt = step_h / 24.0
    sig, bias = sc.drift.sigma_per_day, sc.drift.bias_per_day
    steps = r_drift.standard_normal((n, T)) * (sig * math.sqrt(dt)) + (bias - 0.5 * sig * sig) * dt
    drift_log = np.cumsum(steps, axis=1)

    stalled = np.zeros((n, T), dtype=bool)
    weeks = T * step_h / 168.0
    counts = r_stall.poisson(sc.stalls.rate_per_week * weeks, n)
    for d in np.repeat(np.arange(n), counts):  # a handful of random stalls
        a = int(r_stall.integers(0, T))
        length = max(1, round(r_stall.exponential(sc.stalls.mean_hours) / step_h))
        stalled[d, a : a + length] = True
    for ev in sc.stalls.events:
        mask = select(structure, ev.select)
        a = round(ev.start_hour / step_h)
        b = round((ev.start_hour + ev.hours) / step_h)
        stalled[mask, max(0, a) : max(0, b)] = True

    supply = np.ones((n, T))
    for col in sc.collapses:
        mask = select(structure, col.select)
        down = _ramp(hours, col.start_hour, col.ramp_hours)
        if col.end_hour is not None:
            down = down * (1.0 - _ramp(hours, col.end_hour, col.ramp_hours))
        supply[mask] *= 1.0 - (1.0 - col.level) * down
    price_event = np.ones((n, T))
    for event in sc.events:
        mask = select(structure, event.select)
        since: FloatArray = (hours - event.start_hour) * 60.0
        m = np.where(since >= 0, profiles.event_shape(event.shape, since), 1.0)
        m = np.maximum(0.0, 1.0 + event.amplitude * (m - 1.0))
        supply[mask] *= m
        price_event[mask] *= m**event.price_elasticity

    cpm_level = profiles.cpm_levels(sc.traffic.cpm_profile)[how]
    unit_price = ecpm / 1000.0  # micros per impression, nominal
    nominal_spend_per_base = (profile_weight[deal_profile] * cpm_level).sum(axis=1) * unit_price
    base = nominal / (win * nominal_spend_per_base)
    avails = (
        base[:, None]
        * profile_weight[deal_profile]
        * np.exp(traffic_log + drift_log)
        * supply
        * ~stalled
    )
    price = unit_price[:, None] * cpm_level[None, :] * np.exp(price_log) * price_event
    full_spend = avails * win[:, None] * price
    capacity_left = np.concatenate(
        [np.cumsum(full_spend[:, ::-1], axis=1)[:, ::-1], np.zeros((n, 1))], axis=1
    )

    # --- sellers -----------------------------------------------------------------------------
    sp = sc.sellers
    delay_h = r_seller.uniform(sp.delay_hours[0], sp.delay_hours[1], n_sellers)
    delay_steps = np.round(delay_h / step_h).astype(np.int64)[seller]
    declares = (r_seller.random(n_sellers) < sp.declare_inventory)[seller] & pg
    days = math.ceil(T * step_h / 24.0) + 1
    inventory_error = r_seller.lognormal(
        -0.5 * sp.inventory_noise**2, sp.inventory_noise, (n, days)
    )
    accept_draws = r_accept.random((n, ACCEPT_DRAWS))
    sd = sp.delivery_noise
    delivery_noise = np.exp(r_noise.standard_normal((n, T)) * sd - 0.5 * sd * sd)

    return World(
        scenario=sc,
        seed=seed,
        start=sc.start,
        step=sc.step,
        n_steps=T,
        how=how,
        deal_ids=deal_ids,
        seller_ids=seller_ids,
        channel_ids=channel_ids,
        seller=seller,
        channel=channel,
        pg=pg,
        deal_type=deal_type,
        booked=booked,
        nominal_capacity=nominal,
        value_per_dollar=value,
        ecpm=ecpm,
        win_rate=win,
        min_allocation=min_alloc,
        max_allocation=max_alloc,
        seller_limits=seller_limits,
        channel_limits=channel_limits,
        campaign_weights=campaign_weights,
        plan_weight=plan_weight,
        deal_profile=deal_profile,
        profile_weight=profile_weight,
        profile_left=profile_left,
        avails=avails,
        price=price,
        full_spend=full_spend,
        capacity_left=capacity_left,
        stalled=stalled,
        delay_steps=delay_steps,
        accept_increase=sp.accept_increase,
        accept_decrease=sp.accept_decrease,
        accept_resume=sp.accept_resume,
        declares=declares,
        inventory_error=inventory_error,
        accept_draws=accept_draws,
        delivery_noise=delivery_noise,
    )

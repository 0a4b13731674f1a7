"""The world of `auction_pool.py`: a shared daily pool of deals, its supply minute by minute and
the auctions each deal's bidder meets. Written without reallocator's simulator (nothing from
reallocator.sim, .core, .batch or .replay): an independent check needs independent assumptions.

Per deal d (all draws from one seeded generator, so every strategy meets the same world):

- a channel (display, video, ctv, audio) and one of six sellers; a clearing-price CPM c_d
  (lognormal, median by channel: display 4, audio 9, video 14, ctv 24 USD, spread 0.25);
- auctions: each bid opportunity has a clearing price ~ lognormal(ln c_d, 0.45); the deal bids
  b_d = c_d exp(0.45 z_d), z_d ~ U(-0.3, 1.0), so it wins 38-84 % of the auctions it enters,
  and pays the clearing price (second price) per impression (CPM / 1000);
- a diurnal curve: a random mixture (Dirichlet) of four shapes over the hour of day (day peak
  at 13:00, evening peak at 20:00, morning-commute peak at 08:00, flat), normalised to mean 1;
  `night_share` of the deals (default 0.4) have NO supply from 00:00 to 06:00 (their curve is
  zero there: "night supply" deals);
- a level: its expected spend per day at full participation is booking x a lognormal(ln 1.2,
  0.75) factor clipped to [0.1, 4] (the pool as a whole can buy ~1.2-1.7x its budget, seed to
  seed; about a third of the deals cannot spend their booked share, a few several times it, so
  the fixed split can place at most ~78-90 % of the pool);
- day-to-day drift: the level follows a random walk of N(0, 0.05) in log per day; hourly noise:
  a lognormal(0, 0.15) factor per deal and hour; then Poisson opportunities per minute;
- events: one deal (with supply) loses 95 % of its supply for 4-8 h on one day (a collapse),
  another gets 3x its supply for 2 h (a burst).

Only opportunities the bid can win (clearing price <= bid) are kept one by one (their price and
a uniform number the pacer's participation draw compares with); the others are counted per
deal and minute. `capacity[d, t]` is what deal d could buy in minute t at full participation
(the sum of its winnable prices, USD): the hindsight reference and the "had supply later" checks
read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri  # type: ignore[import-untyped]

MINUTES = 1440
CHANNELS = ("display", "video", "ctv", "audio")
CHANNEL_CPM = {"display": 4.0, "video": 14.0, "ctv": 24.0, "audio": 9.0}
SELLERS = 6
PRICE_SIGMA = 0.45

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _bump(hours: FloatArray, centre: float, width: float) -> FloatArray:
    d = np.minimum(np.abs(hours - centre), 24 - np.abs(hours - centre))
    return np.asarray(0.15 + np.exp(-0.5 * (d / width) ** 2), dtype=np.float64)


def shapes() -> FloatArray:
    """The base diurnal shapes, 4 x 1440 (per minute of the day), each of mean 1."""
    h = np.asarray((np.arange(MINUTES) + 0.5) / 60.0, dtype=np.float64)
    base = np.stack(
        [_bump(h, 13.0, 3.5), _bump(h, 20.5, 2.5), _bump(h, 8.0, 2.0), np.ones(MINUTES)]
    )
    return np.asarray(base / base.mean(axis=1, keepdims=True), dtype=np.float64)


@dataclass
class World:
    """One seeded world: deals, their auctions and every opportunity of the run."""

    seed: int
    n_deals: int
    days: int
    budget: float  # the pool's daily budget, USD
    booking: FloatArray  # per deal, USD per day (the fixed split)
    channel: list[str]
    seller: list[str]
    cpm: FloatArray  # median clearing price, USD CPM
    bid: FloatArray  # the bid, USD CPM
    win_prob: FloatArray  # P(clearing price <= bid)
    value: FloatArray  # value per USD spent (1 for all in the equal-value variant)
    night: NDArray[np.bool_]  # no supply 00:00-06:00
    curve: FloatArray  # deals x 1440, the true mean diurnal shape (mean 1)
    avails: IntArray  # deals x T opportunities per minute
    winnable: IntArray  # deals x T opportunities the bid wins
    capacity: FloatArray  # deals x T, USD a deal could buy at full participation
    offsets: IntArray  # T + 1: minute t's winnable opportunities are [offsets[t], offsets[t+1])
    opp_deal: NDArray[np.int32]  # per winnable opportunity, its deal (sorted by deal within t)
    opp_price: FloatArray  # its clearing price, USD per impression
    opp_u: NDArray[np.float32]  # its participation draw
    prior_avails: FloatArray  # per deal, the pacer's prior of its opportunities per minute
    prior_spa: FloatArray  # per deal, the pacer's prior of spend (USD) per opportunity entered
    events: list[str]

    @property
    def minutes(self) -> int:
        return self.days * MINUTES

    def day_capacity(self) -> FloatArray:
        """days x deals: USD each deal could buy each day at full participation."""
        return np.asarray(
            self.capacity.reshape(self.n_deals, self.days, MINUTES).sum(axis=2).T,
            dtype=np.float64,
        )


def build_world(
    seed: int,
    n_deals: int = 30,
    days: int = 3,
    budget: float = 9_000.0,
    varied_values: bool = False,
    night_share: float = 0.4,
) -> World:
    rng = np.random.default_rng([seed, 7919])
    booking = np.full(n_deals, budget / n_deals)
    channel = [CHANNELS[i] for i in rng.integers(0, len(CHANNELS), n_deals)]
    seller = [f"seller-{i}" for i in rng.integers(0, SELLERS, n_deals)]
    cpm = np.array([CHANNEL_CPM[c] for c in channel]) * np.exp(rng.normal(0, 0.25, n_deals))
    z = rng.uniform(-0.3, 1.0, n_deals)
    bid = cpm * np.exp(PRICE_SIGMA * z)
    win_prob = ndtr(z)
    # E[price 1{price <= bid}] per opportunity, USD per impression (lognormal partial mean)
    mean_paid = cpm / 1000 * np.exp(PRICE_SIGMA**2 / 2) * ndtr(z - PRICE_SIGMA)
    value = (
        np.clip(np.exp(rng.normal(0.0, 0.4, n_deals)), 0.5, 2.0)
        if varied_values
        else np.ones(n_deals)
    )
    # Rng draws below are made in both variants alike: only the values differ between them.
    mix = rng.dirichlet(np.full(4, 0.6), n_deals)
    curve = mix @ shapes()
    night = rng.random(n_deals) < night_share
    night_mask = (np.arange(MINUTES) >= 6 * 60).astype(np.float64)
    curve = np.where(night[:, None], curve * night_mask, curve)
    curve = curve / curve.mean(axis=1, keepdims=True)
    level = booking * np.clip(np.exp(rng.normal(np.log(1.2), 0.75, n_deals)), 0.1, 4.0)
    rate = level / mean_paid / MINUTES  # opportunities per minute at curve 1
    drift = np.exp(np.cumsum(rng.normal(0, 0.05, (n_deals, days)), axis=1))
    hourly = np.exp(rng.normal(0, 0.15, (n_deals, days * 24)))
    lam = (
        np.tile(curve, days)
        * rate[:, None]
        * np.repeat(drift, MINUTES, axis=1)
        * np.repeat(hourly, 60, axis=1)
    )
    events = []
    live = np.flatnonzero(~night)
    collapse_deal = int(rng.choice(live))
    c_day = int(rng.integers(0, days))
    c_start = int(rng.integers(8, 14))
    c_len = int(rng.integers(4, 9))
    a = c_day * MINUTES + c_start * 60
    lam[collapse_deal, a : a + c_len * 60] *= 0.05
    events.append(
        f"collapse: deal d{collapse_deal:02d} day {c_day + 1} {c_start:02d}:00-"
        f"{c_start + c_len:02d}:00 at 5% of its supply"
    )
    burst_deal = int(rng.choice(np.setdiff1d(live, [collapse_deal])))
    b_day = int(rng.integers(0, days))
    b_start = int(rng.integers(10, 20))
    a = b_day * MINUTES + b_start * 60
    lam[burst_deal, a : a + 120] *= 3.0
    events.append(
        f"burst: deal d{burst_deal:02d} day {b_day + 1} {b_start:02d}:00-{b_start + 2:02d}:00 "
        f"at 3x its supply"
    )
    avails = rng.poisson(lam).astype(np.int64)
    winnable = rng.binomial(avails, win_prob[:, None]).astype(np.int64)
    # Winnable opportunities minute-major, deal-minor: minute t is one contiguous slice.
    counts = winnable.T.ravel()
    deal_of = np.tile(np.arange(n_deals, dtype=np.int32), days * MINUTES)
    opp_deal = np.repeat(deal_of, counts)
    # A clearing price below the bid: lognormal truncated above at the bid (inverse CDF).
    q = rng.random(opp_deal.size) * win_prob[opp_deal]
    opp_price = cpm[opp_deal] / 1000 * np.exp(PRICE_SIGMA * ndtri(np.maximum(q, 1e-12)))
    opp_u = rng.random(opp_deal.size, dtype=np.float32)
    offsets = np.concatenate(([0], np.cumsum(winnable.sum(axis=0)))).astype(np.int64)
    flat = np.repeat(np.arange(days * MINUTES * n_deals), counts)
    per_minute = np.bincount(flat, weights=opp_price, minlength=days * MINUTES * n_deals)
    capacity = np.asarray(per_minute.reshape(days * MINUTES, n_deals).T, dtype=np.float64).copy()
    # The pacer's priors: it knows its deal's average volume and price only roughly.
    prior_avails = rate * np.exp(rng.normal(0, 0.2, n_deals)) * drift[:, 0]
    prior_spa = mean_paid * np.exp(rng.normal(0, 0.15, n_deals))
    return World(
        seed=seed,
        n_deals=n_deals,
        days=days,
        budget=budget,
        booking=booking,
        channel=channel,
        seller=seller,
        cpm=cpm,
        bid=bid,
        win_prob=win_prob,
        value=value,
        night=night,
        curve=curve,
        avails=avails,
        winnable=winnable,
        capacity=capacity,
        offsets=offsets,
        opp_deal=opp_deal,
        opp_price=opp_price,
        opp_u=opp_u,
        prior_avails=prior_avails,
        prior_spa=prior_spa,
        events=events,
    )


def hindsight(world: World) -> tuple[FloatArray, FloatArray]:
    """Per day, the best a planner knowing every deal's realised capacity could do: the pool
    filled by value (the LP max sum v x, sum x <= budget, 0 <= x <= capacity, solved greedily).
    Returns (spend per day, value per day)."""
    caps = world.day_capacity()
    order = np.argsort(-world.value, kind="stable")
    spend = np.zeros(world.days)
    value = np.zeros(world.days)
    for day in range(world.days):
        left = world.budget
        for d in order:
            take = min(left, caps[day, d])
            spend[day] += take
            value[day] += take * world.value[d]
            left -= take
    return spend, value

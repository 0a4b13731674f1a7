"""Random but realistic allocation problems, for tests and the solver benchmark.

One family (the one the NOTES measurements use): deals spread over `n_sellers` sellers and
`n_channels` channels (a seller may sell in several channels), concave value curves of
`n_segments` segments, capacity-limited upper bounds, some commitments (lower bounds), seller
caps and channel minimums loose enough that the instance is feasible by construction.
"""

from __future__ import annotations

import numpy as np

from reallocator.core.engine.problem import NO_MAX, AllocationProblem


def random_problem(
    n_deals: int,
    *,
    n_sellers: int = 100,
    n_channels: int = 10,
    n_segments: int = 3,
    seed: int = 0,
    lam_deal: float = 0.02,
    lam_channel: float = 0.05,
    money_cap_share: float | None = None,
    time_limit: float = 60.0,
) -> AllocationProblem:
    """A feasible instance; `money_cap_share` adds a money cap at that share of the money the
    upper bounds would cost (a binding cap for shares below ~0.9)."""
    rng = np.random.default_rng(seed)
    n = n_deals
    seller = rng.integers(0, n_sellers, n).astype(np.int32)
    channel = rng.integers(0, n_channels, n).astype(np.int32)
    current = rng.integers(1_000, 1_000_000, n).astype(np.int64)
    current[rng.random(n) < 0.1] = 0  # new deals start at zero
    ub = (current * rng.uniform(0.3, 2.5, n)).astype(np.int64) + rng.integers(0, 200_000, n)
    lb = np.minimum((current * rng.uniform(0.0, 0.4, n)).astype(np.int64), ub)
    lb[rng.random(n) < 0.5] = 0
    total = int(current.sum() * 1.05)

    seller_ub = np.bincount(seller, weights=ub, minlength=n_sellers)
    seller_lb = np.bincount(seller, weights=lb, minlength=n_sellers)
    seller_max = np.maximum(seller_lb, 0.8 * seller_ub).astype(np.int64)
    seller_max[rng.random(n_sellers) < 0.5] = NO_MAX
    seller_min = np.zeros(n_sellers, np.int64)
    channel_ub = np.bincount(channel, weights=ub, minlength=n_channels)
    channel_min = (0.2 * channel_ub).astype(np.int64)
    channel_max = np.full(n_channels, NO_MAX, np.int64)

    base = rng.uniform(0.5, 2.0, n)
    decay = np.cumprod(
        np.concatenate([np.ones((n, 1)), rng.uniform(0.4, 0.9, (n, n_segments - 1))], 1), 1
    )
    slopes = base[:, None] * decay
    widths = np.maximum(current, 10_000)[:, None] * rng.uniform(0.3, 0.8, (n, n_segments - 1))
    breaks = np.cumsum(widths, axis=1).astype(np.int64)

    price_num = None
    money_cap = None
    if money_cap_share is not None:
        price_num = rng.integers(500, 5_000, n).astype(np.int64)  # per 1000 units
        money_cap = int(money_cap_share * float(price_num @ ub.astype(np.float64)) / 1000)
        money_cap = max(money_cap, int(price_num @ lb.astype(np.float64) / 1000) + 1)
    return AllocationProblem(
        current=current,
        lb=lb,
        ub=ub,
        seller=seller,
        channel=channel,
        seller_min=seller_min,
        seller_max=seller_max,
        channel_min=channel_min,
        channel_max=channel_max,
        total=total,
        value_slopes=slopes,
        value_breaks=breaks,
        lam_deal=lam_deal,
        lam_channel=lam_channel,
        money_cap=money_cap,
        price_num=price_num,
        price_den=1000,
        time_limit=time_limit,
    )

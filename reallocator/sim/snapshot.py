"""What the buying platform would report at a replan: the run's state as a `CampaignSnapshot`.

Deals table (DEAL_COLUMNS): allocation is the buyer's current allocation for non-guaranteed
deals and the seller's commitment for PG deals; delivery columns are flight to date;
``participation_rate`` is the probabilistic pacer's share of auctions (1.0 for the discount pacer,
which takes part in every auction and shades its bid; NaN for PG deals, paced by the seller);
``available_inventory`` is the seller's declaration where it declares (PG), else -1; the price is
the nominal eCPM. Recent delivery: the last 48 hours in hourly buckets, as the proto recommends
(the forecast reads the last day; the day before tells a nightly hole from a stall). Pacing:
the campaign's lifetime budget, CUSTOM mode on the campaign's hour-of-week opportunity curve
(the curve the pacers follow and the metrics' plan uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from reallocator.core.model import (
    DEAL_COLUMNS,
    Budget,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DeliverySeries,
    PacingMode,
    PacingSpec,
    Period,
    Policy,
    PriceKind,
)
from reallocator.sim.sellers import declared_inventory
from reallocator.sim.world import BoolArray, FloatArray, IntArray, World

SERIES_HOURS = 48
PG_WIN_RATE = 0.95
"""Share of a PG deal's bid requests the buyer wins (it bids the fixed price on all of them)."""


@dataclass
class RunState:
    """Mutable state of one strategy's run: per-deal totals to date and the step history."""

    alloc: FloatArray  # buyer-side allocation (flight total), micros
    committed: FloatArray  # seller commitments (PG deals)
    spent: FloatArray
    impressions: FloatArray
    avails: FloatArray
    bids: FloatArray
    wins: FloatArray
    participation: FloatArray
    plan_applied_at: IntArray
    delivered_at_plan: IntArray
    spend_hist: FloatArray  # (n, T)
    imps_hist: FloatArray
    avails_hist: FloatArray
    wins_hist: FloatArray
    cap_hist: FloatArray  # (n, T) effective allocation (alloc, or commitment for PG) per step
    pace: FloatArray  # (n,) multiple of the curve target the pacer aims at (plan AHEAD > 1)
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def initial(cls, world: World) -> RunState:
        n, T = world.n_deals, world.n_steps
        booked = world.booked.astype(np.float64)

        def zeros() -> FloatArray:
            return np.zeros(n)

        def hist() -> FloatArray:
            return np.zeros((n, T))

        return cls(
            alloc=booked.copy(),
            committed=booked.copy(),
            spent=zeros(),
            impressions=zeros(),
            avails=zeros(),
            bids=zeros(),
            wins=zeros(),
            participation=np.ones(n),
            plan_applied_at=np.full(n, -1, dtype=np.int64),
            delivered_at_plan=np.zeros(n, dtype=np.int64),
            spend_hist=hist(),
            imps_hist=hist(),
            avails_hist=hist(),
            wins_hist=hist(),
            cap_hist=hist(),
            pace=np.ones(n),
        )

    def effective_allocation(self, pg: BoolArray) -> FloatArray:
        out: FloatArray = np.where(pg, self.committed, self.alloc)
        return out


def current_totals(world: World, state: RunState) -> IntArray:
    """Allocation per deal as the snapshot reports it (integer budget units)."""
    out: IntArray = np.floor(state.effective_allocation(world.pg) + 1e-6).astype(np.int64)
    return out


def _series(world: World, state: RunState, step: int) -> DeliverySeries | None:
    sph = world.scenario.steps_per_hour
    hours = min(SERIES_HOURS, step // sph)
    if hours <= 0:
        return None
    a = step - hours * sph
    n = world.n_deals

    def hourly(hist: FloatArray) -> FloatArray:
        """Hourly sums in whole units, as a platform reports them (and the wire carries)."""
        out: FloatArray = np.floor(hist[:, a:step].reshape(n, hours, sph).sum(axis=2) + 1e-6)
        return out

    return DeliverySeries(
        window_start=world.at(a),
        bucket=timedelta(hours=1),
        spend_micros=hourly(state.spend_hist),
        impressions=hourly(state.imps_hist),
        avails=hourly(state.avails_hist),
        wins=hourly(state.wins_hist),
    )


def pacing_spec(world: World) -> PacingSpec:
    return PacingSpec(
        budget_type=BudgetType.SPEND,
        mode=PacingMode.CUSTOM,
        start=world.start,
        end=world.end,
        budgets=(Budget(Period.LIFETIME, world.budget),),
        custom_weights=world.campaign_weights.copy(),
    )


def build_snapshot(world: World, state: RunState, step: int, policy: Policy) -> CampaignSnapshot:
    n = world.n_deals
    # Whole micros, as a platform reports them, rounded up: a plan that read the fractions
    # of a micro its deals had spent as unspent placed them again, and a 60-deal campaign
    # replanned hourly ended 30 micros over its budget (random world seed 11 #4).
    spent = np.ceil(state.spent - 1e-6).astype(np.int64)
    participation = np.where(world.pg, np.nan, state.participation)
    inventory = np.where(world.pg, declared_inventory(world, step), -1)
    data = {
        "deal_id": world.deal_ids,
        "seller_id": np.asarray(world.seller_ids, dtype=object)[world.seller],
        "channel_id": np.asarray(world.channel_ids, dtype=object)[world.channel],
        "order_id": np.array([f"O-{d}" for d in world.deal_ids], dtype=object),
        "deal_type": world.deal_type,
        "premium": np.zeros(n, dtype=bool),
        "status": np.full(n, int(DealStatus.ACTIVE)),
        "locked": np.zeros(n, dtype=bool),
        "allocation": current_totals(world, state),
        "min_allocation": world.min_allocation,
        "max_allocation": world.max_allocation,
        "spend_micros": spent,
        "impressions": np.floor(state.impressions).astype(np.int64),
        "clicks": np.zeros(n, dtype=np.int64),
        "completes": np.zeros(n, dtype=np.int64),
        "requests": np.floor(state.avails).astype(np.int64),
        "price_kind": np.full(n, int(PriceKind.ECPM)),
        "price_micros": np.round(world.ecpm).astype(np.int64),
        "value_per_unit": world.value_per_unit,
        "avails": np.floor(state.avails).astype(np.int64),
        "bids": np.floor(state.bids).astype(np.int64),
        "wins": np.floor(state.wins).astype(np.int64),
        "participation_rate": participation,
        "available_inventory": inventory,
        "plan_applied_at": state.plan_applied_at,
        "delivered_at_plan": state.delivered_at_plan,
        "capacity_forecast": np.full(n, -1, dtype=np.int64),  # reallocator forecasts
    }
    deals = pd.DataFrame(data, columns=list(DEAL_COLUMNS)).astype(DEAL_COLUMNS)
    return CampaignSnapshot(
        campaign_id=f"sim-{world.scenario.name}-{world.seed}",
        as_of=world.at(step),
        timezone=world.scenario.flight.timezone,
        currency=world.scenario.currency,
        deals=deals,
        sellers=world.seller_limits.copy(),
        channels=world.channel_limits.copy(),
        pacing=pacing_spec(world),
        delivery=_series(world, state, step),
        policy=policy,
    )

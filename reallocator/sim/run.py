"""Runs strategies through a world, step by step, vectorised over deals.

Each step (15 minutes by default), in this order:

1. at a replan step (every `replan_hours`, from the first one after the start) the strategy
   decides: new allocations, seller requests;
2. seller answers due at this step arrive (commitments change);
3. every deal gets its step target: what it may still spend (allocation - spent; a PG deal's
   commitment - spent) spread over its remaining opportunity curve - times `policy.pace_ahead`
   (within what remains) for the deals the last plan paces AHEAD: their pacer aims at the
   schedule's hourly ceiling, so it buys the supply above the forecast, and never goes beyond
   the ceiling (a traffic burst above it is left);
4. PG deals deliver their seller's target with the seller's noise, up to the step's real supply;
   buyer-paced deals deliver the pacer's share of the step's real supply; nobody beyond what it
   may still spend (and, with `platform_budget_cap`, buyer-paced deals stop at the budget);
5. the pacer learns from the step, the counters (spend, impressions, avails, bids, wins) add up.

`run_world` runs several strategies on one world (the same draws for all), the oracle and the
gap floor, and returns per-run results; `metrics.py` turns them into numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reallocator.core.model import Policy
from reallocator.sim.args import DIAGNOSTICS, STRATEGIES
from reallocator.sim.gap_floor import GapFloor, world_floor
from reallocator.sim.oracle import OracleResult, solve_oracle
from reallocator.sim.pacers import DiscountPacer, ProbabilisticPacer, step_targets
from reallocator.sim.planner import InProcessPlanner, Planner
from reallocator.sim.sellers import SellerDesk
from reallocator.sim.snapshot import PG_WIN_RATE, RunState
from reallocator.sim.strategies import (
    ForesightStrategy,
    GreedyStrategy,
    ReallocatorStrategy,
    ReplanRecord,
    RulesStrategy,
    RunContext,
    StaticStrategy,
    Strategy,
    UnstabilisedStrategy,
)
from reallocator.sim.world import World


@dataclass(frozen=True, eq=False)
class RunResult:
    strategy: str
    state: RunState
    replans: tuple[ReplanRecord, ...]
    n_requests: int


def make_strategy(name: str, planner: Planner | None = None) -> Strategy:
    if name == "static":
        return StaticStrategy()
    if name == "rules":
        return RulesStrategy()
    if name == "reallocator":
        return ReallocatorStrategy(planner or InProcessPlanner())
    if name == "foresight":
        return ForesightStrategy(planner or InProcessPlanner())
    if name == "greedy":
        return GreedyStrategy()
    if name == "unstabilised":
        return UnstabilisedStrategy(planner or InProcessPlanner())
    raise ValueError(f"unknown strategy {name!r}; known: {(*STRATEGIES, *DIAGNOSTICS)}")


def simulate(world: World, strategy: Strategy, policy: Policy | None = None) -> RunResult:
    sc = world.scenario
    policy = policy or sc.policy_object()
    n, T = world.n_deals, world.n_steps
    state = RunState.initial(world)
    desk = SellerDesk(world)
    ctx = RunContext(world, state, desk, policy)
    profile = world.deal_profile
    prior = world.nominal_capacity / world.profile_left[profile, 0]
    pacer: ProbabilisticPacer | DiscountPacer
    if sc.pacer.kind == "discount":
        pacer = DiscountPacer(n, sc.pacer)
    else:
        pacer = ProbabilisticPacer(n, sc.pacer, prior)
    pg = world.pg
    budget = float(world.budget)
    records: list[ReplanRecord] = []
    every = sc.replan_steps

    for t in range(T):
        if strategy.replans and t > 0 and t % every == 0:
            records.append(strategy.replan(ctx, t))
        answers = desk.answer_due(t, state.committed, state.spent)
        if answers:
            strategy.on_answers(ctx, answers)
        cap = np.where(pg, state.committed, state.alloc)
        state.cap_hist[:, t] = cap
        remaining = np.maximum(cap - state.spent, 0.0)
        weight = world.profile_weight[profile, t]
        curve = step_targets(remaining, weight, world.profile_left[profile, t])
        target = np.minimum(curve * state.pace, remaining)  # AHEAD deals aim above the curve
        full = world.full_spend[:, t]
        seller_spend = np.minimum(target * world.delivery_noise[:, t], full)
        share = pacer.control(target, weight)
        spend = np.minimum(np.where(pg, seller_spend, share * full), remaining)
        # An AHEAD deal's schedule is a ceiling: its pacer never delivers beyond it in a step.
        spend = np.where(state.pace > 1.0, np.minimum(spend, target), spend)
        if sc.platform_budget_cap:
            room = budget - state.spent.sum() - spend[pg].sum()
            buyer = spend[~pg].sum()
            if buyer > max(room, 0.0):
                spend = np.where(pg, spend, spend * max(room, 0.0) / buyer)
        if isinstance(pacer, ProbabilisticPacer):
            pacer.observe(full, weight)
        else:
            pacer.observe_gap(np.where(pg, 0.0, target), spend)
        price = world.price[:, t]
        imps = np.divide(spend, price, out=np.zeros(n), where=price > 0)
        participation = pacer.participation
        avails = np.where(pg, imps / PG_WIN_RATE, world.avails[:, t])
        bids = np.where(pg, avails, world.avails[:, t] * participation)
        state.spent += spend
        state.impressions += imps
        state.avails += avails
        state.bids += bids
        state.wins += imps
        state.participation = np.where(target > 0, participation, state.participation)
        state.spend_hist[:, t] = spend
        state.imps_hist[:, t] = imps
        state.avails_hist[:, t] = avails
        state.wins_hist[:, t] = imps
    return RunResult(strategy.name, state, tuple(records), desk.n_requests)


@dataclass(frozen=True, eq=False)
class WorldResult:
    world: World
    oracle: OracleResult
    runs: dict[str, RunResult]
    floor: GapFloor | None = None  # the hindsight gap floor (gap_floor.py), once per world


def run_world(
    world: World,
    strategies: Sequence[str] = STRATEGIES,
    *,
    planner_factory: Callable[[], Planner] | None = None,
) -> WorldResult:
    """Every strategy on the same world, the oracle and the gap floor."""
    oracle = solve_oracle(world)
    floor = world_floor(world)
    runs: dict[str, RunResult] = {}
    for name in strategies:
        planning = name in ("reallocator", "foresight", "unstabilised")
        planner = planner_factory() if (planner_factory and planning) else None
        runs[name] = simulate(world, make_strategy(name, planner))
    return WorldResult(world, oracle, runs, floor)

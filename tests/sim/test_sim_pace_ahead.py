"""Pacing ahead in the simulator: a deal's `RunState.pace` multiplies its step target within what
it may still spend (run.py); the reallocator strategy sets it to `policy.pace_ahead` on the deals
the plan paces AHEAD (in-process, and decoded from the gRPC Plan)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import DealPacing, Plan, RequestHistory
from reallocator.sim.pacers import step_targets
from reallocator.sim.planner import GrpcPlanner, InProcessPlanner, PlanView, _decode_plan
from reallocator.sim.run import RunResult, simulate
from reallocator.sim.scenario import Scenario, scenario_from_dict
from reallocator.sim.snapshot import RunState, build_snapshot
from reallocator.sim.strategies import (
    ReallocatorStrategy,
    ReplanRecord,
    RunContext,
    StaticStrategy,
)
from reallocator.sim.world import World, build_world
from reallocator.v1 import plan_pb2
from reallocator.wire.plan import encode_plan

AHEAD = DealPacing.AHEAD.value


def scenario(pace_ahead: float | None = None, **kw: Any) -> Scenario:
    base: dict[str, Any] = {
        "name": "pace-ahead",
        "budget": 20_000,
        "flight": {"days": 2},
        "portfolio": {"deals": 12, "sellers": 4, "channels": 3, "pg_share": 0.4},
        "sellers": {"declare_inventory": 1.0, "delay_hours": [1, 3]},
    }
    if pace_ahead is not None:
        base["policy"] = {"pace_ahead": pace_ahead}
    base.update(kw)
    return scenario_from_dict(base)


SCENARIO = scenario(1.7)


# --- the mechanics: RunState.pace in run.py ----------------------------------------------------


class PaceSome:
    """At the first replan: scales the allocation of the `mask` deals by `scale` and paces them
    at `pace`; nothing else, ever."""

    name = "pace-some"
    replans = True

    def __init__(self, mask: np.ndarray, pace: float, scale: float = 1.0) -> None:
        self.mask, self.pace, self.scale = mask, pace, scale

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:
        s = ctx.state
        if step == ctx.world.scenario.replan_steps:
            s.alloc = np.where(self.mask, s.alloc * self.scale, s.alloc)
            s.pace = np.where(self.mask, self.pace, 1.0)
        return ReplanRecord(step, "PACE", 0.0, 0, 0.0)

    def on_answers(self, ctx: RunContext, answers: list[Any]) -> None:
        return None


def check_within_allocation(world: World, run: RunResult) -> None:
    """No deal ever has spent more than the allocation in effect (cap_hist) at any step, within
    a unit (plans see whole micros: a new total may sit below the spend by a fraction)."""
    state = run.state
    spent = np.cumsum(state.spend_hist, axis=1)
    assert np.all(spent <= state.cap_hist * (1 + 1e-9) + 1.0)
    final = np.where(world.pg, state.committed, state.alloc)
    assert np.all(state.spent <= final * (1 + 1e-9) + 1.0)
    assert np.allclose(state.spent, state.spend_hist.sum(axis=1))


WORLDS: dict[tuple[int, str], World] = {}


def world_of(seed: int, pacer: str = "probabilistic") -> World:
    key = (seed, pacer)
    if key not in WORLDS:
        WORLDS[key] = build_world(
            scenario(name=f"mech-{pacer}", pacer={"kind": pacer}, budget=10_000), seed
        )
    return WORLDS[key]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    pacer=st.sampled_from(["probabilistic", "discount"]),
    pace=st.one_of(st.just(1.0), st.floats(1.0, 10.0, allow_nan=False)),
    scale=st.floats(0.1, 1.0, allow_nan=False),
    pick=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_a_paced_deal_never_spends_beyond_its_allocation_and_never_less(
    seed: int, pacer: str, pace: float, scale: float, pick: list[bool]
) -> None:
    world = world_of(seed, pacer)
    mask = np.array(pick) & ~world.pg  # the strategies never pace guaranteed deals
    base = simulate(world, PaceSome(mask, 1.0, scale))
    paced = simulate(world, PaceSome(mask, pace, scale))
    check_within_allocation(world, base)
    check_within_allocation(world, paced)
    assert np.all(paced.state.pace[mask] == pace) and np.all(paced.state.pace[~mask] == 1.0)
    # Pacing is per deal: the others spend exactly as before, step by step.
    assert np.array_equal(paced.state.spend_hist[~mask], base.state.spend_hist[~mask])
    if pace == 1.0:
        assert np.array_equal(paced.state.spend_hist, base.state.spend_hist)
    ceiling = ceilings(world, paced)
    spend = paced.state.spend_hist
    if pace > 1.0:
        # The ceiling holds: a paced deal never delivers beyond pace x its curve target in a
        # step (on the curve, pace 1, the target is an aim, not a cap).
        assert np.all(spend[mask] <= ceiling[mask] + 1e-6 * (1.0 + ceiling[mask]))
    if pacer == "probabilistic" and pace > 1.0:
        # Until its ceiling first binds, a higher target never buys less: the paced deal has
        # spent at least as much as on the curve (the throttling pacer learns supply, not
        # targets). Once a burst hits the ceiling, it may be left behind on purpose.
        binds = (spend >= ceiling - 1e-6 * (1.0 + ceiling)) & (ceiling > 0) & (ceiling < UNCAPPED)
        steps = np.arange(world.n_steps)
        first = np.where(binds.any(axis=1), binds.argmax(axis=1), world.n_steps)
        before = steps[None, :] < first[:, None]
        a = np.cumsum(base.state.spend_hist, axis=1)
        b = np.cumsum(spend, axis=1)
        ok = (b >= a - 1e-6 * (1.0 + a)) | ~before
        assert np.all(ok[mask])


UNCAPPED = 1e300


def ceilings(world: World, run: RunResult) -> np.ndarray:
    """Per deal and step, the most a paced deal may deliver: pace x the curve target (what it
    may still spend spread over its remaining opportunity), recomputed from the run's history."""
    state = run.state
    spent_before = np.cumsum(state.spend_hist, axis=1) - state.spend_hist
    remaining = np.maximum(state.cap_hist - spent_before, 0.0)
    profile = world.deal_profile
    weight = world.profile_weight[profile]
    left = world.profile_left[profile, :-1]
    curve = np.stack(
        [step_targets(remaining[:, t], weight[:, t], left[:, t]) for t in range(world.n_steps)],
        axis=1,
    )
    out: np.ndarray = np.minimum(curve * state.pace[:, None], remaining)
    # PaceSome paces from the first replan on: before it every deal was on the curve, uncapped.
    out[:, : world.scenario.replan_steps] = UNCAPPED
    return out


def test_a_burst_above_the_ceiling_is_left() -> None:
    """A traffic burst on paced deals: they deliver up to their ceiling and no more, while the
    same deals on the curve overshoot their target (the pacer decides before the step)."""
    world = build_world(
        scenario(
            name="burst",
            budget=10_000,
            events=[
                {
                    "select": {},
                    "start_hour": 30,
                    "shape": "twitter_amzn",
                    "amplitude": 3.0,
                }
            ],
        ),
        0,
    )
    mask = ~world.pg
    base = simulate(world, PaceSome(mask, 1.0, 0.5))
    paced = simulate(world, PaceSome(mask, 1.5, 0.5))
    ceiling = ceilings(world, paced)
    spend = paced.state.spend_hist
    assert np.all(spend[mask] <= ceiling[mask] + 1e-6 * (1.0 + ceiling[mask]))
    binding = (spend >= ceiling - 1e-6 * (1.0 + ceiling)) & (ceiling < UNCAPPED) & mask[:, None]
    assert binding.any()  # the burst reached the ceiling somewhere
    curve_target = ceilings(world, base)  # pace 1: the curve target itself
    over = (curve_target < UNCAPPED) & (base.state.spend_hist > curve_target * 1.5 + 1e-6)
    assert (over & mask[:, None]).any()  # on the curve, the same burst overshoots further


def test_pacing_ahead_buys_supply_the_curve_throttles_away() -> None:
    world = world_of(0)
    mask = ~world.pg
    every = world.scenario.replan_steps
    base = simulate(world, PaceSome(mask, 1.0, 0.5))
    paced = simulate(world, PaceSome(mask, 2.0, 0.5))
    check_within_allocation(world, paced)
    # Before the first replan both runs are the same; from it on, the paced deals run ahead.
    assert np.array_equal(base.state.spend_hist[:, :every], paced.state.spend_hist[:, :every])
    half = world.n_steps // 2
    a = base.state.spend_hist[mask, :half].sum()
    b = paced.state.spend_hist[mask, :half].sum()
    assert b > a * 1.05
    assert paced.state.spent[mask].sum() >= base.state.spent[mask].sum() * (1 - 1e-9)
    # Never beyond the halved allocations.
    assert np.all(paced.state.spent[mask] <= paced.state.alloc[mask] * (1 + 1e-9))
    assert np.allclose(paced.state.alloc[mask], world.booked[mask] * 0.5)
    # Guaranteed deals are the seller's to pace: untouched.
    assert np.array_equal(base.state.spend_hist[world.pg], paced.state.spend_hist[world.pg])


def test_the_initial_state_paces_every_deal_on_the_curve() -> None:
    world = world_of(0)
    state = RunState.initial(world)
    assert state.pace.shape == (world.n_deals,)
    assert np.all(state.pace == 1.0)


# --- the reallocator strategy ------------------------------------------------------------------


class RecordingPlanner(InProcessPlanner):
    """The in-process planner, keeping each plan (built again, independently of the view)."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: list[Plan] = []
        self.views: list[PlanView] = []

    def plan(
        self, snapshot: CampaignSnapshot, history: RequestHistory, window: timedelta
    ) -> PlanView:
        view = super().plan(snapshot, history, window)
        self.plans.append(
            build_plan(
                snapshot,
                history=history,
                relax=self.relax,
                time_limit=self.time_limit,
                schedule_window=window,
            )
        )
        self.views.append(view)
        return view


class Watching(ReallocatorStrategy):
    """The reallocator strategy, recording the run's pace right after each replan."""

    def __init__(self, planner: RecordingPlanner) -> None:
        super().__init__(planner)
        self.paces: list[np.ndarray] = []

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:
        record = super().replan(ctx, step)
        self.paces.append(ctx.state.pace.copy())
        return record


@pytest.mark.parametrize("pace_ahead", [1.7, 1.0])
def test_the_reallocator_paces_ahead_exactly_the_deals_the_plan_does(pace_ahead: float) -> None:
    sc = scenario(pace_ahead)
    world = build_world(sc, 0)
    planner = RecordingPlanner()
    strategy = Watching(planner)
    run = simulate(world, strategy)
    policy = sc.policy_object()
    assert policy.pace_ahead == pace_ahead
    assert len(planner.plans) == len(strategy.paces) == len(run.replans) > 0
    mixed = False
    for plan, view, pace in zip(planner.plans, planner.views, strategy.paces, strict=True):
        ahead = plan.deals["pacing"].to_numpy(dtype=object) == AHEAD
        assert view.ahead is not None and np.array_equal(view.ahead, ahead)
        assert not ahead[world.pg].any()
        want = np.where(ahead, pace_ahead, 1.0)
        assert np.array_equal(pace, want)  # exactly pace_ahead, exactly 1.0 elsewhere
        assert np.all(pace[world.pg] == 1.0)
        buyer = ~world.pg
        mixed |= bool(ahead[buyer].any() and not ahead[buyer].all())
    if pace_ahead > 1.0:
        assert mixed  # the premise: some plan paces some buyer deals ahead and not others
    else:
        assert all(np.all(p == 1.0) for p in strategy.paces)
    check_within_allocation(world, run)


class ScriptedPlanner:
    """Returns the views it is given, one per call, with the snapshot's totals unchanged."""

    def __init__(self, views: list[dict[str, Any]]) -> None:
        self.views = list(views)

    def plan(
        self, snapshot: CampaignSnapshot, history: RequestHistory, window: timedelta
    ) -> PlanView:
        spec = self.views.pop(0) if self.views else {"ahead": None}
        total = snapshot.deals["allocation"].to_numpy(np.int64)
        return PlanView("OPTIMAL", total, (), 0.0, 0.0, **spec)

    def record_answer(self, *args: Any) -> None:
        return None


def test_guaranteed_deals_are_never_paced_and_a_rejected_plan_keeps_the_pace() -> None:
    world = build_world(SCENARIO, 0)
    n = world.n_deals
    everyone = np.ones(n, dtype=bool)
    some = np.arange(n) % 2 == 0
    views: list[dict[str, Any]] = [
        {"ahead": everyone},  # even if a plan said so, a PG deal is the seller's to pace
        {"ahead": np.zeros(n, dtype=bool), "rejected": True},  # no plan: nothing changes
        {"ahead": some},
        {"ahead": np.zeros(n, dtype=bool)},
    ]
    strategy = Watching(ScriptedPlanner(views))  # type: ignore[arg-type]
    simulate(world, strategy)
    pace_ahead = SCENARIO.policy_object().pace_ahead
    first, rejected, third, fourth = strategy.paces[:4]
    assert np.array_equal(first, np.where(world.pg, 1.0, pace_ahead))
    assert np.array_equal(rejected, first)
    assert np.array_equal(third, np.where(some & ~world.pg, pace_ahead, 1.0))
    assert np.all(fourth == 1.0)


# --- PlanView.ahead from the gRPC Plan ----------------------------------------------------------


def sim_snapshot(sc: Scenario, seed: int = 1, step: int = 48) -> CampaignSnapshot:
    """A snapshot of a static run's state at `step` (its history is the delivery)."""
    world = build_world(sc, seed)
    state = simulate(world, StaticStrategy()).state
    state.spent[:] = state.spend_hist[:, :step].sum(axis=1)
    state.impressions[:] = state.imps_hist[:, :step].sum(axis=1)
    state.avails[:] = state.avails_hist[:, :step].sum(axis=1)
    state.bids[:] = state.avails
    state.wins[:] = state.wins_hist[:, :step].sum(axis=1)
    return build_snapshot(world, state, step, sc.policy_object())


@pytest.fixture(scope="module")
def snapshot() -> CampaignSnapshot:
    return sim_snapshot(SCENARIO)


WINDOW = timedelta(hours=6)


def test_decoded_plans_pace_ahead_the_deals_the_plan_does(snapshot: CampaignSnapshot) -> None:
    plan = build_plan(snapshot, schedule_window=WINDOW)
    ahead = plan.deals["pacing"].to_numpy(dtype=object) == AHEAD
    assert ahead.any() and not ahead.all()  # the premise
    msg = encode_plan(plan, name="plans/1")
    view = _decode_plan(msg, snapshot, 0.0)
    assert view.ahead is not None and view.ahead.dtype == np.bool_
    assert np.array_equal(view.ahead, ahead)
    assert np.array_equal(view.new_total, plan.deals["new_total"].to_numpy(np.int64))
    # By deal id, not by position.
    shuffled = plan_pb2.Plan()
    shuffled.CopyFrom(msg)
    del shuffled.deals[:]
    shuffled.deals.extend(reversed(msg.deals))
    again = _decode_plan(shuffled, snapshot, 0.0).ahead
    assert again is not None and np.array_equal(again, ahead)
    # Same as the in-process planner's view of the same snapshot.
    local = InProcessPlanner().plan(snapshot, RequestHistory(), WINDOW)
    assert local.ahead is not None and np.array_equal(local.ahead, ahead)
    # A plan without deal rows paces nobody ahead.
    bare = _decode_plan(encode_plan(plan, deals="none"), snapshot, 0.0)
    assert bare.ahead is not None and not bare.ahead.any()


def test_only_deal_pacing_ahead_reads_ahead(snapshot: CampaignSnapshot) -> None:
    msg = encode_plan(build_plan(snapshot, schedule_window=WINDOW))
    values = [
        plan_pb2.DEAL_PACING_UNSPECIFIED,
        plan_pb2.DEAL_PACING_CURVE,
        plan_pb2.DEAL_PACING_AHEAD,
        plan_pb2.DEAL_PACING_SELLER,
    ]
    for i, d in enumerate(msg.deals):
        d.pacing = values[i % 4]
    view = _decode_plan(msg, snapshot, 0.0)
    assert view.ahead is not None
    assert view.ahead.tolist() == [i % 4 == 2 for i in range(len(msg.deals))]


def test_grpc_planner_paces_ahead_like_in_process(server: Any) -> None:
    for pace_ahead in (1.7, 1.0):
        # a campaign of its own: the service remembers the plans the planner applies
        snap = replace(sim_snapshot(scenario(pace_ahead)), campaign_id=f"ahead-{pace_ahead}")
        local = InProcessPlanner().plan(snap, RequestHistory(), WINDOW)
        remote_planner = GrpcPlanner(f"127.0.0.1:{server.port}")
        try:
            remote = remote_planner.plan(snap, RequestHistory(), WINDOW)
        finally:
            remote_planner.close()
        assert remote.status == local.status
        assert np.array_equal(remote.new_total, local.new_total)
        assert local.ahead is not None and remote.ahead is not None
        assert np.array_equal(remote.ahead, local.ahead)
        assert local.ahead.any() == (pace_ahead > 1.0)

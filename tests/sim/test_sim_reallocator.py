"""The reallocator strategy against the real plan builder, in-process and over gRPC."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from reallocator.core.plan.model import RequestHistory
from reallocator.sim.planner import GrpcPlanner, InProcessPlanner
from reallocator.sim.run import make_strategy, simulate
from reallocator.sim.scenario import scenario_from_dict
from reallocator.sim.snapshot import RunState, build_snapshot
from reallocator.sim.strategies import ReallocatorStrategy
from reallocator.sim.world import build_world
from reallocator.v1 import plan_pb2

SCENARIO = scenario_from_dict(
    {
        "name": "realloc",
        "budget": 20_000,
        "flight": {"days": 2},
        "portfolio": {"deals": 12, "sellers": 4, "channels": 3, "pg_share": 0.4},
        "sellers": {"declare_inventory": 1.0, "delay_hours": [1, 3]},
        "stalls": {"events": [{"select": {"sellers": ["S01"]}, "start_hour": 8, "hours": 30}]},
    }
)


def test_runs_in_process_deterministically() -> None:
    world = build_world(SCENARIO, 0)
    a = simulate(world, make_strategy("reallocator"))
    b = simulate(world, make_strategy("reallocator"))
    assert len(a.replans) == 7  # every 6 h of a 2-day flight, not at its start
    assert np.array_equal(a.state.spend_hist, b.state.spend_hist)
    assert [r.status for r in a.replans] == [r.status for r in b.replans]
    assert a.state.spent.sum() <= world.budget * (1 + 1e-9)
    assert a.n_requests == sum(r.requests for r in a.replans)


def test_snapshot_is_a_valid_builder_input() -> None:
    world = build_world(SCENARIO, 0)
    state = RunState.initial(world)
    state.spent[:] = world.booked * 0.1
    state.impressions[:] = 1_000
    state.spend_hist[:, :24] = (world.booked * 0.1 / 24)[:, None]
    snap = build_snapshot(world, state, 24, SCENARIO.policy_object())
    assert snap.deals["allocation"].sum() == world.budget
    assert snap.delivery is not None and snap.delivery.n_buckets == 6
    view = InProcessPlanner().plan(snap, RequestHistory(), SCENARIO.step * 24)
    assert view.new_total.shape == (world.n_deals,)
    assert not view.rejected


def test_grpc_planner_matches_in_process(server: Any) -> None:
    world = build_world(SCENARIO, 1)
    run = simulate(world, make_strategy("static"))  # a history to snapshot from
    state = run.state
    step = 48
    state.spent[:] = state.spend_hist[:, :step].sum(axis=1)
    state.impressions[:] = state.imps_hist[:, :step].sum(axis=1)
    state.avails[:] = state.avails_hist[:, :step].sum(axis=1)
    state.bids[:] = state.avails
    state.wins[:] = state.wins_hist[:, :step].sum(axis=1)
    snap = build_snapshot(world, state, step, SCENARIO.policy_object())
    # a campaign of its own: the service remembers the plans the planner applies
    snap = replace(snap, campaign_id="grpc-matches-in-process")
    window = SCENARIO.step * 24
    local = InProcessPlanner().plan(snap, RequestHistory(), window)
    remote_planner = GrpcPlanner(f"127.0.0.1:{server.port}")
    try:
        remote = remote_planner.plan(snap, RequestHistory(), window)
    finally:
        remote_planner.close()
    assert remote.status == local.status
    assert np.array_equal(remote.new_total, local.new_total)
    assert [(r.deal_id, r.kind, r.target_total) for r in remote.requests] == [
        (r.deal_id, r.kind, r.target_total) for r in local.requests
    ]


def test_a_whole_run_over_grpc(server: Any) -> None:
    scenario = scenario_from_dict({**_one_day(), "name": "grpc"})
    world = build_world(scenario, 0)
    planner = GrpcPlanner(f"127.0.0.1:{server.port}")
    try:
        run = simulate(world, ReallocatorStrategy(planner))
    finally:
        planner.close()
    assert len(run.replans) == 3
    assert all(r.seconds > 0 for r in run.replans)
    assert run.state.spent.sum() <= world.budget * (1 + 1e-9)


def test_in_process_and_grpc_runs_give_the_same_figures(tmp_path: Path) -> None:
    """Over gRPC the service keeps the history itself (plans approved and confirmed applied,
    seller answers recorded through the API): the run is the in-process run."""
    from reallocator.config import load_config
    from reallocator.server.app import start_server
    from reallocator.sim.scenario import load_scenario, resolve_scenario
    from reallocator.store.sql import SqlStore

    # A whole standard flight: seller answers, plans applied, moves reversed or held.
    scenario = load_scenario(resolve_scenario("steady"))
    local = simulate(build_world(scenario, 3), ReallocatorStrategy(InProcessPlanner()))
    url = f"sqlite:///{tmp_path / 'twins.db'}"
    running = start_server(load_config(env={}, port=0, host="127.0.0.1", database_url=url))
    planner = GrpcPlanner(f"127.0.0.1:{running.port}")
    try:
        remote = simulate(build_world(scenario, 3), ReallocatorStrategy(planner))
    finally:
        planner.close()
        running.stop(grace=0)
    assert planner._record_ok
    assert np.array_equal(remote.state.spent, local.state.spent)
    assert [r.status for r in remote.replans] == [r.status for r in local.replans]
    store = SqlStore.open(url)
    campaign = store.engine.connect().execute(sa.text("select campaign_id from plans")).scalar()
    listed, _ = store.list_plans(str(campaign), page_size=100)
    assert len(listed) == len(local.replans)
    assert {p.state for p in listed} == {plan_pb2.PLAN_STATE_APPLIED}


def _one_day() -> dict[str, Any]:
    return {
        "budget": 5_000,
        "flight": {"days": 1},
        "portfolio": {"deals": 8, "sellers": 3, "channels": 2},
    }


def test_foresight_plans_with_the_true_remaining_capacity() -> None:
    """The diagnostic strategy hands the world's true capacity to the planner as the caller's own
    forecast (the snapshot's capacity_forecast column), and the plans are capped by it; the
    reallocator's snapshots leave the column unset."""
    from reallocator.sim.strategies import ForesightStrategy

    world = build_world(SCENARIO, 0)
    seen: list[np.ndarray] = []
    capacities: list[np.ndarray] = []

    class Spy(InProcessPlanner):
        def plan(self, snapshot, history, window):  # type: ignore[no-untyped-def]
            seen.append(snapshot.deals["capacity_forecast"].to_numpy())
            view = super().plan(snapshot, history, window)
            from reallocator.core.plan.builder import build_plan

            plan = build_plan(snapshot, history=history, schedule_window=window)
            capacities.append(plan.deals["capacity"].to_numpy())
            return view

    run = simulate(world, ForesightStrategy(Spy()))
    every = SCENARIO.replan_steps
    assert len(seen) == len(run.replans) == 7
    for k, (given, capacity) in enumerate(zip(seen, capacities, strict=True), start=1):
        truth = np.floor(world.capacity_left[:, k * every])
        assert np.array_equal(given, truth)
        # The truth is the plan's capacity, except where a seller's answer caps it lower.
        assert (capacity <= truth).all() and (capacity == truth).mean() > 0.5
    assert run.strategy == "foresight"
    assert run.state.spent.sum() <= world.budget * (1 + 1e-9)
    assert make_strategy("foresight").name == "foresight"
    plain: list[np.ndarray] = []

    class Plain(InProcessPlanner):
        def plan(self, snapshot, history, window):  # type: ignore[no-untyped-def]
            plain.append(snapshot.deals["capacity_forecast"].to_numpy())
            return super().plan(snapshot, history, window)

    simulate(world, ReallocatorStrategy(Plain()))
    assert plain and all((c == -1).all() for c in plain)


def test_each_plan_sees_the_earlier_plans_moves() -> None:
    """The simulator keeps what each plan changed (RequestHistory.moves) as the audit store
    would, so the next plan can tell a move that undoes a recent one from a fresh one."""
    world = build_world(SCENARIO, 0)
    seen: list[RequestHistory] = []
    totals: list[np.ndarray] = []

    class Spy(InProcessPlanner):
        def plan(self, snapshot, history, window):  # type: ignore[no-untyped-def]
            seen.append(history)
            view = super().plan(snapshot, history, window)
            totals.append(view.new_total - np.floor(snapshot.deals["allocation"].to_numpy()))
            return view

    simulate(world, ReallocatorStrategy(Spy()))
    assert len(seen[0].moves) == 0
    last = seen[-1].moves
    assert set(last.columns) >= {"deal_id", "planned_at", "delta"}
    # Every plan's non-zero changes, in order, for every deal that moved.
    want = int(sum(np.count_nonzero(t) for t in totals[:-1]))
    assert len(last) == want > 0
    assert (last["delta"] != 0).all()
    assert last["planned_at"].is_monotonic_increasing

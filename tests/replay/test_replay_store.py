"""Replay from the audit store: a flight simulated through the service's gRPC path (plans
approved and confirmed applied, seller answers recorded through the API) is replayed from what
the store recorded, and the planner re-run on it makes every recorded plan exactly; a changed
policy changes the figures; the CLI reads the store by campaign."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reallocator.cli import main
from reallocator.config import load_config
from reallocator.replay.counterfactual import load_flight, replan_recorded
from reallocator.replay.source import ReplaySourceError, read_store
from reallocator.server.app import start_server
from reallocator.sim.planner import GrpcPlanner
from reallocator.sim.run import ReallocatorStrategy, simulate
from reallocator.sim.scenario import load_scenario, resolve_scenario
from reallocator.sim.world import build_world
from reallocator.store.sql import SqlStore


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(database URL, campaign) of a steady flight run over gRPC."""
    url = f"sqlite:///{tmp_path_factory.mktemp('replay-store') / 'flight.db'}"
    running = start_server(load_config(env={}, port=0, host="127.0.0.1", database_url=url))
    planner = GrpcPlanner(f"127.0.0.1:{running.port}")
    try:
        world = build_world(load_scenario(resolve_scenario("steady")), 0)
        simulate(world, ReallocatorStrategy(planner))
    finally:
        planner.close()
        running.stop(grace=0)
    store = SqlStore.open(url)
    with store.engine.connect() as c:
        import sqlalchemy as sa

        campaign = c.execute(sa.text("select campaign_id from plans limit 1")).scalar()
    store.close()
    return url, str(campaign)


def test_the_recorded_plans_are_made_again_exactly(recorded: tuple[str, str]) -> None:
    url, campaign = recorded
    records = read_store(url, campaign)
    assert len(records) > 10
    store = SqlStore.open(url)
    supplied_history = sum(len(r.history.requests) > 0 for r in records)
    assert supplied_history, "the flight should have asked sellers something"
    plans = replan_recorded(load_flight(records))
    for r, plan in zip(records, plans, strict=True):
        assert plan is not None
        stored = store.get_plan(r.plan, "all")
        want = np.array([d.new_total for d in stored.deals], dtype=np.int64)
        np.testing.assert_array_equal(plan.deals["new_total"].to_numpy(np.int64), want, r.plan)
        assert [(x.deal_id, x.target_total) for x in plan.requests] == [
            (x.deal_id, x.target_total) for x in stored.seller_requests
        ], r.plan


def test_the_cli_replays_a_campaign_from_the_store(
    recorded: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, campaign = recorded
    code = main(["replay", "--database-url", url, "--campaign", campaign, "--format", "json",
                 "--policy", 'calm={"churn": {"deal": 5.0}}'])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    text = json.dumps(result)
    assert "calm" in text and "replayed" in text
    assert main(["replay", "--database-url", url]) == 2
    assert "--campaign" in capsys.readouterr().err
    with pytest.raises(ReplaySourceError, match="no Replan"):
        read_store(url, "nobody")


def test_purged_snapshots_are_not_replayed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    SqlStore.open(url).close()
    with pytest.raises(ReplaySourceError):
        read_store(url, "c")


def test_progress_ticks_once_per_snapshot_planned(recorded: tuple[str, str]) -> None:
    from reallocator.replay.counterfactual import Candidate, replay

    url, campaign = recorded
    records = read_store(url, campaign)[:4]
    ticks: list[int] = []
    replay(records, [Candidate("replayed")], tick=lambda: ticks.append(1))
    assert len(ticks) == 2 * len(records)

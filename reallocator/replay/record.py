"""Recording a simulated flight: the snapshots the reallocator planned from and the seller history
it saw, in the JSON lines `reallocator replay --snapshots` reads, and the plans it made (so a
replay can be checked against them).

`python -m reallocator.replay.record steady --seed 0 --out flight.jsonl` writes a flight of a
standard scenario; tests use `record_flight` directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from reallocator.core.model import CampaignSnapshot
from reallocator.core.plan.model import RequestHistory
from reallocator.replay.source import Recorded, write_json_lines
from reallocator.sim.planner import InProcessPlanner, PlanView


@dataclass
class RecordingPlanner(InProcessPlanner):
    """The in-process planner, remembering every snapshot, history and plan it was asked for."""

    records: list[Recorded] = field(default_factory=list)
    plans: list[PlanView] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def plan(
        self, snapshot: CampaignSnapshot, history: RequestHistory, window: timedelta
    ) -> PlanView:
        copy = RequestHistory(requests=history.requests.copy(), moves=history.moves.copy())
        view = super().plan(snapshot, history, window)
        self.records.append(Recorded(snapshot, copy))
        self.plans.append(view)
        return view


def record_flight(scenario_name: str, seed: int = 0) -> RecordingPlanner:
    """Simulates one flight of a scenario with the reallocator and returns what it recorded."""
    from reallocator.sim.run import make_strategy, simulate
    from reallocator.sim.scenario import load_scenario, resolve_scenario
    from reallocator.sim.world import build_world

    world = build_world(load_scenario(resolve_scenario(scenario_name)), seed)
    planner = RecordingPlanner()
    simulate(world, make_strategy("reallocator", planner))
    return planner


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reallocator.replay.record", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("scenario", help="a standard scenario name or a scenario file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to write")
    args = parser.parse_args(argv)
    planner = record_flight(args.scenario, args.seed)
    count = write_json_lines(args.out, planner.records)
    print(f"{count} snapshots -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

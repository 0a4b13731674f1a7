"""Campaign simulator and benchmark harness: does reallocation keep campaigns on budget and
spend where it is worth most, against static booking, a rules baseline and a hindsight oracle?

    scenario (JSON) --build_world(seed)--> World --simulate(strategy)--> RunResult --metrics--> rows

* `scenario`: the scenario file format (`load_scenario`);
* `world`: one campaign's truth, drawn from real traffic and price profiles (`profiles`, shipped
  in data/, derived from NAB and BAT series by scripts/derive_profiles.py);
* `pacers`, `sellers`: how deals deliver (buyer-side pacers; sellers of guaranteed deals);
* `strategies`, `planner`: static, rules (IAB buyer-agent style) and reallocator (the plan builder
  in-process or the service over gRPC);
* `oracle`: the hindsight LP; `metrics`, `report`: the numbers and the plots;
* `run`: the step loop; `cli`: `reallocator simulate` and the suite driver.

Deterministic given a seed: every strategy meets the same draws.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "STRATEGIES": "reallocator.sim.args",
    "RunResult": "reallocator.sim.run",
    "WorldResult": "reallocator.sim.run",
    "run_world": "reallocator.sim.run",
    "simulate": "reallocator.sim.run",
    "Scenario": "reallocator.sim.scenario",
    "ScenarioError": "reallocator.sim.scenario",
    "load_scenario": "reallocator.sim.scenario",
    "scenario_from_dict": "reallocator.sim.scenario",
    "World": "reallocator.sim.world",
    "build_world": "reallocator.sim.world",
}
"""Public names, imported on first use: `reallocator simulate`'s arguments (sim.args) must not
pull numpy, pandas and the solvers into every start of the `reallocator` command."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

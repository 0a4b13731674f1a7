"""Scenario files: the standard ones load, typos are errors, policy overrides convert."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from reallocator.sim.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    load_scenario,
    resolve_scenario,
    scenario_from_dict,
)

SCENARIOS = SCENARIO_DIR
STANDARD = (
    "steady",
    "stalled_seller",
    "channel_collapse",
    "flash_sale",
    "conflicting_limits",
    "portfolio_500",
    "steady_discount",
)


@pytest.mark.parametrize("name", STANDARD)
def test_standard_scenarios_load(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.json")
    assert scenario.name == name
    assert scenario.n_steps == 7 * 24 * 4
    assert scenario.replan_steps == 24
    assert resolve_scenario(name).name == f"{name}.json"


def test_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ScenarioError, match=r"portfolio\.dealz: unknown key"):
        scenario_from_dict({"name": "x", "portfolio": {"dealz": 3}})
    with pytest.raises(ScenarioError, match=r"name: required"):
        scenario_from_dict({})
    with pytest.raises(ScenarioError, match=r"budget: expected a number"):
        scenario_from_dict({"name": "x", "budget": "lots"})
    with pytest.raises(ScenarioError, match=r"pacer\.kind"):
        scenario_from_dict({"name": "x", "pacer": {"kind": "magic"}})
    with pytest.raises(ScenarioError, match=r"capacity_ratio"):
        scenario_from_dict({"name": "x", "portfolio": {"capacity_ratio": 1.0}})


def test_policy_overrides_convert_hours_and_money() -> None:
    scenario = scenario_from_dict(
        {
            "name": "x",
            "policy": {"min_evidence_seconds": 86400, "min_change": 100, "step_rel": 0.5},
        }
    )
    policy = scenario.policy_object()
    assert policy.min_evidence == timedelta(hours=24)
    assert policy.min_change == 100_000_000  # micros
    assert policy.step_rel == 0.5
    with pytest.raises(ScenarioError, match=r"policy\.nonsense"):
        scenario_from_dict({"name": "x", "policy": {"nonsense": 1}})
    # One spelling for durations, as in the server's TOML, environment and flags.
    for spelled in ("min_evidence_hours", "min_evidence"):
        with pytest.raises(ScenarioError, match=r"min_evidence_seconds"):
            scenario_from_dict({"name": "x", "policy": {spelled: 24}})


def test_json_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "flight": {"step_minutes": 7}}))
    with pytest.raises(ScenarioError, match=r"bad\.json: flight\.step_minutes"):
        load_scenario(path)

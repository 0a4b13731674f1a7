"""Scenario files: the standard ones load, typos are errors, policy overrides convert."""

from __future__ import annotations

import json
import runpy
from datetime import timedelta
from pathlib import Path

import pytest

from reallocator.sim.profiles import REGION_PROFILES, TAXI_EVENTS
from reallocator.sim.scenario import (
    SCENARIO_DIR,
    Scenario,
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
    collapse = {"select": {}, "start_hour": 50, "end_hour": 20}
    with pytest.raises(ScenarioError, match=r"collapses\[0\]\.end_hour: must be after"):
        scenario_from_dict({"name": "x", "collapses": [collapse]})
    with pytest.raises(ScenarioError, match=r"collapses\[0\]: level"):
        scenario_from_dict({"name": "x", "collapses": [{**collapse, "end_hour": 60, "level": -1}]})
    stall = {"select": {}, "start_hour": 5, "hours": 0}
    with pytest.raises(ScenarioError, match=r"stalls\.events\[0\]\.hours"):
        scenario_from_dict({"name": "x", "stalls": {"events": [stall]}})


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


def _data_used(scenario: Scenario) -> tuple[set[str], set[str]]:
    """The traffic curves and event shapes a scenario draws on."""
    curves = {scenario.traffic.profile, *scenario.traffic.channel_profiles.values()}
    return curves, {event.shape for event in scenario.events}


@pytest.mark.parametrize("path", sorted((SCENARIOS / "eval").glob("*.json")), ids=lambda p: p.stem)
def test_evaluation_scenarios_use_only_held_out_data(path: Path) -> None:
    """The evaluation set's figures mean something only if no setting saw its data: its curves
    are the held-out regions' and its events the held-out NYC windows."""
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    curves, shapes = _data_used(scenario)
    assert curves <= set(REGION_PROFILES["evaluation"])
    assert shapes <= set(TAXI_EVENTS)


@pytest.mark.parametrize("name", [*STANDARD, "night_pool"])
def test_tuning_scenarios_never_touch_held_out_data(name: str) -> None:
    curves, shapes = _data_used(load_scenario(SCENARIOS / f"{name}.json"))
    assert not curves & set(REGION_PROFILES["evaluation"])
    assert not shapes & set(TAXI_EVENTS)


def test_the_suite_runs_every_evaluation_scenario() -> None:
    """A scenario file added to the evaluation set is measured by the suite (README's table)."""
    suite = runpy.run_path(str(Path(__file__).parents[2] / "benchmarks" / "pacing_quality.py"))
    shipped = {path.stem for path in (SCENARIOS / "eval").glob("*.json")}
    assert set(suite["EVALUATION"]) == shipped

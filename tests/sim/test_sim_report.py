"""The report folder: CSVs and PNGs written and non-empty; the command prints the table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from builders import TINY_SCENARIO

from reallocator.sim.cli import main
from reallocator.sim.metrics import VALUE_CHECK, check_targets, oracle_metrics, run_metrics
from reallocator.sim.report import write_report
from reallocator.sim.run import run_world
from reallocator.sim.scenario import Expected, scenario_from_dict
from reallocator.sim.world import build_world

SMALL = TINY_SCENARIO


def test_report_files_are_written(tmp_path: Path) -> None:
    world = build_world(scenario_from_dict(SMALL), 0)
    result = run_world(world)
    rows = [oracle_metrics(world, result.oracle)]
    rows += [run_metrics(world, result.oracle, r) for r in result.runs.values()]
    summary = write_report(pd.DataFrame(rows), tmp_path, {"tiny": Expected()}, [result])
    assert list(summary["strategy"]) == ["oracle", "static", "rules", "greedy", "reallocator"]
    for name in (
        "metrics.csv",
        "summary.csv",
        "targets.csv",
        "summary.txt",
        "cumulative_spend.png",
        "allocation_by_channel.png",
        "pacing_heatmap.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "cumulative_spend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert {"sp_rmse", "bat_rmse", "early_exhaustion", "value_vs_oracle"} <= set(metrics)
    assert {"reversed", "reversals_per_deal", "requests_per_pg"} <= set(metrics)
    # The world's gap floor on every row, the oracle's too, the same within a world.
    assert metrics["gap_floor"].notna().all() and metrics["gap_floor"].nunique() == 1
    assert (metrics["gap_floor_supply"] <= metrics["gap_floor"] + 1e-12).all()
    assert {"gap_floor", "gap_floor_supply"} <= set(pd.read_csv(tmp_path / "summary.csv"))
    targets = pd.read_csv(tmp_path / "targets.csv")
    assert list(targets.columns[3:5]) == ["cum_gap<=3%", "floor<=3%"]
    assert bool(targets["floor<=3%"].iloc[0]) is True
    table = (tmp_path / "summary.txt").read_text()
    assert "maxgap%  floor%" in table


def _summary(value: float) -> pd.DataFrame:
    """One scenario's medians: the reallocator at `value` of the oracle's, the rest met."""
    return pd.DataFrame(
        {
            "scenario": ["world"],
            "strategy": ["reallocator"],
            "utilisation_vs_oracle": [0.995],
            "utilisation": [0.99],
            "overspend_max": [0.0],
            "worst_cum_gap": [0.02],
            "gap_floor": [0.001],
            "value_vs_oracle": [value],
            "churn": [0.5],
            "reversed": [0.2],
        }
    )


@pytest.mark.parametrize(
    ("value", "burst", "met"),
    [(0.951, False, True), (0.93, False, False), (0.93, True, True), (0.91, True, False)],
)
def test_value_target_is_lower_with_a_burst(value: float, burst: bool, met: bool) -> None:
    scenario = dict(SMALL, name="world")
    if burst:
        event = {"select": {"channels": ["display"]}, "start_hour": 10, "amplitude": 1.5}
        scenario["events"] = [event]
    expected = scenario_from_dict(scenario).expected
    assert expected.value == (0.92 if burst else 0.95)
    checks = check_targets(_summary(value), {"world": expected})
    assert bool(checks[VALUE_CHECK].iloc[0]) is met


def test_an_event_that_only_reshapes_demand_is_no_burst() -> None:
    event = {"select": {"channels": ["ctv"]}, "start_hour": 10, "shape": "nyc_blizzard"}
    assert scenario_from_dict(dict(SMALL, events=[event])).expected == Expected()


def test_simulate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SMALL))
    out = tmp_path / "report"
    assert main([str(path), "--seeds", "2", "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "tiny (median over 2 seeds)" in printed and "reallocator" in printed
    assert len(pd.read_csv(out / "metrics.csv")) == 2 * 5
    assert main([str(tmp_path / "missing.json")]) == 2


def test_without_matplotlib_the_report_has_tables_and_says_how_to_get_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from reallocator.sim import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr("reallocator.sim.cli.plots_available", lambda: False)
    with pytest.raises(report.PlotsUnavailable, match=r"reallocator\[sim\]"):
        report._pyplot()
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SMALL))
    out = tmp_path / "report"
    assert main([str(path), "--seed", "0", "--out", str(out), "--strategies", "static"]) == 0
    assert "pip install 'reallocator[sim]'" in capsys.readouterr().err
    assert (out / "summary.csv").exists() and not list(out.glob("*.png"))

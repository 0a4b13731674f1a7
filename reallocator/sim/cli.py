"""`reallocator simulate SCENARIO`: run one scenario for some seeds, print the table, write the
report folder (metrics.csv, summary.csv, targets.csv, summary.txt and the plots of the first
seed). Also the shared driver of benchmarks/pacing_quality.py (`run_tasks`).

`reallocator simulate` is `add_arguments` (reallocator.sim.args, light to import) and
`simulate_command`; ``python -m reallocator.sim.cli`` runs the same without the main CLI."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from reallocator.sim.args import add_arguments
from reallocator.sim.metrics import check_targets, oracle_metrics, run_metrics
from reallocator.sim.report import (
    MATPLOTLIB_MISSING,
    format_table,
    format_targets,
    plots_available,
    write_report,
)
from reallocator.sim.run import WorldResult, run_world
from reallocator.sim.scenario import Scenario, ScenarioError, load_scenario, resolve_scenario
from reallocator.sim.world import build_world


@dataclass(frozen=True)
class Task:
    scenario: Scenario
    seed: int
    strategies: tuple[str, ...]
    target: str | None = None  # host:port of a running service, else in-process
    time_limit: float = 10.0
    keep: bool = False  # return the WorldResult (for plots)


def run_task(task: Task) -> tuple[list[dict[str, Any]], WorldResult | None, float]:
    """One world: every strategy and the oracle; metric rows (oracle first)."""
    from reallocator.sim.planner import GrpcPlanner, InProcessPlanner, Planner

    started = time.perf_counter()
    world = build_world(task.scenario, task.seed)

    def planner() -> Planner:
        if task.target:
            return GrpcPlanner(task.target, time_limit=task.time_limit)
        return InProcessPlanner(time_limit=task.time_limit)

    result = run_world(world, task.strategies, planner_factory=planner)
    rows = [oracle_metrics(world, result.oracle, result.floor)]
    rows += [run_metrics(world, result.oracle, run, result.floor) for run in result.runs.values()]
    return rows, (result if task.keep else None), time.perf_counter() - started


def run_tasks(
    tasks: Sequence[Task],
    workers: int = 1,
    progress: Callable[[int, int, Task, float], None] | None = None,
) -> tuple[pd.DataFrame, list[WorldResult]]:
    """All tasks (in a process pool when workers > 1); rows in task order."""
    results: list[tuple[list[dict[str, Any]], WorldResult | None, float] | None] = [None] * len(
        tasks
    )
    if workers <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = run_task(task)
            if progress:
                progress(i + 1, len(tasks), task, results[i][2])  # type: ignore[index]
    else:
        ctx = mp.get_context("spawn")  # never fork a process that may hold gRPC or solver state
        with ctx.Pool(workers) as pool:
            pending = {i: pool.apply_async(run_task, (t,)) for i, t in enumerate(tasks)}
            done = 0
            while pending:
                for i in list(pending):
                    if pending[i].ready():
                        results[i] = pending[i].get()
                        del pending[i]
                        done += 1
                        if progress:
                            progress(done, len(tasks), tasks[i], results[i][2])  # type: ignore[index]
                time.sleep(0.05)
    rows = [row for r in results if r is not None for row in r[0]]
    kept = [r[1] for r in results if r is not None and r[1] is not None]
    return pd.DataFrame(rows), kept


def print_progress(done: int, total: int, task: Task, seconds: float) -> None:
    print(
        f"  [{done:>3}/{total}] {task.scenario.name:<20} seed {task.seed:<3} {seconds:6.1f} s",
        file=sys.stderr,
        flush=True,
    )


def with_policy(scenario: Scenario, overrides: dict[str, float] | None) -> Scenario:
    """The scenario with extra policy overrides (validated)."""
    if not overrides:
        return scenario
    merged = replace(scenario, policy={**scenario.policy, **overrides})
    return merged.validate()


def simulate_command(args: argparse.Namespace) -> int:
    try:
        scenario = with_policy(load_scenario(resolve_scenario(args.scenario)), args.policy)
    except (ScenarioError, OSError) as exc:
        print(f"reallocator simulate: {exc}", file=sys.stderr)
        return 2
    plots = not args.no_plots
    if plots and not plots_available():
        print(f"reallocator simulate: no plots: {MATPLOTLIB_MISSING}", file=sys.stderr)
        plots = False
    seeds = [args.seed] if args.seed is not None else list(range(max(1, args.seeds)))
    tasks = [
        Task(
            scenario,
            s,
            tuple(args.strategies),
            args.target,
            args.time_limit,
            keep=(plots and i == 0),
        )
        for i, s in enumerate(seeds)
    ]
    rows, kept = run_tasks(tasks, args.workers, print_progress)
    out = args.out or Path("reports") / scenario.name
    expected = {scenario.name: scenario.expected}
    summary = write_report(rows, out, expected, kept if plots else [])
    print(format_table(summary))
    print()
    print(format_targets(check_targets(summary, expected)))
    print(f"\nreport: {out}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reallocator.sim.cli", description=__doc__)
    add_arguments(parser)
    return simulate_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

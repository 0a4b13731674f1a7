"""The report: a printable table, CSV of every metric, and plots.

Plots (PNG, matplotlib with the Agg backend, imported only here; matplotlib comes with the
`sim` extra, ``pip install 'reallocator[sim]'``, and without it the report has tables only):

* ``cumulative_spend.png`` - cumulative spend of each strategy against the plan, % of budget
  over the flight (the gap is what pacing error measures);
* ``allocation_by_channel.png`` - each strategy's effective allocation per channel over time
  (stacked; PG deals count at their seller's commitment);
* ``pacing_heatmap.png`` - pacing ratio per deal over time (cumulative spend / what the deal's
  current allocation expects by then on its opportunity curve), one panel per strategy,
  deals grouped by channel; 1 = on pace, diverging colours below and above.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reallocator.sim.metrics import check_targets, summarise
from reallocator.sim.run import WorldResult
from reallocator.sim.scenario import Expected
from reallocator.sim.world import FloatArray, World

STYLES = {
    "static": (0, (5, 2)),
    "rules": "-",
    "greedy": "-",
    "reallocator": "-",
    "foresight": (0, (1, 1)),
    "unstabilised": (0, (3, 1)),
}
"""Static is dashed: with nothing to react to, rules often equals it and would hide it."""

COLORS = {
    "plan": "#444444",
    "static": "#8c8c8c",
    "rules": "#e07b39",
    "greedy": "#b8860b",
    "unstabilised": "#8a8a8a",
    "reallocator": "#2a6fbb",
    "foresight": "#7b4fb0",
    "oracle": "#3a9b5c",
}

TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # column, header, format
    ("strategy", "strategy", "s"),
    ("utilisation", "util%", "pct1"),
    ("utilisation_vs_oracle", "util/orc%", "pct1"),
    ("overspend_max", "overspend$", ",.0f"),
    ("sp_rmse", "SP-RMSE$", ",.1f"),
    ("bat_rmse", "BAT-RMSE", ".3f"),
    ("worst_cum_gap", "maxgap%", "pct2"),
    ("gap_floor", "floor%", "pct2"),
    ("early_exhaustion", "early%", "pct0"),
    ("minutes_before_exhaustion", "min-early", ",.0f"),
    ("value_vs_oracle", "value/orc%", "pct1"),
    ("requests", "requests", ",.0f"),
    ("churn", "churn%", "pct1"),
    ("churn_plan", "plan%", "pct1"),
    ("reversed", "rev%", "pct0"),
    ("reversals_per_deal", "rev/deal", ".2f"),
    ("requests_per_pg", "req/PG", ".1f"),
    ("cut_to_spend_eod", "cut-eod", ".0f"),
    ("limit_violation", "limits%", "pct1"),
    ("solve_ms_mean", "solve-ms", ",.1f"),
)


def _fmt(value: Any, how: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if how.startswith("pct"):
        return f"{100.0 * float(value):.{int(how[3:])}f}"
    return format(float(value), how)


def format_table(summary: pd.DataFrame, title: str = "") -> str:
    """A fixed-width text table of a summary (one block per scenario)."""
    lines: list[str] = []
    if title:
        lines.append(title)
    headers = [h for _, h, _ in TABLE_COLUMNS]
    for scenario, group in summary.groupby("scenario", sort=False):
        rows = [[_fmt(r.get(c), f) for c, _, f in TABLE_COLUMNS] for _, r in group.iterrows()]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        seeds = int(group["seeds"].max()) if "seeds" in group else 1
        lines.append(f"\n{scenario} (median over {seeds} seed{'s' if seeds != 1 else ''})")
        lines.append(
            "  ".join(
                h.rjust(w) if i else h.ljust(w)
                for i, (h, w) in enumerate(zip(headers, widths, strict=True))
            )
        )
        for r in rows:
            lines.append(
                "  ".join(
                    v.rjust(w) if i else v.ljust(w)
                    for i, (v, w) in enumerate(zip(r, widths, strict=True))
                )
            )
    return "\n".join(lines)


def format_targets(checks: pd.DataFrame) -> str:
    if checks.empty:
        return ""
    shown = checks.copy()
    for column in shown.columns[1:]:
        shown[column] = shown[column].map(
            lambda v: "-" if isinstance(v, float) and math.isnan(v) else ("yes" if v else "NO")
        )
    return "Targets (reallocator, medians over seeds):\n" + shown.to_string(index=False)


def write_tables(rows: pd.DataFrame, out: Path, expected: dict[str, Expected]) -> pd.DataFrame:
    """metrics.csv (every run), summary.csv (medians), targets.csv; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "metrics.csv", index=False, float_format="%.6g")
    summary = summarise(rows)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    check_targets(summary, expected).to_csv(out / "targets.csv", index=False)
    return summary


# --- plots ---------------------------------------------------------------------------------


MATPLOTLIB_MISSING = (
    "plots need matplotlib, which comes with the simulator extra: "
    "pip install 'reallocator[sim]' (or pass --no-plots)"
)


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed (it is an optional dependency: the `sim` extra)."""


def plots_available() -> bool:
    """Whether matplotlib can be imported (checked without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotsUnavailable(MATPLOTLIB_MISSING) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _days(world: World) -> FloatArray:
    out: FloatArray = np.arange(1, world.n_steps + 1, dtype=np.float64) * (world.step_hours / 24)
    return out


def plot_cumulative(result: WorldResult, path: Path) -> None:
    plt = _pyplot()
    w = result.world
    days = _days(w)
    budget = float(w.budget)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}
    )
    plan = np.cumsum(w.planned) / budget * 100.0
    top.plot(days, plan, color=COLORS["plan"], ls="--", lw=1.6, label="plan (budget x curve)")
    for name, run in result.runs.items():
        cum = np.cumsum(run.state.spend_hist.sum(axis=0)) / budget * 100.0
        style = STYLES.get(name, "-")
        top.plot(days, cum, color=COLORS.get(name), ls=style, lw=1.8, label=name, zorder=3)
        bottom.plot(days, cum - plan, color=COLORS.get(name), ls=style, lw=1.5, zorder=3)
    top.axhline(
        100.0 * result.oracle.utilisation,
        color=COLORS["oracle"],
        lw=1,
        ls=":",
        label=f"oracle total ({100 * result.oracle.utilisation:.1f}%)",
    )
    top.set_ylabel("cumulative spend, % of budget")
    top.set_title(f"{w.scenario.name} (seed {w.seed}): cumulative spend vs plan")
    top.legend(loc="upper left", frameon=False)
    top.grid(alpha=0.3)
    bottom.axhline(0, color=COLORS["plan"], lw=1, ls="--")
    bottom.set_ylabel("actual - plan, pp")
    bottom.set_xlabel("days into the flight")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_allocation(result: WorldResult, path: Path) -> None:
    plt = _pyplot()
    w = result.world
    days = _days(w)
    n_c = len(w.channel_ids)
    names = list(result.runs)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("tab10")
    budget = float(w.budget)
    for ax, name in zip(axes, names, strict=True):
        cap = result.runs[name].state.cap_hist
        per_channel = np.stack(
            [cap[w.channel == c].sum(axis=0) / budget * 100.0 for c in range(n_c)]
        )
        ax.stackplot(
            days,
            per_channel,
            colors=[cmap(c % 10) for c in range(n_c)],
            labels=list(w.channel_ids),
            alpha=0.85,
        )
        ax.set_title(name)
        ax.set_xlabel("days")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("allocation, % of budget")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="channel")
    fig.suptitle(f"{w.scenario.name} (seed {w.seed}): allocation per channel over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pacing_ratio(world: World, cap_hist: FloatArray, spend_hist: FloatArray) -> FloatArray:
    """(n, T) cumulative spend / expected cumulative spend, the expectation following the
    deal's opportunity curve scaled to its allocation at each step (NaN before anything is
    expected)."""
    share = (
        1.0
        - world.profile_left[world.deal_profile, 1:] / world.profile_left[world.deal_profile, :1]
    )
    expected = cap_hist * share
    cum = np.cumsum(spend_hist, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(expected > 0, cum / expected, np.nan)
    return out


def plot_heatmap(result: WorldResult, path: Path, hours_per_cell: int = 3) -> None:
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    w = result.world
    order = np.lexsort((w.deal_ids, w.channel))
    names = list(result.runs)
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.4 * len(names), 5.2), sharey=True, squeeze=False
    )
    cells = hours_per_cell * w.scenario.steps_per_hour
    image = None
    for ax, name in zip(axes[0], names, strict=True):
        run = result.runs[name]
        ratio = pacing_ratio(w, run.state.cap_hist, run.state.spend_hist)[order]
        t = ratio.shape[1] // cells * cells
        ratio = ratio[:, cells - 1 : t : cells]  # the ratio at the end of each cell
        days = ratio.shape[1] * hours_per_cell / 24.0
        image = ax.imshow(
            np.clip(np.nan_to_num(ratio, nan=1.0), 0.0, 2.0),
            aspect="auto",
            cmap="RdBu",
            norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=2.0),
            extent=(0.0, days, len(order), 0.0),
            interpolation="nearest",
        )
        ax.set_title(name)
        ax.set_xlabel("days")
        edges = np.flatnonzero(np.diff(w.channel[order])) + 1
        for e in edges:
            ax.axhline(e, color="black", lw=0.6)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(w.channel[order])) + 1])
    ends = np.concatenate([starts[1:], [len(order)]])
    axes[0][0].set_yticks((starts + ends) / 2.0)
    axes[0][0].set_yticklabels([w.channel_ids[w.channel[order][s]] for s in starts])
    axes[0][0].set_ylabel("deals, by channel")
    if image is not None:
        bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.025, pad=0.02)
        bar.set_label("pacing ratio (actual / expected, cumulative)")
    fig.suptitle(f"{w.scenario.name} (seed {w.seed}): pacing ratio per deal")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_plots(result: WorldResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / "cumulative_spend.png",
        out / "allocation_by_channel.png",
        out / "pacing_heatmap.png",
    ]
    plot_cumulative(result, paths[0])
    plot_allocation(result, paths[1])
    plot_heatmap(result, paths[2])
    return paths


def write_report(
    rows: pd.DataFrame,
    out: Path,
    expected: dict[str, Expected],
    plotted: Iterable[WorldResult] = (),
) -> pd.DataFrame:
    """Tables for all rows, plots for each world in `plotted` (a sub-folder per scenario when
    there are several)."""
    summary = write_tables(rows, out, expected)
    plotted = list(plotted)
    for result in plotted:
        folder = out if len(plotted) == 1 else out / result.world.scenario.name
        write_plots(result, folder)
    (out / "summary.txt").write_text(
        format_table(summary) + "\n\n" + format_targets(check_targets(summary, expected)) + "\n"
    )
    return summary

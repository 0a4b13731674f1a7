"""A replay's report: the side-by-side table for the terminal, JSON for machines, and a folder of
CSVs and PNG plots (matplotlib, imported only when plots are written).

Plots:

* ``cumulative.png`` - cumulative delivery of the recorded decisions and of every policy
  against the pacing curve, as % of the flight budget;
* ``channels.png`` - delivery per channel and interval, expected by the recorded plans
  (planned) against what was delivered;
* ``forecast_error.png`` - distribution of the per-deal forecast error (delivered - what the
  capacity forecast implied for the interval), relative to the forecast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reallocator.core.model import BudgetType
from reallocator.replay.counterfactual import ReplayResult

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("utilisation", "util%", "pct1"),
    ("value", "value", ",.0f"),
    ("churn", "churn%", "pct1"),
    ("requests", "requests", ",d"),
    ("worst_gap", "maxgap%", "pct2"),
    ("delivered", "delivered", ",.0f"),
)
"""Summary columns as printed: header and format (pctN: a share shown as a percentage)."""


def _fmt(value: object, how: str) -> str:
    number = float(value) if isinstance(value, int | float | np.number) else math.nan
    if not math.isfinite(number):
        return "n/a"
    if how.startswith("pct"):
        return f"{number * 100:.{how[3:]}f}"
    return format(int(number) if how.endswith("d") else number, how)


def table_text(result: ReplayResult) -> str:
    """Policies as columns (the recorded decisions first), metrics as rows."""
    summary = result.summary.copy()
    names = [str(n) for n in summary.index]
    rows = [["metric", *names]]
    unit = result.budget_type.lower()
    if result.budget_type is BudgetType.SPEND:  # micros as money
        summary["delivered"] = summary["delivered"] / 1e6
        unit = result.currency
    for column, header, how in COLUMNS:
        header = f"{header} ({unit})" if column == "delivered" else header
        rows.append([header, *(_fmt(summary.at[n, column], how) for n in summary.index)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]  # fmt: skip
    errors = result.forecast_error
    deals = errors[errors["level"] == "deal"] if len(errors) else errors
    if len(deals):
        mae = float(deals["forecast_error"].abs().sum() / max(deals["forecast"].sum(), 1.0))
        lines.append("")
        lines.append(
            f"forecast: {len(deals)} deal-intervals, absolute error {mae:.1%} of the forecast"
        )
    return "\n".join(lines)


def as_json(result: ReplayResult) -> dict[str, Any]:
    summary = result.summary.reset_index().to_dict(orient="records")
    steps = result.steps.assign(as_of=result.steps["as_of"].map(lambda t: t.isoformat()))
    return {
        "summary": summary,
        "steps": steps.to_dict(orient="records"),
        "forecast_error": {
            level: {
                "intervals": int((result.forecast_error["level"] == level).sum()),
                "planned": float(_level(result, level)["planned"].sum()),
                "forecast": float(_level(result, level)["forecast"].sum()),
                "delivered": float(_level(result, level)["delivered"].sum()),
                "abs_forecast_error": float(_level(result, level)["forecast_error"].abs().sum()),
            }
            for level in ("deal", "seller", "channel")
        },
    }


def _level(result: ReplayResult, level: str) -> pd.DataFrame:
    errors = result.forecast_error
    return errors[errors["level"] == level] if len(errors) else errors


def dumps(result: ReplayResult) -> str:
    return json.dumps(as_json(result), indent=2, default=str)


def write_report(result: ReplayResult, folder: Path, *, plots: bool = True) -> list[Path]:
    """CSVs (summary, steps, channels, forecast_error) and, with `plots`, the PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (
        ("summary", result.summary.reset_index()),
        ("steps", result.steps),
        ("channels", result.channels),
        ("forecast_error", result.forecast_error),
    ):
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    (folder / "summary.txt").write_text(table_text(result) + "\n", encoding="utf-8")
    written.append(folder / "summary.txt")
    if plots:
        written += _plots(result, folder)
    return written


def _plots(result: ReplayResult, folder: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError as exc:  # an optional extra
        raise RuntimeError(
            "plots need matplotlib: pip install 'reallocator[sim]' (or pass --no-plots)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    steps = result.steps
    budget = max(float(steps["expected"].max()), 1.0)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    first = steps[steps["policy"] == steps["policy"].iloc[0]]
    ax.plot(first["as_of"], first["expected"] / budget * 100, color="#444444", lw=1.2,
            ls="--", label="pacing curve")  # fmt: skip
    for name, frame in steps.groupby("policy", sort=False):
        ax.plot(frame["as_of"], frame["delivered"] / budget * 100, lw=1.6, label=str(name))
    ax.set_ylabel("cumulative delivery, % of the curve by the last snapshot")
    ax.set_title("Cumulative delivery per policy against the pacing curve")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    out.append(folder / "cumulative.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)

    errors = result.forecast_error
    channels = errors[errors["level"] == "channel"] if len(errors) else errors
    if len(channels):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for i, (cid, frame) in enumerate(channels.groupby("id", sort=True)):
            color = f"C{i % 10}"
            ax.plot(frame["as_of"], frame["planned"], color=color, ls="--", lw=1.2,
                    label=f"{cid} planned")  # fmt: skip
            ax.plot(frame["as_of"], frame["delivered"], color=color, lw=1.6,
                    label=f"{cid} delivered")  # fmt: skip
        ax.set_ylabel("per interval, budget units")
        ax.set_title("Expected (recorded plans) vs delivered, per channel")
        ax.legend(loc="upper right", fontsize=7, ncol=2)
        fig.autofmt_xdate()
        fig.tight_layout()
        out.append(folder / "channels.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)

        deals = errors[(errors["level"] == "deal") & (errors["forecast"] > 0)]
        if len(deals):
            rel = (deals["forecast_error"] / deals["forecast"]).clip(-2, 2).to_numpy()
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.hist(rel * 100, bins=np.linspace(-200, 200, 41).tolist(), color="#2a6fbb")
            ax.set_xlabel("delivered - forecast, % of the forecast (clipped at ±200%)")
            ax.set_ylabel("deal-intervals")
            ax.set_title("Forecast error distribution")
            fig.tight_layout()
            out.append(folder / "forecast_error.png")
            fig.savefig(out[-1], dpi=110)
            plt.close(fig)
    return out


__all__ = ["as_json", "dumps", "table_text", "write_report"]

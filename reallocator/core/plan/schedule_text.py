"""The words of a buyer schedule, rendered from the plan's `ScheduleTable` alone, for the rows a
reader asks for (a 100k-deal plan carries up to 100k schedules: words for all of them cost more
than the optimisation)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from reallocator.core.plan.model import DealPacing, ScheduleTable
from reallocator.core.plan.sentences import ARROW_FROM, schedule_rationale_column
from reallocator.core.plan.text import amounts, rates, where


def render_schedule_rationales(
    table: ScheduleTable, rows: npt.NDArray[np.int64] | None = None
) -> list[str]:
    """One sentence per schedule of `rows` (all when None): the deal's rate and the one it needs,
    the allocation change, the window's target, pacing ahead and the throttle. Figures formatted
    column-wise (the per-value calls are what costs at 100k schedules)."""
    idx = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    if idx.size == 0:
        return []
    if idx.size >= ARROW_FROM:  # the same words, column-wise (`sentences`)
        words: list[str] = schedule_rationale_column(table, idx).to_pylist()
        return words
    return schedule_rationales_by_row(table, idx)


def schedule_rationales_by_row(table: ScheduleTable, idx: npt.NDArray[np.int64]) -> list[str]:
    """`render_schedule_rationales` a row at a time (short plans; the reference `sentences` is
    tested against)."""
    bt, cur = table.budget_type, table.currency
    observed = table.current_rate[idx]
    new = table.new_allocation[idx]
    old = table.old_allocation[idx]
    part = table.participation[idx].astype(float).tolist()
    seen, changed = np.isfinite(observed), new != old
    # Each figure formatted only for the sentences that show it.
    now_t = where(rates, observed, seen, bt, cur)
    need_t = rates(table.horizon_rate[idx], bt, cur)
    old_t, new_t = where(amounts, old, changed, bt, cur), amounts(new, bt, cur)
    total_t = amounts(table.hourly_target[idx].sum(axis=1), bt, cur)
    deals = table.deal_id[idx].astype(str).tolist()
    sellers = table.seller_id[idx].astype(str).tolist()
    known = seen.tolist()
    moved = changed.tolist()
    ahead = (table.pacing[idx] == DealPacing.AHEAD.value).tolist()
    throttle = table.throttle[idx].astype(float).tolist()
    hours, deadline, ratio = table.window_hours, table.deadline, table.pace_ahead
    out = []
    for j in range(idx.size):
        now = f"is delivering {now_t[j]}" if known[j] else "has no recent delivery rate"
        change = (
            f"its allocation moves from {old_t[j]} to {new_t[j]}"
            if moved[j]
            else f"its allocation stays at {new_t[j]}"
        )
        was = f", was {part[j]:.2f}" if math.isfinite(part[j]) else ""
        pace = f"paced ahead up to {ratio:.3g}x, " if ahead[j] else ""
        out.append(
            f"Deal {deals[j]} (seller {sellers[j]}) {now} and needs {need_t[j]} to finish by "
            f"{deadline}; {change}: target {total_t[j]} over the next {hours:.3g} h, "
            f"{pace}throttle {throttle[j]:.2f}{was}."
        )
    return out


__all__ = ["render_schedule_rationales", "schedule_rationales_by_row"]

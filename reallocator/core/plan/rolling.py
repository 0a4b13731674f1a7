"""Step limits over rolling windows: a deal's total allocation may move at most
`Policy.step_rel_per_hour` (and `step_rel_per_day`) of its total at the window's start, summed
over every plan applied within the window - so replanning every few minutes cannot get around
the per-plan step limit.

The windows' starting totals come from the plans applied (the audit store knows them): per
deal, the total before the first plan applied within the window; a deal no plan moved within
the window starts it where it is now. The room left each way, per deal::

    reference r  = total at the window start (now, if no plan was applied within it)
    up           = max(0, max(floor(r * (1 + share)), r + step_abs) - total now)
    down         = max(0, total now - min(ceil(r * (1 - share)), r - step_abs))

`step_abs` (the automatic even share when the policy leaves it 0) is the least a window allows,
so a deal at 0 can grow. The tighter of the two windows holds; commitments still outrank it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.model import UNITS_LIMIT, Policy

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WindowStarts:
    """Each deal's total allocation at the start of the rolling hour and day (snapshot order;
    NaN: no plan applied within that window moved it)."""

    hour: FloatArray
    day: FloatArray


def window_starts(
    applied: list[tuple[float, pd.DataFrame]], deal_ids: npt.NDArray[np.object_], as_of: float
) -> WindowStarts:
    """Window starts from the plans applied: `applied` is (as_of in unix seconds, the plan's
    deals table) per plan applied in the last day, in any order; `deal_ids` the snapshot's."""

    def start(since: float) -> FloatArray:
        inside = [(t, d) for t, d in applied if since < t <= as_of]
        if not inside:
            return np.full(len(deal_ids), np.nan)
        inside.sort(key=lambda item: item[0])
        frames = []
        for _, d in inside:
            before = d["delivered"].to_numpy(np.int64) + d["old_allocation"].to_numpy(np.int64)
            frames.append(
                pd.DataFrame({"deal_id": d["deal_id"].astype(str).to_numpy(), "before": before})
            )
        first = pd.concat(frames).drop_duplicates("deal_id", keep="first").set_index("deal_id")
        series = first["before"].astype(np.float64).reindex(deal_ids.astype(str))
        out: FloatArray = np.asarray(series.to_numpy(np.float64), dtype=np.float64)
        return out

    return WindowStarts(hour=start(as_of - 3600.0), day=start(as_of - 86_400.0))


def rolling_room(
    total_now: IntArray, starts: WindowStarts, policy: Policy, step_abs: int
) -> tuple[IntArray, IntArray] | None:
    """How far each deal may still grow and shrink (budget units), or None with no window."""
    windows = [
        (ref, share)
        for ref, share in (
            (starts.hour, policy.step_rel_per_hour),
            (starts.day, policy.step_rel_per_day),
        )
        if share > 0
    ]
    if not windows:
        return None
    now = total_now.astype(np.float64)
    up = np.full(len(now), np.inf)
    down = np.full(len(now), np.inf)
    for ref, share in windows:
        r = np.where(np.isnan(ref), now, ref)
        high = np.maximum(np.floor(r * (1.0 + share)), r + step_abs)
        low = np.minimum(np.ceil(r * (1.0 - share)), r - step_abs)
        up = np.minimum(up, np.maximum(0.0, high - now))
        down = np.minimum(down, np.maximum(0.0, now - low))
    return (
        np.minimum(up, UNITS_LIMIT).astype(np.int64),
        np.minimum(down, UNITS_LIMIT).astype(np.int64),
    )


__all__ = ["WindowStarts", "rolling_room", "window_starts"]

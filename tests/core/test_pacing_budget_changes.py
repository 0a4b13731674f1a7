"""Many budget changes: the curve equals applying each change in turn to the end of its
instance (the definition), and costs about linear time (5,000 changes used to take seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import (
    Budget,
    BudgetChange,
    BudgetChangeBehavior,
    Flight,
    PacingSpec,
    Period,
)
from reallocator.core.pacing import curves
from reallocator.core.pacing.calendar import to_unix

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _reference_level(
    cal: curves.PacingCalendar,
    level: curves._LevelSpec,
    pace: np.ndarray,
    shape: curves.Shape,
    behavior: BudgetChangeBehavior,
) -> curves._Level:
    """The definition (the quadratic loop this replaced): every change, in time order, rewrites
    its instance from its slot to the instance's end, from the budget-to-date the earlier
    changes left; the amount it leads to is its new_amount, or the current amount after the
    last change of its scope."""
    first, last = curves._runs(level.key, level.covered)
    cov = level.covered
    cum = np.concatenate([[0.0], np.cumsum(pace)])
    base = cum[np.maximum(first, 0)]
    total = cum[np.maximum(last, 0) + 1] - base
    before, after = cum[:-1] - base, cum[1:] - base
    denom = np.where(total > 0, total, 1.0)
    f_start = shape(np.where(total > 0, before / denom, 0.0), (before > 0) | (pace > 0))
    f_end = shape(np.where(total > 0, after / denom, 0.0), after > 0)
    run_starts = np.flatnonzero(cov & (np.arange(cov.size) == first))
    amounts = curves._amounts_at(level, cal.edges[run_starts], cal.flight[run_starts])
    amount = np.zeros(cov.size)
    if run_starts.size:
        amount[cov] = amounts[np.searchsorted(run_starts, first[cov])]
    e_start, e_end = amount * f_start, amount * f_end
    for scope, change in sorted(level.changes, key=lambda fc: fc[1].at):
        i = int(np.searchsorted(cal.edges, float(to_unix(change.at))))
        if i <= 0 or i >= cal.n_slots or not (cov[i] and cov[i - 1]) or first[i] != first[i - 1]:
            continue
        if scope >= 0 and int(cal.flight[i]) != scope:
            continue
        stop = int(last[i]) + 1
        spent = float(e_end[i - 1])
        later = [c for f, c in level.changes if f == scope and c.at > change.at]
        new = float(change.new_amount) if later else level.amounts[scope]
        if behavior is BudgetChangeBehavior.EVEN:
            e_start[i:stop] = np.maximum(spent, new * f_start[i:stop])
            e_end[i:stop] = np.maximum(spent, new * f_end[i:stop])
        else:
            f_at = float(f_start[i])
            room = max(new - spent, 0.0)
            if 1.0 - f_at > 1e-12:
                e_start[i:stop] = spent + room * (f_start[i:stop] - f_at) / (1.0 - f_at)
                e_end[i:stop] = spent + room * (f_end[i:stop] - f_at) / (1.0 - f_at)
            else:
                e_start[i:stop] = spent + room
                e_end[i:stop] = spent + room
    return curves._Level(first=first, e_start=e_start, e_end=e_end)


def _spec(
    offsets: list[tuple[float, int, int]], behavior: BudgetChangeBehavior, flights: bool
) -> PacingSpec:
    end = T0 + timedelta(days=20)
    changes = tuple(
        BudgetChange(
            T0 + timedelta(hours=h),
            period,
            1_000 + 37 * k,
            1_000 + 53 * k,
            ("f1" if k % 2 else "f2") if flights else "",
        )
        for k, (h, _, period_code) in enumerate(offsets)
        for period in [(Period.LIFETIME, Period.DAY)[period_code % 2]]
    )
    if flights:
        mid = T0 + timedelta(days=9)
        budgets = (Budget(Period.LIFETIME, 5_000), Budget(Period.DAY, 400))
        return PacingSpec(
            flights=(Flight("f1", T0, mid, budgets), Flight("f2", mid, end, budgets)),
            budget_changes=changes,
            change_behavior=behavior,
        )
    return PacingSpec(
        start=T0,
        end=end,
        budgets=(Budget(Period.LIFETIME, 10_000), Budget(Period.DAY, 900)),
        budget_changes=changes,
        change_behavior=behavior,
    )


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(
        st.tuples(st.floats(-30, 500), st.integers(0, 1), st.integers(0, 1)), max_size=30
    ),
    behavior=st.sampled_from(list(BudgetChangeBehavior)),
    flights=st.booleans(),
)
def test_changes_match_applying_each_to_the_end_of_its_instance(
    offsets: list[tuple[float, int, int]], behavior: BudgetChangeBehavior, flights: bool
) -> None:
    spec = _spec(offsets, behavior, flights)
    fast = curves.build_curve(spec, "UTC")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(curves, "_evaluate_level", _reference_level)
        slow = curves.build_curve(spec, "UTC")
    np.testing.assert_allclose(fast.cum_end, slow.cum_end, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(fast.cum_start, slow.cum_start, rtol=1e-12, atol=1e-9)

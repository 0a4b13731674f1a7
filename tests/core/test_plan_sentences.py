"""A long plan's words assembled by Arrow (`sentences`) are the row-wise renderers' words, byte
for byte: on real plans, and on their tables with every column pushed to its odd values
(missing rates, infinities, every binding and reason, both ends of a group, stall outlooks,
text and object label columns, every budget unit), for all rows and for a subset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import BudgetType, Policy, text_array
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.explain import deal_rationales_by_row, render_deal_rationales
from reallocator.core.plan.model import BindingKind, DealPacing, Plan, ReasonCode
from reallocator.core.plan.schedule_text import (
    render_schedule_rationales,
    schedule_rationales_by_row,
)
from reallocator.core.plan.sentences import (
    ARROW_FROM,
    deal_rationale_column,
    schedule_rationale_column,
)
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

_PLANS: dict[tuple[int, int], Plan] = {}


def _plan(n: int, seed: int) -> Plan:
    """A real plan (built once per shape: the properties vary its table, not the solve)."""
    key = (n, seed)
    if key not in _PLANS:
        errors = Violations()
        msg = build_snapshot(random_snapshot_spec(n, seed), "deals")
        snapshot = decode_snapshot(msg, Policy(step_rel=0.2), errors)
        assert snapshot is not None, errors.items
        _PLANS[key] = build_plan(snapshot, text=False)
    return _PLANS[key]


def _odd_floats(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    values = rng.random(n) * scale
    pick = rng.random(n)
    values[pick < 0.1] = np.nan
    values[(pick >= 0.1) & (pick < 0.13)] = np.inf
    values[(pick >= 0.13) & (pick < 0.16)] = 0.0
    values[(pick >= 0.16) & (pick < 0.2)] = np.round(values[(pick >= 0.16) & (pick < 0.2)], -4)
    return values


def _mutated_deals(deals: pd.DataFrame, seed: int, as_text: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(deals)
    old = rng.integers(0, 10**12, n)
    same = rng.random(n) < 0.3
    new = np.where(same, old, rng.integers(0, 10**12, n))
    statuses = np.array(["ON_PACE", "OVER", "UNDER", "STALLED", "NOT_STARTED", "COMPLETED"])

    def labels(values: np.ndarray) -> object:
        objects = values.astype(object)
        return text_array(objects) if as_text else objects

    kept = rng.random(n)
    answered = rng.random(n)
    return deals.assign(
        old_allocation=old,
        new_allocation=new,
        delta=new - old,
        binding=labels(rng.choice(np.array([str(k) for k in BindingKind]), n)),
        reason=labels(rng.choice(np.array([str(r) for r in ReasonCode]), n)),
        pacing_status=labels(rng.choice(statuses, n)),
        pacing_ratio=_odd_floats(rng, n, 3.0),
        recent_rate=_odd_floats(rng, n, 1e10),
        required_rate=_odd_floats(rng, n, 1e10),
        capacity=rng.integers(0, 10**13, n),
        step=rng.integers(0, 10**11, n),
        group_at_max=rng.random(n) < 0.5,
        stall_outlook=np.where(kept < 0.5, np.nan, kept),
        # a share left once a seller answers: none, some, or none in time (0)
        answer_share=np.where(answered < 0.4, np.nan, np.where(answered < 0.6, 0.0, answered)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([3, 40, 250]),
    seed=st.integers(0, 3),
    mutate=st.integers(0, 10**6),
    as_text=st.booleans(),
    budget_type=st.sampled_from(list(BudgetType)),
)
def test_deal_words_by_arrow_are_the_row_wise_words(
    n: int, seed: int, mutate: int, as_text: bool, budget_type: BudgetType
) -> None:
    plan = _plan(n, seed)
    for deals in (plan.deals, _mutated_deals(plan.deals, mutate, as_text)):
        every = np.arange(len(deals))
        subset = np.flatnonzero(np.random.default_rng(mutate).random(len(deals)) < 0.5)
        for rows in (every, subset):
            want = deal_rationales_by_row(deals, budget_type, "EUR", rows)
            got = deal_rationale_column(deals, budget_type, "EUR", rows).to_pylist()
            assert got == want


@pytest.mark.parametrize(
    "dropped", [["stall_outlook"], ["answer_share"], ["stall_outlook", "answer_share"]]
)
def test_a_plan_without_the_newer_columns_reads_as_before(dropped: list[str]) -> None:
    deals = _mutated_deals(_plan(40, 1).deals, 7, True).drop(columns=dropped)
    rows = np.arange(len(deals))
    want = deal_rationales_by_row(deals, BudgetType.SPEND, "USD", rows)
    assert deal_rationale_column(deals, BudgetType.SPEND, "USD", rows).to_pylist() == want
    assert any("capped by its capacity forecast of" in w for w in want)
    assert ("stall this long" in " ".join(want)) == ("stall_outlook" not in dropped)
    assert ("once its seller answers" in " ".join(want)) == ("answer_share" not in dropped)


def test_an_unknown_binding_is_refused_by_both() -> None:
    deals = _plan(40, 2).deals
    broken = deals.assign(
        binding=np.array(["NOT_A_KIND"] * len(deals), dtype=object),
        new_allocation=deals["old_allocation"] + 1,
        reason=np.array(["HIGHER_VALUE"] * len(deals), dtype=object),
    )
    rows = np.arange(len(deals))
    with pytest.raises(ValueError):
        deal_rationales_by_row(broken, BudgetType.SPEND, "USD", rows)
    with pytest.raises(ValueError):
        deal_rationale_column(broken, BudgetType.SPEND, "USD", rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([3, 40, 250]),
    seed=st.integers(0, 3),
    mutate=st.integers(0, 10**6),
    budget_type=st.sampled_from(list(BudgetType)),
    pace_ahead=st.sampled_from([1.0, 2.0, 1.2345, 100.0]),
    hours=st.sampled_from([6.0, 0.5, 24.0, 1 / 3]),
)
def test_schedule_words_by_arrow_are_the_row_wise_words(
    n: int, seed: int, mutate: int, budget_type: BudgetType, pace_ahead: float, hours: float
) -> None:
    table = _plan(n, seed).schedule_table
    assert table is not None and len(table) > 0
    rng = np.random.default_rng(mutate)
    m = len(table)
    old = rng.integers(0, 10**12, m)
    throttle = _odd_floats(rng, m, 1.0)
    throttle[rng.random(m) < 0.05] = -np.inf
    odd = dataclasses.replace(
        table,
        current_rate=_odd_floats(rng, m, 1e10),
        horizon_rate=_odd_floats(rng, m, 1e10),
        old_allocation=old,
        new_allocation=np.where(rng.random(m) < 0.3, old, rng.integers(0, 10**12, m)),
        participation=_odd_floats(rng, m, 1.0),
        throttle=throttle,
        pacing=rng.choice(np.array([p.value for p in DealPacing], dtype=object), m),
        window_hours=hours,
        pace_ahead=pace_ahead,
        deadline="2026-12-24 18:00 Europe/Paris",
        budget_type=budget_type,
        currency="JPY",
    )
    for schedules in (table, odd):
        every = np.arange(m)
        subset = np.flatnonzero(rng.random(m) < 0.5)
        for rows in (every, subset):
            want = schedule_rationales_by_row(schedules, rows)
            assert schedule_rationale_column(schedules, rows).to_pylist() == want


def test_long_plans_take_the_arrow_words_and_short_ones_the_row_wise() -> None:
    plan = _plan(3 * ARROW_FROM, 0)
    table = plan.schedule_table
    assert table is not None and len(table) >= ARROW_FROM
    rows = np.arange(len(plan.deals))
    words = render_deal_rationales(plan.deals, plan.budget_type, plan.currency)
    assert words == deal_rationales_by_row(plan.deals, plan.budget_type, plan.currency, rows)
    assert any(w != "unchanged" for w in words)
    texts = render_schedule_rationales(table)
    assert texts == schedule_rationales_by_row(table, np.arange(len(table)))
    assert all(t.startswith("Deal ") and t.endswith(".") for t in texts)

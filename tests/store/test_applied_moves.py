"""The moves of applied plans as a Replan reads them (`store.sql._moves`): built from its blocks,
the frame pandas' dict constructor built from the same Arrow tables; and, when a plan's as_of
follows them all, per deal the last, as `RequestHistory.deciding` reduces that frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.plan.model import RequestHistory
from reallocator.store.sql import _moves


def _reference(applied: list[tuple[float, pa.Table]], since: float) -> pd.DataFrame:
    """The frame as `_moves` built it before (pandas' dict constructor)."""
    kept = [(when, deals.select(["deal_id", "delta"])) for when, deals in applied if when >= since]
    if not kept:
        return pd.DataFrame(
            {
                "deal_id": pd.Series(dtype="str"),
                "planned_at": pd.Series(dtype="float64"),
                "delta": pd.Series(dtype="int64"),
            }
        )
    table = pa.concat_tables([deals for _, deals in kept], promote_options="permissive")
    at = np.repeat([when for when, _ in kept], [deals.num_rows for _, deals in kept])
    delta = table.column("delta").to_numpy().astype(np.int64, copy=False)
    moved = np.flatnonzero(delta)
    return pd.DataFrame(
        {
            "deal_id": table.column("deal_id").take(pa.array(moved)).to_pandas().astype("str"),
            "planned_at": at[moved].astype(np.float64),
            "delta": delta[moved],
        }
    )


@st.composite
def plans(draw: st.DrawFn) -> list[tuple[float, pa.Table]]:
    out = []
    coded = draw(st.booleans())  # one campaign's tables are all alike
    for k in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, 12))
        ids = pa.array([f"d{draw(st.integers(0, 20))}" for _ in range(n)], pa.string())
        if coded:
            ids = ids.dictionary_encode()
        delta = pa.array(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), pa.int64())
        out.append((1_000.0 + 3_600.0 * k, pa.table({"deal_id": ids, "delta": delta})))
    return out


@settings(max_examples=150, deadline=None)
@given(applied=plans(), since=st.sampled_from([0.0, 1_000.0, 8_000.0, 99_999.0]))
def test_the_moves_frame_is_the_one_pandas_built(
    applied: list[tuple[float, pa.Table]], since: float
) -> None:
    got = _moves(applied, since)
    want = _reference(applied, since)
    pd.testing.assert_frame_equal(got, want)
    assert list(got.dtypes.astype(str)) == ["str", "float64", "int64"]


@settings(max_examples=150, deadline=None)
@given(
    applied=plans(),
    since=st.sampled_from([0.0, 1_000.0, 8_000.0]),
    before=st.sampled_from([0.0, 4_600.0, 12_000.0, 99_999.0]),
)
def test_the_moves_a_plan_reads_are_each_deals_last(
    applied: list[tuple[float, pa.Table]], since: float, before: float
) -> None:
    """Every move at or before `before`: per deal its last, in time order (ties in their
    order: the later plan's), as `deciding` gives; a move after it (a plan made from an older
    snapshot): all of them, for the plan to filter."""
    got = _moves(applied, since, before)
    every = _reference(applied, since)
    if (every["planned_at"] <= before).all():
        want = RequestHistory(moves=every).deciding().moves.reset_index(drop=True)
        assert got["deal_id"].is_unique
    else:
        want = every
    pd.testing.assert_frame_equal(got, want)

"""`model.positions`: a label's position among unique labels, pandas' get_indexer through a dict
for short inputs; and the stored per-deal inputs of a plan built from blocks (`supplied`),
byte for byte what the frame built by pandas' dict constructor stored."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import SMALL_POSITIONS, CampaignSnapshot, Policy, positions, text_array
from reallocator.core.plan.model import RequestHistory
from reallocator.core.plan.rolling import WindowStarts
from reallocator.lifecycle import supplied
from reallocator.store.plan_codec import inputs_parts
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

LABELS = st.text(alphabet="abcdé-1", min_size=0, max_size=4)


def _forms(values: list[str]) -> list[object]:
    """The array types callers pass: object and fixed-width numpy, a "str" Series, its array."""
    return [
        np.array(values, dtype=object),
        np.array(values, dtype=str) if values else np.array([], dtype=str),
        pd.Series(values, dtype="str"),
        text_array(np.array(values, dtype=object)),
    ]


@settings(max_examples=150, deadline=None)
@given(among=st.lists(LABELS, unique=True, max_size=40), keys=st.lists(LABELS, max_size=40))
def test_positions_are_pandas_get_indexer(among: list[str], keys: list[str]) -> None:
    want = pd.Index(np.array(among, dtype=object)).get_indexer(np.array(keys, dtype=object))
    for key_form in _forms(keys):
        for among_form in _forms(among):
            got = positions(key_form, among_form)
            assert got.dtype == np.intp
            assert got.tolist() == want.tolist()


def test_long_inputs_take_pandas_way_with_the_same_answer() -> None:
    rng = np.random.default_rng(3)
    among = np.array([f"d{i}" for i in rng.permutation(SMALL_POSITIONS)], dtype=object)
    keys = np.array([f"d{i}" for i in rng.integers(0, 2 * SMALL_POSITIONS, 500)], dtype=object)
    want = pd.Index(among).get_indexer(keys)
    assert positions(keys, among).tolist() == want.tolist()
    assert (want == -1).any() and (want >= 0).any()


@pytest.mark.parametrize("n", [3, 5_000])
def test_repeated_labels_are_refused_as_pandas_refuses_them(n: int) -> None:
    among = np.array(["a", *(f"x{i}" for i in range(n)), "a"], dtype=object)
    with pytest.raises(pd.errors.InvalidIndexError):
        positions(np.array(["a"], dtype=object), among)


def _decoded(n: int, seed: int) -> CampaignSnapshot:
    errors = Violations()
    snapshot = decode_snapshot(build_snapshot(random_snapshot_spec(n, seed)), Policy(), errors)
    assert snapshot is not None, errors.items
    return snapshot


def _reference_deals(snapshot: CampaignSnapshot, windows: WindowStarts | None) -> pd.DataFrame:
    """The per-deal inputs frame as `supplied` built it with pandas' dict constructor."""
    deals = snapshot.deals
    n = len(deals)
    return pd.DataFrame(
        {
            "deal_id": deals["deal_id"].astype(str).to_numpy(),
            "plan_applied_at": deals["plan_applied_at"].to_numpy(np.int64),
            "delivered_at_plan": deals["delivered_at_plan"].to_numpy(np.int64),
            "available_inventory": deals["available_inventory"].to_numpy(np.int64),
            "window_hour": windows.hour if windows is not None else np.full(n, np.nan),
            "window_day": windows.day if windows is not None else np.full(n, np.nan),
            "windows": np.full(n, windows is not None),
        }
    )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 10_000),
    with_windows=st.booleans(),
    applied=st.floats(0.0, 1.0),
)
def test_supplied_stores_the_bytes_the_pandas_built_frame_stored(
    n: int, seed: int, with_windows: bool, applied: float
) -> None:
    snapshot = _decoded(n, seed)
    rng = np.random.default_rng(seed)
    deals = snapshot.deals.copy()
    chosen = rng.random(n) < applied
    deals["plan_applied_at"] = np.where(chosen, 1_770_000_000_000_000, -1)
    deals["delivered_at_plan"] = np.where(chosen, rng.integers(0, 10**9, n), -1)
    snapshot = replace(snapshot, deals=deals)
    windows = None
    if with_windows:
        hour = np.where(rng.random(n) < 0.5, rng.random(n) * 1e6, np.nan)
        windows = WindowStarts(hour=hour, day=np.where(np.isnan(hour), np.nan, hour * 2))
    history = RequestHistory()
    got = supplied(snapshot, history, windows)
    if windows is None and not chosen.any() and not (deals["available_inventory"] >= 0).any():
        assert got.deals.empty
        return
    want = _reference_deals(snapshot, windows)
    assert inputs_parts(got)[1] == inputs_parts(type(got)(history.requests, want))[1]
    pd.testing.assert_frame_equal(got.deals, want)

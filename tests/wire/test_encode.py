"""encode_snapshot is the inverse of decode_snapshot, in every deal form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import (
    Budget,
    BudgetChange,
    CampaignSnapshot,
    Flight,
    PacingMode,
    PacingSpec,
    Period,
    Policy,
)
from reallocator.v1 import snapshot_pb2
from reallocator.wire.encode import COMPRESS_FROM_BYTES, encode_pacing, encode_snapshot
from reallocator.wire.pacing import decode_pacing
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


def decode(msg: snapshot_pb2.CampaignSnapshot) -> CampaignSnapshot:
    errors = Violations()
    snapshot = decode_snapshot(
        snapshot_pb2.CampaignSnapshot.FromString(msg.SerializeToString()), Policy(), errors
    )
    assert snapshot is not None, errors.items
    return snapshot


def assert_same(a: CampaignSnapshot, b: CampaignSnapshot) -> None:
    pd.testing.assert_frame_equal(a.deals, b.deals)
    pd.testing.assert_frame_equal(a.sellers, b.sellers)
    pd.testing.assert_frame_equal(a.channels, b.channels)
    assert (a.campaign_id, a.as_of, a.timezone, a.currency) == (
        b.campaign_id,
        b.as_of,
        b.timezone,
        b.currency,
    )
    assert (a.delivery is None) == (b.delivery is None)
    if a.delivery is not None and b.delivery is not None:
        assert (a.delivery.window_start, a.delivery.bucket) == (
            b.delivery.window_start,
            b.delivery.bucket,
        )
        for k in ("spend_micros", "impressions", "avails", "wins"):
            np.testing.assert_array_equal(getattr(a.delivery, k), getattr(b.delivery, k))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    form=st.sampled_from(["deals", "columns", "arrow"]),
    buckets=st.sampled_from([0, 6]),
)
def test_round_trip_in_every_form(n: int, seed: int, form: str, buckets: int) -> None:
    original = decode(build_snapshot(random_snapshot_spec(n, seed, n_buckets=buckets), "deals"))
    again = decode(encode_snapshot(original, form))  # type: ignore[arg-type]
    assert_same(original, again)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    compression=st.sampled_from(["zstd", "lz4"]),
    buckets=st.sampled_from([0, 6]),
)
def test_compressed_arrow_decodes_the_same(
    n: int, seed: int, compression: str, buckets: int
) -> None:
    original = decode(build_snapshot(random_snapshot_spec(n, seed, n_buckets=buckets), "deals"))
    again = decode(encode_snapshot(original, "arrow", compression=compression))
    assert_same(original, again)


def test_compression_shrinks_a_day_of_delivery() -> None:
    original = decode(build_snapshot(random_snapshot_spec(2_000, 5, n_buckets=24), "deals"))
    plain = encode_snapshot(original, "arrow").ByteSize()
    packed = encode_snapshot(original, "arrow", compression="zstd").ByteSize()
    assert packed < plain / 2


def test_auto_compression_packs_large_tables_only() -> None:
    """Compression "auto": a table of 1 MiB or more goes zstd, a smaller one plain
    (compressing it costs the server more CPU than the bytes it saves); both decode the same."""
    small = decode(build_snapshot(random_snapshot_spec(50, 3, n_buckets=24), "deals"))
    auto = encode_snapshot(small, "arrow", compression="auto")
    assert auto.deals_table.arrow_ipc == encode_snapshot(small, "arrow").deals_table.arrow_ipc
    assert_same(small, decode(auto))
    large = decode(build_snapshot(random_snapshot_spec(4_000, 4, n_buckets=48), "deals"))
    plain = encode_snapshot(large, "arrow").deals_table.recent_delivery.arrow_ipc
    assert len(plain) >= COMPRESS_FROM_BYTES
    packed = encode_snapshot(large, "arrow", compression="auto")
    assert len(packed.deals_table.recent_delivery.arrow_ipc) < len(plain) / 2
    assert_same(large, decode(packed))


def test_pacing_round_trip_keeps_every_setting() -> None:
    start = datetime(2026, 3, 1, 5, tzinfo=UTC)
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[0, 6:12] = daypart[0, 14:22] = daypart[5, :] = True
    spec = PacingSpec(
        mode=PacingMode.FRONT_LOADED,
        start=start,
        end=start + timedelta(days=30),
        budgets=(Budget(Period.LIFETIME, 9_000), Budget(Period.DAY, 500)),
        flights=(
            Flight("f1", start, start + timedelta(days=10), (Budget(Period.LIFETIME, 4_000),)),
        ),
        front_share=0.5,
        front_fraction=0.2,
        catch_up_fraction=0.9,
        custom_weights=np.arange(24, dtype=float) + 1,
        daypart=daypart,
        budget_changes=(BudgetChange(start + timedelta(days=2), Period.DAY, 400, 500),),
        max_spend_micros=123,
    )
    errors = Violations()
    back = decode_pacing(encode_pacing(spec), "pacing", start + timedelta(days=5), errors)
    assert not errors
    np.testing.assert_array_equal(back.daypart, daypart)  # type: ignore[arg-type]
    np.testing.assert_array_equal(back.custom_weights, spec.custom_weights)  # type: ignore[arg-type]
    for name in (
        "mode",
        "start",
        "end",
        "budgets",
        "flights",
        "front_share",
        "front_fraction",
        "catch_up_fraction",
        "budget_changes",
        "max_spend_micros",
        "budget_type",
    ):
        assert getattr(back, name) == getattr(spec, name), name


@pytest.mark.parametrize("form", ["columns", "arrow"])
def test_matrix_forms_read_missing_series_as_zero(form: str) -> None:
    """A matrix has a row for every deal: a deal without a series reads as no delivery."""
    original = decode(build_snapshot(random_snapshot_spec(3, 1, n_buckets=4), "deals"))
    assert original.delivery is not None
    original.delivery.impressions[1] = np.nan
    again = decode(encode_snapshot(original, form))  # type: ignore[arg-type]
    assert again.delivery is not None
    np.testing.assert_array_equal(again.delivery.impressions[1], np.zeros(4))

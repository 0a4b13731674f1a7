"""encode_snapshot is the inverse of decode_snapshot, in every deal form."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
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
from reallocator.core.pacing.assessment import Assessment, assess
from reallocator.v1 import snapshot_pb2
from reallocator.wire.assessment import (
    STORED_MAGIC,
    encode_assessment,
    stored_assessment,
    stored_message,
)
from reallocator.wire.encode import (
    COMPRESS_FROM_BYTES,
    arrow_stream,
    encode_pacing,
    encode_snapshot,
    narrowest,
)
from reallocator.wire.pacing import decode_pacing
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
import test_pacing_assessment_fast as pacing_fast  # random campaigns, a reference campaign


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
    assert packed < 0.75 * plain  # the series already travel in their narrowest integer type


def test_auto_compression_packs_large_tables_only() -> None:
    """Compression "auto": a table of 32 MiB or more goes zstd, a smaller one plain
    (inflating it costs the server more CPU than its bytes cost a LAN); both read the same."""
    small = decode(build_snapshot(random_snapshot_spec(50, 3, n_buckets=24), "deals"))
    auto = encode_snapshot(small, "arrow", compression="auto")
    assert auto.deals_table.arrow_ipc == encode_snapshot(small, "arrow").deals_table.arrow_ipc
    assert_same(small, decode(auto))
    rows = COMPRESS_FROM_BYTES // 8 + 1
    big = pa.table({"spend_micros": np.arange(rows, dtype=np.int64) % 1000})
    plain, packed = arrow_stream(big), arrow_stream(big, "auto")
    assert len(plain) >= COMPRESS_FROM_BYTES and len(packed) < len(plain) / 10
    assert pa.ipc.open_stream(pa.py_buffer(packed)).read_all().equals(big)


@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30)
    | st.lists(st.integers(0, 2**40), max_size=30)
)
def test_series_travel_in_the_narrowest_integer_type(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    narrow = narrowest(array)
    assert np.array_equal(narrow.astype(np.int64), array)
    if array.size and array.min() >= 0 and array.max() < 2**32:
        assert narrow.dtype.itemsize <= 4 and narrow.dtype.kind == "u"


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


def _message_bytes(result: Assessment) -> bytes:
    """What the store kept of an assessment before its stored form: the BASIC message."""
    return encode_assessment(result, include_deals=False).SerializeToString(deterministic=True)


def _assert_stored_reads_as_message(snapshot: CampaignSnapshot) -> None:
    stored = stored_assessment(assess(snapshot))
    assert stored.startswith(STORED_MAGIC)
    # A fresh assessment: the stored one's alerts were never worded, this one's are.
    assert stored_message(stored) == _message_bytes(assess(snapshot))


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_a_stored_assessment_reads_back_as_its_message(data: st.DataObject) -> None:
    """The stored form (numbers and labels, the alerts unworded) reads back as the BASIC
    PacingAssessment message byte for byte, its alerts' words included, over random campaigns
    (budget types, modes, dayparts, flights, statuses, snapshots before, in and after the
    flight) and stalled windows."""
    snapshot = pacing_fast.campaign(data.draw)
    window = data.draw(st.sampled_from([None, timedelta(minutes=90), timedelta(hours=5)]))
    if window is not None:
        snapshot = replace(snapshot, policy=replace(snapshot.policy, stalled_window=window))
    _assert_stored_reads_as_message(snapshot)


@pytest.mark.parametrize("stalled", [False, True])
def test_a_stored_assessment_with_many_alerts_reads_back_as_its_message(stalled: bool) -> None:
    """Every reason's sentence (a campaign gone dark stalls every deal and group)."""
    snapshot = pacing_fast.reference_snapshot(stalled=stalled, n=300)
    assert assess(snapshot).n_alerts > 10
    _assert_stored_reads_as_message(snapshot)


def test_an_assessment_stored_as_its_message_reads_as_it_is() -> None:
    """Rows written before the stored form (and AssessPacing's BASIC view) hold the message;
    an assessment without words to defer is stored as its message too."""
    snapshot = pacing_fast.reference_snapshot(stalled=True)
    message = _message_bytes(assess(snapshot))
    assert stored_message(message) == message
    unworded = assess(snapshot, alert_messages=False)
    assert stored_assessment(unworded) == _message_bytes(unworded)
    assert stored_message(b"") == b""

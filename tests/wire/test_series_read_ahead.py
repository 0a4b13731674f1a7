"""A large delivery series stream is read on a thread while the deals are checked
(`deals.read_matrix_ahead`, `snapshot.decode_snapshot`): the decoded snapshot and the violations,
in their order, are those of the stream read in turn, for valid snapshots and for ones with bad
deals, a bad series, or both."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
from builders import build_snapshot, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.v1 import snapshot_pb2
from reallocator.wire import deals as wire_deals
from reallocator.wire.arrow_guard import StreamReading, compressed_stream
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import FieldViolation, Violations

DEAL_FAULTS = ("negative_allocation", "unknown_seller", "duplicate_id", "bad_deal_type")
SERIES_FAULTS = ("negative_value", "not_arrow", "bucket_count", "too_many_buckets", "no_as_of")


@st.composite
def snapshots(draw: st.DrawFn) -> snapshot_pb2.CampaignSnapshot:
    """A random snapshot in a table form, its series as an Arrow stream, with some deals and
    the series broken (or not)."""
    n = draw(st.integers(2, 8))
    spec = random_snapshot_spec(n, draw(st.integers(0, 2**16)), n_buckets=draw(st.integers(1, 4)))
    faults = draw(st.sets(st.sampled_from(DEAL_FAULTS)))
    row = draw(st.integers(0, n - 1))
    if "negative_allocation" in faults:
        spec = spec.replace_deal(row, allocation=-5)
    if "unknown_seller" in faults:
        spec = spec.replace_deal(row, seller_id="nobody")
    if "duplicate_id" in faults:
        spec = spec.replace_deal((row + 1) % n, deal_id=spec.deals[row].deal_id)
    if "bad_deal_type" in faults:
        spec = spec.replace_deal(row, deal_type=9)
    fault = draw(st.sampled_from((None, *SERIES_FAULTS)))
    if fault == "negative_value":
        assert spec.delivery is not None
        spec.delivery.spend_micros[row, 0] = -1
    msg = build_snapshot(spec, draw(st.sampled_from(["columns", "arrow"])), matrix_arrow=True)
    matrix = msg.deals_table.recent_delivery
    if fault == "not_arrow":
        matrix.arrow_ipc = b"not arrow" * draw(st.integers(1, 3))
    elif fault == "bucket_count":
        matrix.bucket_count += 1
    elif fault == "too_many_buckets":
        matrix.bucket_count = 10**6
    elif fault == "no_as_of":
        msg.ClearField("as_of")
    return msg


def _decode(
    msg: snapshot_pb2.CampaignSnapshot, ahead: bool
) -> tuple[CampaignSnapshot | None, list[FieldViolation], int]:
    """The decode with every series stream read ahead (`ahead`) or none; and how many were."""
    started: list[Any] = []

    class Counted(StreamReading):
        def __init__(self, data: bytes, max_bytes: int) -> None:
            started.append(data)
            super().__init__(data, max_bytes)

    errors = Violations()
    with (
        mock.patch.object(wire_deals, "THREADED_BYTES", 0 if ahead else 1 << 62),
        mock.patch.object(wire_deals, "compressed_stream", lambda data: ahead),
        mock.patch.object(wire_deals, "StreamReading", Counted),
    ):
        result = decode_snapshot(msg, Policy(), errors)
    return result, errors.items, len(started)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_a_series_read_beside_the_deal_checks_decodes_as_one_read_in_turn(
    msg: snapshot_pb2.CampaignSnapshot,
) -> None:
    ahead, ahead_errors, started = _decode(msg, ahead=True)
    in_turn, in_turn_errors, none = _decode(msg, ahead=False)
    assert none == 0
    matrix = msg.deals_table.recent_delivery
    assert started == (0 <= matrix.bucket_count <= 10_000 and bool(matrix.arrow_ipc))
    assert ahead_errors == in_turn_errors
    assert (ahead is None) == (in_turn is None)
    if ahead is None or in_turn is None:
        return
    pd.testing.assert_frame_equal(ahead.deals, in_turn.deals)
    assert ahead.delivery is not None and in_turn.delivery is not None
    for name in ("spend_micros", "impressions", "avails", "wins"):
        a, b = getattr(ahead.delivery, name), getattr(in_turn.delivery, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert (ahead.delivery.window_start, ahead.delivery.bucket) == (
        in_turn.delivery.window_start,
        in_turn.delivery.bucket,
    )


def _zstd(data: bytes) -> bytes:
    """The same Arrow stream with its buffers compressed (zstd)."""
    table = pa.ipc.open_stream(data).read_all()
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def test_a_large_compressed_series_is_read_ahead_and_a_plain_one_is_not() -> None:
    """Above THREADED_BYTES (a 6k-deal, 48-bucket series), with the limits as they are: only a
    compressed stream is inflated on a thread; a plain one is read in turn, to the same
    snapshot."""
    msg = build_snapshot(random_snapshot_spec(6_000, 3), "arrow", matrix_arrow=True)
    plain = msg.deals_table.recent_delivery.arrow_ipc
    assert len(plain) > wire_deals.THREADED_BYTES
    decoded = {}
    started: list[bytes] = []

    class Counted(StreamReading):
        def __init__(self, data: bytes, max_bytes: int) -> None:
            started.append(data)
            super().__init__(data, max_bytes)

    for name, data in (("plain", plain), ("zstd", _zstd(plain))):
        msg.deals_table.recent_delivery.arrow_ipc = data
        started.clear()
        errors = Violations()
        with mock.patch.object(wire_deals, "StreamReading", Counted):
            result = decode_snapshot(msg, Policy(), errors)
        assert not errors and result is not None
        assert len(started) == (name == "zstd")
        decoded[name] = result
    assert decoded["plain"].delivery is not None and decoded["zstd"].delivery is not None
    np.testing.assert_array_equal(
        decoded["plain"].delivery.spend_micros, decoded["zstd"].delivery.spend_micros
    )


def test_only_a_stream_whose_first_batch_is_compressed_reads_as_compressed() -> None:
    table = pa.table({"a": pa.array(np.arange(1_000, dtype=np.int64))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    plain = bytes(sink.getvalue().to_pybytes())
    assert compressed_stream(_zstd(plain))
    assert not compressed_stream(plain)
    for broken in (b"", b"not arrow at all", plain[:40], _zstd(plain)[:20]):
        assert not compressed_stream(broken)

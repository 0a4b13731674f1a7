"""A caller's Arrow IPC stream is checked before anything in it is inflated or converted: a
corrupted stream is a violation (it used to crash the process), a decompression bomb is
rejected before it inflates, and values that cannot mean what the column says are named."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from builders import arrow_ipc, deal_arrow_table, random_snapshot_spec

from reallocator.wire.deals import from_arrow, read_arrow_stream
from reallocator.wire.violations import Violations

TESTS = Path(__file__).resolve().parents[1]


def _stream(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def test_bit_flipped_streams_are_violations_not_crashes() -> None:
    """Seeds of flips that ended the process with SIGSEGV/SIGABRT before the stream was
    validated (8 of them out of the first 100), plus 300 more, in a child process so that a
    crash fails the test instead of ending pytest."""
    script = textwrap.dedent(
        f"""
        import random, sys
        sys.path.insert(0, {str(TESTS)!r})
        from builders import arrow_ipc, deal_arrow_table, random_snapshot_spec
        from reallocator.wire.deals import from_arrow
        from reallocator.wire.violations import Violations
        data = arrow_ipc(deal_arrow_table(random_snapshot_spec(600, seed=5, n_buckets=0).deals))
        rejected = 0
        for k in [0, 4, 15, 17, 22, 85, 92, 96, *range(1000, 1300)]:
            rnd = random.Random(k)
            b = bytearray(data)
            for _ in range(rnd.randint(1, 4)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            errors = Violations()
            raw = from_arrow(bytes(b), "arrow_ipc", errors)
            assert (raw is None) == bool(errors), k
            rejected += raw is None
        print(rejected)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert int(done.stdout.split()[-1]) >= 8


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_decompression_bomb_is_rejected_before_it_inflates(codec: str) -> None:
    bomb = _stream(pa.table({"allocation": np.zeros(2_000_000, np.int64)}), codec)
    assert len(bomb) < 100_000  # 16 MB of zeros
    errors = Violations()
    assert read_arrow_stream(bomb, "arrow_ipc", errors, max_bytes=1_000_000) is None
    assert errors.items[0].field == "arrow_ipc"
    assert "max_arrow_bytes" in errors.items[0].description
    errors = Violations()
    table = read_arrow_stream(bomb, "arrow_ipc", errors, max_bytes=20_000_000)
    assert table is not None and table.num_rows == 2_000_000


def test_a_lying_length_prefix_is_rejected_before_allocating() -> None:
    """The 8-byte prefix of a compressed buffer is what Arrow allocates: 2**40 must not be."""
    data = bytearray(_stream(pa.table({"allocation": np.arange(1000, dtype=np.int64)}), "zstd"))
    # The value buffer's prefix is the only int64 equal to 8000 (1000 int64 values).
    at = bytes(data).find((8000).to_bytes(8, "little"))
    assert at > 0
    data[at : at + 8] = (2**40).to_bytes(8, "little")
    errors = Violations()
    assert read_arrow_stream(bytes(data), "arrow_ipc", errors) is None
    assert "max_arrow_bytes" in errors.items[0].description


def test_uint64_above_int64_is_named_not_wrapped() -> None:
    spec = random_snapshot_spec(3, seed=2, n_buckets=0)
    table = deal_arrow_table(spec.deals)
    i = table.column_names.index("allocation")
    table = table.set_column(i, "allocation", pa.array([1, 2**63 + 5, 3], pa.uint64()))
    errors = Violations()
    assert from_arrow(arrow_ipc(table), "arrow_ipc", errors) is None
    assert errors.items[0].field == "arrow_ipc.allocation"
    assert "out of range" in errors.items[0].description


def test_uint64_value_per_unit_is_read_as_numbers() -> None:
    spec = random_snapshot_spec(3, seed=2, n_buckets=0)
    table = deal_arrow_table(spec.deals)
    column = pa.array([1, 2, 3], pa.uint64())
    if "value_per_unit" in table.column_names:
        i = table.column_names.index("value_per_unit")
        table = table.set_column(i, "value_per_unit", column)
    else:
        table = table.append_column("value_per_unit", column)
    errors = Violations()
    raw = from_arrow(arrow_ipc(table), "arrow_ipc", errors)
    assert not errors, errors.items
    assert raw is not None
    assert raw.table["value_per_unit"].tolist() == [1.0, 2.0, 3.0]


def test_undecodable_utf8_in_a_string_column_is_a_violation() -> None:
    spec = random_snapshot_spec(3, seed=2, n_buckets=0)
    table = deal_arrow_table(spec.deals)
    ids = [d.deal_id for d in spec.deals]
    data = bytearray(arrow_ipc(table))
    at = bytes(data).find(ids[1].encode())
    assert at > 0
    data[at] = 0xFF  # not UTF-8
    errors = Violations()
    assert from_arrow(bytes(data), "arrow_ipc", errors) is None
    assert errors.items[0].field == "arrow_ipc"
    assert "UTF-8" in errors.items[0].description or "utf" in errors.items[0].description.lower()


def test_a_stream_read_again_reuses_its_metadata_and_a_corrupt_one_is_rejected_again() -> None:
    """`_batch_of` is kept per metadata bytes: the same stream twice reads the same table, and
    a stream whose metadata is rejected is rejected on every read (no rejection is kept)."""
    from reallocator.wire import arrow_guard

    table = pa.table({"allocation": np.arange(10, dtype=np.int64), "deal_id": list("abcdefghij")})
    data = _stream(table)
    first = arrow_guard.read_checked(data, 1 << 20)
    hits = arrow_guard._kept_batch_of.cache_info().hits
    again = arrow_guard.read_checked(data, 1 << 20)
    assert arrow_guard._kept_batch_of.cache_info().hits > hits
    assert first.equals(again) and again.equals(table)
    for _ in range(2):  # metadata cut short: rejected on every read
        with pytest.raises(arrow_guard.StreamRejected, match="truncated or corrupt"):
            arrow_guard._batch_of(b"\x08\x00")
    # metadata above the cached size is parsed every time, never kept
    kept = arrow_guard._kept_batch_of.cache_info().currsize
    big = b"\x08\x00" + bytes(arrow_guard.CACHED_METADATA_BYTES)
    with contextlib.suppress(arrow_guard.StreamRejected):
        arrow_guard._batch_of(big)
    assert arrow_guard._kept_batch_of.cache_info().currsize == kept


def _outcome(data: bytes) -> tuple[str, object]:
    from reallocator.wire import arrow_guard

    try:
        stream = arrow_guard.read_stream(data, 1 << 24)
    except (pa.ArrowException, ValueError, OSError) as exc:
        return type(exc).__name__, str(exc)
    return "table", (stream.table, stream.schema_key)


def test_a_plain_stream_read_from_its_messages_reads_as_arrow_s_stream_reader_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usual stream (its schema, then uncompressed record batches) is read from the
    messages the checks walked: the same table, or, for a corrupted one, the same error as
    Arrow's stream reader gives (bit flips of a deals stream, compressed and dictionary streams
    among them)."""
    import random

    from reallocator.wire import arrow_guard

    table = deal_arrow_table(random_snapshot_spec(200, seed=7, n_buckets=0).deals)
    streams = [arrow_ipc(table), _stream(table, "zstd"), _stream(table.combine_chunks())]
    coded = pa.table({"deal_id": pa.array(["a", "b", "a"]).dictionary_encode()})
    streams.append(_stream(coded))
    base = streams[0]
    for k in range(300):
        rnd = random.Random(k)
        flipped = bytearray(base)
        for _ in range(rnd.randint(1, 3)):
            flipped[rnd.randrange(len(flipped))] = rnd.randrange(256)
        streams.append(bytes(flipped))
    fast = [_outcome(data) for data in streams]

    def refused(messages: list[pa.ipc.Message], key: bytes | None) -> pa.Table:
        raise pa.ArrowInvalid("read by the stream reader instead")

    monkeypatch.setattr(arrow_guard, "_from_messages", refused)
    for data, outcome in zip(streams, fast, strict=True):
        expected = _outcome(data)
        if expected[0] != "table" or outcome[0] != "table":
            assert outcome == expected
            continue
        (got, got_key), (want, want_key) = outcome[1], expected[1]  # type: ignore[misc]
        assert got.equals(want) and got.schema.equals(want.schema) and got_key == want_key
    assert fast[0][0] == "table" and sum(o[0] == "table" for o in fast) < len(fast)


def test_the_schema_key_is_the_schema_message_so_equal_keys_are_equal_schemas() -> None:
    from reallocator.wire import arrow_guard

    one = pa.table({"allocation": pa.array([1, 2], pa.int64())})
    other = pa.table({"allocation": pa.array([1, 2], pa.int32())})
    first = arrow_guard.read_stream(_stream(one), 1 << 20)
    again = arrow_guard.read_stream(_stream(pa.table({"allocation": [7, 8, 9]})), 1 << 20)
    assert first.schema_key is not None and first.schema_key == again.schema_key
    assert arrow_guard.read_stream(_stream(other), 1 << 20).schema_key != first.schema_key
    wide = pa.table({f"c{i}" * 20: [1] for i in range(200)})  # metadata above the cached size
    assert arrow_guard.read_stream(_stream(wide), 1 << 20).schema_key is None


def test_a_schema_is_kept_per_schema_message_and_a_bad_one_is_rejected_on_every_read() -> None:
    from reallocator.wire import arrow_guard

    table = pa.table({"allocation": pa.array([1, 2], pa.int64())})
    data = _stream(table)
    first = arrow_guard.read_stream(data, 1 << 20)
    again = arrow_guard.read_stream(data, 1 << 20)
    assert first.schema_key is not None and first.schema_key in arrow_guard._SCHEMAS
    assert again.table.equals(table) and again.table.schema.equals(table.schema)
    bad = bytearray(data)
    bad[bytes(data).find(b"allocation")] = 0xFF  # a field name that is not UTF-8
    kept = len(arrow_guard._SCHEMAS)
    for _ in range(2):
        with pytest.raises(ValueError):
            arrow_guard.read_stream(bytes(bad), 1 << 20)
    assert len(arrow_guard._SCHEMAS) == kept

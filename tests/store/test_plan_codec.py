"""The store keeps a plan's numbers, not its words: a plan rendered back from its stored parts is
byte for byte the message `encode_plan` made, in every view, for random campaigns (the words
are rendered again from the numbers); and the parts are much smaller than the FULL message."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import Policy, table_of
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import PLAN_DEAL_COLUMNS
from reallocator.store import plan_codec
from reallocator.wire.encode import arrow_stream
from reallocator.wire.plan import encode_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

VIEWS = ("all", "changed", "none", "table")


def _plan(n: int, seed: int, text: bool, **overrides: object):  # type: ignore[no-untyped-def]
    errors = Violations()
    msg = build_snapshot(random_snapshot_spec(n, seed), "deals")
    snapshot = decode_snapshot(msg, dataclasses.replace(Policy(), **overrides), errors)
    assert snapshot is not None, errors.items
    return build_plan(snapshot, text=text, schedule_window=timedelta(hours=6))


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 80),
    seed=st.integers(0, 10_000),
    text=st.booleans(),
    pace_ahead=st.sampled_from([1.0, 1.5]),
)
def test_a_plan_read_back_is_the_message_replan_made_in_every_view(
    n: int, seed: int, text: bool, pace_ahead: float
) -> None:
    plan = _plan(n, seed, text, pace_ahead=pace_ahead)
    parts = plan_codec.split(plan, encode_plan(plan, deals="none"))
    for view in VIEWS:
        want = encode_plan(plan, deals=view).SerializeToString(deterministic=True)
        got = plan_codec.render(parts.summary, parts.deals, parts.schedules, view)
        assert got.SerializeToString(deterministic=True) == want, view


def test_the_summary_stored_is_the_same_whatever_view_replan_answered() -> None:
    plan = _plan(50, 7, False)
    summaries = {plan_codec.split(plan, encode_plan(plan, deals=v)).summary for v in VIEWS}
    assert len(summaries) == 1


@pytest.mark.parametrize(("seed", "text"), [(7, False), (11, True)])
def test_the_summary_is_the_same_copied_whole_or_field_by_field(
    seed: int, text: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large message's summary is made from the fields it keeps (`_COPY_ROWS`), a small
    one's from a copy of the whole message: the same bytes, in every view."""
    plan = _plan(60, seed, text)
    messages = {view: encode_plan(plan, deals=view) for view in VIEWS}
    whole = {view: plan_codec._summary(msg) for view, msg in messages.items()}
    monkeypatch.setattr(plan_codec, "_COPY_ROWS", 0)
    assert {view: plan_codec._summary(msg) for view, msg in messages.items()} == whole
    assert len(set(whole.values())) == 1


@pytest.mark.parametrize(("n", "share"), [(400, 1 / 2), (1500, 1 / 4)])
def test_words_are_not_stored_and_the_parts_are_smaller_than_the_full_message(
    n: int, share: float
) -> None:
    """Plain tables (400 deals) are under half the FULL message; compressed ones (1,500 deals,
    over STORE_COMPRESS_FROM_BYTES) under a quarter."""
    plan = _plan(n, 11, True)
    full = encode_plan(plan, deals="all")
    parts = plan_codec.split(plan, full)
    summary = pa.compress(parts.summary, codec="zstd", asbytes=True)  # as the store keeps it
    stored = len(summary) + len(parts.deals) + len(parts.schedules)
    assert stored < full.ByteSize() * share
    texts = [d.rationale for d in full.deals if len(d.rationale) > 40]
    assert texts and not any(t.encode() in parts.summary for t in texts)


def _compressed(stream: bytes) -> bool:
    """Whether an IPC stream's record batches carry compressed buffers."""
    reader = pa.ipc.open_stream(pa.py_buffer(stream))
    plain = arrow_stream(reader.read_all(), None)
    return len(stream) != len(plain)


@pytest.mark.parametrize("n", [50, 2000])
def test_stored_tables_are_compressed_from_the_threshold_up(n: int) -> None:
    """Small tables stay plain (compressing each buffer costs a small recorded Replan ~1 ms);
    large ones are zstd-compressed; both read back to the same numbers."""
    plan = _plan(n, 5, False)
    parts = plan_codec.split(plan, encode_plan(plan, deals="none"))
    table = pa.ipc.open_stream(pa.py_buffer(parts.deals)).read_all()
    plain = arrow_stream(table, None)
    assert _compressed(parts.deals) == (len(plain) >= plan_codec.STORE_COMPRESS_FROM_BYTES)
    assert _compressed(parts.deals) == (n == 2000)
    back = plan_codec.deals_frame(parts.deals)
    want = plan.deals.reset_index(drop=True)
    for column in ("deal_id", "new_allocation", "delta"):
        assert back[column].astype(str).tolist() == want[column].astype(str).tolist()


def test_a_plan_stored_whole_is_cut_to_the_view_asked() -> None:
    plan = _plan(60, 3, True)
    whole = encode_plan(plan, deals="all")
    whole_bytes = whole.SerializeToString()
    for view in ("all", "changed", "none"):
        got = plan_codec.render(whole_bytes, None, None, view)
        want = encode_plan(plan, deals=view)
        assert [d.deal_id for d in got.deals] == [d.deal_id for d in want.deals]
        assert len(got.schedules) == len(want.schedules)


def test_a_plan_stored_before_the_stall_outlook_still_renders() -> None:
    """Deals tables stored before the stall_outlook column: the words render without it (no
    outlook clause), the numbers unchanged. The example's audio deal is stalled."""
    from pathlib import Path

    from google.protobuf import json_format

    from reallocator.v1 import reallocator_service_pb2 as pb

    example = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
    request = json_format.Parse(example.read_text(), pb.ReplanRequest())
    errors = Violations()
    snapshot = decode_snapshot(request.snapshot, Policy(), errors)
    assert snapshot is not None, errors.items
    # The audio deal worth more than the display deal: it fills its outlook (binding there).
    deals = snapshot.deals.copy()
    deals.loc[deals["deal_id"] == "audio-pmp-003", "value_per_unit"] = 1.2
    plan = build_plan(replace(snapshot, deals=deals), schedule_window=timedelta(hours=6))
    parts = plan_codec.split(plan, encode_plan(plan, deals="none"))
    want = encode_plan(plan, deals="all")
    assert any("stall this long" in d.rationale for d in want.deals)
    table = pa.ipc.open_stream(pa.py_buffer(parts.deals)).read_all()
    old = table.drop_columns(["stall_outlook"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, old.schema) as writer:
        writer.write_table(old)
    got = plan_codec.render(parts.summary, sink.getvalue().to_pybytes(), parts.schedules, "all")
    assert [d.new_allocation for d in got.deals] == [d.new_allocation for d in want.deals]
    assert all("stall this long" not in d.rationale for d in got.deals)
    assert [d.rationale.split(": the ")[0] for d in want.deals] == [d.rationale for d in got.deals]


_TEXT = st.text(alphabet=st.sampled_from(["a", "Z", "0", "-", "é", "中", " "]), max_size=6)
_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(0, 30))
def test_the_stored_deals_table_is_the_one_pandas_would_give(data: st.DataObject, n: int) -> None:
    """A plan's deals table goes to Arrow from its columns, straight in its stored form (the
    schema found once): the same table, pandas metadata included, and the same stored bytes as
    `pa.Table.from_pandas` with the codes and the rationale then replaced one column at a time
    (as split did), for any values (NaN and infinities, empty and non-ASCII text, no rows)."""
    columns: dict[str, object] = {}
    for name, dtype in PLAN_DEAL_COLUMNS.items():
        element = {"str": _TEXT, "int64": st.integers(-(2**63), 2**63 - 1),
                   "float64": _FLOAT, "bool": st.booleans()}[dtype]  # fmt: skip
        values = data.draw(st.lists(element, min_size=n, max_size=n))
        columns[name] = np.array(values, dtype=object if dtype == "str" else dtype)
    frame = table_of(columns, PLAN_DEAL_COLUMNS)
    expected = stored_as_before(pa.Table.from_pandas(frame, preserve_index=False))
    for _ in range(2):  # the first call finds the schema, the second uses it
        table = plan_codec._deals_table(frame)
        assert table.equals(expected, check_metadata=True)
        assert plan_codec._ipc(table) == plan_codec._ipc(expected)
    plan_codec._STORED.clear()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(0, 30))
def test_a_stored_deals_table_reads_back_as_pandas_would_give_it(
    data: st.DataObject, n: int
) -> None:
    """`deals_frame` makes the frame from the stored Arrow columns: the same frame, dtypes and
    values (NaN, infinities, missing and non-ASCII text, no rows) as Arrow's pandas conversion
    with the code columns cast back to text, and the plan's own table with its words emptied."""
    columns: dict[str, object] = {}
    for name, dtype in PLAN_DEAL_COLUMNS.items():
        element = {"str": st.one_of(_TEXT, st.none()), "int64": st.integers(-(2**63), 2**63 - 1),
                   "float64": _FLOAT, "bool": st.booleans()}[dtype]  # fmt: skip
        values = data.draw(st.lists(element, min_size=n, max_size=n))
        columns[name] = np.array(values, dtype=object if dtype == "str" else dtype)
    frame = table_of(columns, PLAN_DEAL_COLUMNS)
    stored = plan_codec._ipc(plan_codec._deals_table(frame))
    got = plan_codec.deals_frame(stored)
    want = pa.ipc.open_stream(pa.py_buffer(stored)).read_all().to_pandas()
    for name in ("binding", "reason", "pacing", "pacing_status", "seller_id", "channel_id"):
        want[name] = want[name].astype("str")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    frame["rationale"] = ""
    pd.testing.assert_frame_equal(got, frame, check_exact=True)
    got.loc[:, "delta"] = 7  # the frame owns its numbers: the stored bytes are not written
    assert plan_codec.deals_frame(stored)["delta"].tolist() == frame["delta"].tolist()
    plan_codec._STORED.clear()


def stored_as_before(deals: pa.Table) -> pa.Table:
    """The stored deals table as split made it before `_deals_table`."""
    for i, name in enumerate(deals.column_names):
        if name in {"binding", "reason", "pacing", "pacing_status", "seller_id", "channel_id"}:
            deals = deals.set_column(i, name, deals.column(name).dictionary_encode())
        elif name == "rationale":
            words = deals.schema.field(i).type
            deals = deals.set_column(i, name, pa.array(np.full(len(deals), ""), type=words))
    return deals


def test_an_empty_frame_is_stored_as_pandas_gives_it_whatever_its_columns() -> None:
    """Empty streams are kept per column names and dtypes (read from the columns): frames that
    differ in a name, a dtype or the order of their columns each get their own stream."""
    frames = [
        pd.DataFrame({"a": pd.Series(dtype="int64"), "b": pd.Series(dtype="str")}),
        pd.DataFrame({"a": pd.Series(dtype="float64"), "b": pd.Series(dtype="str")}),
        pd.DataFrame({"b": pd.Series(dtype="str"), "a": pd.Series(dtype="int64")}),
        pd.DataFrame({"a": pd.Series(dtype="int64"), "c": pd.Series(dtype="bool")}),
        pd.DataFrame({"a": pd.Series(dtype="int64"), "b": pd.Series(dtype=object)}),
    ]
    for _ in range(2):  # found, then kept
        for frame in frames:
            want = arrow_stream(pa.Table.from_pandas(frame, preserve_index=False))
            assert plan_codec._frame_ipc(frame) == want
    assert len({plan_codec._frame_ipc(frame) for frame in frames}) == len(frames)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.sampled_from([0, 1, 300, 700, 1500, 4095, 4096, 6000, 9000]),
    kinds=st.lists(st.sampled_from(["int64", "bool", "text", "codes", "int8"]), min_size=1),
    sliced=st.booleans(),
)
def test_a_table_is_compressed_exactly_when_its_plain_stream_reaches_the_threshold(
    rows: int, kinds: list[str], sliced: bool
) -> None:
    """`_ipc` writes plain first, or skips that when the fixed-width columns alone reach the
    threshold: either way compressed exactly when the plain stream is that long, and the same
    table read back. The fixed-width count never exceeds the plain stream (sliced and chunked
    tables too), so the shortcut never compresses a table that would have stayed plain."""
    rng = np.random.default_rng(rows + len(kinds))
    columns: dict[str, pa.Array] = {}
    for i, kind in enumerate(kinds):
        n = rows + 5
        if kind == "int64":
            columns[f"c{i}"] = pa.array(rng.integers(0, 10**12, n))
        elif kind == "int8":
            columns[f"c{i}"] = pa.array(rng.integers(0, 100, n).astype(np.int8))
        elif kind == "bool":
            columns[f"c{i}"] = pa.array(rng.random(n) < 0.5)
        else:
            words = pa.array([f"w{j % 37}" for j in range(n)], pa.large_string())
            columns[f"c{i}"] = words.dictionary_encode() if kind == "codes" else words
    table = pa.table(columns)
    table = (
        table.slice(3, rows)
        if sliced
        else pa.concat_tables([table.slice(0, 5), table.slice(5)]).slice(0, rows)
    )
    plain = arrow_stream(table, None)
    assert plan_codec._fixed_bytes(table) <= len(plain)
    stored = plan_codec._ipc(table)
    assert _compressed(stored) == (len(plain) >= plan_codec.STORE_COMPRESS_FROM_BYTES)
    assert plan_codec._read_ipc(stored).equals(table)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 30),
    seed=st.integers(0, 10_000),
    shape=st.sampled_from(["history", "inputs", "moves"]),
    picked=st.booleans(),
)
def test_a_stored_inputs_frame_is_the_stream_from_pandas_writes(
    rows: int, seed: int, shape: str, picked: bool
) -> None:
    """The inputs a plan was made from (history, per-deal inputs, moves) are written from
    their columns once their schema is known: the same bytes as `pa.Table.from_pandas`'s, NaN
    as null, pandas' metadata and all, so a replay reads back the frames it read before. Rows
    picked out of a longer frame (RequestHistory.deciding's: their index is not a range) too,
    the index left out either way."""
    rng = np.random.default_rng(seed)
    ids = pd.Series([f"d{i}" for i in rng.integers(0, 9, rows)], dtype="str")
    floats = rng.normal(1e9, 1e6, rows)
    floats[rng.random(rows) < 0.3] = np.nan
    ints = rng.integers(-(10**12), 10**12, rows)
    columns: dict[str, object] = {
        "history": {"deal_id": ids, "requested_at": floats, "kind": ids.str.upper(),
                    "target_total": ints, "response": ids, "accepted_total": ints // 3},
        "inputs": {"deal_id": ids, "plan_applied_at": ints, "delivered_at_plan": ints // 7,
                   "window_hour": floats, "window_day": floats / 2,
                   "windows": rng.random(rows) < 0.5},
        "moves": {"deal_id": ids, "planned_at": floats, "delta": ints},
    }[shape]  # fmt: skip
    frame = pd.DataFrame(columns)
    if picked:
        frame = frame.iloc[np.sort(rng.permutation(rows)[: max(1, rows // 2)])[::-1]]
    written = plan_codec._ipc(pa.Table.from_pandas(frame, preserve_index=False))
    for _ in range(2):  # the first finds the schema, the second writes from the columns
        assert plan_codec._frame_ipc(frame) == written
    back = plan_codec.inputs_frames(written, written).history
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))

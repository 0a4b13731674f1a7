"""Plans' stored tables read once per process (`store/read_tables.py`): the same columns as a
fresh read, bounded in bytes, long tables never kept, and the store's queries still decide
which plans a Replan reads (a plan applied after a read is in the next one)."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from both_databases import opened_store
from plans import applied_hourly
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.store.plan_codec import deals_columns
from reallocator.store.read_tables import ReadTables
from reallocator.store.sql import SqlStore
from reallocator.wire.encode import arrow_stream

NAMES = ("deal_id", "delta")


def _stream(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "deal_id": [f"d{i}" for i in range(n)],
            "delta": rng.integers(-1000, 1000, n),
            "other": rng.random(n),
        }
    )
    return arrow_stream(table, None)


def test_a_kept_table_is_what_a_fresh_read_gives_and_is_read_once() -> None:
    tables = ReadTables()
    data = _stream(30)
    first = tables.columns("campaigns/c/plans/a", "moved", data, NAMES)
    assert first.equals(deals_columns(data, NAMES))
    assert first.column_names == list(NAMES)
    # The second read is the kept table: its bytes are not decoded again.
    assert tables.columns("campaigns/c/plans/a", "moved", b"not a stream", NAMES) is first
    # Other columns, or another of the plan's tables, are another read.
    other = tables.columns("campaigns/c/plans/a", "moved", data, ("deal_id",))
    assert other.column_names == ["deal_id"] and len(tables) == 2
    whole = _stream(40)
    assert tables.columns("campaigns/c/plans/a", "deals", whole, NAMES).num_rows == 40


def test_the_least_recently_read_go_first_beyond_the_byte_budget() -> None:
    one = deals_columns(_stream(200), NAMES).nbytes
    tables = ReadTables(max_bytes=3 * one)
    for k in range(3):
        tables.columns(f"p{k}", "moved", _stream(200, k), NAMES)
    tables.columns("p0", "moved", b"", NAMES)  # read again: now the most recent
    tables.columns("p3", "moved", _stream(200, 3), NAMES)  # over budget: p1 goes
    assert len(tables) == 3
    assert tables.columns("p0", "moved", b"", NAMES).num_rows == 200
    with pytest.raises(pa.ArrowInvalid):  # p1 is read from its bytes again
        tables.columns("p1", "moved", b"", NAMES)


def test_a_long_stream_is_read_each_time() -> None:
    tables = ReadTables()
    data = _stream(20_000)
    assert len(data) >= 1 << 16
    assert tables.columns("big", "moved", data, NAMES).num_rows == 20_000
    assert len(tables) == 0


def test_threads_reading_the_same_plans_get_equal_tables() -> None:
    tables = ReadTables(max_bytes=deals_columns(_stream(50), NAMES).nbytes * 5)
    streams = {f"p{k}": _stream(50, k) for k in range(12)}
    expected = {name: deals_columns(data, NAMES) for name, data in streams.items()}
    wrong: list[str] = []

    def reader(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(list(streams))
        for name in [*order, *order]:
            if not tables.columns(name, "moved", streams[name], NAMES).equals(expected[name]):
                wrong.append(name)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert len(tables) <= 5


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    yield from opened_store(request, tmp_path, "read")


def test_a_plan_applied_after_a_read_is_in_the_next(store: SqlStore) -> None:
    """The store's queries pick the plans; the kept tables only spare decoding them. Each read
    of the campaign's past equals a read by a store that has kept nothing."""
    campaign = f"read-{os.getpid()}-{id(store)}"
    seen: list[tuple[str, int]] = []
    for name in itertools.islice(applied_hourly(store, campaign, seed=11), 4):
        warm = store.campaign_past(campaign, moves_since=0, application=True)
        cold = SqlStore(store.engine).campaign_past(campaign, moves_since=0, application=True)
        assert warm.application is not None and cold.application is not None
        assert warm.application[0] == name  # the plan just applied, not a kept one
        assert warm.application[:2] == cold.application[:2]
        assert warm.application[2].equals(cold.application[2])
        assert warm.history.moves.equals(cold.history.moves)
        seen.append((name, len(warm.history.moves)))
    moves = [n for _, n in seen]
    assert moves == sorted(moves) and moves[-1] > moves[0]  # each applied plan's moves added

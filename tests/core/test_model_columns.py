"""The core's column helpers give what the pandas calls they replace give."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import (
    as_text,
    conform,
    factorize,
    first_seen,
    first_seen_of,
    labels_by_code,
    nan_to_num,
    reading,
    sorted_codes,
    table_of,
    text_of,
    values_of,
)

LABELS = ["ON_PACE", "OVER", "UNDER", ""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-1, len(LABELS) - 1), max_size=30))
def test_as_text_of_a_categorical_reads_its_labels_and_nan(codes: list[int]) -> None:
    column = pd.Series(pd.Categorical.from_codes(np.array(codes, dtype=np.int64), LABELS))
    expected = np.asarray(column.astype(str), dtype=object)
    got = as_text(column)
    assert got.dtype == object
    assert got.tolist() == expected.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=30), st.booleans())
def test_as_text_of_strings_and_numbers(values: list[str], numbers: bool) -> None:
    column = pd.Series(list(range(len(values)))) if numbers else pd.Series(values, dtype="str")
    got = as_text(column)
    assert got.dtype == object
    assert got.tolist() == np.asarray(column.astype(str), dtype=object).tolist()


def test_conform_casts_only_the_columns_that_differ() -> None:
    frame = pd.DataFrame({"a": np.arange(3, dtype=np.int64), "b": [1.0, 2.0, 3.0]})
    dtypes = {"a": "int8", "b": "float64"}
    out = conform(frame, dtypes)
    pd.testing.assert_frame_equal(out, frame.astype(dtypes))
    assert conform(out, dtypes) is out  # nothing to cast: the frame itself


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20),
    st.sampled_from([None, np.int64, np.float64, bool]),
)
def test_values_of_is_to_numpy(values: list[int], dtype: type | None) -> None:
    frame = pd.DataFrame({"n": np.array(values, dtype=np.int64), "s": [str(v) for v in values]})
    for name in ("n", "s"):
        got = values_of(frame, name, dtype)
        expected = frame[name].to_numpy(dtype)
        assert got.dtype == expected.dtype
        assert got.tolist() == expected.tolist()
        assert got.flags.writeable == expected.flags.writeable  # read-only when shared


def test_a_table_owns_its_columns_no_edit_reaches_the_arrays_it_was_built_from() -> None:
    """`table_of` leaves the numeric copies to pandas' blocks: a table and the caller's arrays
    never share memory, either way round, whatever pandas version consolidates them."""
    ints, floats, flag = np.arange(4, dtype=np.int64), np.linspace(0, 1, 4), np.zeros(4, bool)
    table = table_of(
        {"i": ints, "f": floats, "b": flag, "k": 7, "s": "x"},
        {"i": "int64", "f": "float64", "b": "bool", "k": "int64", "s": "str"},
    )
    for name, source in (("i", ints), ("f", floats), ("b", flag)):
        column = table[name].to_numpy()
        assert not np.shares_memory(column, source)
    ints[0] = 99
    floats[1] = 5.0
    assert table["i"].tolist() == [0, 1, 2, 3]
    assert table["f"].tolist() == np.linspace(0, 1, 4).tolist()
    assert table["k"].tolist() == [7] * 4 and table["s"].tolist() == ["x"] * 4
    table.loc[2, "i"] = -1  # the table's own columns are writeable
    assert ints[2] == 2


_DTYPES = ("int64", "float64", "bool", "int8", "str", "keep")


@settings(max_examples=60, deadline=None)
@given(
    schema=st.lists(st.sampled_from(_DTYPES), min_size=1, max_size=12),
    n=st.integers(0, 30),
    seed=st.integers(0, 1_000),
    constant=st.booleans(),
)
def test_a_table_is_what_pandas_constructor_builds(
    schema: list[str], n: int, seed: int, constant: bool
) -> None:
    """Built from its blocks, a table has the values, dtypes and column order pandas' own
    constructor gives the same columns, whatever the mix of dtypes; a constant column (the
    first of two or more, when `constant`) is repeated on every row."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    dtypes: dict[str, str] = {}
    expected: dict[str, Any] = {}
    for i, dtype in enumerate(schema):
        name = f"c{i}"
        dtypes[name] = dtype
        if dtype == "str":
            value: Any = np.array([f"v{rng.integers(5)}" for _ in range(n)], dtype=object)
            if constant and i == 0 and len(schema) > 1:
                value = "same"
            expected[name] = pd.array([value] * n if isinstance(value, str) else value, "str")
        elif dtype == "keep":
            value = pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["a", "b", "c"])
            expected[name] = value
        else:
            value = rng.integers(0, 3, n).astype(dtype)
            if constant and i == 0 and len(schema) > 1:
                value = np.array(1).astype(dtype).item()
            expected[name] = np.full(n, value, dtype=dtype) if np.isscalar(value) else value
        columns[name] = value
    table = table_of(columns, dtypes)
    pd.testing.assert_frame_equal(table, pd.DataFrame(expected), check_exact=True)
    assert isinstance(table.index, pd.RangeIndex) and len(table) == n


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=3), max_size=40))
def test_first_seen_and_sorted_codes_are_pandas_factorize(values: list[str]) -> None:
    codes, uniques = first_seen(values)
    want_codes, want_uniques = pd.factorize(np.array(values, dtype=object), sort=False)
    assert codes.dtype == np.int64
    assert codes.tolist() == want_codes.tolist() and uniques == list(want_uniques)
    codes, uniques = sorted_codes(codes, uniques)
    want_codes, want_uniques = pd.factorize(pd.Series(values, dtype="str"), sort=True)
    assert codes.tolist() == want_codes.tolist() and uniques == list(want_uniques)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["ON_PACE", "OVER", None, np.nan, "x"]), max_size=200),
)
def test_factorize_spreads_a_decision_per_value_as_pandas_does(values: list[object]) -> None:
    """Short arrays go through a dict, long ones through pandas: either way the codes pick back
    each value (NaN: a NaN), whatever the order of the uniques."""
    array = np.array(values, dtype=object)
    codes, uniques = factorize(array)
    picked = np.asarray(list(uniques), dtype=object)[codes] if len(values) else array
    assert [str(v) for v in picked] == [str(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
        max_size=20,
    ),
    st.sampled_from([0.0, 1.0, -2.5]),
)
def test_nan_to_num_is_numpys(values: list[float], nan: float) -> None:
    x = np.array(values, dtype=np.float64)
    got = nan_to_num(x, nan=nan)
    np.testing.assert_array_equal(got, np.nan_to_num(x, nan=nan))
    assert not np.shares_memory(got, x)


def test_reading_reads_each_column_once_read_only_and_only_in_its_block() -> None:
    frame = pd.DataFrame(
        {"n": np.arange(4, dtype=np.int64), "s": pd.array(list("abca"), dtype="str")}
    )
    other = frame.copy()
    with reading(frame):
        first = values_of(frame, "n", np.float64)
        assert values_of(frame, "n", np.float64) is first  # read once
        assert not first.flags.writeable  # shared: nobody may edit it
        assert values_of(frame, "n").tolist() == [0, 1, 2, 3]
        assert text_of(frame, "s") is text_of(frame, "s")
        assert text_of(frame, "s").tolist() == list("abca")
        codes, uniques = first_seen_of(frame, "s")  # type: ignore[misc]
        assert codes.tolist() == [0, 1, 2, 0] and uniques == ["a", "b", "c"]
        assert first_seen_of(frame, "s") is first_seen_of(frame, "s")
        assert first_seen_of(frame, "n") is None  # not a str column
        fresh = values_of(other, "n", np.float64)  # a frame not in the block: read each time
        assert fresh is not values_of(other, "n", np.float64) and fresh.flags.writeable
        with reading(other):  # an inner block adds its frames to the outer one
            assert values_of(other, "n", np.float64) is values_of(other, "n", np.float64)
    after = values_of(frame, "n", np.float64)  # outside any block: as before
    assert after is not first and after.flags.writeable


def test_first_seen_of_a_column_with_a_missing_value_is_none() -> None:
    frame = pd.DataFrame({"s": pd.array(["a", None, "b"], dtype="str")})
    assert first_seen_of(frame, "s") is None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 7), max_size=200),
    st.permutations(["ON_PACE", "OVER", "UNDER", "STALLED", "NOT_STARTED", "COMPLETED", "", "x"]),
)
def test_labels_by_code_are_the_labels_the_rows_of_each_code_hold(
    codes: list[int], labels: list[str]
) -> None:
    """A label column picked by code: the label read per code, spread back by code, is the
    column (so a compare per code is the compare per row)."""
    picked = np.asarray(codes, dtype=np.int64)
    column = np.asarray(labels, dtype=object)[picked]
    by_code = labels_by_code(picked, column)
    if not codes:
        assert by_code is None
        return
    assert by_code is not None
    assert by_code[picked].tolist() == column.tolist()
    for label in labels:
        assert ((by_code == label)[picked]).tolist() == (column == label).tolist()
    assert labels_by_code(np.asarray([0, -1]), np.asarray(["a", "b"], dtype=object)) is None

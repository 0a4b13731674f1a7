"""The core's column helpers give what the pandas calls they replace give."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.model import as_text, conform, table_of, values_of

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

"""figures.fixed and its amount and rate columns give, element for element, Python's own
formatting (the f-strings of text.py): every float64 including NaN, ±inf, -0.0, subnormals, values
beyond exact integers, and the values on and beside a rounding half (where a float product
alone would round the wrong way)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.figures import (
    COLUMN_FROM,
    amount_column,
    fixed,
    formatted,
    rate_column,
    texts,
)
from reallocator.core.model import BudgetType
from reallocator.core.plan import text


def expected(
    values: list[float],
    decimals: int,
    *,
    grouping: bool = True,
    prefix: str = "",
    suffix: str = "",
    percent: bool = False,
    nan: str = "n/a",
) -> list[str]:
    spec = f"{',' if grouping else ''}.{decimals}{'%' if percent else 'f'}"
    return [prefix + format(v, spec) + suffix if math.isfinite(v) else nan for v in values]


def check(values: list[float], decimals: int, **options: object) -> None:
    got = fixed(np.array(values, np.float64), decimals, **options)  # type: ignore[arg-type]
    assert got.type == pa.large_string()
    assert got.null_count == 0
    assert got.to_pylist() == expected(values, decimals, **options)  # type: ignore[arg-type]


def _ties(draw: st.DrawFn) -> float:
    """A value whose scaled exact value lies on or next to a rounding half."""
    decimals = draw(st.integers(0, 5))  # 5 covers a percent's two more places at 3 decimals
    k = draw(st.integers(-(10**9), 10**9))
    kind = draw(st.sampled_from(["decimal", "binary", "big"]))
    if kind == "decimal":  # 0.005, 2.675, 9.995: near a decimal half, rarely on it
        value = (k + 0.5) / 10**decimals
    elif kind == "binary":  # 0.125, 2.5: exactly on a half
        value = (2 * k + 1) / 2 ** draw(st.integers(1, 12))
    else:  # near the end of exact halves
        value = (k + 0.5) * 2.0 ** draw(st.integers(20, 40)) / 10**decimals
    step = draw(st.integers(-3, 3))
    for _ in range(abs(step)):
        value = float(np.nextafter(value, math.copysign(math.inf, step)))
    return float(value)


ties = st.composite(_ties)()
micros = st.integers(-(10**15), 10**15).map(float)
huge = st.floats(2.0**45, 1e300).flatmap(lambda v: st.sampled_from([v, -v]))
anything = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
tiny = st.floats(-1e-3, 1e-3, allow_subnormal=True)
element = st.one_of(anything, ties, micros, huge, tiny, st.sampled_from([0.0, -0.0]))
arrays = st.lists(element, max_size=40)
options = st.fixed_dictionaries(
    {
        "grouping": st.booleans(),
        "percent": st.booleans(),
        "prefix": st.sampled_from(["", "$", "≈ -"]),
        "suffix": st.sampled_from(["", " USD", " impressions/h", "€"]),
        "nan": st.sampled_from(["n/a", "", "not a number at all"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(arrays, st.integers(0, 3), options)
def test_fixed_is_pythons_format(values: list[float], decimals: int, kw: dict[str, object]) -> None:
    check(values, decimals, **kw)


@settings(max_examples=100, deadline=None)
@given(arrays, st.integers(4, 12), options)
def test_fixed_more_decimals(values: list[float], decimals: int, kw: dict[str, object]) -> None:
    check(values, decimals, **kw)


@settings(max_examples=200, deadline=None)
@given(st.lists(ties, min_size=1, max_size=40), st.integers(0, 3), st.booleans())
def test_fixed_on_and_beside_halves(values: list[float], decimals: int, percent: bool) -> None:
    check(values, decimals, percent=percent)
    check([v / 1e6 for v in values], decimals, percent=percent)


EDGES = [0.125, 0.135, 1.005, 2.675, 9.995, 999999.995, -0.001, 1e16, 2.0**53, 0.375, 2.5, 3.5]


@pytest.mark.parametrize("decimals", [0, 1, 2, 3])
@pytest.mark.parametrize("percent", [False, True])
@pytest.mark.parametrize("grouping", [True, False])
def test_fixed_edges(decimals: int, percent: bool, grouping: bool) -> None:
    values = [*EDGES, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1e308, -1e308]
    check(values, decimals, percent=percent, grouping=grouping, suffix=" X")


def test_fixed_known_strings() -> None:
    """The values whose text a double product gets wrong (and Python's exact rounding right)."""
    assert fixed(EDGES, 2).to_pylist() == [
        "0.12",  # exactly 0.125: half to even
        "0.14",  # 0.13500000000000000888
        "1.00",  # 1.00499999999999989342
        "2.67",  # 2.67499999999999982236
        "9.99",  # 9.99499999999999957367
        "999,999.99",  # 999999.99499999999534339
        "-0.00",
        "10,000,000,000,000,000.00",
        "9,007,199,254,740,992.00",
        "0.38",  # exactly 0.375: half to even
        "2.50",
        "3.50",
    ]
    assert fixed([0.125, 2.5, 3.5, -2.5, 0.5], 0).to_pylist() == ["0", "2", "4", "-2", "0"]
    # '%' multiplies the double by 100 first: 0.0015 x 100 = 0.15 (0.1499999...) -> 0.1%
    assert fixed([0.0015, 0.0065], 1, percent=True).to_pylist() == ["0.1%", "0.7%"]
    assert fixed([1e308], 0, percent=True).to_pylist() == ["inf%"]
    assert fixed([math.nan, -math.inf, 1.0], 1, prefix="$", suffix=" USD").to_pylist() == [
        "n/a",
        "n/a",
        "$1.0 USD",
    ]


def test_fixed_ints_and_empty() -> None:
    assert fixed(np.arange(-2, 3), 1).to_pylist() == ["-2.0", "-1.0", "0.0", "1.0", "2.0"]
    assert fixed([1234567], 0).to_pylist() == ["1,234,567"]
    empty = fixed(np.array([]), 2)
    assert empty.type == pa.large_string()
    assert len(empty) == 0


def test_fixed_many_values() -> None:
    """A column long enough for every path at once: random budgets, halves, NaN, huge."""
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            np.round(rng.lognormal(np.log(2e8), 3.0, 5000)) * rng.choice([-1.0, 1.0], 5000),
            rng.integers(0, 10**6, 2000) * 5000.0,  # whole micros on cent halves
            [math.nan, math.inf, 1e300, -0.0],
        ]
    )
    rng.shuffle(values)
    for decimals in (0, 1, 2, 3):
        check(values.tolist(), decimals, suffix=" USD")
        check((values / 1e6).tolist(), decimals, percent=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(micros, anything, ties), max_size=30), st.sampled_from(list(BudgetType)))
def test_columns_are_text_amounts_and_rates(values: list[float], budget_type: BudgetType) -> None:
    array = np.array(values, np.float64)
    assert amount_column(array, budget_type, "EUR").to_pylist() == text.amounts(
        array, budget_type, "EUR"
    )
    assert rate_column(array, budget_type, "EUR").to_pylist() == text.rates(
        array, budget_type, "EUR"
    )


@pytest.mark.parametrize("budget_type", list(BudgetType))
def test_columns_of_nothing_and_of_ints(budget_type: BudgetType) -> None:
    for render, column in ((text.amounts, amount_column), (text.rates, rate_column)):
        empty = column(np.array([], np.float64), budget_type, "USD")
        assert empty.type == pa.large_string()
        assert empty.to_pylist() == render(np.array([], np.float64), budget_type, "USD") == []
        ints = [0, 5000, 1_234_565_000, -15_000, 10**15]
        assert column(ints, budget_type, "USD").to_pylist() == render(ints, budget_type, "USD")


@settings(max_examples=150, deadline=None)
@given(arrays, st.integers(0, 3), options)
def test_formatted_writes_non_finite_values_as_python_does(
    values: list[float], decimals: int, kw: dict[str, object]
) -> None:
    kw = {k: v for k, v in kw.items() if k != "nan"}
    spec = f"{',' if kw['grouping'] else ''}.{decimals}{'%' if kw['percent'] else 'f'}"
    want = [f"{kw['prefix']}{format(v, spec)}{kw['suffix']}" for v in values]
    got = formatted(np.array(values, np.float64), decimals, **kw)  # type: ignore[arg-type]
    assert got.to_pylist() == want


@settings(max_examples=60, deadline=None)
@given(
    st.lists(element, max_size=8).flatmap(
        lambda head: st.integers(0, 2 * COLUMN_FROM).map(lambda n: (head * (n // 8 + 1))[:n])
    ),
    st.integers(0, 3),
    options,
    st.booleans(),
)
def test_texts_are_the_same_words_below_and_above_the_column_size(
    values: list[float], decimals: int, kw: dict[str, object], guarded: bool
) -> None:
    nan = kw.pop("nan") if guarded else None
    spec = f"{',' if kw['grouping'] else ''}.{decimals}{'%' if kw['percent'] else 'f'}"
    want = [
        nan if nan is not None and not math.isfinite(v) else
        f"{kw['prefix']}{format(v, spec)}{kw['suffix']}"
        for v in values
    ]  # fmt: skip
    kw.pop("nan", None)
    got = texts(np.array(values, np.float64), decimals, nan=nan, **kw)  # type: ignore[arg-type]
    assert got == want

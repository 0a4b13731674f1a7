"""Numbers for people as Arrow string columns, built with numpy instead of one f-string a value.

`fixed` gives, element for element, the same text as Python's `format(v, ",.2f")` (and `.Nf`,
`.N%`): at 100k deals a FULL plan's sentences spent ~0.3 s formatting their figures one at a
time (text.py's `amounts` and `rates`); here a column costs a few numpy passes over 4-byte words.

How it stays identical to Python's correctly rounded formatting: the scaled value
s = |v| x 10**d is one float product, and its nearest integer is the exact value's unless s lies
exactly on a half (a product's rounding cannot cross a half that is itself a float, and below
2**52 every half is). Those rows get the product's exact rounding error (Dekker's two-product:
10**d has few bits, so |v| needs splitting only) and round up, down or, on an exact tie, to even,
as Python does. Rows the integers cannot hold (s >= 2**52, or a percent whose x 100 overflowed)
are formatted by Python itself; there are none among budgets.

Its fixed cost is ~80 us: below ~250 values the f-strings plus pa.array are faster (measured on
the 2-core box: 50 values 0.08 ms against 0.02, 1,000 values 0.11 against 0.35, 100k 6 against 38).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from reallocator.core.model import BudgetType

UNIT_NAMES = {
    BudgetType.IMPRESSIONS: "impressions",
    BudgetType.CLICKS: "clicks",
    BudgetType.COMPLETES: "completes",
    BudgetType.REQUESTS: "requests",
}
"""The words after an amount in a budget unit other than spend."""

# Integers are exact and every half representable below this: the fast path's domain.
_EXACT_LIMIT = float(2**52)
# Dekker's split constant (2**27 + 1): |v| = hi + lo with hi x 10**d exact for d <= _MAX_DECIMALS.
_SPLITTER = 134217729.0
_MAX_DECIMALS = 10  # 5**10 has 24 bits: hi (26 bits) x 10**d stays within 53
_DIGITS = np.frombuffer(b"0123456789", np.uint8)


@functools.cache
def _chunk_table(grouping: bool) -> npt.NDArray[np.uint32]:
    """4 bytes per integer chunk: ',ddd' (base 1000) with grouping, 'dddd' (base 10000) without,
    so one gather from the table writes a whole aligned word of the row."""
    digits = 3 if grouping else 4
    values = np.arange(10**digits)
    table = np.empty((values.size, 4), np.uint8)
    if grouping:
        table[:, 0] = ord(",")
    for k in range(digits):
        table[:, 3 - k] = _DIGITS[(values // 10**k) % 10]
    return table.view(np.uint32).ravel()


@functools.cache
def _head_table(decimals: int, tail: bytes) -> npt.NDArray[np.uint32]:
    """The first word after the integer part for every fraction: '.', its digits (decimals <= 3)
    and as much of the suffix as fits (zeros past the end)."""
    values = np.arange(10**decimals)
    table = np.tile(np.frombuffer((tail + b"\0\0\0\0")[:4], np.uint8), (values.size, 1))
    for k in range(decimals):
        table[:, decimals - k] = _DIGITS[(values // 10**k) % 10]
    return table.view(np.uint32).ravel()


def _spec(decimals: int, grouping: bool, percent: bool) -> str:
    """The format spec the functions here write like: ",.2f", ".0%"."""
    return f"{',' if grouping else ''}.{decimals}{'%' if percent else 'f'}"


def fixed(
    values: npt.ArrayLike,
    decimals: int,
    *,
    grouping: bool = True,
    prefix: str = "",
    suffix: str = "",
    percent: bool = False,
    nan: str = "n/a",
) -> pa.Array:
    """`prefix + format(v, ",.{decimals}f") + suffix` for every value (`.{decimals}%` with
    `percent`, no ',' without `grouping`), `nan` alone for NaN and ±inf, as a large_string array.

    The same bytes as the f-strings (property-tested), so callers can switch at any size."""
    v = np.asarray(values, np.float64).ravel()
    spec = _spec(decimals, grouping, percent)
    n = v.size
    if n == 0:
        return pa.array([], pa.large_string())
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    if decimals > _MAX_DECIMALS:
        texts = [prefix + format(x, spec) + suffix if np.isfinite(x) else nan for x in v.tolist()]
        return pa.array(texts, pa.large_string())
    scale = float(10**decimals)
    with np.errstate(over="ignore", invalid="ignore"):
        # Python's '%' multiplies the double by 100 (not the exact decimal) and formats as 'f'.
        s = np.abs(v * 100.0 if percent else v)
        s *= scale  # in place: at 100k a fresh array's page faults cost as much as the arithmetic
    fast = s < _EXACT_LIMIT  # False for NaN and inf
    everywhere = bool(fast.all())
    if everywhere:
        bad = fallback = np.empty(0, np.int64)
    else:
        finite = np.isfinite(v)
        bad = np.flatnonzero(~finite)
        fallback = np.flatnonzero(finite & ~fast)
        s[~fast] = 0.0
    c = np.rint(s)
    off = np.subtract(c, s, out=s)
    ties = np.flatnonzero(np.abs(off, out=off) == 0.5)
    if ties.size:
        exact = np.abs(v[ties] * 100.0 if percent else v[ties])
        c[ties] = _round_ties(exact, c[ties], scale)
    scaled = c.astype(np.int64)
    whole = scaled // 10**decimals
    fraction = scaled - whole * 10**decimals if decimals else None
    top = int(whole.max())
    if top < 2**32:  # 32-bit divisions and compares are several times faster
        whole = whole.astype(np.uint32)
    ndigits = len(str(top))

    base = 1000 if grouping else 10000
    chunks = -(-ndigits // (3 if grouping else 4))
    suffix_b = (("%" if percent else "") + suffix).encode()
    prefix_b = prefix.encode()
    nan_b = nan.encode()
    tail = (b"." + b"0" * decimals if decimals else b"") + suffix_b
    # Room left of the digits for the prefix and a sign (with grouping the top chunk's ',' is free).
    lead = len(prefix_b) + 1 - (1 if grouping else 0)
    lead_words = -(-lead // 4)
    while 4 * (lead_words + chunks) + len(tail) < len(nan_b):
        lead_words += 1
    int_end = 4 * (lead_words + chunks)
    width = int_end + len(tail)  # a row's text ends here
    words = 2 * -(-width // 8)  # rows of whole bytes of filter bits

    # Built word by word in columns (contiguous writes), then transposed into rows once.
    columns = np.empty((words, n), np.uint32)
    template = np.zeros(4 * words, np.uint8)
    template[int_end:width] = np.frombuffer(tail, np.uint8)
    constant = template.view(np.uint32)
    table = _chunk_table(grouping)
    work = whole
    for j in range(chunks):
        if j == chunks - 1:
            group = work
        else:
            higher = work // base
            group = work - higher * base
            work = higher
        np.take(table, group, out=columns[lead_words + chunks - 1 - j], mode="clip")
    head = lead_words + chunks
    if fraction is not None and decimals <= 3:
        np.take(_head_table(decimals, tail), fraction, out=columns[head], mode="clip")
        head += 1
    for k in range(head, words):
        columns[k] = constant[k]
    chars = np.ascontiguousarray(columns.T).view(np.uint8)
    if fraction is not None and decimals > 3:
        for k in range(decimals):
            chars[:, int_end + decimals - k] = (fraction // 10**k) % 10 + ord("0")

    # Where each row's text begins: digits, commas between groups of three, sign, prefix.
    count = np.ones(n, np.uint8)
    for k in range(1, ndigits):
        count += whole >= 10**k
    first = np.take(_first_table(int_end, grouping), count)
    flat = chars.ravel()
    negative = np.flatnonzero(np.signbit(v))
    if not everywhere:
        negative = negative[fast[negative]]
    if negative.size:
        first[negative] -= 1
        flat[negative * (4 * words) + first[negative]] = ord("-")
    if prefix_b:
        first -= len(prefix_b)
        row_start = np.arange(n, dtype=np.int64) * (4 * words)
        for k, byte in enumerate(prefix_b):
            flat[row_start + first + k] = byte
    if bad.size:
        first[bad] = width - len(nan_b)
        chars[bad, width - len(nan_b) : width] = np.frombuffer(nan_b, np.uint8)
    if fallback.size:
        first[fallback] = width
    # Arrow's filter keeps the text bytes about twice as fast as numpy's boolean indexing.
    size = 4 * words * n
    kept = np.take(_kept(width, 4 * words), first, axis=0)
    data_array = pc.filter(
        pa.Array.from_buffers(pa.uint8(), size, [None, pa.py_buffer(flat)]),
        pa.BooleanArray.from_buffers(pa.bool_(), size, [None, pa.py_buffer(kept)]),
    )
    data = np.asarray(data_array)
    lengths = width - first
    if fallback.size:
        encoded = [(prefix + format(x, spec) + suffix).encode() for x in v[fallback].tolist()]
        sizes = np.array([len(t) for t in encoded], np.int64)
        at = np.cumsum(lengths)[fallback] - lengths[fallback]
        data = np.insert(data, np.repeat(at, sizes), np.frombuffer(b"".join(encoded), np.uint8))
        lengths[fallback] = sizes
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


@functools.cache
def _first_table(int_end: int, grouping: bool) -> npt.NDArray[np.int64]:
    """The column of a number's first digit by its count of integer digits."""
    digits = np.arange(20)
    chars = digits + (np.maximum(digits - 1, 0) // 3 if grouping else 0)
    return (int_end - chars).astype(np.int64)


@functools.cache
def _kept(width: int, row: int) -> npt.NDArray[np.uint8]:
    """Row `first` of it: which of a row's bytes are text when the text starts at `first`, as
    the bits of an Arrow filter (8 a byte, least significant first; `row` is a multiple of 8)."""
    kept = np.arange(row) >= np.arange(row + 1)[:, None]
    kept[:, width:] = False
    bits = np.packbits(kept, axis=1, bitorder="little")
    bits.flags.writeable = False
    return bits


def _round_ties(
    a: npt.NDArray[np.float64], even: npt.NDArray[np.float64], scale: float
) -> npt.NDArray[np.float64]:
    """The rounding of the exact a x scale where its float product landed exactly on a half:
    up if the product rounded down, down if it rounded up, to even (rint's) if it is exact."""
    s = a * scale
    below = np.floor(s)
    split = a * _SPLITTER
    hi = split - (split - a)
    lo = a - hi
    error = (hi * scale - s) + lo * scale  # exact: a x scale == s + error
    return np.where(error > 0, below + 1.0, np.where(error < 0, below, even))


def formatted(
    values: npt.ArrayLike,
    decimals: int,
    *,
    grouping: bool = True,
    prefix: str = "",
    suffix: str = "",
    percent: bool = False,
) -> pa.Array:
    """`prefix + format(v, spec) + suffix` for every value, NaN and infinities included as an
    f-string writes them ("nan", "inf", "-inf"): `fixed` with Python's own words at the
    non-finite rows (an f-string without an "n/a" guard)."""
    v = np.asarray(values, np.float64).ravel()
    out = fixed(v, decimals, grouping=grouping, prefix=prefix, suffix=suffix, percent=percent)
    odd = np.flatnonzero(~np.isfinite(v))
    if odd.size == 0:
        return out
    spec = _spec(decimals, grouping, percent)
    texts = out.to_pylist()
    for i in odd.tolist():
        texts[i] = prefix + format(float(v[i]), spec) + suffix
    return pa.array(texts, pa.large_string())


COLUMN_FROM = 250
"""Values from which `texts` formats by `fixed` (below, the f-strings are the cheaper)."""


def texts(
    values: npt.ArrayLike,
    decimals: int,
    *,
    grouping: bool = True,
    prefix: str = "",
    suffix: str = "",
    percent: bool = False,
    nan: str | None = None,
) -> list[str]:
    """The same words as `formatted` (`nan` instead at the non-finite values, when given) as
    Python strs, for callers that join them a row at a time: f-strings for a few values, the
    numpy formatter for many (at 17.7k alerts ~5x cheaper)."""
    v = np.asarray(values, np.float64).ravel()
    if v.size < COLUMN_FROM:
        spec = _spec(decimals, grouping, percent)
        if nan is None:
            return [f"{prefix}{x:{spec}}{suffix}" for x in v.tolist()]
        return [f"{prefix}{x:{spec}}{suffix}" if math.isfinite(x) else nan for x in v.tolist()]
    if nan is None:
        column = formatted(
            v, decimals, grouping=grouping, prefix=prefix, suffix=suffix, percent=percent
        )
    else:
        column = fixed(
            v, decimals, grouping=grouping, prefix=prefix, suffix=suffix, percent=percent, nan=nan
        )
    listed: list[str] = column.to_pylist()
    return listed


def _in_unit(
    values: npt.ArrayLike, budget_type: BudgetType, currency: str, per_hour: bool
) -> tuple[npt.NDArray[np.float64], int, str]:
    """An amount (a rate per hour with `per_hour`) in the budget's unit as its figures, their
    decimals and the words after them: micros / 1e6 to 2 places and the currency for SPEND,
    counts (rates to 1 place) and the unit's name for the others."""
    v = np.asarray(values, np.float64)
    per = "/h" if per_hour else ""
    if budget_type is BudgetType.SPEND:
        return v / 1e6, 2, f" {currency}{per}"
    return v, (1 if per_hour else 0), f" {UNIT_NAMES[budget_type]}{per}"


def amount_column(values: npt.ArrayLike, budget_type: BudgetType, currency: str) -> pa.Array:
    """Amounts as a column: '1,234.56 USD' (micros / 1e6) for SPEND, '12,345 clicks', "n/a"
    where not finite."""
    figures, decimals, words = _in_unit(values, budget_type, currency, False)
    return fixed(figures, decimals, suffix=words)


def rate_column(values: npt.ArrayLike, budget_type: BudgetType, currency: str) -> pa.Array:
    """Rates per hour as a column: '40.00 USD/h' for SPEND, '1,250.0 clicks/h'."""
    figures, decimals, words = _in_unit(values, budget_type, currency, True)
    return fixed(figures, decimals, suffix=words)


def amount_texts(values: npt.ArrayLike, budget_type: BudgetType, currency: str) -> list[str]:
    """`amount_column`'s words as Python strs (`texts`: f-strings for a few)."""
    figures, decimals, words = _in_unit(values, budget_type, currency, False)
    return texts(figures, decimals, suffix=words, nan="n/a")


def rate_texts(values: npt.ArrayLike, budget_type: BudgetType, currency: str) -> list[str]:
    """`rate_column`'s words as Python strs."""
    figures, decimals, words = _in_unit(values, budget_type, currency, True)
    return texts(figures, decimals, suffix=words, nan="n/a")

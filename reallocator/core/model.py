"""The domain model every core module shares: a campaign snapshot as tables and small dataclasses.

The gRPC adapter converts either wire form (per-deal messages or the columnar table) into exactly
this; the pacing, forecast and engine modules read only this. Nothing here does I/O.

Units: money is integer micros of the campaign currency. An *allocation* is expressed in the
campaign's budget unit (micros when the budget type is SPEND, else a count of impressions, clicks,
completes or requests), so one integer column holds "how much of the goal" a deal gets.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pandas.api.internals import (  # type: ignore[import-not-found]  # no stubs for it
    create_dataframe_from_blocks,
)

INT64_MAX = np.iinfo(np.int64).max
"""Stands for "no maximum" in integer bound columns."""


class BudgetType(StrEnum):
    SPEND = "SPEND"
    IMPRESSIONS = "IMPRESSIONS"
    CLICKS = "CLICKS"
    COMPLETES = "COMPLETES"
    REQUESTS = "REQUESTS"


class Period(StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"  # Sunday 00:00 to Saturday 24:00, campaign timezone
    MONTH = "MONTH"  # calendar month, campaign timezone
    LIFETIME = "LIFETIME"  # the flight (or the campaign's start..end); needs dates


class PacingMode(StrEnum):
    ASAP = "ASAP"
    EVEN = "EVEN"
    FRONT_LOADED = "FRONT_LOADED"
    BACK_LOADED = "BACK_LOADED"
    CUSTOM = "CUSTOM"


class BudgetChangeBehavior(StrEnum):
    """How a mid-flight budget change is re-divided over the remaining periods."""

    EVEN = "EVEN"  # original per-period pacing amount re-divided: a spike (increase) or pause
    SMOOTH = "SMOOTH"  # remaining budget re-divided over the remaining time: a step


class Severity(StrEnum):
    """How much an alert or a change matters (the v1 proto's Severity enum)."""

    MINOR = "MINOR"
    MATERIAL = "MATERIAL"
    CRITICAL = "CRITICAL"


class DealType(IntEnum):
    """Codes match the proto enum numbers, so columnar tables carry them as int8."""

    PROGRAMMATIC_GUARANTEED = 1
    PREFERRED = 2
    PRIVATE_AUCTION = 3
    OPEN = 4


class DealStatus(IntEnum):
    ACTIVE = 1
    PAUSED = 2
    ENDED = 3


class PriceKind(IntEnum):
    """What `price_micros` prices: a thousand impressions, or one unit of the budget type."""

    ECPM = 1
    PER_UNIT = 2


DELIVERED_COLUMN: dict[BudgetType, str] = {
    BudgetType.SPEND: "spend_micros",
    BudgetType.IMPRESSIONS: "impressions",
    BudgetType.CLICKS: "clicks",
    BudgetType.COMPLETES: "completes",
    BudgetType.REQUESTS: "requests",
}
"""The deals-table column that counts delivery in each budget type's unit."""

# The canonical deals table: one row per deal, these columns and dtypes, in this order.
DEAL_COLUMNS: dict[str, str] = {
    "deal_id": "str",
    "seller_id": "str",
    "channel_id": "str",
    "order_id": "str",  # the seller's order id (IAB seller-agent change requests use it)
    "deal_type": "int8",  # DealType
    "premium": "bool",
    "status": "int8",  # DealStatus
    "locked": "bool",
    "allocation": "int64",  # booked allocation for the flight, budget units
    "min_allocation": "int64",  # 0 when none
    "max_allocation": "int64",  # INT64_MAX when none
    "spend_micros": "int64",  # to date, within the horizon
    "impressions": "int64",
    "clicks": "int64",
    "completes": "int64",
    "requests": "int64",
    "price_kind": "int8",  # PriceKind
    "price_micros": "int64",
    "value_per_unit": "float64",  # objective weight per budget unit
    "avails": "int64",  # bid requests seen, to date
    "bids": "int64",
    "wins": "int64",
    "participation_rate": "float64",  # share of auctions we took part in (throttle); NaN = unknown
    "available_inventory": "int64",  # seller-declared remaining inventory, budget units; -1 unknown
    "plan_applied_at": "int64",  # unix seconds when the last plan was applied; -1 = never
    "delivered_at_plan": "int64",  # delivered (budget units) at that instant
    "capacity_forecast": "int64",  # the caller's own capacity forecast, budget units; -1 = none
}


@dataclass(frozen=True)
class Budget:
    """At most one budget per period on an object; the tightest one wins when pacing."""

    period: Period
    amount: int  # budget units


@dataclass(frozen=True)
class BudgetChange:
    """A budget's amount changed mid-flight at `at` (the old amount applied before)."""

    at: datetime
    period: Period
    old_amount: int
    new_amount: int
    flight_id: str = ""  # empty: a campaign-level budget


@dataclass(frozen=True)
class Flight:
    """A non-overlapping slice of the campaign with its own budgets; nothing rolls over."""

    flight_id: str
    start: datetime
    end: datetime
    budgets: tuple[Budget, ...] = ()


@dataclass(frozen=True)
class PacingSpec:
    """How delivery should be spread over time (campaign level; deals follow its shape)."""

    budget_type: BudgetType = BudgetType.SPEND
    mode: PacingMode = PacingMode.EVEN
    start: datetime | None = None  # campaign start (aware)
    end: datetime | None = None  # campaign end (aware)
    budgets: tuple[Budget, ...] = ()
    flights: tuple[Flight, ...] = ()
    front_share: float = 0.35  # FRONT_LOADED: share s delivered over the first fraction f
    front_fraction: float = 0.25
    back_share: float = 0.35  # BACK_LOADED: share s delivered over the last fraction u
    back_fraction: float = 0.25  # BACK_LOADED(u) = 1 - FRONT(1 - u)
    catch_up_fraction: float = 0.95  # EVEN: 100% delivered by this fraction of active time
    custom_weights: npt.NDArray[np.float64] | None = None  # 24 (hour of day) or 168 (hour of week,
    # Monday 00h first) relative traffic weights
    daypart: npt.NDArray[np.bool_] | None = None  # (7, 24) active hours, Monday=0, campaign tz
    change_behavior: BudgetChangeBehavior = BudgetChangeBehavior.EVEN
    budget_changes: tuple[BudgetChange, ...] = ()
    max_spend_micros: int | None = None  # money cap; with SPEND also a ceiling on the curve
    paced_period: Period | None = None  # the budget the mode's shape paces; None: the longest


@dataclass(frozen=True)
class GroupLimits:
    """Min/max totals of a seller or channel: absolute (budget units) or a share of the flight."""

    min_total: int | None = None
    max_total: int | None = None
    min_share: float | None = None
    max_share: float | None = None


@dataclass(frozen=True)
class SeverityTiers:
    """Change sizes (share of current allocation) from which a change is material / critical."""

    material: float = 0.10
    critical: float = 0.30


@dataclass(frozen=True)
class Policy:
    over_threshold: float = 1.10
    under_threshold: float = 0.90
    stalled_window: timedelta = timedelta(hours=6)
    min_evidence: timedelta = timedelta(hours=6)  # hours of delivery before verdicts count
    min_evidence_impressions: int = 1000
    confidence_threshold: float = 60.0  # 0..100; alerts only above it
    step_abs: int = 0  # budget units a deal may move in one plan; 0 = automatic: an even share
    # of what the active deals still hold (so a deal at 0 can grow)
    step_rel: float = 1.0  # share of a deal's current allocation it may move in one plan
    step_rel_per_hour: float = 0.0  # ... in any rolling hour, of its total then; 0 = no limit
    step_rel_per_day: float = 0.0  # ... in any rolling day (both from the applied plans stored)
    churn_deal: float = 0.0  # lam_deal: value per budget unit moved on a deal
    churn_relative: float = 0.1  # ... plus this share of the campaign's mean value per unit
    churn_channel: float = 0.0  # lam_channel: value per budget unit moved across channels
    request_tolerance: float = 0.10  # required vs current rate gap that warrants a request
    min_change: int = 0  # smallest change (budget units) worth making/asking
    cooldown: timedelta = timedelta(hours=24)
    answer_time: timedelta = timedelta(hours=12)  # how long a seller takes to answer a request:
    # a guaranteed deal grows only by what it can deliver after the answer (0: the whole time)
    severity: SeverityTiers = field(default_factory=SeverityTiers)
    auto_apply_up_to: str = ""  # "", "MINOR", "MATERIAL", "CRITICAL": auto-apply up to this
    relax_group: float = 1.0  # elastic weight per unit on seller/channel bounds
    relax_commitment: float = 10.0  # ... on deal minimums
    relax_limit: float = 100.0  # ... on deal maximums and step limits
    beyond_forecast: float = 100.0  # budget the forecasts cannot absorb: a buyer-paced deal may
    # take up to this multiple of its forecast beyond it (one forecast first, then the rest, in
    # proportion, after the guaranteed deals' commitments; above 1, what is still left stays
    # with the buyer-paced deals the plan would cut, up to what they hold); 0 leaves it unplaced
    forecast_prior: timedelta = timedelta(hours=24)  # H0: a capacity forecast from H hours of
    # delivery weighs H / (H + H0) against the current allocation (0: the raw forecast)
    cut_confidence: float = 2.0  # z: a deal is cut below its allocation only when its forecast
    # plus z standard errors of its recent rate falls short of it (0: raw forecasts)
    move_band: float = 0.2  # a capacity estimate short of what a deal holds by at most this
    # share keeps it there (a dead band: noise moves nothing; guaranteed deals either way)
    reversal_band: float = 0.3  # ... and one that would undo the deal's last recent move must
    # differ by more than this share (hysteresis)
    reversal_window: timedelta = timedelta(hours=24)  # how long a move counts as recent
    reversal_churn: float = 2.0  # a move undoing the last recent one costs this multiple of
    # the churn weight per unit on top of it
    churn_request: float = 1.0  # a move on a guaranteed deal (a seller request) costs this
    # multiple of the churn weight per unit on top of it
    stall_outlook: bool = True  # a confident stall keeps the share of the deal's forecast it is
    # expected to deliver once it ends (by how long it has lasted); False: capacity 0
    pace_ahead: float = 2.0  # a buyer-paced deal given all its forecast supply may deliver up
    # to this multiple of its curve's hourly target when supply allows; 1.0: every deal on the curve
    protect_deviation: float = 0.0  # protection: roll an applied plan back at the next replan
    # when delivery since it strays from its schedules by more than this share (0: off) ...
    protect_window: timedelta = timedelta(hours=6)  # ... within this long after it
    cap_unmeetable_minimums: bool = True  # a seller/channel minimum its deals cannot deliver
    # is capped there (True) or is a conflict like any other (False: reject or relax)


@dataclass(frozen=True)
class DeliverySeries:
    """Recent delivery on one common grid: arrays of shape (n_deals, n_buckets).

    Rows follow the deals table; a deal without a series has a row of NaN. The arrays are
    float64 (with those NaN rows) or, when every deal has a series (the wire's matrix form),
    integers in the width sent: consumers widen what they read rather than the decoder
    widening every measure (4 x 4.8M values at 100k deals), so test a row for NaN only on
    floats (`np.isnan` of an integer array is all False).
    """

    window_start: datetime
    bucket: timedelta
    spend_micros: npt.NDArray[Any]
    impressions: npt.NDArray[Any]
    avails: npt.NDArray[Any]
    wins: npt.NDArray[Any]

    @property
    def n_buckets(self) -> int:
        return int(self.spend_micros.shape[1])


@dataclass(frozen=True)
class CampaignSnapshot:
    campaign_id: str
    as_of: datetime  # aware
    timezone: str  # IANA name, e.g. "America/New_York"
    currency: str  # ISO 4217
    deals: pd.DataFrame  # DEAL_COLUMNS
    sellers: pd.DataFrame  # index seller_id; columns min_total, max_total, min_share, max_share
    channels: pd.DataFrame  # index channel_id; same columns
    pacing: PacingSpec = field(default_factory=PacingSpec)
    delivery: DeliverySeries | None = None
    policy: Policy = field(default_factory=Policy)


GROUP_COLUMNS: dict[str, str] = {
    "min_total": "float64",  # NaN = none (budget units)
    "max_total": "float64",
    "min_share": "float64",  # NaN = none (share of the flight budget, 0..1)
    "max_share": "float64",
}


class _Shared:
    """The columns read so far from the frames of a `reading` block, by (frame, column, dtype)."""

    __slots__ = ("frames", "values")

    def __init__(self) -> None:
        self.frames: dict[int, pd.DataFrame] = {}  # id -> the frame (kept: no id reused)
        self.values: dict[tuple[Any, ...], Any] = {}


_SHARED: ContextVar[_Shared | None] = ContextVar("reallocator_shared_columns", default=None)


@contextmanager
def reading(*frames: pd.DataFrame) -> Iterator[None]:
    """Within the block, `values_of`, `text_of`, `text_column` and `first_seen_of` read each
    column of `frames` once and give every caller the same read-only array: a 50-deal plan
    reads the snapshot's ~30 columns ~70 times, ~4 us a read. For a pure computation over
    frames nobody edits meanwhile (a plan of its snapshot); a block inside another adds its
    frames to the outer one. Per context (thread), so concurrent plans share nothing."""
    shared = _SHARED.get()
    if shared is not None:
        for frame in frames:
            shared.frames.setdefault(id(frame), frame)
        yield
        return
    shared = _Shared()
    shared.frames.update((id(frame), frame) for frame in frames)
    token = _SHARED.set(shared)
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared_read(frame: Any, key: tuple[Any, ...], read: Any, *args: Any) -> Any:
    """`read(frame, *args)`, once per `key` within a `reading` block of `frame` (read-only)."""
    shared = _SHARED.get()
    if shared is None or shared.frames.get(id(frame)) is not frame:
        return read(frame, *args)
    full = (id(frame), *key)
    found = shared.values.get(full)
    if found is None:
        found = read(frame, *args)
        if isinstance(found, np.ndarray) and found.flags.writeable:
            found.flags.writeable = False  # our own copy: no reader may edit another's
        shared.values[full] = found
    return found


def values_of(frame: pd.DataFrame, name: str, dtype: Any = None) -> np.ndarray:
    """`frame[name].to_numpy(dtype)` without building a Series: ~1.5 us instead of 15-30 us,
    and a 50-deal plan reads ~200 columns. Read-only where it shares the frame's memory, as a
    copy-on-write frame's `to_numpy()` is, and always within a `reading` block of the frame;
    columns that are not plain numpy (strings, categoricals) and frames without pandas' column
    accessor take the ordinary path."""
    out: np.ndarray = _shared_read(frame, ("values", name, dtype), _values_of, name, dtype)
    return out


def _values_of(frame: pd.DataFrame, name: str, dtype: Any) -> np.ndarray:
    get = getattr(frame, "_get_column_array", None)
    columns = getattr(frame, "columns", None)
    if get is None or columns is None or not columns.is_unique or name not in columns:
        return np.asarray(frame[name].to_numpy(dtype))
    values = get(columns.get_loc(name))
    if not isinstance(values, np.ndarray):
        # What Series.to_numpy does for an extension array, without building the Series.
        if isinstance(values, pd.api.extensions.ExtensionArray):
            return np.asarray(values.to_numpy(dtype=dtype))
        return np.asarray(frame[name].to_numpy(dtype))
    out = values if dtype is None else values.astype(dtype, copy=False)
    if out is values:
        out = out.view()
        out.flags.writeable = False
    return out


def select(conditions: list[Any], choices: list[Any], default: Any) -> np.ndarray:
    """`np.select(conditions, choices, default)` for boolean arrays of one shape (choices and
    default: scalars or arrays of that shape): its own steps - the common dtype of the choices,
    the default, then each choice copied in where its condition holds, the last one first -
    without broadcasting every argument beforehand, most of its ~20 us a call on short arrays
    (a 50-deal plan makes ten calls)."""
    values = [
        v if type(v) in (int, float, complex) else np.asarray(v) for v in (*choices, default)
    ]  # Python numbers stay weak in the dtype's promotion, as np.select keeps them
    out = np.full(np.shape(conditions[0]), values[-1], dtype=np.result_type(*values))
    for condition, choice in zip(reversed(conditions), reversed(values[:-1]), strict=True):
        np.copyto(out, choice, where=condition)
    return out


def flag_counts(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """How many flags each row of a boolean matrix has set: einsum over the flags' bytes, where
    `count_nonzero(axis=)` is Python-level and a bool sum along short rows is slow (~2.7 -> ~1.7
    ms at 100k x 48)."""
    out: npt.NDArray[np.intp] = np.einsum("ij->i", flags.view(np.uint8), dtype=np.intp)
    return out


def nan_to_num(x: npt.ArrayLike, nan: float = 0.0) -> npt.NDArray[np.float64]:
    """`np.nan_to_num(x, nan=nan)` of a float array as a new float64 array (NaN to `nan`,
    infinities to the largest doubles), in one check where every value is finite (the usual
    case): numpy's passes for NaN and for each infinity cost ~8 us a call on short arrays, and
    a plan makes a dozen."""
    out = np.array(x, dtype=np.float64)
    if np.isfinite(out).all():
        return out
    # numpy's own three replacements (its isposinf/isneginf are Python calls, ~5 us a call).
    missing, up, down = np.isnan(out), out == np.inf, out == -np.inf
    np.copyto(out, nan, where=missing)
    np.copyto(out, _LARGEST, where=up)
    np.copyto(out, -_LARGEST, where=down)
    return out


_LARGEST = float(np.finfo(np.float64).max)

UNITS_LIMIT = 2.0**62
"""The largest amount of budget units (either sign) a computed float becomes as an int64: far
beyond any budget, and two of them still add up within int64. Clipped before the cast: a rate
read over almost no opportunity (a custom curve's hours weighted 1e-213) projects beyond int64,
whose cast gives an arbitrary value."""


def as_units(x: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Float amounts as whole budget units (int64): NaN read as 0, rounded, within
    +-UNITS_LIMIT."""
    out: npt.NDArray[np.int64] = np.rint(np.clip(nan_to_num(x), -UNITS_LIMIT, UNITS_LIMIT)).astype(
        np.int64
    )
    return out


def as_text(column: pd.Series) -> npt.NDArray[np.object_]:
    """`column.astype(str)` as an object array, without the round trip through pandas for the
    two kinds of label column the core holds: a categorical's labels picked by code, a str
    column's values as they are (each cost ~0.2 ms a call at 50 rows, many calls a plan)."""
    values = column.array
    if isinstance(values, pd.Categorical):
        labels = np.array([*(str(c) for c in values.categories), np.nan], dtype=object)
        picked: npt.NDArray[np.object_] = labels[values.codes]  # code -1 stays NaN, as in astype
        return picked
    if column.dtype == "str":
        return column.to_numpy(dtype=object)
    return np.asarray(column.astype(str), dtype=object)


def text_of(frame: pd.DataFrame, name: str) -> npt.NDArray[np.object_]:
    """`as_text(frame[name])` without building the Series (~3 us instead of ~10 us); read-only
    within a `reading` block of the frame."""
    out: npt.NDArray[np.object_] = _shared_read(frame, ("text", name), _text_of, name)
    return out


def _text_of(frame: pd.DataFrame, name: str) -> npt.NDArray[np.object_]:
    get = getattr(frame, "_get_column_array", None)
    columns = getattr(frame, "columns", None)
    if get is None or columns is None or not columns.is_unique or name not in columns:
        return as_text(frame[name])
    values = get(columns.get_loc(name))
    if isinstance(values, pd.Categorical):
        labels = np.array([*(str(c) for c in values.categories), np.nan], dtype=object)
        picked: npt.NDArray[np.object_] = labels[values.codes]
        return picked
    if str(values.dtype) == "str":
        return np.asarray(values.to_numpy(dtype=object))
    return as_text(frame[name])


def labels_of(frame: pd.DataFrame, name: str) -> npt.NDArray[np.object_]:
    """`text_of` for a label column (a few distinct values, as a plan's reason or pacing):
    an Arrow "str" column without missing values converted through Arrow's dictionary, one str
    per distinct label that the rows share (100k deals ~1.9 ms a column, one str per row ~3.7
    ms; and the shared strs hash once when factorized). The same values as `text_of`, and the
    same read within a `reading` block (whichever asks first converts)."""
    out: npt.NDArray[np.object_] = _shared_read(frame, ("text", name), _labels_of, name)
    return out


def _labels_of(frame: pd.DataFrame, name: str) -> npt.NDArray[np.object_]:
    coded = label_codes(frame, name)
    if coded is None:
        return _text_of(frame, name)  # short, missing values or not text: as `text_of`
    codes, labels = coded
    picked: npt.NDArray[np.object_] = labels[codes]
    return picked


def labels_by_code(
    codes: npt.NDArray[np.integer[Any]], values: npt.NDArray[np.object_]
) -> npt.NDArray[np.object_] | None:
    """The label each code stands for, read from the first row that has it ("" for a code no
    row has), `values` being labels picked by `codes` (an assessment's label column and its
    codes): a decision per label is made once and spread by code, where comparing 100k objects
    costs ~0.9 ms a compare (a few passes over the codes here). None without codes, or with a
    negative one."""
    if codes.size == 0 or int(codes.min()) < 0:
        return None
    present = np.bincount(codes)
    out = np.array(
        [values[int(np.argmax(codes == c))] if present[c] else "" for c in range(present.size)],
        dtype=object,
    )
    return out


def label_codes(
    frame: pd.DataFrame, name: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.object_]] | None:
    """A long label column (an Arrow "str" column without missing values) as codes and their
    distinct labels (str objects, in order of first appearance), `labels_of` being
    `labels[codes]`; None for a short column, one with a missing value or one not of Arrow
    strings. Read once within a `reading` block, `labels_of`'s conversion included: a reader
    that decides per label reads the codes instead of hashing the picked objects again (the
    schedules' reasons: ~4 ms at 100k deals)."""
    found: tuple[npt.NDArray[Any], npt.NDArray[np.object_]] | None = _shared_read(
        frame, ("codes", name), _label_codes, name
    )
    return found


def _label_codes(
    frame: pd.DataFrame, name: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.object_]] | None:
    column = _text_column(frame, name)
    if len(column) <= SMALL_FACTORIZE or not is_text_array(column):
        return None  # a short column's objects convert as cheaply
    strings = pa.array(column)
    if strings.null_count:
        return None  # missing values: NaN, as `as_text` gives them
    codes, labels = _dictionary(strings)
    codes.flags.writeable = False
    labels.flags.writeable = False
    return codes, labels


def _dictionary(strings: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.object_]]:
    """Arrow strings (no missing value) as codes in order of first appearance and their
    distinct values as str objects: Arrow's hashing, one str per distinct value."""
    encoded = strings.dictionary_encode()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    labels = np.array(encoded.dictionary.to_pylist(), dtype=object)
    return encoded.indices.to_numpy(), labels


def text_column(frame: pd.DataFrame, name: str) -> Any:
    """The column's own array (no Series built): for a "str" column, what `table_of` keeps."""
    return _shared_read(frame, ("column", name), _text_column, name)


def _text_column(frame: pd.DataFrame, name: str) -> Any:
    get = getattr(frame, "_get_column_array", None)
    if get is None or not frame.columns.is_unique or name not in frame.columns:
        return frame[name].array
    return get(frame.columns.get_loc(name))


def first_seen(values: list[Any]) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """`pd.factorize(values, sort=False)` of a short list through a dict: the codes, and the
    distinct values in order of first appearance. A Python step per value: for short columns
    only, where pandas' factorize costs ~40 us a call (no missing values: the caller checks)."""
    where: dict[Any, int] = {}
    codes = [where.setdefault(v, len(where)) for v in values]
    return np.array(codes, dtype=np.int64), list(where)


SMALL_FACTORIZE = 128
"""Up to this many values `factorize` and `first_seen_of` go through a dict (`first_seen`), not
pandas: pandas' factorize of an Arrow string column cost ~95 us a call within a 50-deal plan,
the dict ~50 us; past it factorize's hashing is the cheaper."""


def factorize(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], Any]:
    """`pd.factorize(values, use_na_sentinel=False)` (codes, uniques) for a decision made once
    per distinct value and spread by code: a short array's through `first_seen` (where NaN
    objects that are not the same object may each get a code: the same decision each time)."""
    if len(values) <= SMALL_FACTORIZE:
        return first_seen(values.tolist())
    if values.dtype == object:
        # Strings hashed by Arrow, in the same order of first appearance (the uniques as plain
        # str): 100k labels ~3.6 ms where pandas' hashing of the objects costs ~5.5 ms.
        try:
            strings = pa.array(values, pa.large_string())
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            strings = None  # not all str: pandas' way
        if strings is not None and strings.null_count == 0:
            codes, labels = _dictionary(strings)
            return codes.astype(np.int64), labels
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, uniques


def sorted_codes(
    codes: npt.NDArray[np.int64], uniques: list[Any]
) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """`first_seen`'s codes and uniques renumbered in the uniques' sorted order (Python's, for
    str the code points': `pd.factorize(sort=True)`'s)."""
    order = sorted(range(len(uniques)), key=uniques.__getitem__)
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[order] = np.arange(len(uniques))
    return rank[codes], [uniques[i] for i in order]


SMALL_POSITIONS = 4096
"""Up to this many labels (keys and those searched together) `positions` goes through a dict."""


def positions(keys: Any, among: Any) -> npt.NDArray[np.intp]:
    """Each key's position in `among` (unique labels), -1 where it is absent:
    `pd.Index(among).get_indexer(keys)`. Through a dict for a few thousand labels, where
    building the Index and its hash table cost ~60 us a call (a 50-deal Replan of a campaign
    with a past made five: the last application, the last moves, the seller answers). Labels
    that repeat in `among` take pandas' way (which refuses them)."""
    n = len(keys)
    if n + len(among) <= SMALL_POSITIONS:
        at = {label: i for i, label in enumerate(_labels(among))}
        if len(at) == len(among):
            return np.fromiter((at.get(k, -1) for k in _labels(keys)), np.intp, n)
    return np.asarray(pd.Index(among).get_indexer(keys), dtype=np.intp)


def _labels(values: Any) -> list[Any]:
    """Plain Python labels of an array, Series, Index or Arrow-backed column."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return list(values.to_pylist())
    tolist = getattr(values, "tolist", None)
    return list(tolist()) if tolist is not None else list(values)


def first_seen_of(frame: pd.DataFrame, name: str) -> tuple[npt.NDArray[np.int64], list[str]] | None:
    """`first_seen` of a short "str" column of `frame` (None when it is longer than
    SMALL_FACTORIZE, has a missing value or is not one: then pandas' factorize is the way):
    the codes read-only, once within a `reading` block (the assessment and the problem both
    group the deals by seller and by channel)."""
    if len(frame) > SMALL_FACTORIZE:
        return None
    return cast(
        "tuple[npt.NDArray[np.int64], list[str]] | None",
        _shared_read(frame, ("first_seen", name), _first_seen_of, name),
    )


def _first_seen_of(
    frame: pd.DataFrame, name: str
) -> tuple[npt.NDArray[np.int64], list[str]] | None:
    column = _text_column(frame, name)
    if not is_text_array(column) or bool(column.isna().any()):
        return None
    codes, uniques = first_seen(column.to_numpy(dtype=object).tolist())
    codes.flags.writeable = False
    return codes, uniques


def group_codes(frame: pd.DataFrame, name: str) -> tuple[npt.NDArray[np.int64], Any] | None:
    """A "str" column's codes in order of first appearance and its distinct values (a list by
    `first_seen_of` for a short column, else pandas' factorize's uniques), or None where it is
    not one or misses a value. Once within a `reading` block, the codes read-only: a plan's
    problem groups the deals by seller and by channel, and its assessment too (sorted:
    `sorted_codes`), ~1.8 ms a column at 100k deals."""
    if len(frame) <= SMALL_FACTORIZE:
        return first_seen_of(frame, name)
    return cast(
        "tuple[npt.NDArray[np.int64], Any] | None",
        _shared_read(frame, ("groups", name), _group_codes, name),
    )


def _group_codes(frame: pd.DataFrame, name: str) -> tuple[npt.NDArray[np.int64], Any] | None:
    column = _text_column(frame, name)
    if not is_text_array(column):
        return None
    codes, uniques = pd.factorize(column, sort=False)
    if codes.size and int(codes.min()) < 0:
        return None  # a missing value: each caller's own way
    codes.flags.writeable = False
    return codes, uniques


def conform(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """`frame` with `dtypes`, cast only where a column differs: `astype` of a whole frame copies
    every column even when nothing changes (~5 % of a 50-deal plan)."""
    have = dict(zip(frame.columns, frame.dtypes.tolist(), strict=True))  # one pass, no getitem
    off = {name: dtype for name, dtype in dtypes.items() if have[name] != dtype}
    return frame.astype(off) if off else frame


TEXT_DTYPE = cast(pd.StringDtype, pd.api.types.pandas_dtype("str"))
"""The "str" dtype of label columns, resolved once: naming it by its string looks it up among
every registered dtype on each call (~8 us a column)."""


def is_text_array(values: object) -> bool:
    """Whether `values` is a table's "str" column as it is kept (Arrow strings, no objects)."""
    return isinstance(values, pd.api.extensions.ExtensionArray) and str(values.dtype) == "str"


_ArrowText: type = type(pd.array(np.array([""], dtype=object), dtype=TEXT_DTYPE))


def text_array(values: Any) -> Any:
    """Text (numpy's fixed-width, or str objects) as the "str" dtype's Arrow array: built from
    the Arrow array directly (~5 us a column) where `pd.array` checks it again (~10 us); values
    Arrow will not take as strings (numbers, NaN) go through pandas' conversion."""
    if not (isinstance(values, np.ndarray) and values.dtype.kind == "U"):
        values = np.asarray(values, dtype=object)
    try:
        return _ArrowText(pa.array(values, pa.large_string()), dtype=TEXT_DTYPE)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pd.array(values, dtype=TEXT_DTYPE)


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    """The columns' Index, built once per schema (immutable, so tables share it): building it
    from the names was half of a 50-row table's construction."""
    return pd.Index(names)


def arrow_text(values: pa.Array | pa.ChunkedArray) -> Any:
    """An Arrow column of text (plain or dictionary-encoded) as the "str" dtype's array: its
    buffers shared, without pandas' conversion of each value (a stored plan's labels)."""
    return _ArrowText(values.cast(pa.large_string()), dtype=TEXT_DTYPE)


def _constant_text(value: str, n: int) -> Any:
    """A constant label as an `n`-row "str" array (a plan's deals table has one: its rationale
    before the words): Arrow repeats the one string, without the take of a one-row array
    (its kernel's first call in a plan cost ~25 us more at 50 rows, ~0.4 ms more at 100k)."""
    return _ArrowText(pa.repeat(pa.scalar(value, pa.large_string()), n), dtype=TEXT_DTYPE)


def table_of(
    columns: dict[str, Any], dtypes: dict[str, str], index: pd.Index | None = None
) -> pd.DataFrame:
    """A DataFrame of `columns` (arrays of one length, or a scalar for a constant column) in the
    order and with the dtypes of `dtypes`, built from its blocks without pandas' per-column
    sanitising: ~35 us at 50 rows where the dict constructor plus `conform` cost ~250 us (a plan
    builds several). Label columns become the "str" dtype; numeric ones are copied into one
    block per dtype, which the table owns; other extension arrays (a categorical) are kept as
    they are (dtype "keep")."""
    n = next(len(v) for v in columns.values() if not isinstance(v, (str, int, float, bool)))
    blocks: list[tuple[Any, npt.NDArray[np.intp]]] = []
    for dtype, names, place in _block_plan(tuple(dtypes.items())):
        if dtype in ("str", "keep"):
            blocks.append((_own_extension(columns[names[0]], dtype, n), place))
            continue
        # One 2-D array per dtype, a row per column, as pandas holds them: the table's own
        # (writeable) copy. Grouping the columns by dtype again on every call was ~40 us of
        # a 50-row table through pandas' column-array constructor.
        stacked = np.empty((len(names), n), dtype=dtype)
        for row, name in enumerate(names):
            stacked[row] = columns[name]
        blocks.append((stacked, place))
    frame: pd.DataFrame = create_dataframe_from_blocks(
        blocks,
        index=pd.RangeIndex(n) if index is None else index,
        columns=_column_index(tuple(dtypes)),
    )
    return frame


def _own_extension(value: Any, dtype: str, n: int) -> Any:
    """A "str" or "keep" column as the table holds it: a copy (cheap: an Arrow string array's
    buffers are shared and immutable), so no edit of the table reaches the caller's array."""
    if dtype == "keep":
        return value.copy()
    if isinstance(value, str):  # a constant: one Arrow string, repeated n times
        return _constant_text(value, n)
    return value.copy() if is_text_array(value) else text_array(value)


@functools.lru_cache(maxsize=64)
def _block_plan(
    dtypes: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, tuple[str, ...], npt.NDArray[np.intp]], ...]:
    """A table's blocks as pandas' constructor makes them, planned once per schema: one per
    numeric dtype (its columns and their positions) and one per text or kept column."""
    positions: dict[str, list[int]] = {}
    for i, (_, dtype) in enumerate(dtypes):
        positions.setdefault(dtype, []).append(i)
    names = [name for name, _ in dtypes]
    plan: list[tuple[str, tuple[str, ...], npt.NDArray[np.intp]]] = []
    for dtype, places in positions.items():
        groups = [[p] for p in places] if dtype in ("str", "keep") else [places]
        for group in groups:
            place = np.array(group, dtype=np.intp)
            place.flags.writeable = False  # shared by every table's blocks
            plan.append((dtype, tuple(names[p] for p in group), place))
    return tuple(plan)


def empty_deals(n: int = 0) -> pd.DataFrame:
    """A deals table of `n` default rows with the canonical dtypes (handy in tests)."""
    data: dict[str, npt.NDArray[np.generic]] = {}
    for name, dtype in DEAL_COLUMNS.items():
        if dtype == "str":
            data[name] = np.array([f"{name[:-3]}{i}" for i in range(n)], dtype=object)
        else:
            data[name] = np.zeros(n, dtype=dtype)
    frame = pd.DataFrame(data)
    frame["deal_type"] = np.int8(DealType.PREFERRED)
    frame["status"] = np.int8(DealStatus.ACTIVE)
    frame["price_kind"] = np.int8(PriceKind.ECPM)
    frame["max_allocation"] = INT64_MAX
    frame["participation_rate"] = np.nan
    frame["available_inventory"] = -1
    frame["capacity_forecast"] = -1
    frame["plan_applied_at"] = -1
    return frame

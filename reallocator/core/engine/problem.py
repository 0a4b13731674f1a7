"""`AllocationProblem`: the engine's input, numpy arrays in budget units, nothing else.

The contract: every array is indexed by deal (length n) or by group code (sellers 0..S-1,
channels 0..C-1); integer amounts are int64 budget units (micros when the budget type is SPEND);
`INT64_MAX` means "no maximum". The problem is already in *remaining* amounts for the horizon:
`bounds.build_problem` does the conversion from flight totals and reports what it clipped.

The mathematics it stands for (x_d: new allocation of deal d, integer)::

    lex-max ( sum_d x_d ,  sum_d f_d(x_d) - lam_deal * sum_d |x_d - c_d|
                                         - sum_d (a_d (x_d - c_d)+ + b_d (c_d - x_d)+)
                                         - lam_channel * sum_ch |X_ch - C_ch| )
    s.t.   lb_d <= x_d <= ub_d                       every deal
           smin_q <= sum_{d in q} x_d <= smax_q      every seller q
           cmin_c <= X_c = sum_{d in c} x_d <= cmax_c every channel c
           sum_d x_d <= total
           sum_d price_num_d * x_d <= money_cap * price_den      (optional money cap)

with f_d concave piecewise linear: slope value_slopes[d, k] between value_breaks[d, k-1] and
value_breaks[d, k] (0 before the first break, +inf after the last); a_d = lam_above[d] and
b_d = lam_below[d] (0 when None) charge a move against the deal's last one more than a fresh one.

The objective's coefficients (value slopes and churn weights) are held in multiples of
`value_unit`, a power of two: 1 while they lie within COEFFICIENT_RANGE, else chosen on
construction so that the largest is in [1, 2). Value is "any consistent scale": above 1e30 a unit
GLOP refused the costs (ABNORMAL), near 1e308 the objective's sums (value x amount) overflowed and
the flow's cost scale turned inf x 0 = NaN. Dividing by a power of two is exact: the flow's
integer costs and the engine's sums are the same bits on every scale, GLOP's costs the same up to
a power of two (the same plans, duals within 1e-13). What leaves the engine as a value (objective
parts, duals, marginal values) is multiplied back (`from_unit`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from reallocator.core.model import INT64_MAX

IntArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NO_MAX = int(INT64_MAX)

MAX_TOTAL = 2**53
"""Largest total the engine takes: integers up to here are exact in float64 (the LP path) and
leave the flow path's node sums far from int64 overflow. In micros it is 9 billion currency
units per campaign and horizon; larger goals should use a coarser unit."""


COEFFICIENT_RANGE = (2.0**-64, 2.0**64)
"""Largest objective coefficient magnitudes the engine takes as they are (every realistic value
scale, 5e-20 to 1.8e19): every sum of value or churn x amount stays far below float64's limit
(2**64 x 2**53 x a few), GLOP takes the folded slopes as costs (it refuses more than 1e30), and
the flow's cost scale R / max slope is finite. Beyond it, `value_unit` rescales them."""

FLOAT_MAX = float(np.finfo(np.float64).max)


def power_of_two_unit(top: float) -> float:
    """1.0 when `top` (a largest magnitude) is 0, not finite or within COEFFICIENT_RANGE; else
    the power of two 2**k with top / 2**k in [1, 2) (exact to divide by, whatever k)."""
    low, high = COEFFICIENT_RANGE
    if not math.isfinite(top) or top == 0.0 or low <= top <= high:
        return 1.0
    return math.ldexp(1.0, math.frexp(top)[1] - 1)


def from_unit(x: float, unit: float) -> float:
    """`x` multiples of `unit` as a plain number, clipped to float64's range: a figure beyond it
    (value x amount at 1e308 a unit) reads as the largest float of its sign, not inf."""
    if unit == 1.0:
        return x
    if unit < 1.0:
        return x * unit  # at worst a gradual underflow
    limit = FLOAT_MAX / unit  # exact: a power of two
    return min(max(x, -limit), limit) * unit


def from_unit_array(x: FloatArray, unit: float) -> FloatArray:
    """`from_unit` per element; `x` itself when the unit is 1."""
    if unit == 1.0:
        return x
    limit = FLOAT_MAX / unit if unit > 1.0 else FLOAT_MAX
    out: FloatArray = np.clip(x, -limit, limit) * unit
    return out


def group_sum(values: npt.NDArray[Any], codes: CodeArray, n_groups: int) -> IntArray:
    """Exact int64 sum of `values` per group code (np.bincount would go through float64 and
    lose exactness above 2**53, i.e. above ~9 billion dollars in micros summed)."""
    out = np.zeros(n_groups, dtype=np.int64)
    np.add.at(out, codes, values.astype(np.int64, copy=False))
    return out


def capped_group_sum(values: IntArray, codes: CodeArray, n_groups: int, cap: int) -> IntArray:
    """min(cap, group sums) without int64 overflow: a float64 sum decides which groups reach the
    cap (its error is far below the gap to 2**63); the others are exact int64 sums."""
    exact = group_sum(values, codes, n_groups)
    rough = np.zeros(n_groups, dtype=np.float64)
    np.add.at(rough, codes, values.astype(np.float64))
    return np.where(rough >= float(cap), cap, np.minimum(exact, cap)).astype(np.int64)


def capped_total(values: IntArray, cap: int) -> int:
    """`capped_group_sum` of one group (every value in it) as a Python int, without a code
    array and np.add.at's passes (~10 us a call on short arrays): the same two sums, the exact
    one in int64 and the rough one accumulated in order in float64, as np.add.at adds them."""
    rough = float(np.cumsum(values, dtype=np.float64)[-1]) if values.shape[0] else 0.0
    if rough >= float(cap):
        return cap
    return min(int(values.sum(dtype=np.int64)), cap)


def _negative(values: npt.NDArray[Any]) -> bool:
    """Whether any element is below 0 (NaN is not)."""
    return bool(values.min(initial=0) < 0)


def _as(array: Any, dtype: type[np.generic], name: str, ndim: int) -> npt.NDArray[Any]:
    out = np.ascontiguousarray(array, dtype=dtype)
    if out.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {out.shape}")
    return out


@dataclass(frozen=True, eq=False)
class AllocationProblem:
    """One reallocation to solve. Construction validates shapes, dtypes and signs (a malformed
    problem is a caller bug and raises ValueError); contradicting constraints are not malformed
    and surface as `InfeasibleProblem` from `solve`."""

    current: IntArray  # c_d >= 0: allocation still to deliver under the current plan
    lb: IntArray  # 0 <= lb_d <= ub_d
    ub: IntArray  # may be INT64_MAX (no cap); the engine never gives more than `total`
    seller: CodeArray  # seller code per deal, 0..S-1
    channel: CodeArray  # channel code per deal, 0..C-1
    seller_min: IntArray  # (S,) 0 when none
    seller_max: IntArray  # (S,) INT64_MAX when none
    channel_min: IntArray  # (C,)
    channel_max: IntArray  # (C,)
    total: int  # budget left to allocate in the horizon
    value_slopes: FloatArray  # (n, K) value per budget unit of each segment, non-increasing
    value_breaks: IntArray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    # (n, K-1) non-decreasing amounts where the slope changes; (n, 0) or (0, 0) when K == 1
    lam_deal: float = 0.0  # churn weight per budget unit moved on a deal
    lam_channel: float = 0.0  # churn weight per budget unit moved between channels
    lam_above: FloatArray | None = None  # (n,) extra churn weight per unit above c_d (a move
    # up that would undo a recent cut); None: 0
    lam_below: FloatArray | None = None  # (n,) ... per unit below c_d (undoing a recent raise)
    money_cap: int | None = None  # micros left under a money cap beside a unit goal
    price_num: IntArray | None = None  # money of x_d units = price_num_d * x_d / price_den
    price_den: int = 1
    time_limit: float = 10.0  # seconds, for the solvers that can stop early
    value_unit: float = 1.0  # value per budget unit that 1.0 in value_slopes and the lam_*
    # weights stands for: a power of two, 1 unless they lie beyond COEFFICIENT_RANGE (then
    # __post_init__ divides them by one and multiplies it in here; see the module docstring)

    def __post_init__(self) -> None:
        put = object.__setattr__
        n = np.asarray(self.current).shape[0] if np.ndim(self.current) == 1 else -1
        for name in ("current", "lb", "ub", "seller_min", "seller_max"):
            put(self, name, _as(getattr(self, name), np.int64, name, 1))
        for name in ("channel_min", "channel_max"):
            put(self, name, _as(getattr(self, name), np.int64, name, 1))
        put(self, "seller", _as(self.seller, np.int32, "seller", 1))
        put(self, "channel", _as(self.channel, np.int32, "channel", 1))
        slopes = np.asarray(self.value_slopes, dtype=np.float64)
        if slopes.ndim == 1:
            slopes = slopes[:, None]
        put(self, "value_slopes", _as(slopes, np.float64, "value_slopes", 2))
        k = self.value_slopes.shape[1]
        breaks = np.asarray(self.value_breaks, dtype=np.int64)
        if breaks.size == 0 and (k == 1 or n == 0):
            breaks = np.zeros((max(n, 0), k - 1), dtype=np.int64)
        put(self, "value_breaks", _as(breaks, np.int64, "value_breaks", 2))
        if self.price_num is not None:
            put(self, "price_num", _as(self.price_num, np.int64, "price_num", 1))
        for name in ("lam_above", "lam_below"):
            if getattr(self, name) is not None:
                put(self, name, _as(getattr(self, name), np.float64, name, 1))
        put(self, "total", int(self.total))
        self._rescale()
        self._validate(n)

    def _rescale(self) -> None:
        """Coefficients beyond COEFFICIENT_RANGE into a power-of-two `value_unit` (exact)."""
        extras = [e for e in (self.lam_above, self.lam_below) if e is not None]
        tops = [
            max(float(a.max(initial=0.0)), -float(a.min(initial=0.0)))
            for a in (self.value_slopes, *extras)
        ]
        tops += [abs(float(self.lam_deal)), abs(float(self.lam_channel))]
        if not all(math.isfinite(t) for t in tops):
            return  # _validate names what is not finite
        unit = power_of_two_unit(max(tops))
        if unit == 1.0:
            return
        put = object.__setattr__
        put(self, "value_slopes", self.value_slopes / unit)
        put(self, "lam_deal", float(self.lam_deal) / unit)
        put(self, "lam_channel", float(self.lam_channel) / unit)
        for name in ("lam_above", "lam_below"):
            if getattr(self, name) is not None:
                put(self, name, getattr(self, name) / unit)
        put(self, "value_unit", float(self.value_unit) * unit)

    def with_bounds(
        self, lb: IntArray, ub: IntArray, total: int | None = None
    ) -> AllocationProblem:
        """This problem with other deal bounds (and total): what `dataclasses.replace` gives,
        with the new bounds given every check a construction gives them, and what did not change
        not checked again (~25 us a problem at 50 deals, where post-solve makes two)."""
        out = copy.copy(self)
        put = object.__setattr__
        put(out, "lb", _as(lb, np.int64, "lb", 1))
        put(out, "ub", _as(ub, np.int64, "ub", 1))
        if total is not None:
            put(out, "total", int(total))
        out._validate_bounds(self.n_deals)
        return out

    def _validate_bounds(self, n: int) -> None:
        """The checks that read lb, ub or the total (the rest of `_validate`: none does)."""
        for name in ("lb", "ub"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        # Signs by each array's least element (min(initial=0) < 0: any below 0), one reduction
        # where a comparison and any() are two passes (~1 us each on short arrays).
        if _negative(self.lb) or (self.lb > self.ub).any():
            raise ValueError("need 0 <= current and 0 <= lb <= ub per deal")
        if self.total < 0:
            raise ValueError("group minimums and total must be >= 0")
        if self.total > MAX_TOTAL:
            raise ValueError(f"total {self.total} above MAX_TOTAL (2**53): use a coarser unit")

    def _validate(self, n: int) -> None:
        self._validate_bounds(n)
        for name in ("seller", "channel"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if self.value_slopes.shape[0] != n or self.value_slopes.shape[1] < 1:
            raise ValueError(f"value_slopes must have shape ({n}, K >= 1)")
        if self.value_breaks.shape != (n, self.value_slopes.shape[1] - 1):
            raise ValueError("value_breaks must have shape (n, K - 1)")
        if self.seller_min.shape != self.seller_max.shape:
            raise ValueError("seller_min and seller_max differ in shape")
        if self.channel_min.shape != self.channel_max.shape:
            raise ValueError("channel_min and channel_max differ in shape")
        if n and (self.seller.min() < 0 or self.seller.max() >= self.n_sellers):
            raise ValueError("seller codes out of range")
        if n and (self.channel.min() < 0 or self.channel.max() >= self.n_channels):
            raise ValueError("channel codes out of range")
        if _negative(self.current):
            raise ValueError("need 0 <= current and 0 <= lb <= ub per deal")
        if _negative(self.seller_min) or _negative(self.channel_min):
            raise ValueError("group minimums and total must be >= 0")
        if not np.isfinite(self.value_slopes).all():
            raise ValueError("value_slopes must be finite")
        # Neighbours compared rather than np.diff'd (a Python-level call, ~3 us each): the same
        # test for finite slopes and for breaks already known >= 0 (no difference overflows).
        # One segment has no neighbours and no breaks.
        slopes, breaks = self.value_slopes, self.value_breaks
        if slopes.shape[1] > 1 and (slopes[:, 1:] > slopes[:, :-1]).any():
            raise ValueError("value_slopes must be non-increasing (concave value curves)")
        if breaks.size and (_negative(breaks) or (breaks[:, 1:] < breaks[:, :-1]).any()):
            raise ValueError("value_breaks must be >= 0 and non-decreasing")
        lams = (self.lam_deal, self.lam_channel)
        if not all(math.isfinite(v) and v >= 0 for v in lams):
            raise ValueError("lam_deal and lam_channel must be finite and >= 0")
        for name in ("lam_above", "lam_below"):
            extra = getattr(self, name)
            if extra is not None and (
                extra.shape != (n,) or not np.isfinite(extra).all() or _negative(extra)
            ):
                raise ValueError(f"{name} must have shape ({n},), finite and >= 0")
        if self.money_cap is not None:
            if self.price_num is None or self.price_num.shape != (n,):
                raise ValueError("a money cap needs price_num of shape (n,)")
            if self.money_cap < 0 or _negative(self.price_num) or self.price_den < 1:
                raise ValueError("money cap, prices must be >= 0 and price_den >= 1")
        if not self.time_limit > 0:
            raise ValueError("time_limit must be > 0")
        if not (math.isfinite(self.value_unit) and self.value_unit > 0):
            raise ValueError("value_unit must be finite and > 0")

    @property
    def n_deals(self) -> int:
        return int(self.current.shape[0])

    @property
    def n_sellers(self) -> int:
        return int(self.seller_min.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.channel_min.shape[0])

    @property
    def n_segments(self) -> int:
        return int(self.value_slopes.shape[1])

    @property
    def ub_capped(self) -> IntArray:
        """ub clipped to the total: no deal can take more than the whole budget, and finite
        caps keep every sum below int64 overflow in the solvers."""
        return np.minimum(self.ub, max(self.total, 0))

    def current_channel_totals(self) -> IntArray:
        return group_sum(self.current, self.channel, self.n_channels)

    @property
    def has_money_cap(self) -> bool:
        return self.money_cap is not None

"""`AllocationResult`: what leaves the core, always a verified integer plan.

Statuses and paths are StrEnums so audit records and the gRPC adapter can store and map them
without a lookup table of magic numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from reallocator.core.engine.problem import IntArray


class SolveStatus(StrEnum):
    OPTIMAL = "OPTIMAL"  # proven lexicographic optimum (to the cost resolution / LP tolerance)
    TIME_LIMITED = "TIME_LIMITED"  # the solver stopped early: the best feasible plan found


class SolvePath(StrEnum):
    FLOW = "FLOW"  # min-cost flow, exact in integers
    LP = "LP"  # GLOP dual simplex, rounded


@dataclass(frozen=True)
class ObjectiveParts:
    """The objective in its parts, each in its own unit so a rationale can quote them. The
    value figures are plain values (not the problem's `value_unit`), each clipped to float64's
    range: one beyond it (value x amount at 1e308 a unit) reads as the largest float."""

    delivered: int  # sum of the plan (budget units): priority (1)
    unspendable: int  # total - delivered: budget no feasible plan can place
    value: float  # sum_d f_d(x_d)
    churn_deal: float  # lam_deal * sum_d |x_d - c_d|
    churn_channel: float  # lam_channel * sum_c |X_c - C_c|
    objective: float  # priority (2): value minus churn, taken before any part was clipped


@dataclass(frozen=True)
class Timings:
    build: float  # seconds: problem arrays to solver model
    solve: float
    verify: float
    total: float


@dataclass(frozen=True, eq=False)
class Binding:
    """Which limits the plan touches (cheap to compute from the sums verify.py already has)."""

    seller_at_min: npt.NDArray[np.bool_]
    seller_at_max: npt.NDArray[np.bool_]
    channel_at_min: npt.NDArray[np.bool_]
    channel_at_max: npt.NDArray[np.bool_]
    deals_at_lb: int
    deals_at_ub: int
    total: bool  # the whole budget is allocated
    money: bool  # the money cap is reached (to within one unit's price)


@dataclass(frozen=True, eq=False)
class LpDuals:
    """Row duals of the value stage of the LP path (GLOP, maximisation): objective change per
    budget unit of a binding limit, in plain values (like `ObjectiveParts`). Zero for slack
    rows."""

    seller: npt.NDArray[np.float64]
    channel: npt.NDArray[np.float64]
    total: float
    money: float | None  # per micro of money cap


@dataclass(frozen=True, eq=False)
class AllocationResult:
    allocation: IntArray  # x_d, int64 budget units, verified
    status: SolveStatus
    path: SolvePath
    objective: ObjectiveParts
    binding: Binding
    timings: Timings
    duals: LpDuals | None = None  # LP path only
    notes: tuple[str, ...] = ()  # why a path was taken, what rounding could not place

"""What a plan is, in the core: the allocation per deal and what follows from it.

Built by `reallocator.core.plan.build_plan` from a snapshot; encoded to the v1 `Plan` message by
the wire layer; stored by the audit store. Amounts are integers in the campaign's budget unit
(money in micros); rates are budget units per hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.model import BudgetType, Severity, factorize, table_of
from reallocator.core.pacing.assessment import Alert


class PlanStatus(StrEnum):
    OPTIMAL = "OPTIMAL"
    RELAXED = "RELAXED"  # constraints conflicted: the closest plan, violations listed
    NO_CHANGE = "NO_CHANGE"  # nothing worth changing (no confident alert, changes too small)
    TIME_LIMITED = "TIME_LIMITED"  # the solver stopped early: best feasible plan, verified


class BindingKind(StrEnum):
    """The constraint that stopped a deal's allocation from moving further."""

    NONE = "NONE"
    DEAL_MIN = "DEAL_MIN"
    DEAL_MAX = "DEAL_MAX"
    CAPACITY = "CAPACITY"
    STEP = "STEP"
    LOCKED = "LOCKED"
    SELLER = "SELLER"
    CHANNEL = "CHANNEL"
    BUDGET = "BUDGET"
    ZERO = "ZERO"  # cut to nothing: a remaining allocation cannot go below 0


class ReasonCode(StrEnum):
    UNCHANGED = "UNCHANGED"
    UNDER_DELIVERY = "UNDER_DELIVERY"
    OVER_DELIVERY = "OVER_DELIVERY"
    STALLED = "STALLED"
    CAPACITY_SHORTFALL = "CAPACITY_SHORTFALL"
    HIGHER_VALUE = "HIGHER_VALUE"
    MINIMUM_REQUIRED = "MINIMUM_REQUIRED"
    MAXIMUM_REACHED = "MAXIMUM_REACHED"
    SELLER_RESPONSE = "SELLER_RESPONSE"
    PACING_SCHEDULE = "PACING_SCHEDULE"
    BEYOND_FORECAST = "BEYOND_FORECAST"
    REDISTRIBUTED = "REDISTRIBUTED"  # takes what others cannot deliver; worth no more
    LOWER_VALUE = "LOWER_VALUE"  # gives to deals worth more per unit
    ROLLBACK = "ROLLBACK"  # back towards its allocation before a rolled-back plan


class DealPacing(StrEnum):
    """How a deal should be paced after the plan (see schedule.pacing_modes)."""

    CURVE = "CURVE"  # the buyer's pacer follows the pacing curve to the new allocation
    AHEAD = "AHEAD"  # supply-bound: the pacer may run up to Policy.pace_ahead x the curve
    SELLER = "SELLER"  # guaranteed: the seller paces it


class RequestKind(StrEnum):
    INCREASE = "INCREASE"
    DECREASE = "DECREASE"
    RESUME = "RESUME"
    INVESTIGATE = "INVESTIGATE"


class SellerResponse(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    PARTIAL = "PARTIAL"
    REJECTED = "REJECTED"


PLAN_DEAL_COLUMNS: dict[str, str] = {
    "deal_id": "str",
    "seller_id": "str",
    "channel_id": "str",
    "delivered": "int64",  # in the horizon so far
    "old_allocation": "int64",  # remaining before the plan: max(0, booked - delivered)
    "new_allocation": "int64",  # remaining in the plan
    "delta": "int64",
    "lower_bound": "int64",
    "upper_bound": "int64",
    "binding": "str",  # BindingKind
    "capacity": "int64",  # forecast for the rest of the horizon
    "reason": "str",  # ReasonCode
    "rationale": "str",
    "marginal_value": "float64",  # value of one more unit on the binding constraint
    "new_total": "int64",  # delivered + new_allocation
    "pacing": "str",  # DealPacing
    # What only the rationale reads (explain.RATIONALE_COLUMNS), so the words can be rendered
    # from this table alone:
    "step": "int64",
    "pacing_ratio": "float64",
    "pacing_status": "str",
    "recent_rate": "float64",
    "required_rate": "float64",
    "group_at_max": "bool",
    "stall_outlook": "float64",  # share of its forecast a confident stall keeps; NaN: none
    # share of a guaranteed deal's supply beyond its pace left once its seller answers; NaN: none
    "answer_share": "float64",
}
"""Columns of Plan.deals, one row per deal in snapshot order."""

PLAN_GROUP_COLUMNS: dict[str, str] = {
    "delivered": "int64",
    "old_allocation": "int64",
    "new_allocation": "int64",
    "min_total": "float64",  # NaN: none (absolute limit after shares were resolved)
    "max_total": "float64",
    "binding": "bool",
    "marginal_value": "float64",
}
"""Columns of Plan.sellers and Plan.channels, indexed by seller_id / channel_id."""


@dataclass(frozen=True, eq=False)
class GroupTotals:
    """Plan.sellers or Plan.channels as arrays: per group of `ids` (an Index named seller_id or
    channel_id) the columns of PLAN_GROUP_COLUMNS, with their dtypes. The plan keeps these and
    builds the frame on first use: the wire encoder and the decision record read the arrays,
    and the two frames cost ~75 us of a 50-deal plan that a Replan never read."""

    ids: pd.Index
    delivered: npt.NDArray[np.int64]
    old_allocation: npt.NDArray[np.int64]
    new_allocation: npt.NDArray[np.int64]
    min_total: npt.NDArray[np.float64]  # NaN: none
    max_total: npt.NDArray[np.float64]
    binding: npt.NDArray[np.bool_]
    marginal_value: npt.NDArray[np.float64]

    def frame(self) -> pd.DataFrame:
        """The totals as a frame (PLAN_GROUP_COLUMNS, indexed by `ids`), its own copy."""
        return table_of(
            {name: getattr(self, name) for name in PLAN_GROUP_COLUMNS},
            PLAN_GROUP_COLUMNS,
            index=self.ids,
        )


@dataclass(frozen=True)
class Unspendable:
    amount: int
    reason_code: str  # "CAPACITY", "SHARE_EXCEEDED", "COMMITMENT_BEYOND_CAPACITY", ...
    entity_kind: str  # "DEAL", "SELLER", "CHANNEL", "CAMPAIGN"
    entity_id: str
    message: str


@dataclass(frozen=True)
class AdjustmentRequest:
    """A request to the seller of a deal it paces (programmatic guaranteed)."""

    request_id: str
    deal_id: str
    seller_id: str
    order_id: str
    kind: RequestKind
    severity: Severity
    target_total: int  # new goal for the horizon, budget units
    target_rate: float  # budget units per hour
    current_rate: float
    required_rate: float
    window_start: datetime
    window_end: datetime
    reason: ReasonCode
    rationale: str
    idempotency_key: str
    change_request: dict[str, Any]  # IAB Tech Lab seller-agent change-request shape
    response: SellerResponse = SellerResponse.PENDING


@dataclass(frozen=True, eq=False)
class DeliverySchedule:
    """A buyer-side schedule change for a deal the buyer paces (non-guaranteed)."""

    deal_id: str
    window_start: datetime  # start of the first hour
    hourly_target: npt.NDArray[np.int64]  # budget units per hour
    hourly_spend_micros: npt.NDArray[np.int64]
    throttle: float  # participation a probabilistic pacer should apply, 0..1
    reason: ReasonCode
    rationale: str
    pacing: DealPacing = DealPacing.CURVE
    hourly_ceiling: npt.NDArray[np.int64] | None = None  # most per hour (AHEAD); None = target


@dataclass(frozen=True, eq=False)
class ScheduleTable:
    """Every schedule of a plan as columns: one row per scheduled deal, the hours as a
    (schedules x hours) int64 matrix sharing one `window_start`. The plan carries this, not
    100k objects; `DeliverySchedule`s and their words are made only for the rows asked
    (`rows`, `core/plan/schedule_text.py`). The per-row inputs of the rationale ride along, so
    the words come from this table alone."""

    window_start: datetime  # start of the first (local) hour
    deal_index: npt.NDArray[np.int64]  # row of the deal in the plan's deals table
    deal_id: npt.NDArray[np.object_]
    seller_id: npt.NDArray[np.object_]
    hourly_target: npt.NDArray[np.int64]  # budget units per hour
    hourly_spend_micros: npt.NDArray[np.int64]
    hourly_ceiling: npt.NDArray[np.int64]  # the target on the curve, pace_ahead x for AHEAD
    throttle: npt.NDArray[np.float64]
    reason: npt.NDArray[np.object_]  # ReasonCode values
    pacing: npt.NDArray[np.object_]  # DealPacing values (CURVE or AHEAD)
    # What the rationale reads:
    current_rate: npt.NDArray[np.float64]  # recent rate per opportunity hour, NaN unknown
    horizon_rate: npt.NDArray[np.float64]  # the rate the new allocation needs to the end
    old_allocation: npt.NDArray[np.int64]
    new_allocation: npt.NDArray[np.int64]
    participation: npt.NDArray[np.float64]  # NaN unknown
    window_hours: float = 0.0
    deadline: str = ""  # the horizon end, local, for people
    pace_ahead: float = 1.0
    budget_type: BudgetType = BudgetType.SPEND
    currency: str = ""
    rationale: npt.NDArray[np.object_] | None = None  # rendered words, when rendered
    # All the plan's deal ids as its snapshot's "str" column, `deal_id` being its rows at
    # `deal_index` (a long plan's, else None): the wire takes them by Arrow, not as objects.
    deal_ids: Any = None
    # `reason` and `pacing` as positions in ReasonCode's and DealPacing's order, where the
    # table was derived with them (None: read the labels): the wire looks its enum numbers up
    # by position instead of hashing 100k labels (~6.5 ms of a 100k-schedule Arrow stream).
    reason_code: npt.NDArray[np.int8] | None = None
    pacing_code: npt.NDArray[np.int8] | None = None

    def __len__(self) -> int:
        return len(self.deal_index)

    @property
    def n_hours(self) -> int:
        return int(self.hourly_target.shape[1]) if self.hourly_target.ndim == 2 else 0

    def rows(self, picked: npt.NDArray[np.int64] | None = None) -> tuple[DeliverySchedule, ...]:
        """The schedules of `picked` rows (all when None) as objects, with their words."""
        from reallocator.core.plan.schedule_text import render_schedule_rationales

        idx = np.arange(len(self)) if picked is None else np.asarray(picked, dtype=np.int64)
        if self.rationale is not None:
            texts = self.rationale[idx].astype(str).tolist()
        else:
            texts = render_schedule_rationales(self, idx)
        ids = self.deal_id[idx].astype(str).tolist()
        reasons = [ReasonCode(r) for r in self.reason[idx].astype(str).tolist()]
        pacing = [DealPacing(p) for p in self.pacing[idx].astype(str).tolist()]
        throttles = self.throttle[idx].astype(float).tolist()
        return tuple(
            DeliverySchedule(
                deal_id=ids[j],
                window_start=self.window_start,
                hourly_target=self.hourly_target[i],
                hourly_spend_micros=self.hourly_spend_micros[i],
                throttle=throttles[j],
                reason=reasons[j],
                rationale=texts[j],
                pacing=pacing[j],
                hourly_ceiling=self.hourly_ceiling[i],
            )
            for j, i in enumerate(idx.tolist())
        )


@dataclass(frozen=True)
class ConstraintViolation:
    constraint: str  # stable name: "seller/S7/min_total", "deal/D3/min_allocation", "budget"
    entity_kind: str
    entity_id: str
    bound: int
    relaxation: int  # smallest relaxation that makes the rest feasible, budget units
    message: str


@dataclass(frozen=True)
class DecisionFactor:
    name: str
    value: float
    display: str
    explanation: str


@dataclass(frozen=True)
class DecisionRecord:
    summary: str
    factors: tuple[DecisionFactor, ...] = ()
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class SolverReport:
    path: str  # "FLOW" | "LP" | "" (no solve)
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    verify_seconds: float = 0.0
    total_seconds: float = 0.0
    time_limited: bool = False
    objective_allocated: int = 0
    objective_value: float = 0.0


@dataclass(frozen=True, eq=False)
class Plan:
    campaign_id: str
    as_of: datetime
    status: PlanStatus
    budget_type: BudgetType
    currency: str
    remaining_budget: int
    allocated: int
    unspendable: int
    deals: pd.DataFrame  # PLAN_DEAL_COLUMNS
    seller_totals: GroupTotals
    channel_totals: GroupTotals
    unspendable_reasons: tuple[Unspendable, ...] = ()
    requests: tuple[AdjustmentRequest, ...] = ()
    schedule_table: ScheduleTable | None = None
    violations: tuple[ConstraintViolation, ...] = ()
    rationale: DecisionRecord = field(default_factory=lambda: DecisionRecord(""))
    solver: SolverReport = field(default_factory=lambda: SolverReport(""))
    no_change_reason: str = ""
    max_severity: Severity | None = None
    alerts: tuple[Alert, ...] = ()  # raised by the plan itself (broken commitments)

    @cached_property
    def sellers(self) -> pd.DataFrame:
        """PLAN_GROUP_COLUMNS per seller, indexed by seller_id (made on first use)."""
        return self.seller_totals.frame()

    @cached_property
    def channels(self) -> pd.DataFrame:
        """PLAN_GROUP_COLUMNS per channel, indexed by channel_id (made on first use)."""
        return self.channel_totals.frame()

    @cached_property
    def schedules(self) -> tuple[DeliverySchedule, ...]:
        """Every schedule as an object with its words (made on first use: at 100k deals the
        objects and words cost more than the optimisation; encoders read `schedule_table`)."""
        return () if self.schedule_table is None else self.schedule_table.rows()


@dataclass(frozen=True)
class RequestHistory:
    """What earlier plans asked of sellers, so the next plan honours cooldowns and responses.

    `requests` has columns deal_id, requested_at (unix s), kind, target_total, response
    (SellerResponse), accepted_total (budget units; for PARTIAL) and, optionally, answered_at
    (unix s, NaN until answered: how long each seller takes, `capacity.answer_times`). The
    audit store fills it; the simulator keeps its own. Empty: no history.

    `moves` has columns deal_id, planned_at (unix s), delta (budget units): what earlier plans
    changed per deal, so a move that would undo a recent one needs more evidence
    (Policy.reversal_band). Empty: every move is fresh.
    """

    requests: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {
                "deal_id": pd.Series(dtype="str"),
                "requested_at": pd.Series(dtype="float64"),
                "kind": pd.Series(dtype="str"),
                "target_total": pd.Series(dtype="int64"),
                "response": pd.Series(dtype="str"),
                "accepted_total": pd.Series(dtype="int64"),
                "answered_at": pd.Series(dtype="float64"),
            }
        )
    )
    moves: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {
                "deal_id": pd.Series(dtype="str"),
                "planned_at": pd.Series(dtype="float64"),
                "delta": pd.Series(dtype="int64"),
            }
        )
    )

    @property
    def empty(self) -> bool:
        """Nothing asked and nothing moved before: plans as if there were no history."""
        return not len(self.requests) and not len(self.moves)

    def deciding(self) -> RequestHistory:
        """What a plan reads, when all of it precedes the plan's as_of: of the requests, per
        deal the last (its answer, its cooldown, whether it is still awaited) and per deal and
        kind the last REJECTED (the rejection cooldown); of the moves, per deal the last
        change (the hysteresis looks at its sign and time). A plan made from them is the plan
        made from all, so a store reads and keeps these, not the campaign's whole past (ties
        in time keep their order: the last of them counts)."""
        return replace(
            self, requests=_deciding_requests(self.requests), moves=_last_moves(self.moves)
        )


def _deciding_requests(requests: pd.DataFrame) -> pd.DataFrame:
    if requests.empty:
        return requests
    ordered = requests.sort_values("requested_at", kind="stable")
    last = ~ordered.duplicated("deal_id", keep="last").to_numpy()
    rejected = (ordered["response"].astype(str) == SellerResponse.REJECTED).to_numpy()
    last_rejected = np.zeros(len(ordered), dtype=bool)
    by_kind = ordered.loc[rejected].duplicated(["deal_id", "kind"], keep="last")
    last_rejected[rejected] = ~by_kind.to_numpy()
    return ordered.loc[last | last_rejected]


def _last_moves(moves: pd.DataFrame) -> pd.DataFrame:
    """Per deal its last change that is not 0 (a change of 0 moved nothing), in time order
    (ties in their order). Found as arrays, the rows taken once: the frame's filter, sort and
    duplicate search cost ~0.3 ms a plan of an hourly campaign."""
    if moves.empty:
        return moves
    moved = np.flatnonzero(moves["delta"].to_numpy(np.int64) != 0)
    at = moves["planned_at"].to_numpy(np.float64)[moved]
    last: pd.DataFrame = moves.iloc[moved[last_of_each(moves["deal_id"].to_numpy()[moved], at)]]
    return last


def last_of_each(labels: npt.NDArray[Any], at: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """The positions of each label's last row in time order (ties in their order: the later
    row counts), themselves in time order: per deal its last move."""
    order = np.argsort(at, kind="stable")
    codes, _ = factorize(labels[order])
    _, from_end = np.unique(codes[::-1], return_index=True)  # each label's last, from the end
    out: npt.NDArray[np.intp] = order[np.sort(len(codes) - 1 - from_end)]
    return out

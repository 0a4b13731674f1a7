"""Adjustment requests to sellers: what to ask a guaranteed deal's seller, and why.

On a programmatic guaranteed (PG) deal the seller paces delivery, so when the plan needs a
different delivery rate than the deal shows, the buyer can only *ask*. Non-guaranteed deals are
paced by the buyer and get a `DeliverySchedule` instead (`schedule.py`), never a request.

Rates are budget units per *opportunity hour* (an active hour of average expected traffic, as in
the assessment), so "/h" in rationales means per opportunity hour; ``remaining_hours`` is the
opportunity left in the horizon.

Rules (vectorised over deals in `request_decisions`; `derive_requests` builds the dataclasses):

1. **Who**: PG deals that are ACTIVE and not COMPLETED, while the horizon has opportunity left.
2. **Current rate**: the assessment's recent rate per opportunity hour. Without one (no
   evidence yet, or NOT_STARTED) the seller is presumed to pace its booked remainder evenly
   (old allocation / remaining hours), so only an allocation change can trigger a request.
3. **Tolerance**: the plan's required rate (new allocation / remaining hours) must differ from
   the current rate by more than ``policy.request_tolerance`` (|required / current - 1|; a
   current rate of 0 makes any positive requirement beyond tolerance) - and so must the rate
   actually asked for, after the caps below.
4. **Kind**: STALLED deals get RESUME when the plan still allocates to them, INVESTIGATE when
   it dropped them to 0 (we no longer count on the deal, but the seller should find out why it
   stopped); they bypass the rate gate. Otherwise INCREASE when the target rate is above the
   current one, DECREASE below.
5. **Seller responses** (`RequestHistory`, only rows strictly before ``as_of`` count, so a
   retried Replan sees the same history and yields the same requests and keys):
   * the deal's latest request was PARTIAL: its ``accepted_total`` caps the target total
     (reason SELLER_RESPONSE) - the most the seller agreed to deliver, until a newer response;
   * a REJECTED request of the same kind within ``policy.cooldown``: no new request of that
     kind, whatever its severity (outcome REJECTED_RECENTLY, for the deal's rationale); after
     the cooldown the new request notes the rejection.
6. **Inventory** ("INCREASE only if the seller has inventory"): the seller's supply for the
   rest of the horizon is its declared ``available_inventory`` when known (>= 0), else the
   avails-based forecast (observed avails x win rate x units per win over the remaining
   opportunity: the engine forecast's ``by_avails``), else unknown. An INCREASE is asked only
   when the supply is known and exceeds what the deal delivers at its current rate; the target
   is capped at the supply. Unknown supply: no INCREASE (outcome NO_INVENTORY); nor one whose
   cap falls below the seller's current commitment on a deal the plan keeps or raises (its
   total would propose a smaller booking). RESUME is not gated: it asks for delivery that was
   booked.
7. **Size and severity**: a request's size is max(|target - old allocation|, |target -
   projection at the current rate|) - the allocation change and the delivery change it asks
   for. It must be worth asking (``policy.min_change``); its severity uses
   `severity.change_severity` against the old allocation (premium deals at least MATERIAL).
8. **Cooldown**: no new request on a deal whose last request is within ``policy.cooldown`` of
   ``as_of``, unless the new one is CRITICAL (a stall or a large miss should not wait) and
   says something new: another kind, or a target total beyond ``request_tolerance`` of the
   last one's (the same critical ask every replan is noise to the seller).

Rationales carry the numbers: current and required rates, the new allocation and its deadline
(local date), the change asked for in percent, the target total, and where they apply the
capacity forecast (increases), the inventory or PARTIAL cap, an earlier rejection, and our own
participation on the deal when below 1 (an under-delivery we may be causing ourselves).

Outcome precedence, first match wins: NOT_GUARANTEED, INACTIVE, HORIZON_OVER, WITHIN_TOLERANCE,
NO_INVENTORY, BELOW_MIN_CHANGE, REJECTED_RECENTLY, COOLDOWN, REQUESTED.

Identity: ``request_id`` hashes the plan seed, deal and kind (unique within a plan);
``idempotency_key`` is a UUID derived from campaign, deal, as_of, kind and target total only, so
the same inputs always give the same key (a retried Replan does not double-ask, even under a new
plan id).
"""

from __future__ import annotations

import copy
import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.model import (
    INT64_MAX,
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DealType,
    Policy,
    Severity,
    nan_to_num,
    select,
    text_of,
    values_of,
)
from reallocator.core.pacing.assessment import Assessment, EntityKind, PacingStatus
from reallocator.core.plan import iab
from reallocator.core.plan import text as plan_text
from reallocator.core.plan.model import (
    AdjustmentRequest,
    ReasonCode,
    RequestHistory,
    RequestKind,
    SellerResponse,
)
from reallocator.core.plan.severity import (
    BoolArray,
    FloatArray,
    IntArray,
    change_severity,
    change_size,
    coerce_columns,
    worth_changing,
)

ObjArray: TypeAlias = npt.NDArray[np.object_]

IDEMPOTENCY_NAMESPACE = uuid.UUID("3f0c9a52-8d1e-5b7a-9c4e-2a6f1d0b7e31")
"""Fixed namespace of the idempotency-key UUIDs (changing it would re-ask every seller)."""


class RequestOutcome(StrEnum):
    """Why a deal did or did not get a request (for rationales and the simulator)."""

    REQUESTED = "REQUESTED"
    NOT_GUARANTEED = "NOT_GUARANTEED"  # buyer-paced: a DeliverySchedule instead
    INACTIVE = "INACTIVE"  # paused, ended or completed
    HORIZON_OVER = "HORIZON_OVER"  # no opportunity left to deliver in
    WITHIN_TOLERANCE = "WITHIN_TOLERANCE"
    NO_INVENTORY = "NO_INVENTORY"  # an increase the seller has shown no inventory for
    BELOW_MIN_CHANGE = "BELOW_MIN_CHANGE"
    REJECTED_RECENTLY = "REJECTED_RECENTLY"  # same kind rejected within the cooldown
    COOLDOWN = "COOLDOWN"  # asked within the cooldown, and this one is not critical


DECISION_COLUMNS: tuple[str, ...] = (
    "deal_id",
    "outcome",  # RequestOutcome
    "kind",  # RequestKind, "" when no request would make sense
    "reason",  # ReasonCode of the request
    "severity",  # Severity of the request, "" when no kind
    "current_rate",  # units per opportunity hour (presumed when not observed)
    "rate_presumed",  # no observed rate: old allocation / remaining hours
    "required_rate",  # the plan's: new allocation / remaining hours
    "target_rate",  # what would be asked for, after caps
    "target_remaining",  # budget units asked for over the rest of the horizon
    "target_total",  # delivered + target_remaining
    "size",  # budget units; see the module docstring
    "capped_by",  # "", "INVENTORY" or "SELLER_PARTIAL"
    "supply",  # seller supply for the rest of the horizon (NaN unknown)
    "last_request_at",  # unix s of the deal's last earlier request (NaN none)
    "rejected_at",  # unix s of the last rejection of this kind (NaN none)
    "accepted_total",  # PARTIAL cap (-1 none)
)
"""Columns of `request_decisions`, one row per deal in input order."""


def pacing_status(assessment: Assessment, texts: Mapping[str, ObjArray]) -> ObjArray:
    """The deals' pacing verdicts as labels: the caller's conversion when it made one, else the
    assessment's own column (no frame built)."""
    given = texts.get("pacing_status")
    return given if given is not None else assessment.column(EntityKind.DEAL, "status")


@dataclass(frozen=True, eq=False)
class RequestInputs:
    """Everything `derive_requests` reads, per deal (aligned arrays) and per campaign.

    Amounts are budget units; rates are units per opportunity hour; `remaining_hours` is the
    opportunity left between `as_of` and `horizon_end`, `window_hours` that up to `window_end`
    (the next replan; NaN: unknown). Arrays are coerced to their dtypes on construction.
    """

    deal_id: ObjArray
    seller_id: ObjArray
    order_id: ObjArray
    deal_type: IntArray  # DealType codes
    premium: BoolArray
    deal_status: IntArray  # DealStatus codes
    pacing_status: ObjArray  # PacingStatus values (the assessment's deal status)
    old_allocation: IntArray  # remaining before the plan
    new_allocation: IntArray  # remaining in the plan
    delivered: IntArray
    capacity: IntArray  # forecast for the rest of the horizon (-1 unknown)
    available_inventory: IntArray  # seller-declared remaining, -1 unknown
    current_rate: FloatArray  # recent rate per opportunity hour, NaN unknown
    participation_rate: FloatArray  # NaN unknown; < 1 is noted on increases (our own throttle)
    as_of: datetime
    window_end: datetime
    horizon_end: datetime
    remaining_hours: float
    campaign_id: str
    budget_type: BudgetType
    currency: str
    seed: str  # plan id or seed: makes request ids unique per plan
    avails_forecast: FloatArray | None = None  # units the observed avails can yield; NaN unknown
    impressions_per_unit: FloatArray | None = None  # for IAB impression goals; NaN unknown
    plan_reason: ObjArray | None = None  # the plan's ReasonCode per deal
    window_hours: float = math.nan
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        dtypes: dict[str, Any] = {
            "deal_id": object,
            "seller_id": object,
            "order_id": object,
            "deal_type": np.int64,
            "premium": bool,
            "deal_status": np.int64,
            "pacing_status": object,
            "old_allocation": np.int64,
            "new_allocation": np.int64,
            "delivered": np.int64,
            "capacity": np.int64,
            "available_inventory": np.int64,
            "current_rate": np.float64,
            "participation_rate": np.float64,
            "avails_forecast": np.float64,
            "impressions_per_unit": np.float64,
            "plan_reason": object,
        }
        coerce_columns(self, dtypes)
        if self.window_end <= self.as_of:
            raise ValueError("window_end must be after as_of")

    @property
    def n(self) -> int:
        return len(self.deal_id)

    @classmethod
    def from_plan(
        cls,
        snapshot: CampaignSnapshot,
        assessment: Assessment,
        plan_deals: pd.DataFrame,
        *,
        window_end: datetime,
        texts: Mapping[str, ObjArray] | None = None,
        seed: str,
        avails_forecast: npt.ArrayLike | None = None,
        window_hours: float = math.nan,
    ) -> RequestInputs:
        """Inputs from the snapshot, its assessment and the plan's deals frame (PLAN_DEAL_COLUMNS),
        all in snapshot deal order. `avails_forecast`: the engine forecast's ``by_avails``."""
        deals = snapshot.deals
        # `texts`: the label columns as object arrays when the caller already has them
        # (build_plan makes requests and schedules from one conversion).
        texts = texts or {}

        def text(frame: pd.DataFrame, name: str, key: str) -> ObjArray:
            given = texts.get(key)
            return given if given is not None else text_of(frame, name)

        bt = snapshot.pacing.budget_type
        return cls(
            deal_id=text(deals, "deal_id", "deal_id"),
            seller_id=text(deals, "seller_id", "seller_id"),
            order_id=text_of(deals, "order_id"),
            deal_type=values_of(deals, "deal_type", np.int64),
            premium=values_of(deals, "premium", bool),
            deal_status=values_of(deals, "status", np.int64),
            pacing_status=pacing_status(assessment, texts),
            old_allocation=values_of(plan_deals, "old_allocation", np.int64),
            new_allocation=values_of(plan_deals, "new_allocation", np.int64),
            delivered=values_of(plan_deals, "delivered", np.int64),
            capacity=values_of(plan_deals, "capacity", np.int64),
            available_inventory=values_of(deals, "available_inventory", np.int64),
            current_rate=assessment.column(EntityKind.DEAL, "recent_rate"),
            participation_rate=values_of(deals, "participation_rate", np.float64),
            as_of=snapshot.as_of,
            window_end=window_end,
            horizon_end=assessment.horizon_end,
            remaining_hours=assessment.opportunity_remaining_hours,
            campaign_id=snapshot.campaign_id,
            budget_type=bt,
            currency=snapshot.currency,
            seed=seed,
            avails_forecast=None if avails_forecast is None else np.asarray(avails_forecast),
            impressions_per_unit=iab.impressions_per_unit(deals, bt),
            plan_reason=text(plan_deals, "reason", "plan_reason")
            if "reason" in plan_deals
            else None,
            window_hours=window_hours,
            timezone=snapshot.timezone,
        )


# --- formatting (shared with schedule.py) ------------------------------------------------------


def format_deadline(end: datetime, tz: str) -> str:
    """The horizon end as a local date: "2026-11-30" when it ends at local midnight (the end of
    that day), else "2026-11-30 14:00 EST"."""
    local = end.astimezone(ZoneInfo(tz))
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        return f"{(local - timedelta(days=1)):%Y-%m-%d}"
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def format_date(unix_seconds: float, tz: str) -> str:
    return f"{datetime.fromtimestamp(unix_seconds, tz=ZoneInfo(tz)):%Y-%m-%d}"


# --- identity ----------------------------------------------------------------------------------


def request_id(seed: str, deal_id: str, kind: RequestKind) -> str:
    """Deterministic id of a plan's request on a deal ("req-" + 20 hex)."""
    digest = hashlib.sha256(f"{seed}\x1f{deal_id}\x1f{kind}".encode()).hexdigest()
    return f"req-{digest[:20]}"


def idempotency_key(
    campaign_id: str, deal_id: str, as_of: datetime, kind: RequestKind, target_total: int
) -> str:
    """A stable UUID of what is asked: same campaign, deal, instant, kind and target, same key."""
    name = f"{campaign_id}\x1f{deal_id}\x1f{as_of.timestamp():.6f}\x1f{kind}\x1f{target_total}"
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, name))


# --- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _History:
    last_at: FloatArray  # per deal: last request strictly before as_of (NaN none)
    partial_cap: IntArray  # accepted_total when the last request was PARTIAL, else INT64_MAX
    rejected: pd.Series  # (deal_id, kind) -> last rejection before as_of, unix s
    last_kind: ObjArray  # per deal: the last request's kind ("" none)
    last_target: FloatArray  # ... and its target_total (NaN none)


_NO_REJECTIONS = pd.Series(dtype=np.float64)
"""Shared (never mutated): an empty Series costs ~30 us to build, and most plans have none."""


def _history(history: RequestHistory | None, deal_ids: ObjArray, as_of: float) -> _History:
    n = deal_ids.size
    none = _History(
        np.full(n, np.nan),
        np.full(n, INT64_MAX, dtype=np.int64),
        _NO_REJECTIONS,
        np.full(n, "", dtype=object),
        np.full(n, np.nan),
    )
    if history is None or history.requests.empty:
        return none
    h = history.requests
    at = values_of(h, "requested_at", np.float64)
    ids = h["deal_id"].astype(str).to_numpy(dtype=object)
    index = pd.Index(deal_ids, dtype=object)
    if index.is_unique:
        known = index.get_indexer(pd.Index(ids, dtype=object)) >= 0
    else:
        known = np.isin(ids, deal_ids)
    keep = (at < as_of) & known
    h = h.loc[keep]
    if h.empty:
        return none
    h = h.assign(deal_id=h["deal_id"].astype(str), kind=h["kind"].astype(str))
    h = h.sort_values("requested_at", kind="stable")
    last = h.drop_duplicates("deal_id", keep="last").set_index("deal_id").reindex(deal_ids)
    response = last["response"].astype(str).to_numpy()
    partial = response == SellerResponse.PARTIAL
    accepted = values_of(last, "accepted_total", np.float64)
    capped = partial & np.isfinite(accepted)
    partial_cap = np.full(n, INT64_MAX, dtype=np.int64)
    partial_cap[capped] = accepted[capped].astype(np.int64)
    rejected_rows = h.loc[h["response"].astype(str) == SellerResponse.REJECTED]
    rejected = rejected_rows.groupby(["deal_id", "kind"])["requested_at"].max()
    return _History(
        last_at=values_of(last, "requested_at", np.float64),
        partial_cap=partial_cap,
        rejected=rejected,
        last_kind=last["kind"].fillna("").astype(str).to_numpy(dtype=object),
        last_target=values_of(last, "target_total", np.float64),
    )


_TOLERANCE_SLACK = 1e-9


def beyond_tolerance(required: FloatArray, current: FloatArray, tolerance: float) -> BoolArray:
    """|required / current - 1| > tolerance; with current 0, any positive requirement is beyond.

    NaN on either side is never beyond (nothing to compare). A gap equal to the tolerance is
    within it, up to float noise (85 / 100 - 1 is not exactly -0.15).
    """
    req = np.asarray(required, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(req / np.where(cur > 0, cur, 1.0) - 1.0)
    out = np.where(cur > 0, gap > tolerance + _TOLERANCE_SLACK, req > 0)
    return np.asarray(out & np.isfinite(req) & np.isfinite(cur), dtype=bool)


_OUTCOME_NAMES = np.array([str(o) for o in RequestOutcome], dtype=object)
_OUTCOME_CODE = {o: i for i, o in enumerate(RequestOutcome)}
_REQUEST_REASONS = np.array(
    [
        str(r)
        for r in (
            ReasonCode.STALLED,
            ReasonCode.SELLER_RESPONSE,
            ReasonCode.UNDER_DELIVERY,
            ReasonCode.OVER_DELIVERY,
            ReasonCode.PACING_SCHEDULE,
        )
    ],
    dtype=object,
)
_CAPPED_BY = np.array(["", "INVENTORY", "SELLER_PARTIAL"], dtype=object)
_KINDS = np.array(["", *(str(k) for k in RequestKind)], dtype=object)
_KIND_CODE = {RequestKind(k): i for i, k in enumerate(_KINDS) if k}


def request_decisions(
    inputs: RequestInputs, policy: Policy, history: RequestHistory | None = None
) -> pd.DataFrame:
    """Per deal: whether it gets a seller request, of which kind, for what target, and why not.

    Vectorised over deals; see the module docstring for the rules. Columns: DECISION_COLUMNS.
    """
    return pd.DataFrame(_decisions(inputs, policy, history))


def _decisions(
    inputs: RequestInputs, policy: Policy, history: RequestHistory | None
) -> dict[str, np.ndarray]:
    """The columns of `request_decisions` as arrays (`derive_requests` reads them without a
    frame: building it cost ~4 % of a 50-deal plan)."""
    n = inputs.n
    hours = float(inputs.remaining_hours) if math.isfinite(inputs.remaining_hours) else 0.0
    safe_hours = hours if hours > 0 else 1.0
    as_of = inputs.as_of.timestamp()
    status = inputs.pacing_status
    pg = inputs.deal_type == DealType.PROGRAMMATIC_GUARANTEED
    active = (inputs.deal_status == DealStatus.ACTIVE) & (status != PacingStatus.COMPLETED)
    stalled = status == PacingStatus.STALLED
    old = inputs.old_allocation
    new = inputs.new_allocation
    delivered = inputs.delivered

    observed = np.where(status == PacingStatus.NOT_STARTED, np.nan, inputs.current_rate)
    observed = np.where(stalled, nan_to_num(observed, nan=0.0), observed)
    presumed = ~np.isfinite(observed)
    current = np.where(presumed, old / safe_hours, observed)
    projected = current * hours
    required = new / safe_hours

    # Seller responses: a PARTIAL acceptance caps the target total.
    past = _history(history, inputs.deal_id, as_of)
    cap_remaining = np.where(
        past.partial_cap >= INT64_MAX, INT64_MAX, np.maximum(past.partial_cap - delivered, 0)
    )
    partial_binds = (new > cap_remaining) & ~(stalled & (new == 0))
    target = np.minimum(new, cap_remaining)

    # Inventory: increases only where the seller has shown supply beyond the current pace.
    inventory = inputs.available_inventory
    avails = np.full(n, np.nan) if inputs.avails_forecast is None else inputs.avails_forecast.copy()
    supply = np.where(inventory >= 0, inventory.astype(np.float64), avails)
    known = np.isfinite(supply)
    increase = ~stalled & (target > projected)
    no_inventory = increase & (~known | ~(np.where(known, supply, 0.0) > projected))
    inventory_binds = increase & known & ~no_inventory & (target > np.where(known, supply, 0.0))
    # Capped at a supply below what the seller is already committed to, an increase of a deal
    # the plan keeps or raises would propose a smaller booking (the change request's total):
    # a decrease the plan never chose. Not asked; the supply does not support more.
    below_commitment = inventory_binds & (new >= old) & (np.where(known, supply, 0.0) < old)
    no_inventory |= below_commitment
    inventory_binds &= ~below_commitment
    target = np.where(
        inventory_binds, np.floor(np.where(known, supply, 0.0)).astype(np.int64), target
    )
    target = np.where(stalled & (new == 0), 0, target).astype(np.int64)
    target_rate = target / safe_hours

    kind_code = select(
        [
            stalled & (target > 0),
            stalled & (target == 0) & (old > 0),
            ~stalled & (target_rate > current),
            ~stalled & (target_rate < current),
        ],
        [
            _KIND_CODE[RequestKind.RESUME],
            _KIND_CODE[RequestKind.INVESTIGATE],
            _KIND_CODE[RequestKind.INCREASE],
            _KIND_CODE[RequestKind.DECREASE],
        ],
        0,
    )
    kinds = _KINDS[kind_code]
    tolerance = policy.request_tolerance
    gap_ok = np.where(
        stalled,
        kind_code > 0,
        beyond_tolerance(required, current, tolerance)
        & beyond_tolerance(target_rate, current, tolerance)
        & (kind_code > 0),
    )

    size = change_size(target, old, projected)
    severity = change_severity(size, old, inputs.premium, policy.severity)
    worth = worth_changing(size, policy.min_change)
    critical = severity == Severity.CRITICAL

    cooldown = policy.cooldown.total_seconds()
    in_cooldown = (as_of - past.last_at) < cooldown  # NaN compares False
    rejected_at = (
        past.rejected.reindex(pd.MultiIndex.from_arrays([inputs.deal_id, kinds])).to_numpy(
            np.float64
        )
        if not past.rejected.empty
        else np.full(n, np.nan)
    )
    rejected_recently = (as_of - rejected_at) < cooldown
    # The same ask again (same kind, a target within the tolerance of the last one) waits for
    # the cooldown even when it is critical: the seller has it already, and asking every
    # replan is noise. A critical ask that says something new (another kind, a target moved
    # beyond the tolerance: a stall, a larger miss) still goes at once.
    asked_total = (delivered + target).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.abs(asked_total / np.maximum(past.last_target, 1.0) - 1.0)
    same_kind = (past.last_kind == kinds) | (_stall_ask(past.last_kind) & _stall_ask(kinds))
    repeat = same_kind & ~(nan_to_num(moved, nan=np.inf) > tolerance)

    # Codes, then their names picked once: np.select over text builds a text array per choice.
    outcome = _OUTCOME_NAMES[
        select(
            [
                ~pg,
                ~active,
                np.full(n, hours <= 0),
                ~gap_ok,
                no_inventory,
                ~worth,
                rejected_recently,
                in_cooldown & (~critical | repeat),
            ],
            [
                _OUTCOME_CODE[RequestOutcome.NOT_GUARANTEED],
                _OUTCOME_CODE[RequestOutcome.INACTIVE],
                _OUTCOME_CODE[RequestOutcome.HORIZON_OVER],
                _OUTCOME_CODE[RequestOutcome.WITHIN_TOLERANCE],
                _OUTCOME_CODE[RequestOutcome.NO_INVENTORY],
                _OUTCOME_CODE[RequestOutcome.BELOW_MIN_CHANGE],
                _OUTCOME_CODE[RequestOutcome.REJECTED_RECENTLY],
                _OUTCOME_CODE[RequestOutcome.COOLDOWN],
            ],
            _OUTCOME_CODE[RequestOutcome.REQUESTED],
        )
    ]

    plan_reason = (
        inputs.plan_reason
        if inputs.plan_reason is not None
        else np.full(n, ReasonCode.UNCHANGED, dtype=object)
    )
    # Comparisons rather than np.isin (here and in `_stall_ask`): ~10 us a call on short arrays.
    usable_plan_reason = (plan_reason != _UNCHANGED) & (plan_reason != "")
    reason_code = select(
        [
            stalled,
            partial_binds,
            status == PacingStatus.UNDER,
            status == PacingStatus.OVER,
            usable_plan_reason,
        ],
        [0, 1, 2, 3, -1],  # _REQUEST_REASONS; -1: the plan's own reason
        4,
    )
    reason = np.where(reason_code < 0, plan_reason, _REQUEST_REASONS[reason_code])
    capped_by = _CAPPED_BY[select([inventory_binds, partial_binds], [1, 2], 0)]
    return {
        "deal_id": inputs.deal_id,
        "outcome": outcome,
        "kind": kinds,
        "reason": reason,
        "severity": np.where(kind_code > 0, severity, "").astype(object),
        "current_rate": current,
        "rate_presumed": presumed,
        "required_rate": np.where(hours > 0, required, np.nan),
        "target_rate": np.where(hours > 0, target_rate, np.nan),
        "target_remaining": target,
        "target_total": delivered + target,
        "size": size,
        "capped_by": capped_by,
        "supply": supply,
        "last_request_at": past.last_at,
        "rejected_at": rejected_at,
        "accepted_total": np.where(past.partial_cap >= INT64_MAX, -1, past.partial_cap),
    }


_UNCHANGED = str(ReasonCode.UNCHANGED)
_RESUME, _INVESTIGATE = str(RequestKind.RESUME), str(RequestKind.INVESTIGATE)


def _stall_ask(kinds: ObjArray) -> BoolArray:
    """Whether each kind is one of the two asks that say "it stopped" (RESUME, INVESTIGATE)."""
    out: BoolArray = (kinds == _RESUME) | (kinds == _INVESTIGATE)
    return out


# --- requests ----------------------------------------------------------------------------------


_PER_DEAL = (
    "deal_id",
    "seller_id",
    "order_id",
    "deal_type",
    "premium",
    "deal_status",
    "pacing_status",
    "old_allocation",
    "new_allocation",
    "delivered",
    "capacity",
    "available_inventory",
    "current_rate",
    "participation_rate",
    "avails_forecast",
    "impressions_per_unit",
    "plan_reason",
)
"""RequestInputs' per-deal columns (the rest describe the campaign)."""


def _rows_of(inputs: RequestInputs, rows: npt.NDArray[np.intp]) -> RequestInputs:
    """`inputs` with only the deals at `rows` (in that order). The rows of arrays coerced
    already: set on a copy without `__post_init__`'s coercion and checks again (~40 us of a
    50-deal plan with guaranteed deals, for the same arrays)."""
    out = copy.copy(inputs)
    for name in _PER_DEAL:
        values = getattr(inputs, name)
        if values is not None:
            object.__setattr__(out, name, values[rows])
    return out


def _plain(values: np.ndarray) -> list[Any]:
    """Python values, text as plain str (what a frame's str column gives back)."""
    if values.dtype.kind in "OU":
        return [str(v) for v in values.tolist()]
    out: list[Any] = values.tolist()
    return out


def derive_requests(
    inputs: RequestInputs, policy: Policy, history: RequestHistory | None = None
) -> tuple[AdjustmentRequest, ...]:
    """Seller requests for the PG deals that need one, in deal order, IAB export attached."""
    # Only guaranteed deals are asked (NOT_GUARANTEED otherwise) and each deal's decision reads
    # its own row alone: decided on those rows only (100k deals: a third of the work).
    guaranteed = inputs.deal_type == DealType.PROGRAMMATIC_GUARANTEED
    if not guaranteed.all():
        inputs = _rows_of(inputs, np.flatnonzero(guaranteed))
    decisions = _decisions(inputs, policy, history)
    rows = np.flatnonzero(decisions["outcome"] == RequestOutcome.REQUESTED)
    if rows.size == 0:
        return ()
    out: list[AdjustmentRequest] = []
    ipu = inputs.impressions_per_unit
    stalled_hours = policy.stalled_window.total_seconds() / 3600.0
    deadline = format_deadline(inputs.horizon_end, inputs.timezone)
    # Plain Python lists per column: one cheap dict per request instead of pandas row objects.
    columns = {name: _plain(values[rows]) for name, values in decisions.items()}
    for j, i in enumerate(rows.tolist()):
        row: dict[str, Any] = {name: values[j] for name, values in columns.items()}
        kind = RequestKind(row["kind"])
        deal_id = str(row["deal_id"])
        target_total = int(row["target_total"])
        body: dict[str, Any] = {}
        req = AdjustmentRequest(
            request_id=request_id(inputs.seed, deal_id, kind),
            deal_id=deal_id,
            seller_id=str(inputs.seller_id[i]),
            order_id=str(inputs.order_id[i]),
            kind=kind,
            severity=Severity(row["severity"]),
            target_total=target_total,
            target_rate=float(row["target_rate"]),
            current_rate=float(row["current_rate"]),
            required_rate=float(row["required_rate"]),
            window_start=inputs.as_of,
            window_end=inputs.window_end,
            reason=ReasonCode(row["reason"]),
            rationale=_rationale(inputs, i, row, stalled_hours, deadline),
            idempotency_key=idempotency_key(
                inputs.campaign_id, deal_id, inputs.as_of, kind, target_total
            ),
            change_request=body,
        )
        # The export reads the finished request; filling the (mutable) dict in place saves a
        # dataclasses.replace per request.
        body.update(
            iab.change_request(
                req,
                budget_type=inputs.budget_type,
                currency=inputs.currency,
                current_total=int(inputs.delivered[i] + inputs.old_allocation[i]),
                delivered=int(inputs.delivered[i]),
                impressions_per_unit=math.nan if ipu is None else float(ipu[i]),
                window_hours=inputs.window_hours,
                horizon_end=inputs.horizon_end,
            )
        )
        out.append(req)
    return tuple(out)


def _rationale(
    inputs: RequestInputs, i: int, row: dict[str, Any], stalled_hours: float, by: str
) -> str:
    """One or two sentences with the numbers behind a request."""
    bt, cur = inputs.budget_type, inputs.currency

    def amount(v: float) -> str:
        return plan_text.amount(v, bt, cur)

    def rate(v: float) -> str:
        return plan_text.rate(v, bt, cur)

    who = f"Deal {row['deal_id']} (seller {inputs.seller_id[i]}, order {inputs.order_id[i]})"
    new = float(inputs.new_allocation[i])
    old = float(inputs.old_allocation[i])
    total = amount(float(row["target_total"]))
    kind = RequestKind(row["kind"])
    if kind is RequestKind.RESUME:
        text = (
            f"{who} has delivered nothing in the last {stalled_hours:g} h while its new "
            f"allocation of {amount(new)} needs {rate(row['target_rate'])} until {by}: please "
            f"resume delivery (target total {total})."
        )
    elif kind is RequestKind.INVESTIGATE:
        text = (
            f"{who} has delivered nothing in the last {stalled_hours:g} h; the plan moved its "
            f"remaining {amount(old)} to other deals: please investigate why delivery stopped "
            f"({amount(float(inputs.delivered[i]))} delivered so far)."
        )
    else:
        verb = "increase" if kind is RequestKind.INCREASE else "decrease"
        doing = "is booked to deliver" if row["rate_presumed"] else "is delivering"
        current = float(row["current_rate"])
        change = f"by {abs(row['target_rate'] / current - 1.0):.0%}" if current > 0 else "from zero"
        text = (
            f"{who} {doing} {rate(current)} but needs {rate(row['required_rate'])} to finish its "
            f"new allocation of {amount(new)} by {by}: please {verb} delivery {change}"
        )
        if row["capped_by"] == "INVENTORY":
            supply = amount(float(row["supply"]))
            text += f" to {rate(row['target_rate'])}, as far as its inventory of {supply} allows"
        text += f" (target total {total})."
        if kind is RequestKind.INCREASE and inputs.capacity[i] >= 0:
            text += f" Capacity forecast: {amount(float(inputs.capacity[i]))}."
        participation = float(inputs.participation_rate[i])
        if kind is RequestKind.INCREASE and participation < 1.0:  # NaN compares False
            text += f" Note: we bid on only {participation:.0%} of its auctions."
    if row["capped_by"] == "SELLER_PARTIAL":
        when = format_date(float(row["last_request_at"]), inputs.timezone)
        text += (
            f" Capped at the {amount(float(row['accepted_total']))} total the seller accepted"
            f" on {when}."
        )
    if math.isfinite(row["rejected_at"]):
        text += (
            f" The seller rejected a {kind.lower()} request on "
            f"{format_date(float(row['rejected_at']), inputs.timezone)}."
        )
    return text


__all__ = [
    "DECISION_COLUMNS",
    "RequestInputs",
    "RequestOutcome",
    "beyond_tolerance",
    "derive_requests",
    "format_date",
    "format_deadline",
    "idempotency_key",
    "request_decisions",
    "request_id",
]

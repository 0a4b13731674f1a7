"""Prepare: everything the solve reads, from a snapshot — the assessment and the campaign's
curve, the automatic step floor, each deal's last recent move, the capacity forecast, the rolling
room, and the problem with the reversal charge on it.

Nothing here decides the plan: it states the problem (`Prepared`) the later stages solve, adjust,
tabulate and render (builder.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.engine import AllocationProblem, BuiltProblem
from reallocator.core.engine.bounds import (
    MAX_CHURN,
    SPENT_COLUMN,
    build_from_snapshot,
    horizon,
    total_to_allocate,
)
from reallocator.core.interrupt import Checkpoint
from reallocator.core.model import (
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    Period,
    Policy,
    positions,
    table_of,
    text_column,
    values_of,
)
from reallocator.core.pacing.assessment import Assessment, assess
from reallocator.core.pacing.calendar import default_span
from reallocator.core.pacing.curves import PacingCurve, build_curve
from reallocator.core.plan.capacity import (
    FORECAST_DTYPES,
    _awaited_totals,
    _last_requests,
    deal_capacity,
    seller_paced,
)
from reallocator.core.plan.model import RequestHistory, last_of_each
from reallocator.core.plan.rolling import WindowStarts, rolling_room

_ACTIVE = int(DealStatus.ACTIVE)  # numpy compares an IntEnum member ~3x slower than its int


@dataclass(frozen=True)
class Prepared:
    """The problem a plan solves and what its later stages read beside it (snapshot order)."""

    snapshot: CampaignSnapshot  # with the automatic step floor (`_with_step_floor`)
    assessment: Assessment
    curve: PacingCurve
    capacity: npt.NDArray[np.int64]  # per deal, after seller answers capped it
    forecast: dict[str, Any]  # how each capacity was reached: columns (capacity.FORECAST_DTYPES)
    capped: npt.NDArray[np.bool_]  # a seller's answer capped the deal's capacity
    built: BuiltProblem  # bounds, the problem (reversal charge on it) and their report
    asks: npt.NDArray[np.int64]  # what an unanswered request asks beyond the spend (-1: none)
    # The lower bounds a plan is explained and shown with where the solved problem's differ
    # (`keep_unplaceable_commitments` raised them); None: the problem's own.
    shown_lb: npt.NDArray[np.int64] | None = None

    @cached_property
    def forecast_table(self) -> pd.DataFrame:
        """`forecast` as a table, built when first read: the plan reads a few of its columns
        as arrays, and the table cost ~3 % of a 50-deal plan."""
        return table_of(self.forecast, FORECAST_DTYPES)

    @property
    def policy(self) -> Policy:
        return self.snapshot.policy

    @property
    def budget_type(self) -> BudgetType:
        return self.snapshot.pacing.budget_type

    @property
    def currency(self) -> str:
        return self.snapshot.currency


def prepare(
    snapshot: CampaignSnapshot,
    *,
    assessment: Assessment | None,
    history: RequestHistory | None,
    forecast: npt.NDArray[np.int64] | None,
    windows: WindowStarts | None,
    time_limit: float | None,
    checkpoint: Checkpoint,
    schedule_window: timedelta | None = None,
) -> Prepared:
    """The assessment (the caller's or ours), the curve, the capacity forecast and the problem
    built from them; see `build_plan` for the arguments (`schedule_window`: until the next plan,
    None when unknown)."""
    spec = snapshot.pacing
    checkpoint("assess")
    own = assessment is None
    # The plan counts the alerts and never shows their sentences: they are not written.
    assessment = assessment or assess(snapshot, checkpoint=checkpoint, alert_messages=False)
    checkpoint("forecast")
    # Paced over the span the assessment uses: the campaign's dates, else (a campaign with only
    # periodic budgets) the current instance of its longest period. Our own assessment's curve
    # is that one: building it again cost ~5 % of a 50-deal plan.
    if own and assessment.curve is not None:
        curve = assessment.curve
    else:
        span = default_span(spec, snapshot.timezone, snapshot.as_of)
        curve = build_curve(spec, snapshot.timezone, span=span)
    as_of = snapshot.as_of.timestamp()
    period_left = _period_left(snapshot, curve, as_of)
    regrow = _regrowth(snapshot, period_left)
    snapshot = _with_step_floor(snapshot)
    policy = snapshot.policy
    # The sign of each deal's last recent move (hysteresis and the reversal charge read it).
    moved = last_moves(history, text_column(snapshot.deals, "deal_id"), as_of, policy)
    capacity, reached, capped = deal_capacity(snapshot, assessment, curve, history, moved, forecast)
    room = None
    if windows is not None:
        total_now = values_of(snapshot.deals, "allocation", np.int64)
        room = rolling_room(total_now, windows, policy, policy.step_abs)
    built = build_from_snapshot(
        snapshot,
        capacity,
        period_left=period_left,
        time_limit=time_limit if time_limit is not None else 10.0,
        room=room,
        regrow=regrow,
    )
    asked = _remaining_asks(snapshot, reached["asked_total"])
    problem = reversal_churn(asked_as_current(built.problem, asked), moved, policy)
    problem = request_churn(problem, seller_paced(snapshot.deals), policy)
    kept = keep_unplaceable_commitments(
        problem, snapshot, assessment, reached["answer_seconds"], schedule_window
    )
    shown_lb = None if kept is problem else problem.lb
    built = replace(built, problem=kept)
    return Prepared(
        snapshot=snapshot,
        assessment=assessment,
        curve=curve,
        capacity=capacity,
        forecast=reached,
        capped=capped,
        built=built,
        asks=asked,
        shown_lb=shown_lb,
    )


def _period_left(snapshot: CampaignSnapshot, curve: PacingCurve, as_of: float) -> dict[Period, int]:
    """What periodic caps (hour/day/week/month) still allow in the horizon: the curve's total
    minus what it expects by now (the curve already applies every cap, tightest first)."""
    spec = snapshot.pacing
    span = horizon(spec, snapshot.as_of)
    periodic = {b.period for b in span.budgets if b.period is not Period.LIFETIME}
    if not periodic or span.start is None or span.end is None:
        return {}
    window = (span.start.timestamp(), span.end.timestamp())
    now = float(curve.cumulative(as_of))
    left = float(curve.total(window)) - now + 0.0
    delivered = float(values_of(snapshot.deals, SPENT_COLUMN[spec.budget_type]).sum())
    expected_now = now - float(curve.cumulative(window[0]))
    # Under-delivery so far cannot be caught up beyond the caps; over-delivery used them up.
    left = max(0.0, left - max(0.0, delivered - expected_now))
    return dict.fromkeys(periodic, int(left))


def _with_step_floor(snapshot: CampaignSnapshot) -> CampaignSnapshot:
    """`step_abs` 0 means automatic: an even share of what the active deals still hold, so a
    deal cut to zero by an earlier plan can grow again (step = max(step_abs, step_rel x 0))."""
    policy = snapshot.policy
    if policy.step_abs > 0:
        return snapshot
    deals = snapshot.deals
    spent = values_of(deals, SPENT_COLUMN[snapshot.pacing.budget_type], np.int64)
    remaining = np.maximum(values_of(deals, "allocation", np.int64) - spent, 0)
    active = values_of(deals, "status") == _ACTIVE
    if not active.any():
        return snapshot
    floor = -(-int(remaining[active].sum()) // int(active.sum()))
    return replace(snapshot, policy=replace(policy, step_abs=max(floor, 1)))


def _regrowth(snapshot: CampaignSnapshot, period_left: dict[Period, int]) -> int:
    """With `step_abs` automatic, the least a deal that holds nothing may grow by: an even share
    of the budget left to place. The automatic floor is a share of what the deals hold, so once
    every deal was cut to its spend (a stall of the whole campaign, confident) it was 1 micro,
    and no plan could raise them again when supply came back (a 7-day flight, 5 deals: 24 % of
    the budget spent where fixed allocations spent 63 %). 0: no floor beyond the policy's."""
    if snapshot.policy.step_abs > 0:
        return 0
    deals, spec = snapshot.deals, snapshot.pacing
    active = int(np.count_nonzero(values_of(deals, "status") == _ACTIVE))
    spent = int(values_of(deals, SPENT_COLUMN[spec.budget_type]).sum())
    to_place = total_to_allocate(horizon(spec, snapshot.as_of).budgets, spent, period_left)
    if not active or not to_place:
        return 0
    return -(-to_place // active)


def last_moves(
    history: RequestHistory | None, deal_ids: Any, as_of: float, policy: Policy
) -> npt.NDArray[np.int8]:
    """Per deal (snapshot order) the sign of the last move an earlier plan made on it within
    `policy.reversal_window` before `as_of`: -1 cut, +1 raised, 0 none (or no history)."""
    out = np.zeros(len(deal_ids), dtype=np.int8)
    window = policy.reversal_window.total_seconds()
    if history is None or not len(history.moves) or window <= 0:
        return out
    moves = history.moves
    at = moves["planned_at"].to_numpy(np.float64)
    delta = moves["delta"].to_numpy(np.int64)
    recent = np.flatnonzero((at <= as_of) & (at > as_of - window) & (delta != 0))
    if not recent.size:
        return out
    # Per deal its last recent move (in time order, ties in their order), as arrays: the
    # frame's filter, sort and group cost ~1 ms a plan of an hourly campaign.
    ids = moves["deal_id"].to_numpy()
    last = recent[last_of_each(ids[recent], at[recent])]
    pos = positions(ids[last], deal_ids)
    ok = pos >= 0
    out[pos[ok]] = np.sign(delta[last][ok]).astype(np.int8)
    return out


def reversal_churn(
    problem: AllocationProblem, last_move: npt.NDArray[np.int8], policy: Policy
) -> AllocationProblem:
    """Charge a move that would undo a deal's last recent move `policy.reversal_churn` x the
    churn weight per unit on top of it: raising a deal a recent plan cut, cutting one it raised.

    Where forecasts force budget out of a deal, or free some, the objective decides only where
    it goes; with equal churn it goes to the deal next in value, which is often the one the
    last plan moved the other way (the marginal deal of the LP). Charged more, the money goes
    to a deal it does not turn back."""
    extra = min(policy.reversal_churn * problem.lam_deal, MAX_CHURN)
    if extra <= 0 or not (last_move != 0).any():
        return problem
    return replace(
        problem,
        lam_above=np.where(last_move < 0, extra, 0.0),
        lam_below=np.where(last_move > 0, extra, 0.0),
    )


def request_churn(
    problem: AllocationProblem, seller_paced: npt.NDArray[np.bool_], policy: Policy
) -> AllocationProblem:
    """Charge a move on a deal its seller paces (a guaranteed deal: every move is a seller
    request) `policy.churn_request` x the churn weight per unit on top of what any move costs.

    A request is a negotiation the seller answers late or not at all, and a reversed one is a
    needless second request; a schedule change on a deal the buyer paces is its own pacer's.
    At the same churn weight the marginal deal of the plan, the one that absorbs every other
    deal's forecast revision, was as often guaranteed as not, and its ups and downs became
    requests (tuning set, 5 seeds, means over the eight scenarios: churn 0.52x -> 0.49x the
    budget, requests per guaranteed deal 5.5 -> 4.9, value -0.08 points, at 1; at 3, churn
    0.47x and value -0.3 points)."""
    extra = min(policy.churn_request * problem.lam_deal, MAX_CHURN)
    if extra <= 0 or not seller_paced.any():
        return problem
    charge = np.where(seller_paced, extra, 0.0)
    above = (
        charge if problem.lam_above is None else np.minimum(problem.lam_above + charge, MAX_CHURN)
    )
    below = (
        charge if problem.lam_below is None else np.minimum(problem.lam_below + charge, MAX_CHURN)
    )
    return replace(problem, lam_above=above, lam_below=below)


def pending_asks(
    history: RequestHistory | None, snapshot: CampaignSnapshot
) -> npt.NDArray[np.int64]:
    """Per deal (snapshot order) what a guaranteed deal's unanswered last request still asks
    its seller to deliver beyond the spend (target total - spent, at least 0); -1 where no
    request is awaited (or the deal is buyer-paced). A plan reads it from its forecast's
    `asked_total` (`_remaining_asks`), which the capacity forecast finds with the answers."""
    return _remaining_asks(snapshot, _awaited_totals(snapshot.deals, _last_requests(history)))


def _remaining_asks(
    snapshot: CampaignSnapshot, asked_total: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """`pending_asks` from each deal's awaited target total (-1: none)."""
    deals = snapshot.deals
    spent = values_of(deals, SPENT_COLUMN[snapshot.pacing.budget_type], np.int64)
    waiting = seller_paced(deals) & (asked_total >= 0)
    return np.where(waiting, np.maximum(asked_total - spent, 0), -1).astype(np.int64)


def keep_unplaceable_commitments(
    problem: AllocationProblem,
    snapshot: CampaignSnapshot,
    assessment: Assessment,
    answer_seconds: npt.NDArray[np.float64],
    schedule_window: timedelta | None,
) -> AllocationProblem:
    """A guaranteed deal keeps what it holds (within its bounds) when no plan could place what
    asking its seller for less would free: that budget is held until the seller agrees (post_solve,
    `_hold_seller_decreases`) and placed by the first plan after the answer, at the next
    multiple of `schedule_window` (until the next plan) after the seller's answer time
    (`answer_seconds`, the forecast's `answer_times`); at or past the horizon's end there is
    none. A decrease asked then only stops a deal with supply: `random_scenarios.py --seed 32`
    world 6, one plan 12 hours before the end asked three guaranteed deals on pace for less (two
    for nothing) to fund a deal worth more, held the 4.1 M USD it freed for "the next plan", and
    none came (85.7 % of the budget spent where the booking spent 92.9 %). A deal short of its
    commitment is still planned at its capacity (its upper bound), and nothing is kept where
    keeping it would break a budget, seller or channel limit (the limits decide). The plan shows
    and explains such a deal within its own bounds (`Prepared.shown_lb`): no bound stopped it."""
    if schedule_window is None or schedule_window <= timedelta(0):
        return problem
    paced = seller_paced(snapshot.deals)
    if not paced.any():
        return problem
    step = schedule_window.total_seconds()
    plans = np.maximum(np.ceil(np.maximum(answer_seconds, 0.0) / step), 1.0)  # the first after it
    placed_at = snapshot.as_of.timestamp() + plans * step
    last = paced & (placed_at >= assessment.horizon_end.timestamp())
    if not last.any():
        return problem
    keep = np.minimum(problem.current, problem.ub)
    lb = np.where(last, np.maximum(problem.lb, keep), problem.lb).astype(np.int64)
    sellers = np.bincount(problem.seller, lb, minlength=len(problem.seller_max))
    channels = np.bincount(problem.channel, lb, minlength=len(problem.channel_max))
    if (
        int(lb.sum()) > problem.total
        or (sellers > problem.seller_max).any()
        or (channels > problem.channel_max).any()
    ):
        return problem
    return replace(problem, lb=lb)


def asked_as_current(problem: AllocationProblem, asked: npt.NDArray[np.int64]) -> AllocationProblem:
    """A guaranteed deal with a request its seller has not answered is planned from what the
    request asks (`pending_asks`), not from the commitment it replaces: the churn weight and
    the reversal charge measure a move from the ask.

    Measured from the commitment, keeping the ask cost churn at every plan and dropping it
    cost nothing, so a plan could give the money elsewhere at no cost while the seller, who
    never heard otherwise, still took the ask: the next plan then asked the other way
    (evaluation set's marathon, seed 1, one deal: raised 1.7 -> 3.7 % of the budget, asked
    down to 1.0 % six hours after the seller agreed, up again and down again, 9 % of the
    budget moved and 8.9 % undone). Within the deal's bounds; the commitment still decides
    what the plan holds for the seller (post_solve) and what a new request asks."""
    waiting = asked >= 0
    if not waiting.any():
        return problem
    current = np.where(waiting, np.clip(asked, problem.lb, problem.ub), problem.current)
    return replace(problem, current=current.astype(np.int64))


__all__ = [
    "Prepared",
    "asked_as_current",
    "last_moves",
    "pending_asks",
    "prepare",
    "request_churn",
    "reversal_churn",
]

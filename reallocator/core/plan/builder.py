"""From a snapshot to a plan: assessment -> capacity forecast -> problem -> solve -> plan.

The one entry point every adapter uses (the Replan RPC, batch jobs, the simulator). Pure: no I/O;
what earlier plans asked of sellers comes in as `RequestHistory`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.engine import (
    AllocationProblem,
    AllocationResult,
    BoundsReport,
    BuiltProblem,
    ForecastInputs,
    InfeasibleProblem,
    NoFeasiblePlan,
    SolvePath,
    solve,
)
from reallocator.core.engine.bounds import (
    MAX_CHURN,
    SPENT_COLUMN,
    build_from_snapshot,
    horizon,
)
from reallocator.core.engine.diagnosis import (
    Diagnosis,
    RelaxationWeights,
    ViolationKind,
    marginal_check,
    solve_or_relax,
)
from reallocator.core.engine.problem import NO_MAX, group_sum
from reallocator.core.engine.stretch import stretch
from reallocator.core.interrupt import Checkpoint, never
from reallocator.core.model import (
    BudgetType,
    CampaignSnapshot,
    DealStatus,
    DealType,
    Period,
    Policy,
    Severity,
    table_of,
    text_column,
    text_of,
    values_of,
)
from reallocator.core.pacing.assessment import (
    Alert,
    Assessment,
    EntityKind,
    PacingStatus,
    Reason,
    assess,
)
from reallocator.core.pacing.calendar import campaign_span
from reallocator.core.pacing.curves import PacingCurve, build_curve
from reallocator.core.plan.explain import beyond_forecast, explain, render_deal_rationales
from reallocator.core.plan.model import (
    PLAN_DEAL_COLUMNS,
    PLAN_GROUP_COLUMNS,
    AdjustmentRequest,
    ConstraintViolation,
    Plan,
    PlanStatus,
    ReasonCode,
    RequestHistory,
    ScheduleTable,
    SellerResponse,
    SolverReport,
    Unspendable,
)
from reallocator.core.plan.rationale import decision_record, unspendable_reasons
from reallocator.core.plan.requests import RequestInputs, derive_requests
from reallocator.core.plan.rolling import WindowStarts, rolling_room
from reallocator.core.plan.schedule import ScheduleInputs, derive_schedule_table, pacing_modes
from reallocator.core.plan.schedule_text import render_schedule_rationales
from reallocator.core.plan.severity import change_severity, max_severity, worth_changing
from reallocator.core.plan.text import amount


class PlanRejected(Exception):
    """Constraints conflict and the caller asked to reject rather than relax."""

    def __init__(self, message: str, violations: tuple[ConstraintViolation, ...]) -> None:
        super().__init__(message)
        self.violations = violations


def _period_left(snapshot: CampaignSnapshot, curve: PacingCurve, as_of: float) -> dict[Period, int]:
    """What periodic caps (hour/day/week/month) still allow in the horizon: the curve's total
    minus what it expects by now (the curve already applies every cap, tightest first)."""
    spec = snapshot.pacing
    span = horizon(spec, snapshot.as_of)
    periodic = {b.period for b in span.budgets if b.period is not Period.LIFETIME}
    if not periodic or span.start is None or span.end is None:
        return {}
    window = (span.start.timestamp(), span.end.timestamp())
    left = float(curve.total(window)) - float(curve.cumulative(as_of)) + 0.0
    delivered = float(values_of(snapshot.deals, SPENT_COLUMN[spec.budget_type]).sum())
    expected_now = float(curve.cumulative(as_of)) - float(curve.cumulative(window[0]))
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
    active = values_of(deals, "status") == DealStatus.ACTIVE
    if not active.any():
        return snapshot
    floor = -(-int(remaining[active].sum()) // int(active.sum()))
    return replace(snapshot, policy=replace(policy, step_abs=max(floor, 1)))


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
    recent = moves[(at <= as_of) & (at > as_of - window) & (delta != 0)]
    if not len(recent):
        return out
    last = recent.sort_values("planned_at", kind="stable").groupby("deal_id").tail(1)
    pos = pd.Index(deal_ids).get_indexer(last["deal_id"])
    ok = pos >= 0
    out[pos[ok]] = np.sign(last["delta"].to_numpy(np.int64)[ok]).astype(np.int8)
    return out


def _awaiting(history: RequestHistory | None, deals: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Deals whose last seller request is still unanswered (snapshot order)."""
    out = np.zeros(len(deals), dtype=bool)
    if history is None or not len(history.requests):
        return out
    last = history.requests.sort_values("requested_at", kind="stable").groupby("deal_id").tail(1)
    open_ids = last.loc[last["response"].astype(str) == SellerResponse.PENDING, "deal_id"]
    pos = pd.Index(deals["deal_id"]).get_indexer(open_ids)
    out[pos[pos >= 0]] = True
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


def _capacity(
    snapshot: CampaignSnapshot,
    assessment: Assessment,
    curve: PacingCurve,
    history: RequestHistory | None,
    moved: npt.NDArray[np.int8],
    given: npt.NDArray[np.int64] | None = None,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Forecast per deal (or the caller's, `given`); seller answers cap it (a REJECTED increase
    keeps the deal at its current plan, a PARTIAL one at what the seller accepted)."""
    from reallocator.core.engine.forecast import (
        METHODS,
        RATIONALE_DTYPES,
        confident_cuts,
        forecast_columns,
        pooled,
        starved_rate,
    )

    deals, policy = snapshot.deals, snapshot.policy
    active = None
    weights = None
    per_opportunity = 1.0
    if snapshot.delivery is not None:
        series = snapshot.delivery
        opportunity = curve.calendar.bucket_opportunity(
            series.window_start, series.bucket, series.n_buckets
        )
        active = opportunity > 0
        # The forecast measures rates per active clock hour of the series; the remaining time is
        # in opportunity hours (traffic-weighted): convert, or a night-heavy window reads low.
        if opportunity.sum() > 0:
            clock = active.sum() * series.bucket.total_seconds() / 3600.0
            per_opportunity = clock / float(opportunity.sum())
            weights = opportunity / (float(opportunity.sum()) / int(active.sum()))
    inputs = ForecastInputs.from_snapshot(
        deals,
        snapshot.delivery,
        snapshot.pacing.budget_type,
        policy,
        active_buckets=active,
        bucket_weights=weights,
    )
    status = assessment.column(EntityKind.DEAL, "status")  # no frame built
    # Zero capacity (a cut to the spend) only on a confident stall, never on a verdict that
    # lacks its evidence.
    confidence = np.nan_to_num(assessment.column(EntityKind.DEAL, "confidence"))
    stalled = (status == PacingStatus.STALLED) & (confidence >= policy.confidence_threshold)
    rate = inputs.observed_rate * per_opportunity
    avails_rate = inputs.avails_rate * per_opportunity
    spent = values_of(deals, SPENT_COLUMN[snapshot.pacing.budget_type], np.int64)
    remaining = np.maximum(values_of(deals, "allocation", np.int64) - spent, 0)
    # A deal the plan starved (nothing left to spend), or one that delivered nothing without a
    # confident stall, is forecast from its supply, not from the delivery the plan prevented.
    # One that never won yet (its first hours were at night, or a stall cut it before it could)
    # is read at the campaign's typical win rate and units per win.
    supply_rate = avails_rate * pooled(inputs.win_rate) * pooled(inputs.units_per_win)
    elapsed = assessment.opportunity_elapsed_hours
    to_date = spent / elapsed if elapsed > 0 else np.full(len(deals), np.nan)
    starved = ((remaining <= 0) | (rate == 0)) & ~stalled & inputs.active
    rate = starved_rate(rate, supply_rate, np.where(spent > 0, to_date, np.nan), starved)
    from_supply = starved & np.isfinite(rate) & (rate > 0)
    # A starved deal's series measures the plan: its spread says nothing about its supply.
    rate_se = None if inputs.rate_se is None else inputs.rate_se * per_opportunity
    rate_se = None if rate_se is None else np.where(starved, np.nan, rate_se)
    inputs = replace(
        inputs,
        stalled=stalled,
        observed_rate=rate,
        avails_rate=avails_rate,
        rate_se=rate_se,
        from_supply=from_supply,
        seller_paced=values_of(deals, "deal_type") == DealType.PROGRAMMATIC_GUARANTEED,
        keeping_pace=~np.isin(
            status, [PacingStatus.UNDER, PacingStatus.STALLED, PacingStatus.NOT_STARTED]
        ),
    )
    capacity, table = forecast_columns(inputs, assessment.opportunity_remaining_hours, policy)
    behind = 0.0
    if len(assessment.column(EntityKind.CAMPAIGN, "expected")):
        # How far the campaign is behind its curve, as a share of its budget.
        expected, actual, booked = (
            float(assessment.column(EntityKind.CAMPAIGN, c)[0])
            for c in ("expected", "actual", "allocation")
        )
        behind = (expected - actual) / max(booked, 1.0)
    capacity, held = confident_cuts(
        inputs, table, remaining, policy, moved, behind, awaiting=_awaiting(history, deals)
    )
    # The caller's own forecasts: per deal in the snapshot (capacity_forecast >= 0), or all of
    # them through build_plan(forecast=...).
    if given is not None:
        own = np.maximum(np.asarray(given, dtype=np.int64), 0)
        if own.shape != (len(deals),):
            raise ValueError(f"forecast needs one value per deal ({len(deals)})")
    else:
        own = values_of(deals, "capacity_forecast", np.int64)
    mine = own >= 0
    method = table["method"]
    if mine.any():
        capacity = np.where(mine, own, capacity)
        method = pd.Categorical.from_codes(
            np.where(mine, METHODS.index("given"), method.codes), dtype=method.dtype
        )
    capacity_column = capacity.copy()  # before the seller answers cap it
    capped = np.zeros(len(deals), dtype=bool)
    if history is not None and len(history.requests):
        last = history.requests.sort_values("requested_at").groupby("deal_id").tail(1)
        spent = values_of(deals, SPENT_COLUMN[snapshot.pacing.budget_type], np.int64)
        remaining = np.maximum(values_of(deals, "allocation", np.int64) - spent, 0)
        index = pd.Index(deals["deal_id"])
        pos = index.get_indexer(last["deal_id"])
        ok = pos >= 0
        last, pos = last[ok], pos[ok]
        response = last["response"].astype(str).to_numpy()
        increase = last["kind"].astype(str).to_numpy() == "INCREASE"
        rejected = increase & (response == SellerResponse.REJECTED)
        partial = increase & (response == SellerResponse.PARTIAL)
        limit = np.where(
            partial,
            np.maximum(values_of(last, "accepted_total", np.int64) - spent[pos], 0),
            remaining[pos],
        )
        hit = (rejected | partial) & (limit < capacity[pos])
        capacity[pos[hit]] = limit[hit]
        capped[pos[hit]] = True
    # One table (a column set at a time cost ~25 us each).
    columns = dict(table)
    columns |= {
        "method": method,
        "capacity": capacity_column,
        "held_to_current": held,
        "capped_by_response": capped,
        # The outlook speaks for the capacity only where nothing else set it.
        "stall_outlook": np.where(mine | capped | held, np.nan, columns["stall_outlook"]),
    }
    dtypes = RATIONALE_DTYPES | {"held_to_current": "bool", "capped_by_response": "bool"}
    return capacity, table_of(columns, dtypes), capped


def _violations(
    diagnosis: Diagnosis, built: BuiltProblem, deal_ids: Any, bt: BudgetType, currency: str
) -> tuple[ConstraintViolation, ...]:
    """Engine violations (codes) -> the caller's names, ids and words."""
    out = []
    for v in diagnosis.violations:
        if v.kind in (ViolationKind.SELLER_MIN, ViolationKind.SELLER_MAX):
            kind, entity = "SELLER", str(built.seller_ids[v.index])
        elif v.kind in (ViolationKind.CHANNEL_MIN, ViolationKind.CHANNEL_MAX):
            kind, entity = "CHANNEL", str(built.channel_ids[v.index])
        elif v.kind in (ViolationKind.DEAL_MIN, ViolationKind.DEAL_MAX):
            kind, entity = "DEAL", str(deal_ids[v.index])
        else:
            kind, entity = "CAMPAIGN", ""
        unit = BudgetType.SPEND if v.kind is ViolationKind.MONEY_CAP else bt
        # Shown to the cent, rounded up, so relaxing by the figure shown is still enough.
        shown = -(-v.relaxation // 10_000) * 10_000 if unit is BudgetType.SPEND else v.relaxation
        out.append(
            ConstraintViolation(
                constraint=v.named(entity),
                entity_kind=kind,
                entity_id=entity,
                bound=v.bound,
                relaxation=v.relaxation,
                message=v.describe(entity, amount(shown, unit, currency)),
            )
        )
    return tuple(out)


def _unmeetable_minimums(
    built: BuiltProblem, bt: BudgetType, currency: str
) -> tuple[ConstraintViolation, ...]:
    """Seller and channel minimums their deals cannot deliver, as violations (for
    Policy.cap_unmeetable_minimums = False): the bounds capped them at what the deals can
    deliver; relaxing each by its shortfall is what the capped plan does."""
    problem, report = built.problem, built.report
    out = []
    for kind, names, mins, short in (
        ("seller", built.seller_ids, problem.seller_min, report.seller_min_short),
        ("channel", built.channel_ids, problem.channel_min, report.channel_min_short),
    ):
        for q in np.flatnonzero(short > 0).tolist():
            name = str(names[q])
            shown = -(-int(short[q]) // 10_000) * 10_000 if bt is BudgetType.SPEND else short[q]
            out.append(
                ConstraintViolation(
                    constraint=f"{kind}/{name}/min_total",
                    entity_kind=kind.upper(),
                    entity_id=name,
                    bound=int(mins[q] + short[q]),
                    relaxation=int(short[q]),
                    message=f"relax {kind} {name}'s minimum by {amount(shown, bt, currency)}: "
                    "its deals cannot deliver more",
                )
            )
    return tuple(out)


def _solve(
    built: BuiltProblem,
    relax: bool,
    weights: RelaxationWeights,
    deal_ids: Any,
    bt: BudgetType,
    currency: str,
) -> tuple[AllocationResult, tuple[ConstraintViolation, ...], AllocationProblem]:
    """Solve; when constraints conflict, the closest plan (relax) or PlanRejected naming every
    constraint that must give way and by how much."""
    try:
        result, diagnosis = solve_or_relax(built.problem, weights, relax)
    except InfeasibleProblem as exc:
        if exc.diagnosis is None:
            raise
        named = _violations(exc.diagnosis, built, deal_ids, bt, currency)
        summary = "; ".join(v.message for v in named[:5])
        raise PlanRejected(f"constraints conflict: {summary}", named) from exc
    if diagnosis is None:
        return result, (), built.problem
    named = _violations(diagnosis, built, deal_ids, bt, currency)
    return result, named, diagnosis.relaxed_problem


def _beyond_forecast(
    snapshot: CampaignSnapshot,
    problem: AllocationProblem,
    report: BoundsReport,
    result: AllocationResult,
    capacity: np.ndarray,
    capped: np.ndarray,
) -> tuple[AllocationResult, np.ndarray]:
    """What the forecasts leave unplaced goes to the deals the buyer paces, within every other
    limit (engine/stretch.py). Not to deals the seller paces (asking a seller beyond the
    inventory it can deliver is not a plan), locked ones, or ones a seller's answer capped."""
    ratio = snapshot.policy.beyond_forecast
    if ratio <= 0 or int(result.allocation.sum()) >= problem.total:
        return result, problem.ub
    deals = snapshot.deals
    grow = np.minimum(report.current, NO_MAX - report.step) + report.step
    open_ub = np.maximum(
        problem.ub,
        np.maximum(report.min_remaining, np.minimum(report.max_remaining, grow)),
    )
    eligible = (
        (capacity > 0)
        & (values_of(deals, "deal_type") != DealType.PROGRAMMATIC_GUARANTEED)
        & ~values_of(deals, "locked", bool)
        & ~capped
    )
    out = stretch(
        problem, result, open_ub=open_ub, capacity=capacity, eligible=eligible, ratio=ratio
    )
    return (result, problem.ub) if out is None else out


DUALS_UP_TO = 200_000
"""Deals up to which a plan whose group limits bind also runs the LP path for its duals (what
one more unit of a binding limit is worth); above it the marginal values come from the slopes."""


def _hold_seller_decreases(
    snapshot: CampaignSnapshot,
    problem: AllocationProblem,
    result: AllocationResult,
    report: BoundsReport,
) -> tuple[AllocationProblem, AllocationResult, npt.NDArray[np.int64]]:
    """Budget a plan frees by asking a seller to deliver less is not the buyer's until the
    seller agrees: the seller keeps pacing its deal to the old commitment meanwhile. So the
    whole commitment a guaranteed deal still holds beyond its new allocation stays held, and
    the rest of the plan is re-solved without it (the guaranteed deals asked for less fixed
    where the first solve put them, the other guaranteed deals kept at their commitments). The
    next plan, once the seller has answered, places it. Without this, deals that spend all
    they are given (AHEAD) overspend the budget whenever a seller is slow or says no.

    The commitment, not the forecast: a forecast that a deal falls short of its commitment can
    be wrong, and the seller then catches up (holding only min(current, capacity) overspent
    the evaluation set's marathon by 0.04 % on 1 seed in 30; holding all of it costs ~0.1
    point of utilisation on the tuning set, 30 seeds, and overspent in none of 720 runs).
    Returns the problem and result to use and the amount held per deal (none when the
    minimums need it: the re-solve is infeasible)."""
    x = result.allocation
    seller_paced = values_of(snapshot.deals, "deal_type") == DealType.PROGRAMMATIC_GUARANTEED
    committed = report.current
    held = np.where(seller_paced, np.maximum(committed - x, 0), 0)
    total = int(held.sum())
    if total <= 0:
        return problem, result, np.zeros_like(x)
    asked = held > 0
    # The others the seller paces keep their commitments: lowering one would need a hold.
    keep = np.where(seller_paced & ~asked, np.minimum(committed, problem.ub), 0)
    fixed = replace(
        problem,
        lb=np.where(asked, x, np.maximum(problem.lb, keep)),
        ub=np.where(asked, x, problem.ub),
        total=max(0, int(problem.total) - total),
    )
    try:
        second = solve(fixed)
    except (InfeasibleProblem, NoFeasiblePlan):
        return problem, result, np.zeros_like(x)  # the minimums need it: nothing to hold back
    return fixed, second, held.astype(np.int64)


def _with_duals(problem: AllocationProblem, result: AllocationResult) -> AllocationResult:
    """The flow path has no duals: when a seller/channel limit binds, the LP path on the same
    problem gives them (its allocation is not used: the flow's is exact). A binding budget alone
    needs no LP: its worth is the best next-unit slope (explain.budget_price)."""
    b = result.binding
    groups = (b.seller_at_min | b.seller_at_max).any() or (
        b.channel_at_min | b.channel_at_max
    ).any()
    if result.duals is not None or not groups or problem.n_deals > DUALS_UP_TO:
        return result
    try:
        lp = solve(problem, path=SolvePath.LP)
    except (InfeasibleProblem, NoFeasiblePlan):
        return result
    duals = lp.duals
    if duals is not None and problem.n_deals <= RESOLVE_UP_TO:
        duals = replace(
            duals,
            seller=_resolved(problem, result, "seller", b.seller_at_min, b.seller_at_max,
                             duals.seller),
            channel=_resolved(problem, result, "channel", b.channel_at_min, b.channel_at_max,
                              duals.channel),
        )  # fmt: skip
    return replace(result, duals=duals)


RESOLVE_UP_TO = 20_000
"""Deals up to which a binding group's marginal value is measured by re-solving with its limit
relaxed by one unit (exact even where the LP dual is degenerate); above, the LP dual."""


def _resolved(
    problem: AllocationProblem,
    result: AllocationResult,
    kind: str,
    at_min: np.ndarray,
    at_max: np.ndarray,
    dual: np.ndarray,
    most: int = 10,
) -> np.ndarray:
    """What one more unit of each binding limit is worth: value re-solved with that limit
    relaxed by one unit, delivery held (at most `most` limits; the others keep the LP dual)."""
    out = np.abs(np.asarray(dual, dtype=np.float64))
    binding = np.flatnonzero(at_min | at_max)[:most]
    # One micro is below GLOP's feasibility tolerance on budgets of billions of micros: step by
    # a millionth of the budget (at least one unit) and report the value per unit.
    step = max(1, problem.total // 1_000_000)
    for code in binding.tolist():
        side = "max_total" if at_max[code] else "min_total"
        gain = marginal_check(problem, result, f"{kind}/{code}/{side}", step)
        out[code] = abs(gain) / step
    return out


def build_plan(
    snapshot: CampaignSnapshot,
    *,
    history: RequestHistory | None = None,
    relax: bool = True,
    time_limit: float | None = None,
    schedule_window: timedelta = timedelta(hours=6),
    assessment: Assessment | None = None,
    forecast: npt.NDArray[np.int64] | None = None,
    checkpoint: Checkpoint = never,
    text: bool = True,
    rollback: bool = False,
    windows: WindowStarts | None = None,
    schedules: bool = True,
) -> Plan:
    """The plan for the rest of the horizon. Raises PlanRejected when constraints conflict and
    `relax` is False (or no relaxation helps).

    `forecast`: the caller's own capacity forecast per deal (budget units still deliverable in
    the horizon, snapshot order) instead of the built-in one; seller answers still cap it.

    `checkpoint` is called between phases (core/interrupt.py): it may raise Interrupted.

    `text`: render every rationale now (in-process callers read them from the plan); False leaves
    the per-deal and per-schedule rationales empty for a caller that renders only the rows it
    returns (`render_deal_rationales`, `render_schedule_rationales`) - at 100k deals the words
    cost more than the whole optimisation.

    `windows`: the deals' totals at the start of the rolling hour and day (from the plans
    applied), for `Policy.step_rel_per_hour` / `step_rel_per_day` (plan/rolling.py).

    `schedules`: False makes no buyer schedules (`schedule_table` None) for a caller that
    returns none and keeps nothing (a dry-run SUMMARY): at 100k deals they are a quarter of the
    plan's time. Seller requests, severity and the decision record are made either way.

    `rollback`: the snapshot pins each deal where a rolled-back plan found it
    (`rollback.rollback_snapshot`); the deals that move are told ROLLBACK, not the pin that
    moved them, and the plan is made unless every move is too small to be worth making.
    """
    started = time.perf_counter()
    policy, spec = snapshot.policy, snapshot.pacing
    bt, currency = spec.budget_type, snapshot.currency
    checkpoint("assess")
    own = assessment is None
    # The plan counts the alerts and never shows their sentences: they are not written.
    assessment = assessment or assess(snapshot, checkpoint=checkpoint, alert_messages=False)
    checkpoint("forecast")
    # The curve our own assessment built is the campaign's when the campaign is dated
    # (default_span is then its span): building it again cost ~5 % of a 50-deal plan.
    if own and assessment.curve is not None and campaign_span(spec) is not None:
        curve = assessment.curve
    else:
        curve = build_curve(spec, snapshot.timezone)
    as_of = snapshot.as_of.timestamp()

    snapshot = _with_step_floor(snapshot)
    policy = snapshot.policy
    # The sign of each deal's last recent move (hysteresis and the reversal charge read it).
    moved = last_moves(history, text_column(snapshot.deals, "deal_id"), as_of, policy)
    capacity, forecast_table, capped = _capacity(
        snapshot, assessment, curve, history, moved, forecast
    )
    room = None
    if windows is not None:
        total_now = values_of(snapshot.deals, "allocation", np.int64)
        room = rolling_room(total_now, windows, policy, policy.step_abs)
    built = build_from_snapshot(
        snapshot,
        capacity,
        period_left=_period_left(snapshot, curve, as_of),
        time_limit=time_limit if time_limit is not None else 10.0,
        room=room,
    )
    built = replace(
        built,
        problem=reversal_churn(built.problem, moved, policy),
    )
    report = built.report
    weights = RelaxationWeights.from_policy(policy)
    deal_ids = text_column(snapshot.deals, "deal_id")  # read only to name a conflict
    unmet = () if policy.cap_unmeetable_minimums else _unmeetable_minimums(built, bt, currency)
    if unmet and not relax:
        summary = "; ".join(v.message for v in unmet[:5])
        raise PlanRejected(f"constraints conflict: {summary}", unmet)
    checkpoint("solve")
    result, violations, problem = _solve(built, relax, weights, deal_ids, bt, currency)
    violations = (*violations, *unmet)
    checkpoint("post-solve")
    remaining_budget = int(problem.total)
    before = problem
    problem, result, held = _hold_seller_decreases(snapshot, problem, result, report)
    result = _with_duals(problem, result)
    result, upper = _beyond_forecast(snapshot, problem, report, result, capacity, capped)
    # The deals a hold fixed (asked to deliver less, or the other guaranteed deals kept at their
    # commitments meanwhile) are explained and shown within their real bounds, not the fix.
    asked = held > 0
    shown = replace(problem, lb=before.lb, ub=np.where(asked, before.ub, problem.ub))
    upper = np.where(asked, before.ub, upper)
    x = result.allocation

    frame = {  # what explain reads (not a copy of the whole assessment)
        "locked": values_of(snapshot.deals, "locked", bool),
        "status": assessment.column(EntityKind.DEAL, "status"),
        "value_per_unit": values_of(snapshot.deals, "value_per_unit", np.float64),
        "capped_by_response": capped,
    }
    checkpoint("explain")
    why = explain(shown, report, result, frame)

    deals = snapshot.deals
    spent = report.spent
    current = report.current
    # The decisions on arrays (rollback, the NO_CHANGE gate, pacing), then one table.
    new_allocation, delta = x, x - current
    binding: npt.NDArray[Any] = why.binding
    reason: npt.NDArray[Any] | str = why.reason
    marginal: npt.NDArray[np.float64] | float = why.marginal_value
    if rollback:
        moved = delta != 0
        reason = np.where(moved, ReasonCode.ROLLBACK.value, "UNCHANGED")
        binding = np.where(moved, "NONE", np.asarray(binding, dtype=object))
    alerts = assessment.n_alerts > 0 and not rollback
    small = not worth_changing(delta, policy.min_change).any()
    status = PlanStatus.TIME_LIMITED if result.status == "TIME_LIMITED" else PlanStatus.OPTIMAL
    if violations:
        status = PlanStatus.RELAXED
    no_change_reason = ""
    if not alerts and small and not violations:
        status = PlanStatus.NO_CHANGE
        no_change_reason = (
            f"no alert passed the confidence threshold ({policy.confidence_threshold:.0f}) and "
            f"every change is below the minimum change worth making "
            f"({max(policy.min_change, 1)} {bt.lower()} units)"
        )
        new_allocation, delta = current, np.zeros_like(delta)
        reason = "UNCHANGED"
        # Nothing moved because the gate held it, not because a limit stopped it.
        binding = np.where(np.asarray(binding, dtype=object) == "LOCKED", "LOCKED", "NONE")
        marginal = 0.0
    pacing = pacing_modes(
        values_of(deals, "deal_type", np.int64),
        values_of(deals, "status", np.int64),
        new_allocation,
        capacity,
        text_of(forecast_table, "method"),
        policy.pace_ahead,
    )
    plan_deals = table_of(
        {
            "deal_id": text_column(deals, "deal_id"),
            "seller_id": text_column(deals, "seller_id"),
            "channel_id": text_column(deals, "channel_id"),
            "delivered": spent,
            "old_allocation": current,
            "new_allocation": new_allocation,
            "delta": delta,
            "lower_bound": shown.lb,
            "upper_bound": np.minimum(upper, problem.total),
            "binding": binding,
            "capacity": capacity,
            "reason": reason,
            "rationale": "",  # rendered from the table below, when asked
            "marginal_value": marginal,
            "new_total": spent + new_allocation,
            "pacing": pacing,
            "step": report.step,
            "pacing_ratio": assessment.column(EntityKind.DEAL, "pacing_ratio"),
            "pacing_status": assessment.labels(EntityKind.DEAL, "status"),
            "recent_rate": assessment.column(EntityKind.DEAL, "recent_rate"),
            "required_rate": assessment.column(EntityKind.DEAL, "required_rate"),
            "group_at_max": why.group_at_max,
            "stall_outlook": values_of(forecast_table, "stall_outlook"),
        },
        PLAN_DEAL_COLUMNS,
    )
    if text:
        plan_deals["rationale"] = render_deal_rationales(plan_deals, bt, currency)

    sellers = _group_frame(
        plan_deals,
        "seller_id",
        built.seller_ids,
        problem.seller,
        problem.seller_min,
        problem.seller_max,
        result.binding.seller_at_min | result.binding.seller_at_max,
        None if result.duals is None else result.duals.seller,
    )
    channels = _group_frame(
        plan_deals,
        "channel_id",
        built.channel_ids,
        problem.channel,
        problem.channel_min,
        problem.channel_max,
        result.binding.channel_at_min | result.binding.channel_at_max,
        None if result.duals is None else result.duals.channel,
    )
    allocated = int(values_of(plan_deals, "new_allocation").sum())
    unspendable = max(0, remaining_budget - allocated)
    total_seconds = time.perf_counter() - started
    solver = SolverReport(
        path=str(result.path),
        build_seconds=result.timings.build,
        solve_seconds=result.timings.solve,
        verify_seconds=result.timings.verify,
        total_seconds=total_seconds,
        time_limited=result.status == "TIME_LIMITED",
        objective_allocated=int(result.objective.delivered),
        objective_value=float(result.objective.objective),
    )
    over = x - np.maximum(shown.ub, report.capacity)
    beyond = int(over[beyond_forecast(shown, report, x)].sum())
    reasons: tuple[Unspendable, ...] = unspendable_reasons(
        report,
        built,
        unspendable,
        forecast_table,
        bt,
        currency,
        values_of(deals, "deal_id"),
        beyond=beyond,
        held_for_sellers=None if status is PlanStatus.NO_CHANGE else held,  # nothing is asked
    )
    plan = Plan(
        alerts=_broken_commitments(reasons, assessment),
        campaign_id=snapshot.campaign_id,
        as_of=snapshot.as_of,
        status=status,
        budget_type=bt,
        currency=currency,
        remaining_budget=remaining_budget,
        allocated=allocated,
        unspendable=unspendable,
        deals=plan_deals,
        sellers=sellers,
        channels=channels,
        unspendable_reasons=reasons,
        violations=violations,
        solver=solver,
        no_change_reason=no_change_reason,
    )
    checkpoint("requests and schedules")
    return _with_record(
        plan, assessment, snapshot, schedule_window, history, curve, forecast_table, text, schedules
    )


def _broken_commitments(
    reasons: tuple[Unspendable, ...], assessment: Assessment
) -> tuple[Alert, ...]:
    """A CRITICAL alert per seller or channel minimum its deals cannot deliver."""
    out = []
    for u in reasons:
        if u.reason_code != "MINIMUM_BEYOND_CAPACITY":
            continue
        frame = assessment.sellers if u.entity_kind == "SELLER" else assessment.channels
        status = (
            PacingStatus(str(frame.loc[u.entity_id, "status"]))
            if u.entity_id in frame.index
            else PacingStatus.ON_PACE
        )
        out.append(
            Alert(
                entity_kind=EntityKind(u.entity_kind),
                entity_id=u.entity_id,
                status=status,
                severity=Severity.CRITICAL,
                reason=Reason.BROKEN_COMMITMENT,
                message=u.message,
                confidence=100.0,
            )
        )
    return tuple(out)


def _group_frame(
    deals: pd.DataFrame,
    column: str,
    ids: pd.Index,
    codes: np.ndarray,
    mins: np.ndarray,
    maxs: np.ndarray,
    binding: np.ndarray,
    duals: np.ndarray | None,
) -> pd.DataFrame:
    """Totals per seller or channel. `codes`: each deal's position in `ids` (the problem's own
    group codes, built with `ids`: no lookup of the deals' ids again)."""
    n = len(ids)
    delivered = group_sum(values_of(deals, "delivered"), codes, n)
    # Limits as totals over the horizon (delivered + allocation), NaN where none. What one more
    # unit of a limit is worth, where a limit binds (nothing is worth more of a limit that does
    # not bind, whatever the LP's degenerate duals say). One constructor: a column added at a
    # time cost ~4 % of a 50-deal plan.
    return table_of(
        {
            "delivered": delivered,
            "old_allocation": group_sum(values_of(deals, "old_allocation"), codes, n),
            "new_allocation": group_sum(values_of(deals, "new_allocation"), codes, n),
            "min_total": np.where(mins > 0, mins + delivered, np.nan),
            "max_total": np.where(maxs == NO_MAX, np.nan, maxs.astype(float) + delivered),
            "binding": binding,
            "marginal_value": np.where(binding, np.abs(duals), 0.0)
            if duals is not None
            else np.zeros(n),
        },
        PLAN_GROUP_COLUMNS,
        index=pd.Index(ids, name=column),
    )


def _with_record(
    plan: Plan,
    assessment: Assessment,
    snapshot: CampaignSnapshot,
    schedule_window: timedelta,
    history: RequestHistory | None,
    curve: PacingCurve,
    forecast: pd.DataFrame,
    text: bool,
    make_schedules: bool = True,
) -> Plan:
    """Adds seller requests, buyer schedules (when `make_schedules`), severity and the decision
    record: they all read the finished allocation. A NO_CHANGE plan asks nothing of anyone."""
    policy = snapshot.policy
    requests: tuple[AdjustmentRequest, ...] = ()
    schedules: ScheduleTable | None = None
    severity = None
    if plan.status is not PlanStatus.NO_CHANGE:
        window_end = snapshot.as_of + schedule_window
        end = min(window_end, assessment.horizon_end)
        hours = (
            float(curve.calendar.opportunity_hours(snapshot.as_of, end))
            if end > snapshot.as_of
            else 0.0
        )
        seed = f"{snapshot.campaign_id}:{int(snapshot.as_of.timestamp())}"
        # The label columns both read, converted once.
        texts = {
            "deal_id": text_of(snapshot.deals, "deal_id"),
            "seller_id": text_of(snapshot.deals, "seller_id"),
            "pacing_status": assessment.column(EntityKind.DEAL, "status"),
            "plan_reason": text_of(plan.deals, "reason"),
        }
        # Only guaranteed deals are asked anything: a campaign of none (open auctions, private
        # marketplaces) skips the request inputs and rules (~0.4 ms of a 50-deal plan).
        guaranteed = values_of(snapshot.deals, "deal_type") == DealType.PROGRAMMATIC_GUARANTEED
        if guaranteed.any():
            inputs = RequestInputs.from_plan(
                snapshot,
                assessment,
                plan.deals,
                window_end=window_end,
                texts=texts,
                seed=seed,
                avails_forecast=values_of(forecast, "by_avails"),
                window_hours=hours,
            )
            requests = derive_requests(inputs, policy, history)
        if make_schedules:
            schedules = derive_schedule_table(
                ScheduleInputs.from_plan(
                    snapshot, assessment, plan.deals, window_end=window_end, texts=texts
                ),
                curve,
                policy,
            )
        if text and schedules is not None:
            schedules = replace(
                schedules,
                rationale=np.asarray(render_schedule_rationales(schedules), dtype=object),
            )
        changes = change_severity(
            values_of(plan.deals, "delta", np.int64),
            values_of(plan.deals, "old_allocation", np.int64),
            values_of(snapshot.deals, "premium", bool),
            policy.severity,
        )
        moved = values_of(plan.deals, "delta") != 0
        severity = max_severity(np.concatenate([changes[moved], [r.severity for r in requests]]))
    plan = replace(plan, requests=requests, schedule_table=schedules, max_severity=severity)
    return replace(plan, rationale=decision_record(plan, assessment, snapshot))


__all__ = ["PlanRejected", "build_plan"]

"""The plan as a table of numbers and codes: each deal's binding limit, reason and marginal value
(`deal_codes`, from explain.py), the deals table once the gate has decided (`deal_table`), and
the plan around it — seller and channel totals, the solver's report, why budget is unspendable
(`assemble`). The deals' words, when asked for, are rendered from the finished table alone.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from reallocator.core.engine.problem import NO_MAX, group_sum
from reallocator.core.model import Severity, table_of, text_column, values_of
from reallocator.core.pacing.assessment import (
    Alert,
    Assessment,
    EntityKind,
    PacingStatus,
    Reason,
)
from reallocator.core.plan.explain import Explanation, explain, render_deal_rationales
from reallocator.core.plan.gate import Decision
from reallocator.core.plan.model import (
    PLAN_DEAL_COLUMNS,
    ConstraintViolation,
    GroupTotals,
    Plan,
    PlanStatus,
    SolverReport,
    Unspendable,
)
from reallocator.core.plan.post_solve import PostSolved
from reallocator.core.plan.prepare import Prepared
from reallocator.core.plan.rationale import unspendable_reasons
from reallocator.core.plan.schedule import pacing_codes, pacing_column


def deal_codes(prepared: Prepared, post: PostSolved) -> Explanation:
    """Per deal: the limit that binds, the reason code and the marginal value, read within the
    bounds shown (`post.shown`)."""
    deals = prepared.snapshot.deals
    frame = {  # what explain reads (not a copy of the whole assessment)
        "locked": values_of(deals, "locked", bool),
        "status": prepared.assessment.column(EntityKind.DEAL, "status"),
        "value_per_unit": values_of(deals, "value_per_unit", np.float64),
        "capped_by_response": prepared.capped,
    }
    return explain(post.shown, prepared.built.report, post.result, frame)


def deal_table(
    prepared: Prepared, post: PostSolved, why: Explanation, decision: Decision, *, text: bool
) -> pd.DataFrame:
    """Plan.deals (PLAN_DEAL_COLUMNS) as the gate decided it, with the columns the words read.
    `text`: each deal's rationale rendered from the finished columns (else left empty for the
    caller to render the rows it returns). Rendered here, not with the other words after the
    actions (render.py), because a column set on a frame once another stage holds it costs a copy
    of the frame: ~90 us of a 50-deal plan's ~4.5 ms, measured."""
    deals, report, assessment = prepared.snapshot.deals, prepared.built.report, prepared.assessment
    forecast = prepared.forecast
    pacing = pacing_codes(
        values_of(deals, "deal_type", np.int64),
        values_of(deals, "status", np.int64),
        decision.allocation,
        prepared.capacity,
        forecast["method"],  # by code
        prepared.policy.pace_ahead,
    )
    spent = report.spent
    table = table_of(
        {
            "deal_id": text_column(deals, "deal_id"),
            "seller_id": text_column(deals, "seller_id"),
            "channel_id": text_column(deals, "channel_id"),
            "delivered": spent,
            "old_allocation": report.current,
            "new_allocation": decision.allocation,
            "delta": decision.delta,
            "lower_bound": post.shown.lb,
            "upper_bound": np.minimum(post.upper, post.problem.total),
            "binding": decision.binding,
            "capacity": prepared.capacity,
            "reason": decision.reason,
            "rationale": "",  # rendered from the table below, when asked
            "marginal_value": decision.marginal,
            "new_total": spent + decision.allocation,
            "pacing": pacing_column(pacing),  # a long one by Arrow, from the codes
            "step": report.step,
            "pacing_ratio": assessment.column(EntityKind.DEAL, "pacing_ratio"),
            "pacing_status": assessment.labels(EntityKind.DEAL, "status"),
            "recent_rate": assessment.column(EntityKind.DEAL, "recent_rate"),
            "required_rate": assessment.column(EntityKind.DEAL, "required_rate"),
            "group_at_max": why.group_at_max,
            "stall_outlook": forecast["stall_outlook"],
            "answer_share": forecast["answer_share"],
        },
        PLAN_DEAL_COLUMNS,
    )
    if text:  # the table is this function's own until it returns
        table["rationale"] = render_deal_rationales(table, prepared.budget_type, prepared.currency)
    return table


def assemble(
    prepared: Prepared,
    post: PostSolved,
    violations: tuple[ConstraintViolation, ...],
    decision: Decision,
    plan_deals: pd.DataFrame,
    started: float,
) -> Plan:
    """The plan around its deals table: seller and channel totals, what is unspendable and why,
    the broken commitments, the solver's report (`started`: perf_counter at the plan's start).
    No requests, schedules, gate's reason or decision record yet (actions.py, render.py)."""
    snapshot, assessment, built = prepared.snapshot, prepared.assessment, prepared.built
    report, problem, result = built.report, post.problem, post.result
    bt, currency = prepared.budget_type, prepared.currency
    # The totals add up the table's own columns, from the arrays it was built of (a column read
    # back from the frame costs a few us, six reads a plan).
    columns = (report.spent, report.current, decision.allocation)
    sellers = _group_totals(
        columns,
        "seller_id",
        built.seller_ids,
        problem.seller,
        problem.seller_min,
        problem.seller_max,
        result.binding.seller_at_min | result.binding.seller_at_max,
        None if result.duals is None else result.duals.seller,
    )
    channels = _group_totals(
        columns,
        "channel_id",
        built.channel_ids,
        problem.channel,
        problem.channel_min,
        problem.channel_max,
        result.binding.channel_at_min | result.binding.channel_at_max,
        None if result.duals is None else result.duals.channel,
    )
    allocated = int(decision.allocation.sum())
    unspendable = max(0, post.remaining_budget - allocated)
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
    status = decision.status
    reasons: tuple[Unspendable, ...] = unspendable_reasons(
        report,
        built,
        unspendable,
        prepared.forecast["capacity"],
        bt,
        currency,
        # The column itself: a few deals are named, where converting every id to an object
        # cost ~2.5 ms at 100k deals.
        text_column(snapshot.deals, "deal_id"),
        beyond=post.beyond,
        held_for_sellers=None if status is PlanStatus.NO_CHANGE else post.held,  # nothing asked
    )
    return Plan(
        alerts=_broken_commitments(reasons, assessment),
        campaign_id=snapshot.campaign_id,
        as_of=snapshot.as_of,
        status=status,
        budget_type=bt,
        currency=currency,
        remaining_budget=post.remaining_budget,
        allocated=allocated,
        unspendable=unspendable,
        deals=plan_deals,
        seller_totals=sellers,
        channel_totals=channels,
        unspendable_reasons=reasons,
        violations=violations,
        solver=solver,
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


def _group_totals(
    deals: tuple[np.ndarray, np.ndarray, np.ndarray],
    column: str,
    ids: pd.Index,
    codes: np.ndarray,
    mins: np.ndarray,
    maxs: np.ndarray,
    binding: np.ndarray,
    duals: np.ndarray | None,
) -> GroupTotals:
    """Totals per seller or channel of the deals' (delivered, old_allocation, new_allocation).
    `codes`: each deal's position in `ids` (the problem's own group codes, built with `ids`: no
    lookup of the deals' ids again)."""
    n = len(ids)
    delivered = group_sum(deals[0], codes, n)
    # Limits as totals over the horizon (delivered + allocation), NaN where none. What one more
    # unit of a limit is worth, where a limit binds (nothing is worth more of a limit that does
    # not bind, whatever the LP's degenerate duals say).
    return GroupTotals(
        ids=ids if ids.name == column else ids.rename(column),  # named by the problem
        delivered=delivered,
        old_allocation=group_sum(deals[1], codes, n),
        new_allocation=group_sum(deals[2], codes, n),
        min_total=np.where(mins > 0, mins + delivered, np.nan).astype(np.float64, copy=False),
        max_total=np.where(maxs == NO_MAX, np.nan, maxs.astype(float) + delivered),
        binding=np.asarray(binding, dtype=bool),
        marginal_value=(
            np.where(binding, np.abs(duals), 0.0).astype(np.float64, copy=False)
            if duals is not None
            else np.zeros(n)
        ),
    )


__all__ = ["assemble", "deal_codes", "deal_table"]

"""The plan as a decision record (summary, factors with figures, references) and the reasons
behind budget no deal can deliver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reallocator.core.engine import BoundsReport, BuiltProblem
from reallocator.core.model import UNITS_LIMIT, BudgetType, CampaignSnapshot, text_column, values_of
from reallocator.core.pacing.assessment import Assessment, EntityKind
from reallocator.core.plan.model import (
    DecisionFactor,
    DecisionRecord,
    Plan,
    PlanStatus,
    Unspendable,
)
from reallocator.core.plan.text import amount


def unspendable_reasons(
    report: BoundsReport,
    built: BuiltProblem,
    unspendable: int,
    forecast: np.ndarray,
    bt: BudgetType,
    currency: str,
    deal_ids: Sequence[Any],
    beyond: int = 0,
    held_for_sellers: np.ndarray | None = None,
) -> tuple[Unspendable, ...]:
    """Where budget goes that no deal can deliver: commitments beyond capacity, limits already
    exceeded, minimums the deals cannot meet, and the campaign's capacity shortfall (`beyond`:
    what the plan placed beyond the forecasts, Policy.beyond_forecast); and budget held for
    the sellers asked to deliver less until they agree (`held_for_sellers`, per deal).
    `forecast`: each deal's capacity forecast before the sellers' answers capped it."""
    out: list[Unspendable] = []
    waiting = 0 if held_for_sellers is None else int(held_for_sellers.sum())
    unspendable = max(0, unspendable - waiting)  # the rest has no deal that can take it
    if held_for_sellers is not None and waiting > 0:
        rows = np.flatnonzero(held_for_sellers > 0)
        total = waiting
        named = ", ".join(str(deal_ids[i]) for i in rows[:5].tolist())
        more = f" and {rows.size - 5} more" if rows.size > 5 else ""
        out.append(
            Unspendable(
                total,
                "HELD_FOR_SELLER_DECREASE",
                "CAMPAIGN",
                "",
                f"{amount(total, bt, currency)} stays with the sellers of {rows.size} guaranteed "
                f"deal(s) ({named}{more}) planned below their commitments: they keep pacing "
                f"to their commitments until they agree to less, so the next plan places it",
            )
        )
    held = report.held_beyond_capacity
    deal_index = np.flatnonzero(held > 0)
    for i in deal_index[:50].tolist():
        out.append(
            Unspendable(
                int(held[i]),
                "COMMITMENT_BEYOND_CAPACITY",
                "DEAL",
                str(i),
                f"deal #{i} holds {amount(held[i], bt, currency)} (its minimum or lock) beyond "
                f"its capacity forecast of {amount(report.capacity[i], bt, currency)}",
            )
        )
    for kind, names, over, short in (
        ("SELLER", built.seller_ids, report.seller_over_limit, report.seller_min_short),
        ("CHANNEL", built.channel_ids, report.channel_over_limit, report.channel_min_short),
    ):
        for q in np.flatnonzero(over > 0).tolist():
            out.append(
                Unspendable(
                    int(over[q]),
                    "SHARE_EXCEEDED",
                    kind,
                    str(names[q]),
                    f"{kind.lower()} {names[q]} is already {amount(over[q], bt, currency)} beyond "
                    "its maximum: it gets nothing more",
                )
            )
        for q in np.flatnonzero(short > 0).tolist():
            out.append(
                Unspendable(
                    int(short[q]),
                    "MINIMUM_BEYOND_CAPACITY",
                    kind,
                    str(names[q]),
                    f"{kind.lower()} {names[q]}'s minimum exceeds what its deals can deliver by "
                    f"{amount(short[q], bt, currency)}; the minimum is capped there",
                )
            )
    if unspendable > 0:
        total_capacity = int(np.minimum(forecast, int(UNITS_LIMIT)).sum())
        out.append(
            Unspendable(
                unspendable,
                "CAPACITY",
                "CAMPAIGN",
                "",
                f"{amount(unspendable, bt, currency)} of the remaining budget cannot be placed: "
                f"the deals' capacity forecasts total "
                f"{amount(min(total_capacity, int(UNITS_LIMIT)), bt, currency)}"
                + (
                    f", the plan placed {amount(beyond, bt, currency)} beyond them as far as "
                    "the policy's beyond_forecast and the limits allow"
                    if beyond > 0
                    else " and the limits allow no more"
                ),
            )
        )
    return tuple(out)


def decision_record(
    plan: Plan, assessment: Assessment, snapshot: CampaignSnapshot
) -> DecisionRecord:
    bt, cur = plan.budget_type, plan.currency
    deals = plan.deals
    delta = values_of(deals, "delta")
    increases, decreases = int(delta[delta > 0].sum()), int(-delta[delta < 0].sum())
    moved = min(increases, decreases)  # from deals to deals
    added = increases - moved  # budget no deal held before, now placed
    released = decreases - moved  # taken off deals and placed nowhere
    takers, givers = int((delta > 0).sum()), int((delta < 0).sum())
    ratio = float(assessment.column(EntityKind.CAMPAIGN, "pacing_ratio")[0])  # no frame built
    status = str(assessment.column(EntityKind.CAMPAIGN, "status")[0])
    alerts = assessment.n_alerts
    if plan.status is PlanStatus.NO_CHANGE:
        summary = (
            f"Campaign {plan.campaign_id} is {status.replace('_', ' ').lower()} "
            f"({ratio:.0%} of expected delivery). No change: {plan.no_change_reason}."
        )
    else:
        order = np.argsort(-np.abs(delta), kind="stable")[:3]
        ids = text_column(deals, "deal_id")  # three of them named: no column converted
        moves = "; ".join(
            f"{ids[i]} {'+' if delta[i] > 0 else '-'}{amount(abs(int(delta[i])), bt, cur)}"
            for i in order.tolist()
            if delta[i] != 0
        )
        actions = []
        if moved:
            actions.append(
                f"moves {amount(moved, bt, cur)} from {givers} deal(s) to {takers} deal(s)"
            )
        elif takers:
            actions.append(f"gives {takers} deal(s) more")
        if added:
            actions.append(f"adds {amount(added, bt, cur)} no deal held before")
        if released:
            taken = f"takes {amount(released, bt, cur)} off"
            actions.append(f"{taken} {givers} deal(s) that cannot deliver it" if not moved else
                           f"{taken} deals with nowhere better to place it")  # fmt: skip
        did = ", ".join(actions) if actions else "changes no allocation"
        summary = (
            f"Campaign {plan.campaign_id} is {status.replace('_', ' ').lower()} "
            f"({ratio:.0%} of expected delivery, {alerts} alert(s)). The plan {did} and places "
            f"{amount(plan.allocated, bt, cur)} of the {amount(plan.remaining_budget, bt, cur)} "
            f"remaining"
            + (
                f"; {amount(plan.unspendable, bt, cur)} cannot be delivered"
                if plan.unspendable
                else ""
            )
            + (f". Largest moves: {moves}." if moves else ".")
        )
        if plan.status is PlanStatus.RELAXED:
            summary += f" Constraints conflicted: {len(plan.violations)} had to give way."
    broken = [u for u in plan.unspendable_reasons if u.reason_code == "MINIMUM_BEYOND_CAPACITY"]
    if broken:
        named = ", ".join(f"{u.entity_kind.lower()} {u.entity_id}" for u in broken[:3])
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        short = sum(u.amount for u in broken)
        summary += (
            f" Broken commitment: the minimum of {named}{more} exceeds what its deals can "
            f"deliver by {amount(short, bt, cur)} in all"
            + (
                "; the plan caps it there (policy.cap_unmeetable_minimums)."
                if snapshot.policy.cap_unmeetable_minimums
                else "."
            )
        )
    p = snapshot.policy
    factors = (
        DecisionFactor(
            "campaign pacing ratio", ratio, f"{ratio:.1%}", "actual vs expected delivery to date"
        ),
        DecisionFactor(
            "remaining budget",
            plan.remaining_budget,
            amount(plan.remaining_budget, bt, cur),
            "what the budgets have left",
        ),
        DecisionFactor(
            "allocated",
            plan.allocated,
            amount(plan.allocated, bt, cur),
            "placed on deals by this plan",
        ),
        DecisionFactor(
            "unspendable",
            plan.unspendable,
            amount(plan.unspendable, bt, cur),
            "no deal can deliver it in the horizon (capacity and limits)",
        ),
        DecisionFactor(
            "budget moved", moved, amount(moved, bt, cur), "from deals to other deals (churn)"
        ),
        DecisionFactor(
            "budget released",
            released,
            amount(released, bt, cur),
            "taken off deals and placed on none",
        ),
        DecisionFactor("deals changed", takers + givers, f"{takers} up, {givers} down", ""),
        DecisionFactor(
            "alerts",
            alerts,
            str(alerts),
            f"verdicts above the confidence threshold {p.confidence_threshold:.0f}",
        ),
        DecisionFactor(
            "remaining opportunity hours",
            assessment.opportunity_remaining_hours,
            f"{assessment.opportunity_remaining_hours:,.1f} h",
            "active hours left, weighted by expected traffic",
        ),
    )
    references = [
        f"policy.over_threshold={p.over_threshold}",
        f"policy.under_threshold={p.under_threshold}",
        f"policy.confidence_threshold={p.confidence_threshold}",
        f"policy.step_limits: max(step_abs={p.step_abs}, step_rel={p.step_rel} x current)",
        f"policy.churn: deal={p.churn_deal}, channel={p.churn_channel}",
        f"policy.min_change={p.min_change}",
    ]
    for totals, kind in ((plan.seller_totals, "seller"), (plan.channel_totals, "channel")):
        binding = totals.binding
        if binding.any():  # the ids read only then (the index as objects costs ~20 us)
            for gid in np.asarray(totals.ids, dtype=object)[binding][:20]:
                references.append(f"{kind}/{gid}: a limit binds")
    references += [f"constraint {v.constraint}: relaxed by {v.relaxation}" for v in plan.violations]
    return DecisionRecord(summary=summary, factors=factors, references=tuple(references))

"""Render: the words made last, from the plan's numbers and codes alone — each schedule's
rationale (when the caller asks for them now), the NO_CHANGE gate's reason and the decision
record. (Each deal's rationale is rendered from the finished deals table as it is made:
table.py says why.)"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reallocator.core.model import BudgetType, Policy
from reallocator.core.plan.actions import Actions
from reallocator.core.plan.model import Plan, PlanStatus
from reallocator.core.plan.prepare import Prepared
from reallocator.core.plan.rationale import decision_record
from reallocator.core.plan.schedule_text import render_schedule_rationales


def no_change_reason(policy: Policy, budget_type: BudgetType) -> str:
    """Why the gate (gate.py) held every allocation."""
    return (
        f"no alert passed the confidence threshold ({policy.confidence_threshold:.0f}) and "
        f"every change is below the minimum change worth making "
        f"({max(policy.min_change, 1)} {budget_type.lower()} units)"
    )


def render(plan: Plan, actions: Actions, prepared: Prepared, *, text: bool) -> Plan:
    """`plan` with its actions and their words. `text` False leaves the schedules' rationales
    empty for a caller that renders only the rows it returns; the gate's reason and the
    decision record are made either way."""
    schedules = actions.schedules
    if text and schedules is not None:
        schedules = replace(
            schedules,
            rationale=np.asarray(render_schedule_rationales(schedules), dtype=object),
        )
    why_not = ""
    if plan.status is PlanStatus.NO_CHANGE:
        why_not = no_change_reason(prepared.policy, prepared.budget_type)
    plan = replace(
        plan,
        requests=actions.requests,
        schedule_table=schedules,
        max_severity=actions.severity,
        no_change_reason=why_not,
    )
    return replace(plan, rationale=decision_record(plan, prepared.assessment, prepared.snapshot))


__all__ = ["no_change_reason", "render"]

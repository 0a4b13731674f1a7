"""From a snapshot to a plan, in stages one can read in order (`build_plan`):

    prepare     assessment, curve, capacity forecast, problem       prepare.py
    solve       or relax, naming what conflicts (or PlanRejected)   conflicts.py
    post-solve  hold seller decreases, duals, beyond forecasts      post_solve.py
    codes       per deal: binding limit, reason, marginal value     table.py (explain.py)
    gate        rollback labels, status, NO_CHANGE                  gate.py
    table       the deals table (its words when asked), the plan    table.py
    actions     seller requests, buyer schedules, severity          actions.py
    render      schedule words, the gate's reason, decision record  render.py

Each stage takes the earlier ones' frozen results and returns a new one; none edits its
arguments. The one entry point every adapter uses (the Replan RPC, batch jobs, the simulator).
Pure: no I/O; what earlier plans asked of sellers comes in as `RequestHistory`.
"""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from reallocator.core.interrupt import Checkpoint, never
from reallocator.core.model import CampaignSnapshot, reading
from reallocator.core.pacing.assessment import Assessment
from reallocator.core.plan.actions import act
from reallocator.core.plan.capacity import _awaiting
from reallocator.core.plan.conflicts import PlanRejected, solve_prepared
from reallocator.core.plan.gate import decide
from reallocator.core.plan.model import Plan, RequestHistory
from reallocator.core.plan.post_solve import post_solve
from reallocator.core.plan.prepare import last_moves, prepare, reversal_churn
from reallocator.core.plan.render import render
from reallocator.core.plan.rolling import WindowStarts
from reallocator.core.plan.table import assemble, deal_codes, deal_table


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
    # Every stage reads the snapshot's deals (and the finished plan's) column by column:
    # each column is read once (model.reading).
    with reading(snapshot.deals):
        prepared = prepare(
            snapshot,
            assessment=assessment,
            history=history,
            forecast=forecast,
            windows=windows,
            time_limit=time_limit,
            checkpoint=checkpoint,
            schedule_window=schedule_window,
        )
        solved = solve_prepared(prepared, relax=relax, checkpoint=checkpoint)
        checkpoint("post-solve")
        post = post_solve(prepared, solved)
        checkpoint("explain")
        why = deal_codes(prepared, post)
        decision = decide(prepared, post, solved.violations, why, rollback=rollback)
        deals = deal_table(prepared, post, why, decision, text=text)
        with reading(deals):  # finished: the later stages only read it
            plan = assemble(prepared, post, solved.violations, decision, deals, started)
            checkpoint("requests and schedules")
            actions = act(
                plan,
                prepared,
                history=history,
                schedule_window=schedule_window,
                make_schedules=schedules,
            )
            return render(plan, actions, prepared, text=text)


# Re-exported: tests and adapters import these from here.
__all__ = ["PlanRejected", "_awaiting", "build_plan", "last_moves", "reversal_churn"]

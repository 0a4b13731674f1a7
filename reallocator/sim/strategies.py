"""The strategies compared on the same world (the oracle, which needs no run, is oracle.py).

* `StaticStrategy` - the booked allocation, every deal paced to it, never reallocated.
* `RulesStrategy` - the rules-based reallocation an open-source buyer agent ships today (IAB Tech
  Lab buyer-agent, marked experimental upstream), implemented from its description, every
  `replan_hours`:

      expected_c = budget_c x elapsed share of the flight          (linear over the flight)
      deviation_c = round(round(100 x spent_c / expected_c, 2) - 100, 2)   (percent, as there)
      giver  c: deviation_c < -10,  underspend_c = expected_c - spent_c
      taker  c: deviation_c > +10,  overspend_c  = spent_c - expected_c
      channels with a budget <= 0 (or nothing expected yet) are skipped
      every (giver g, taker k) pair moves  min(underspend_g, overspend_k, 30% x total budget)
      from g to k, pairs independently (computed from the same figures, not netted), moves
      under $100 dropped; no per-deal, per-seller or per-channel min/max.

  A channel's change reaches its deals as follows (the description is silent; documented choice):
  a giver's deals keep their shares of the channel's remaining allocation (scaled), a taker's
  increase goes to its deals in proportion to what each has spent so far (the ones delivering).
  Channel budgets are the rule's own book: a giver may be driven below what it already spent
  (pairs are not netted), and then its deals simply stop - while the takers keep what they got,
  which can add up to more than the budget. PG deals' new amounts go to their sellers as
  INCREASE/DECREASE requests (one at a time per deal), through the same seller model.
* `ForesightStrategy` - the reallocator given the true remaining capacities (a diagnostic).
* `ReallocatorStrategy` - a snapshot every `replan_hours`, the plan from `Planner` (the plan
  builder in-process, or the service over gRPC), non-guaranteed deals take their new totals at
  once (and the deals the plan paces AHEAD run up to `policy.pace_ahead` x their curve target),
  guaranteed deals change only through the seller requests the plan makes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.model import RequestHistory, RequestKind, SellerResponse
from reallocator.sim.planner import Planner, PlanView
from reallocator.sim.scenario import MICROS
from reallocator.sim.sellers import Answer, SellerDesk
from reallocator.sim.snapshot import RunState, build_snapshot, current_totals
from reallocator.sim.world import FloatArray, IntArray, World


@dataclass
class RunContext:
    world: World
    state: RunState
    desk: SellerDesk
    policy: Policy


@dataclass(frozen=True)
class ReplanRecord:
    step: int
    status: str
    seconds: float  # wall time of the decision (the plan call for the reallocator)
    requests: int  # seller requests made
    churn: float  # the plan's moves: sum over deals of |new total - current total| (asks included)
    note: str = ""


class Strategy(Protocol):
    name: str
    replans: bool

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord: ...

    def on_answers(self, ctx: RunContext, answers: list[Answer]) -> None: ...


class StaticStrategy:
    name = "static"
    replans = False

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:  # pragma: no cover - unused
        return ReplanRecord(step, "NONE", 0.0, 0, 0.0)

    def on_answers(self, ctx: RunContext, answers: list[Answer]) -> None:
        return None


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RulesConfig:
    threshold: float = 0.10  # more than 10% under / over expected spend
    max_move_share: float = 0.30  # of the total budget, per pair
    min_move: float = 100.0 * MICROS  # moves under $100 are dropped


@dataclass(frozen=True)
class Move:
    giver: int
    taker: int
    amount: float


def rules_moves(
    budgets: FloatArray,
    spent: FloatArray,
    elapsed_share: float,
    total_budget: float,
    config: RulesConfig = RulesConfig(),
) -> tuple[list[Move], FloatArray]:
    """The pairwise moves between channels and the channel budgets after them.

    As the engine it imitates (`BudgetPacingEngine.propose_reallocations`): channels whose
    allocated budget is <= 0, or that expect nothing yet, are skipped; the pacing percentage
    and the deviation are rounded to two decimals before the (exclusive) threshold compare, so
    a channel at +10.004 % is on pace.
    """
    expected = budgets * elapsed_share
    active = (budgets > 0) & (expected > 0)
    safe = np.where(active, expected, 1.0)
    pacing_pct = np.round(spent / safe * 100.0, 2)
    deviation = np.round(pacing_pct - 100.0, 2)
    limit = config.threshold * 100.0
    under = np.where(active & (deviation < -limit), expected - spent, 0.0)
    over = np.where(active & (deviation > limit), spent - expected, 0.0)
    givers, takers = np.flatnonzero(under > 0), np.flatnonzero(over > 0)
    cap = config.max_move_share * total_budget
    amount = np.minimum(np.minimum(under[givers][:, None], over[takers][None, :]), cap)
    amount = np.where(amount >= config.min_move, amount, 0.0)
    after = budgets.astype(np.float64).copy()
    np.subtract.at(after, givers, amount.sum(axis=1))
    np.add.at(after, takers, amount.sum(axis=0))
    moves = [
        Move(int(givers[i]), int(takers[j]), float(amount[i, j]))
        for i, j in zip(*np.nonzero(amount), strict=True)
    ]
    return moves, after


class RulesStrategy:
    name = "rules"
    replans = True

    def __init__(self, config: RulesConfig = RulesConfig()) -> None:
        self.config = config
        self.budgets: FloatArray | None = None

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:
        t0 = time.perf_counter()
        w, s = ctx.world, ctx.state
        n_c = len(w.channel_ids)
        if self.budgets is None:
            self.budgets = np.bincount(w.channel, weights=w.booked, minlength=n_c).astype(float)
        spent_c = np.bincount(w.channel, weights=s.spent, minlength=n_c).astype(np.float64)
        moves, after = rules_moves(
            self.budgets, spent_c, step / w.n_steps, float(w.budget), self.config
        )
        old = s.effective_allocation(w.pg).copy()
        new = old.copy()
        remaining = np.maximum(old - s.spent, 0.0)
        delta = after - self.budgets
        for c in np.flatnonzero(delta != 0):  # the channels that moved: a few per replan
            members = w.channel == c
            if delta[c] < 0:
                target = max(0.0, after[c] - spent_c[c])
                have = remaining[members].sum()
                scale = target / have if have > 0 else 0.0
                new[members] = s.spent[members] + remaining[members] * scale
            else:
                weight = s.spent[members]
                if weight.sum() <= 0:
                    weight = w.booked[members].astype(np.float64)
                new[members] = old[members] + delta[c] * weight / weight.sum()
        self.budgets = after
        requests = 0
        pending = set(ctx.desk.pending_deals().tolist())
        for d in np.flatnonzero(w.pg & (np.abs(new - s.committed) >= self.config.min_move)):
            if int(d) in pending:
                continue
            kind = RequestKind.INCREASE if new[d] > s.committed[d] else RequestKind.DECREASE
            ctx.desk.submit(step, int(d), kind, int(np.floor(new[d])))
            requests += 1
        s.alloc = np.where(w.pg, s.alloc, new)
        churn = float(np.abs(new - old).sum())
        note = f"{len(moves)} moves"
        return ReplanRecord(step, "RULES", time.perf_counter() - t0, requests, churn, note)

    def on_answers(self, ctx: RunContext, answers: list[Answer]) -> None:
        return None


# --- greedy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GreedyConfig:
    threshold: float = 0.10  # projected more than 10% under its allocation: a giver
    window_hours: int = 24  # the recent rate's window (the reallocator's series length)
    min_participation: float = 0.05  # as the forecast floors it
    min_move: float = 1.0 * MICROS  # smaller changes are not made or asked


def greedy_moves(
    alloc: FloatArray,
    spent: FloatArray,
    projected: FloatArray,
    supply: FloatArray,
    value: FloatArray,
    can_take: npt.NDArray[np.bool_],
    floor: FloatArray,
    ceiling: FloatArray,
    free: float,
    threshold: float,
) -> FloatArray:
    """New allocations: every deal projected to end more than `threshold` under its allocation
    gives what it will not spend (down to max(projected, spent, floor)); the freed budget and
    `free` go to the deals with headroom (supply beyond their allocation, within `ceiling`), the
    most valuable first: the deals valued at least the median of those with headroom share it in
    proportion to their headroom, what they cannot take goes down the value order."""
    new = alloc.copy()
    giver = projected < (1.0 - threshold) * alloc
    keep = np.maximum(np.maximum(projected, spent), floor)
    new = np.where(giver, np.minimum(alloc, keep), alloc)
    # What a deal that cannot take gives (a guaranteed deal, through a request) is not free
    # until its seller agrees: only the others' releases are handed out now.
    pot = free + float(np.where(can_take, alloc - new, 0.0).sum())
    headroom = np.where(can_take & ~giver, np.maximum(np.minimum(supply, ceiling) - alloc, 0), 0)
    takers = np.flatnonzero(headroom > 0)
    if pot <= 0 or takers.size == 0:
        return new
    top = takers[value[takers] >= np.median(value[takers])]
    room = headroom[top]
    share = np.minimum(room, pot * room / room.sum())
    new[top] += share
    pot -= float(share.sum())
    for d in takers[np.argsort(-value[takers], kind="stable")]:
        if pot <= 0:
            break
        add = min(pot, float(headroom[d] - (new[d] - alloc[d])))
        if add > 0:
            new[d] += add
            pot -= add
    return new


class GreedyStrategy:
    """What a trader's tool commonly does (`greedy_moves` every `replan_hours`): projections
    from each deal's last-day rate per opportunity hour, headroom from the rate at full
    participation. Buyer-paced deals take their new totals at once; a guaranteed deal projected
    under gives through a DECREASE request (its budget is free once the seller agrees) and
    never takes. Deal minimums and maximums, the reallocator's automatic step (an even share
    of what the active deals hold) and seller/channel maximums bound every increase."""

    name = "greedy"
    replans = True

    def __init__(self, config: GreedyConfig = GreedyConfig()) -> None:
        self.config = config

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:
        t0 = time.perf_counter()
        w, s, cfg = ctx.world, ctx.state, self.config
        a = max(0, step - cfg.window_hours * w.scenario.steps_per_hour)
        profile = w.deal_profile
        opportunity = w.profile_weight[profile, a:step].sum(axis=1)
        recent = s.spend_hist[:, a:step].sum(axis=1)
        rate = np.divide(recent, opportunity, out=np.zeros(w.n_deals), where=opportunity > 0)
        left = w.profile_left[profile, step]
        part = np.where(w.pg, 1.0, np.clip(s.participation, cfg.min_participation, 1.0))
        old = s.effective_allocation(w.pg).copy()
        projected = s.spent + rate * left
        supply = s.spent + rate / part * left
        held = np.maximum(old, s.spent)
        free = max(0.0, float(w.budget) - float(held.sum()))
        remaining = np.maximum(old - s.spent, 0.0)
        step_abs = remaining.sum() / max(w.n_deals, 1)
        ceiling = np.minimum(
            w.max_allocation.astype(np.float64), old + np.maximum(step_abs, remaining)
        )
        ceiling = np.minimum(ceiling, old + self._group_room(w, held))
        pending = set(ctx.desk.pending_deals().tolist())
        frozen = np.isin(np.arange(w.n_deals), list(pending))
        new = greedy_moves(
            old,
            s.spent,
            np.where(frozen, old, projected),
            supply,
            w.value_per_unit,
            ~w.pg & ~frozen,
            w.min_allocation.astype(np.float64),
            ceiling,
            free,
            cfg.threshold,
        )
        requests = 0
        for d in np.flatnonzero(w.pg & (old - new >= cfg.min_move) & ~frozen):
            ctx.desk.submit(step, int(d), RequestKind.DECREASE, int(np.floor(new[d])))
            requests += 1
        s.alloc = np.where(w.pg, s.alloc, new)
        churn = float(np.abs(new - old).sum())
        return ReplanRecord(step, "GREEDY", time.perf_counter() - t0, requests, churn)

    @staticmethod
    def _group_room(w: World, held: FloatArray) -> FloatArray:
        """Per deal: what its seller's and its channel's maximum still allow (shared by the
        deals of the group: each may take at most the group's room)."""
        room = np.full(w.n_deals, np.inf)
        for table, codes, ids in (
            (w.seller_limits, w.seller, w.seller_ids),
            (w.channel_limits, w.channel, w.channel_ids),
        ):
            frame = table.reindex(list(ids))
            hi = frame["max_share"].to_numpy(np.float64) * float(w.budget)
            hi = np.fmin(hi, frame["max_total"].to_numpy(np.float64))
            totals = np.bincount(codes, weights=held, minlength=len(ids))
            group = np.nan_to_num(np.maximum(hi - totals, 0.0), nan=np.inf)
            room = np.minimum(room, group[codes])
        return room

    def on_answers(self, ctx: RunContext, answers: list[Answer]) -> None:
        return None


# --- reallocator ---------------------------------------------------------------------------


def _record_moves(state: RunState, deal_ids: npt.NDArray[Any], at: int, delta: IntArray) -> None:
    """Keep what each plan changed per deal, as the audit store would (RequestHistory.moves)."""
    moved = delta != 0
    log = state.extra.setdefault("moves", [])
    assert isinstance(log, list)
    log.append(
        pd.DataFrame(
            {
                "deal_id": np.asarray(deal_ids)[moved].astype(str),
                "planned_at": float(at),
                "delta": delta[moved].astype(np.int64),
            }
        )
    )


def _with_moves(ctx: RunContext) -> RequestHistory:
    """The seller desk's request history plus the plans' moves."""
    history = ctx.desk.history()
    log = ctx.state.extra.get("moves")
    if not isinstance(log, list) or not log:
        return history
    return replace(history, moves=pd.concat(log, ignore_index=True))


class ReallocatorStrategy:
    name = "reallocator"
    replans = True

    def __init__(self, planner: Planner) -> None:
        self.planner = planner

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:
        w, s = ctx.world, ctx.state
        snapshot = build_snapshot(w, s, step, ctx.policy)
        window = timedelta(hours=w.scenario.replan_hours)
        view = self._plan(ctx, step, snapshot, window)
        current = current_totals(w, s)
        if view.rejected:
            return ReplanRecord(step, view.status, view.wall_seconds, 0, 0.0, view.note[:200])
        new = view.new_total.astype(np.int64)
        _record_moves(s, w.deal_ids, int(w.at(step).timestamp()), new - current)
        changed = (~w.pg) & (new != current)
        if view.ahead is not None:
            s.pace = np.where(view.ahead & ~w.pg, max(ctx.policy.pace_ahead, 1.0), 1.0)
        s.alloc = np.where(w.pg, s.alloc, np.where(changed, new, s.alloc))
        as_of = int(w.at(step).timestamp())
        s.plan_applied_at = np.where(changed, as_of, s.plan_applied_at)
        spent = np.floor(s.spent + 1e-6).astype(np.int64)
        s.delivered_at_plan = np.where(changed, spent, s.delivered_at_plan)
        index = {d: i for i, d in enumerate(w.deal_ids.tolist())}
        for r in view.requests:
            ctx.desk.submit(step, index[r.deal_id], r.kind, r.target_total, ref=r.request_id)
        churn = float(np.abs(new - current).sum())
        note = f"{view.violations} violations" if view.violations else ""
        return ReplanRecord(step, view.status, view.wall_seconds, len(view.requests), churn, note)

    def _plan(
        self, ctx: RunContext, step: int, snapshot: CampaignSnapshot, window: timedelta
    ) -> PlanView:
        return self.planner.plan(snapshot, _with_moves(ctx), window)

    def on_answers(self, ctx: RunContext, answers: list[Answer]) -> None:
        w, s = ctx.world, ctx.state
        for a in answers:
            at = w.at(a.step)
            if a.committed_after != a.committed_before:
                s.plan_applied_at[a.deal] = int(at.timestamp())
                s.delivered_at_plan[a.deal] = int(np.floor(s.spent[a.deal] + 1e-6))
            if a.response is not SellerResponse.PENDING:
                self.planner.record_answer(a.ref, a.response, a.accepted_total, at)


class UnstabilisedStrategy(ReallocatorStrategy):
    """The ablation: the reallocator with no stabilisation - no churn weight (churn_deal,
    churn_relative and churn_channel 0) and the raw forecasts (cut_confidence 0, no dead band or
    hysteresis: move_band, reversal_band and reversal_churn 0; no extra charge on seller requests:
    churn_request 0)."""

    name = "unstabilised"

    def replan(self, ctx: RunContext, step: int) -> ReplanRecord:
        raw = replace(
            ctx.policy,
            churn_deal=0.0,
            churn_relative=0.0,
            churn_channel=0.0,
            cut_confidence=0.0,
            move_band=0.0,
            reversal_band=0.0,
            reversal_churn=0.0,
            churn_request=0.0,
        )
        return super().replan(replace(ctx, policy=raw), step)


class ForesightStrategy(ReallocatorStrategy):
    """The reallocator planning with each deal's true remaining capacity (the world's full-speed
    spend from now to the flight's end, stalls included) given as the caller's own forecast
    (`capacity_forecast`), in-process or over gRPC like the reallocator. No real system has
    this: it measures what the forecast costs, the rest of the gap to the oracle being what
    replanning every few hours, step limits, pacers and sellers cost."""

    name = "foresight"

    def _plan(
        self, ctx: RunContext, step: int, snapshot: CampaignSnapshot, window: timedelta
    ) -> PlanView:
        truth = np.floor(ctx.world.capacity_left[:, step]).astype(np.int64)
        deals = snapshot.deals.assign(capacity_forecast=truth)
        return self.planner.plan(replace(snapshot, deals=deals), _with_moves(ctx), window)

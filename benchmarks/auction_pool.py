"""An independent, minute-level auction simulator of a shared daily pool, calling reallocator the
way an outside orchestration service would: generated stubs over a real gRPC channel to a
started `reallocator serve` (its own temporary SQLite store), one Replan an hour with the
default policy. Nothing from reallocator.sim, .core, .batch or .replay is used: the world
(`auction_world.py`), the pacers, the baselines and the metrics are all written here.

The setting (an outside reviewer's, as described to us): 30 "campaigns" are the deals of one
shared pool with a daily budget (9,000 USD a day), simulated minute by minute over D days.

- Supply and auctions: `auction_world.py` (diurnal curves per deal, 40 % of the deals without
  supply from 00:00 to 06:00, drift, noise, a collapse and a burst; second-price auctions
  against a per-deal bid).
- The daily pool. Every day starts from the booking (the pool split equally: 300 USD a deal),
  whatever the strategy did the day before; a strategy moves the day's allocations every hour
  (at hh:00, 24 times a day, 00:00 included). To reallocator the pool is an always-on campaign
  with one budget, PERIOD_DAY 9,000 USD, no dates, EVEN pacing, time zone UTC: the README's
  "campaign without dates or flights ... planned over the current instance of its longest
  budget period (today, for a daily budget)". So each deal's `allocation` is its allocation
  for today and `delivered` its delivery today (it resets at midnight, as the allocations do).
- Each deal's own pacer (a probabilistic throttle, as DSPs run them): every minute it enters
  each auction with probability p = clip(left / expected, 0, 1), `left` = today's allocation
  minus today's spend, `expected` = what the rest of the day would cost at full participation
  by its own estimate: spend per auction entered (a prior, then learnt from its own wins, minutes
  cut by the budget left out) x the opportunities it expects for the rest of the day (day 1: a
  flat curve at a rough prior of its volume; later days: yesterday's realised opportunities, hour
  by hour: not the true rate). It never spends beyond its allocation: in a minute, wins are
  served in order while their running cost fits what is left.
- The snapshot an orchestrator sends every hour (per-deal messages): allocation, spend and
  impressions today, ecpm (the deal's eCPM today, else its median clearing CPM), the value per
  unit (variant b), supply today (avails = bid opportunities, bids, wins) with the last hour's
  participation rate (bids / avails), and `recent_delivery`: hourly buckets over the last 24 h
  (`--series-hours`; spend, impressions, avails, wins; fewer on the first day). `--no-series`
  sends only the totals.

Strategies (the same world and random draws for each):

- `fixed`: the booking, never moved.
- `greedy` (the reviewer's: "move money from projected under-spenders to projected
  over-spenders, in proportion"): every hour each deal's end-of-day spend is projected from the
  last 3 hours (across midnight), at full participation (spend / participation; a deal that
  entered no auction, out of budget, from its opportunities x its spend per auction):
  projected = spent + rate x hours left. A deal projected more than 10 % under its allocation
  gives what it will not spend (down to max(projected, spent)); deals projected beyond their
  allocation take it in proportion to their projected excess, each at most its excess (so when
  they cannot absorb all of it, every giver gives proportionally less: nothing is unplaced).
- `reallocator`: every hour a Replan (default policy, FULL view, recorded); each deal's new
  total (plan.deals[].new_total) becomes its allocation at once. As the README's life cycle asks
  of a caller that applies a plan, each plan is approved (ReviewPlan, when PROPOSED) and
  confirmed applied (ConfirmApplied, apply_time = the snapshot's as_of), so the service plans
  from the applied-plan history it keeps (hysteresis, reversal charges, last application). The
  plan's schedules, throttles and pacing modes are not used: the deals' own pacers run as above.
- `reallocator-dry`: the same with dry_run (nothing recorded, no life cycle: no history).

Metrics (per seed, then the median over seeds): utilisation (spend / pool; the mean day, the
worst day and each day), utilisation and value as a share of the hindsight reference (per day,
the pool filled by value over each deal's realised capacity at full participation at its bid),
overspend (of the pool, and of any deal beyond its allocation), churn per day (sum over replans
of |delta allocation| / pool), reversed movement (per deal and day, sum(M - |N|) / sum(M), moves
under 1 USD ignored), deals cut to their spend (allocation - spent < 0.1 % of booking right after
a move that lowered it) while they still had supply later that day (> 1 % of booking at full
participation), of which "dead" (never given room again that day) and the supply they missed,
flip-flops (a move one way and the next the other way within 3 hours, both >= 1 % of the
booking), minutes alive (a deal can afford an impression and has a winnable opportunity)
against fixed, unplaced budget (pool - sum of allocations after a move; the worst hour;
"unpl-h": hours with over 1 % unplaced while some deal could buy more than it holds),
misplaced budget at 12:00 (the smaller of what deals hold beyond what they can still buy today
and what other deals could buy beyond what they hold: money a hindsight planner would still
move; the worst day), plans giving a deal less than its spend, Replan errors and latency (p50 /
p99 as the client sees it).

    .venv/bin/python benchmarks/auction_pool.py [--seeds 5] [--days 3] [--deals 30]
        [--strategies fixed greedy reallocator reallocator-dry] [--no-series] [--quick]
        [--scenarios equal-series equal-noseries varied-series varied-noseries]
        [--examples 4] [--series-hours 48]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import replan_scaling
from auction_world import MINUTES, FloatArray, World, build_world, hindsight

from reallocator.v1 import common_pb2, pacing_pb2, plan_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; UTC, so no DST
MICROS = 1_000_000
CUT_SHARE = 0.001  # "at its spend": allocation - spent below 0.1 % of the booking
SUPPLY_SHARE = 0.01  # "had supply later": > 1 % of the booking at full participation
MOVE_FLOOR = 1.0  # USD; smaller moves are ignored by the movement metrics
MISPLACED_HOUR = 12  # when "misplaced" budget is measured
FLIP_SHARE = 0.01  # a flip-flop: both moves at least 1 % of the booking (3 USD)
SCENARIOS = {
    "equal-series": (False, True),
    "equal-noseries": (False, False),
    "varied-series": (True, True),
    "varied-noseries": (True, False),
}


# ---------------------------------------------------------------- the server


def started_server(root: Path, workers: int = 1) -> AbstractContextManager[str]:
    """`reallocator serve` with default settings on loopback, its audit store under `root`
    (replan_scaling's, the service started as a README reader starts it)."""
    return replan_scaling.started_server(workers, store=root)


# ---------------------------------------------------------------- the simulation state


@dataclass
class State:
    """What an orchestrator knows at an hour boundary (all money in USD)."""

    world: World
    day: int
    hour: int  # hour of the day
    alloc: FloatArray  # today's allocations
    spent: FloatArray  # today's spend
    imps: FloatArray
    avails: FloatArray  # today's totals
    bids: FloatArray
    wins: FloatArray
    h_spend: FloatArray  # (hours so far in the run) x deals
    h_imps: FloatArray
    h_avails: FloatArray
    h_bids: FloatArray
    h_wins: FloatArray
    spa: FloatArray  # the pacers' spend per auction entered

    @property
    def global_hour(self) -> int:
        return self.day * 24 + self.hour

    @property
    def as_of(self) -> datetime:
        return START + timedelta(hours=self.global_hour)


class Strategy(Protocol):
    name: str

    def replan(self, state: State) -> FloatArray: ...


class Fixed:
    name = "fixed"

    def replan(self, state: State) -> FloatArray:
        return state.alloc


class Greedy:
    name = "greedy"
    window = 3  # hours

    def replan(self, state: State) -> FloatArray:
        h = state.global_hour
        lo = max(0, h - self.window)
        if h == lo:
            return state.alloc
        spend = state.h_spend[lo:h].sum(axis=0)
        avails = state.h_avails[lo:h].sum(axis=0)
        bids = state.h_bids[lo:h].sum(axis=0)
        participation = np.divide(bids, avails, out=np.ones_like(bids), where=avails > 0)
        full = np.where(
            bids > 0,
            spend / np.maximum(participation, 1e-9),
            avails * state.spa,  # entered no auction: out of budget
        ) / (h - lo)
        left_hours = 24 - state.hour
        projected = state.spent + full * left_hours
        alloc = state.alloc
        under = projected < 0.9 * alloc
        give = np.where(under, alloc - np.maximum(projected, state.spent), 0.0)
        excess = np.where(projected > alloc, projected - alloc, 0.0)
        freed, room = give.sum(), excess.sum()
        if freed <= 0 or room <= 0:
            return alloc
        moved = min(freed, room)
        return np.asarray(alloc - give * (moved / freed) + excess * (moved / room))


@dataclass
class PlanRecord:
    """What a Replan answered, kept for the anomaly report."""

    hour: int  # global hour
    status: str
    unspendable: float
    summary: str
    deals: dict[str, tuple[str, str, str, float, float, float, str]]
    # deal_id -> (reason, binding, pacing, capacity_forecast, old, new remaining, rationale)


class Reallocator:
    def __init__(
        self,
        stub: rpc.ReallocatorServiceStub,
        campaign: str,
        series: bool,
        dry_run: bool,
        series_hours: int = 24,
    ) -> None:
        self.stub = stub
        self.campaign = campaign
        self.series = series
        self.series_hours = series_hours
        self.dry_run = dry_run
        self.name = "reallocator-dry" if dry_run else "reallocator"
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.lifecycle_errors: list[str] = []
        self.records: list[PlanRecord] = []
        self.below_spend = 0
        self.zero = 0

    def snapshot(self, state: State) -> snapshot_pb2.CampaignSnapshot:
        w = state.world
        snap = snapshot_pb2.CampaignSnapshot(
            campaign_id=self.campaign, time_zone="UTC", currency_code="USD"
        )
        snap.as_of.FromDatetime(state.as_of)
        snap.pacing.budget_type = common_pb2.BUDGET_TYPE_SPEND
        snap.pacing.mode = common_pb2.PACING_MODE_EVEN
        snap.pacing.budgets.append(
            pacing_pb2.Budget(period=common_pb2.PERIOD_DAY, amount=round(w.budget * MICROS))
        )
        for s in sorted(set(w.seller)):
            snap.sellers.add(seller_id=s)
        for c in sorted(set(w.channel)):
            snap.channels.add(channel_id=c)
        h = state.global_hour
        lo = max(0, h - self.series_hours)
        last = max(0, h - 1)
        for d in range(w.n_deals):
            deal = snap.deals.add(
                deal_id=f"d{d:02d}",
                seller_id=w.seller[d],
                channel_id=w.channel[d],
                deal_type=common_pb2.DEAL_TYPE_PRIVATE_AUCTION,
                allocation=round(state.alloc[d] * MICROS),
                value_per_unit=float(w.value[d]),
            )
            spent = round(state.spent[d] * MICROS)
            deal.delivered.spend_micros = spent
            deal.delivered.impressions = int(state.imps[d])
            ecpm = state.spent[d] / state.imps[d] * 1000 if state.imps[d] > 0 else w.cpm[d]
            deal.ecpm_micros = max(1, round(ecpm * MICROS))
            deal.supply.avails = int(state.avails[d])
            deal.supply.bids = int(state.bids[d])
            deal.supply.wins = int(state.wins[d])
            if h > 0 and state.h_avails[last, d] > 0 and state.h_bids[last, d] > 0:
                deal.supply.participation_rate = min(
                    1.0, float(state.h_bids[last, d] / state.h_avails[last, d])
                )
            if self.series and h > lo:
                series = deal.recent_delivery
                series.window_start.FromDatetime(START + timedelta(hours=lo))
                series.bucket_width.FromTimedelta(timedelta(hours=1))
                series.spend_micros.extend(np.round(state.h_spend[lo:h, d] * MICROS).astype(int))
                series.impressions.extend(state.h_imps[lo:h, d].astype(int))
                series.avails.extend(state.h_avails[lo:h, d].astype(int))
                series.wins.extend(state.h_wins[lo:h, d].astype(int))
        return snap

    def replan(self, state: State) -> FloatArray:
        request = pb.ReplanRequest(
            snapshot=self.snapshot(state), dry_run=self.dry_run, view=pb.PLAN_VIEW_FULL
        )
        t0 = time.perf_counter()
        try:
            plan = self.stub.Replan(request, timeout=60).plan
        except grpc.RpcError as exc:
            self.errors.append(f"h{state.global_hour}: {exc.code().name}: {exc.details()}")
            return state.alloc
        self.latencies.append(time.perf_counter() - t0)
        totals = {d.deal_id: d.new_total for d in plan.deals}
        alloc = state.alloc.copy()
        for d in range(state.world.n_deals):
            total = totals.get(f"d{d:02d}")
            if total is None:
                continue
            new = total / MICROS
            if new < state.spent[d] - 1e-6:
                self.below_spend += 1
            if total == 0 and state.spent[d] == 0:
                self.zero += 1
            alloc[d] = max(new, state.spent[d])
        self.records.append(
            PlanRecord(
                hour=state.global_hour,
                status=plan_pb2.PlanStatus.Name(plan.status),
                unspendable=plan.unspendable / MICROS,
                summary=plan.rationale.summary,
                deals={
                    d.deal_id: (
                        plan_pb2.ReasonCode.Name(d.reason).removeprefix("REASON_CODE_"),
                        plan_pb2.BindingConstraint.Name(d.binding).removeprefix(
                            "BINDING_CONSTRAINT_"
                        ),
                        plan_pb2.DealPacing.Name(d.pacing).removeprefix("DEAL_PACING_"),
                        d.capacity_forecast / MICROS,
                        d.old_allocation / MICROS,
                        d.new_allocation / MICROS,
                        d.rationale,
                    )
                    for d in plan.deals
                },
            )
        )
        if not self.dry_run and plan.name:
            self._apply(plan, state.as_of)
        return alloc

    def _apply(self, plan: Any, at: datetime) -> None:
        try:
            if plan.state == plan_pb2.PLAN_STATE_PROPOSED:
                review = pb.ReviewPlanRequest(
                    name=plan.name,
                    etag=plan.etag,
                    decision=pb.REVIEW_DECISION_APPROVE,
                    reviewer="auction-pool",
                )
                plan = self.stub.ReviewPlan(review, timeout=60).plan
            confirm = pb.ConfirmAppliedRequest(name=plan.name, etag=plan.etag, actor="auction-pool")
            confirm.apply_time.FromDatetime(at)
            self.stub.ConfirmApplied(confirm, timeout=60)
        except grpc.RpcError as exc:
            self.lifecycle_errors.append(f"{exc.code().name}: {exc.details()}")


# ---------------------------------------------------------------- the minute loop


@dataclass
class Run:
    strategy: str
    world: World
    spend: FloatArray  # days x deals
    value: float
    alloc_before: FloatArray  # hours x deals (before the hour's move)
    alloc_after: FloatArray
    spent_at: FloatArray  # hours x deals: today's spend at the hour
    alive_minutes: FloatArray  # per deal
    overspend_deal: float
    seconds: float
    realloc: Reallocator | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def simulate(world: World, strategy: Strategy) -> Run:
    t_start = time.perf_counter()
    n, days = world.n_deals, world.days
    hours = days * 24
    rng = np.random.default_rng([world.seed, 104729])  # the losing bids' draws, as the world's
    h_spend, h_imps, h_avails, h_bids, h_wins = (np.zeros((hours, n)) for _ in range(5))
    alloc_before, alloc_after, spent_at = (np.zeros((hours, n)) for _ in range(3))
    day_spend = np.zeros((days, n))
    alive = np.zeros(n)
    overspend_deal = 0.0
    spa_num = world.prior_spa * 3000.0
    spa_den = np.full(n, 3000.0)
    est = np.repeat(world.prior_avails[:, None], MINUTES, axis=1)  # expected avails per minute
    lose = world.avails - world.winnable
    afford = world.bid / 1000
    for day in range(days):
        alloc = world.booking.copy()
        spent = np.zeros(n)
        imps, avails, bids, wins = (np.zeros(n) for _ in range(4))
        # expected opportunities from minute m to the end of the day
        rest = np.cumsum(est[:, ::-1], axis=1)[:, ::-1].copy()
        for m in range(MINUTES):
            t = day * MINUTES + m
            if m % 60 == 0:
                h = t // 60
                alloc_before[h] = alloc
                spent_at[h] = spent
                state = State(
                    world, day, m // 60, alloc, spent, imps, avails, bids, wins,
                    h_spend, h_imps, h_avails, h_bids, h_wins, spa_num / spa_den,
                )  # fmt: skip
                alloc = np.asarray(strategy.replan(state), dtype=np.float64).copy()
                alloc_after[h] = alloc
            left = alloc - spent
            expected = spa_num / spa_den * rest[:, m]
            p = np.where(
                left > 1e-9,
                np.where(expected > 1e-12, np.clip(left / np.maximum(expected, 1e-12), 0, 1), 1),
                0.0,
            )
            alive += (left >= afford) & (world.winnable[:, t] > 0)
            a, b = world.offsets[t], world.offsets[t + 1]
            dd = world.opp_deal[a:b]
            price = world.opp_price[a:b]
            entered = world.opp_u[a:b] < p[dd]
            x = np.where(entered, price, 0.0)
            cs = np.cumsum(x)
            counts = world.winnable[:, t]
            starts = np.cumsum(counts) - counts
            base = np.concatenate(([0.0], cs))[starts]
            served = entered & (cs - np.repeat(base, counts) <= left[dd] + 1e-12)
            s = np.bincount(dd, weights=price * served, minlength=n)
            won = np.bincount(dd, weights=served, minlength=n).astype(np.float64)
            tried = np.bincount(dd, weights=entered, minlength=n).astype(np.float64)
            bid = tried + rng.binomial(lose[:, t], p)
            free = tried == won  # not cut by the budget left: a fair sample of its price
            spa_num += np.where(free, s, 0.0)
            spa_den += np.where(free, bid, 0.0)
            spent += s
            imps += won
            wins += won
            bids += bid
            avails += world.avails[:, t]
            h = t // 60
            h_spend[h] += s
            h_imps[h] += won
            h_wins[h] += won
            h_bids[h] += bid
            h_avails[h] += world.avails[:, t]
        overspend_deal = max(overspend_deal, float((spent - alloc).max()))
        day_spend[day] = spent
        # the pacers' curve for tomorrow: today's opportunities, hour by hour
        today = h_avails[day * 24 : day * 24 + 24].T / 60.0
        est = np.repeat(today, 60, axis=1)
    run = Run(
        strategy=strategy.name,
        world=world,
        spend=day_spend,
        value=float((day_spend * world.value).sum()),
        alloc_before=alloc_before,
        alloc_after=alloc_after,
        spent_at=spent_at,
        alive_minutes=alive,
        overspend_deal=max(0.0, overspend_deal),
        seconds=time.perf_counter() - t_start,
        realloc=strategy if isinstance(strategy, Reallocator) else None,
    )
    return run


# ---------------------------------------------------------------- metrics


@dataclass
class Event:
    kind: str
    day: int
    hour: int  # hour of the day
    deal: int
    text: str


def supply_after(world: World, day: int, hour: int) -> FloatArray:
    """Per deal, USD it could buy at full participation from the hour to the end of the day."""
    a = day * MINUTES + hour * 60
    return np.asarray(world.capacity[:, a : (day + 1) * MINUTES].sum(axis=1), dtype=np.float64)


def measure(run: Run, fixed_alive: FloatArray | None) -> list[Event]:
    w = run.world
    n, days, budget = w.n_deals, w.days, w.budget
    hs_spend, hs_value = hindsight(w)
    m = run.metrics
    day_util = run.spend.sum(axis=1) / budget
    m["util"] = 100 * float(day_util.mean())
    m["util_min"] = 100 * float(day_util.min())
    for day in range(days):
        m[f"util_d{day + 1}"] = 100 * float(day_util[day])
    m["util_hs"] = 100 * float(run.spend.sum() / hs_spend.sum())
    m["value_hs"] = 100 * run.value / float(hs_value.sum())
    m["overspend_pool"] = float(np.maximum(run.spend.sum(axis=1) - budget, 0).max())
    m["overspend_deal"] = run.overspend_deal
    move = run.alloc_after - run.alloc_before
    m["churn"] = float(np.abs(move).sum() / budget / days)
    events: list[Event] = []
    total_m = reversed_m = 0.0
    cuts = dead = flips = 0
    dead_lost = 0.0
    unplaced_max = []
    unplaced_supply_hours = 0
    misplaced = []
    floor = CUT_SHARE * w.booking
    for day in range(days):
        sl = slice(day * 24, day * 24 + 24)
        mv = np.where(np.abs(move[sl]) >= MOVE_FLOOR, move[sl], 0.0)
        big_m = np.abs(mv).sum(axis=0)
        total_m += float(big_m.sum())
        reversed_m += float((big_m - np.abs(mv.sum(axis=0))).sum())
        after, spent = run.alloc_after[sl], run.spent_at[sl]
        at_spend = after - spent < floor
        unplaced = budget - after.sum(axis=1)
        unplaced_max.append(float(unplaced.max()))
        for hour in range(24):
            later = supply_after(w, day, hour)
            room = after[hour] - spent[hour]
            if hour == MISPLACED_HOUR:
                stranded = np.maximum(room - later, 0).sum()  # held where it cannot be spent
                wanted = np.maximum(later - room, 0).sum()  # supply beyond what deals hold
                misplaced.append(float(min(stranded, wanted)))
            if unplaced[hour] > 0.01 * budget and (later > room + 0.01 * w.booking).any():
                unplaced_supply_hours += 1
                short = np.flatnonzero(later > room + 0.01 * w.booking)
                events.append(
                    Event(
                        "unplaced",
                        day,
                        hour,
                        int(short[np.argmax((later - room)[short])]),
                        f"{unplaced[hour]:,.0f} USD unplaced while {short.size} deals could buy "
                        f"{(later - room)[short].sum():,.0f} USD more than they hold",
                    )
                )
            for d in map(int, np.flatnonzero(at_spend[hour] & (mv[hour] < 0))):
                if later[d] <= SUPPLY_SHARE * w.booking[d]:
                    continue
                cuts += 1
                never = bool(at_spend[hour:, d].all())
                kind = "dead" if never else "cut"
                if never:
                    dead += 1
                    dead_lost += float(later[d])
                events.append(
                    Event(
                        kind,
                        day,
                        hour,
                        int(d),
                        f"cut {-mv[hour, d]:,.2f} USD to its spend {spent[hour, d]:,.2f} USD "
                        f"(allocation {run.alloc_before[day * 24 + hour, d]:,.2f}); could buy "
                        f"{later[d]:,.2f} USD later today"
                        + ("; never given room again that day" if never else ""),
                    )
                )
        for d in range(n):
            nz = [(hour, float(mv[hour, d])) for hour in range(24) if mv[hour, d] != 0]
            for (h1, v1), (h2, v2) in itertools.pairwise(nz):
                big = min(abs(v1), abs(v2)) >= FLIP_SHARE * w.booking[d]
                if big and np.sign(v1) != np.sign(v2) and h2 - h1 <= 3:
                    flips += 1
                    events.append(
                        Event(
                            "flip",
                            day,
                            h1,
                            d,
                            f"{v1:+,.2f} USD at {h1:02d}:00, then {v2:+,.2f} USD at {h2:02d}:00",
                        )
                    )
    m["reversed"] = 100 * reversed_m / total_m if total_m > 0 else 0.0
    m["cuts"] = cuts
    m["dead"] = dead
    m["dead_lost"] = dead_lost
    m["flips"] = flips
    m["unplaced_max"] = 100 * max(unplaced_max) / budget
    m["unplaced_hours"] = unplaced_supply_hours
    m["misplaced"] = 100 * max(misplaced) / budget
    m["alive"] = (
        float(run.alive_minutes.sum() / fixed_alive.sum()) if fixed_alive is not None else 1.0
    )
    r = run.realloc
    if r is not None:
        lat = sorted(r.latencies) or [float("nan")]
        m["p50_ms"] = 1000 * statistics.median(lat)
        m["p99_ms"] = 1000 * lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        m["errors"] = len(r.errors)
        m["below_spend"] = r.below_spend
        m["zero"] = r.zero
        m["unspendable_max"] = 100 * max((p.unspendable for p in r.records), default=0) / budget
    return events


# ---------------------------------------------------------------- report

COLUMNS = [
    ("util", "util%", "{:.1f}"),
    ("util_min", "worst-day%", "{:.1f}"),
    ("util_hs", "util/hs%", "{:.1f}"),
    ("value_hs", "value/hs%", "{:.1f}"),
    ("overspend_pool", "over$pool", "{:.0f}"),
    ("overspend_deal", "over$deal", "{:.2f}"),
    ("churn", "churn/day", "{:.2f}"),
    ("reversed", "reversed%", "{:.0f}"),
    ("cuts", "cut+sup", "{:.0f}"),
    ("dead", "dead", "{:.0f}"),
    ("dead_lost", "dead-lost$", "{:.0f}"),
    ("flips", "flips", "{:.0f}"),
    ("alive", "alive/fix", "{:.2f}"),
    ("unplaced_max", "unpl-max%", "{:.1f}"),
    ("unplaced_hours", "unpl-h", "{:.0f}"),
    ("misplaced", "misplaced%", "{:.1f}"),
    ("below_spend", "<spend", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("p50_ms", "p50ms", "{:.1f}"),
    ("p99_ms", "p99ms", "{:.1f}"),
]


def table(scenario: str, runs: dict[str, list[Run]]) -> str:
    days = next(iter(runs.values()))[0].world.days
    per_day = [(f"util_d{i}", f"d{i}%", "{:.1f}") for i in range(1, days + 1)]
    columns = COLUMNS[:2] + per_day + COLUMNS[2:]
    head = ["strategy"] + [c[1] for c in columns]
    rows = [head]
    for name, rs in runs.items():
        row = [name]
        for key, _, fmt in columns:
            vals = [r.metrics[key] for r in rs if key in r.metrics]
            row.append(fmt.format(statistics.median(vals)) if vals else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"## {scenario} (medians over {len(next(iter(runs.values())))} seeds)"]
    for r in rows:
        lines.append("  ".join(v.rjust(wd) if i else v.ljust(wd) for i, (v, wd) in
                               enumerate(zip(r, widths, strict=True))))  # fmt: skip
    return "\n".join(lines)


def describe(run: Run, ev: Event, shown: int) -> str:
    """One anomaly with what the plans around it said about the deal."""
    w = run.world
    d = f"d{ev.deal:02d}"
    gh = ev.day * 24 + ev.hour
    lines = [
        f"[{ev.kind}] seed {w.seed} day {ev.day + 1} {ev.hour:02d}:00 deal {d} "
        f"({w.channel[ev.deal]}, value {w.value[ev.deal]:.2f}, "
        f"{'no night supply' if w.night[ev.deal] else 'night supply'}): {ev.text}"
    ]
    if run.realloc is None:
        return lines[0]
    cap = w.capacity[ev.deal]
    for rec in run.realloc.records:
        if not gh - 2 <= rec.hour <= gh + min(shown, 3) or rec.hour // 24 != ev.day:
            continue
        hod = rec.hour % 24
        reason, binding, pacing, forecast, old, new, text = rec.deals[d]
        before, after = run.alloc_before[rec.hour, ev.deal], run.alloc_after[rec.hour, ev.deal]
        a = rec.hour * 60
        last_h = cap[max(0, a - 60) : a].sum()
        rest = cap[a : (ev.day + 1) * MINUTES].sum()
        lines.append(
            f"    {hod:02d}:00 spent {run.spent_at[rec.hour, ev.deal]:8.2f}  alloc {before:8.2f}"
            " -> "
            f"{after:8.2f} (remaining {old:.2f} -> {new:.2f})"
            f"  supply last h {last_h:7.2f}, rest of day {rest:8.2f}  | {reason}/{binding}/"
            f"{pacing} forecast {forecast:.2f} (plan {rec.status}, unspendable "
            f"{rec.unspendable:,.0f})"
        )
        lines.append(f"        rationale: {text}")
        if ev.kind == "unplaced" and rec.hour == gh:
            lines.append(f"        summary: {rec.summary}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--deals", type=int, default=30)
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["fixed", "greedy", "reallocator", "reallocator-dry"],
        choices=["fixed", "greedy", "reallocator", "reallocator-dry"],
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument(
        "--no-series", action="store_true", help="only the no-series scenarios (to-date totals)"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 day")
    parser.add_argument("--examples", type=int, default=3, help="anomaly examples per kind")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--series-hours", type=int, default=24, help="hours of recent_delivery sent (proto: 48)"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.days = 1, 1
    scenarios = [s for s in args.scenarios if not args.no_series or s.endswith("noseries")]
    strategies = ["fixed", *[s for s in args.strategies if s != "fixed"]]
    t_all = time.perf_counter()
    results: dict[str, dict[str, list[Run]]] = {}
    events: dict[tuple[str, str], list[tuple[Run, Event]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="auction-pool-") as tmp,
        started_server(Path(tmp), args.workers) as target,
        grpc.insecure_channel(target) as channel,
    ):
        stub = rpc.ReallocatorServiceStub(channel)
        for scenario in scenarios:
            varied, series = SCENARIOS[scenario]
            results[scenario] = {s: [] for s in strategies}
            for seed in range(args.seeds):
                world = build_world(seed, args.deals, args.days, varied_values=varied)
                fixed_alive = None
                for name in strategies:
                    strategy: Strategy
                    if name == "fixed":
                        strategy = Fixed()
                    elif name == "greedy":
                        strategy = Greedy()
                    else:
                        campaign = f"pool-{scenario}-{name}-s{seed}-{os.getpid()}"
                        strategy = Reallocator(
                            stub, campaign, series, name.endswith("dry"), args.series_hours
                        )
                    run = simulate(world, strategy)
                    evs = measure(run, fixed_alive)
                    if name == "fixed":
                        fixed_alive = run.alive_minutes
                    results[scenario][name].append(run)
                    for ev in evs:
                        events.setdefault((scenario, name), []).append((run, ev))
                    r = run.realloc
                    extra = ""
                    if r is not None:
                        extra = (
                            f" replans {len(r.latencies)}, errors {len(r.errors)},"
                            f" life cycle errors {len(r.lifecycle_errors)}"
                        )
                        for e in [*r.errors, *r.lifecycle_errors][:3]:
                            print("   error:", e, flush=True)
                    print(
                        f"{scenario} seed {seed} {name}: util {run.metrics['util']:.1f}% "
                        f"value/hs {run.metrics['value_hs']:.1f}% churn/day "
                        f"{run.metrics['churn']:.2f} ({run.seconds:.1f} s){extra}",
                        flush=True,
                    )
                if seed == 0:
                    print("   world:", "; ".join(world.events), flush=True)
    print()
    print(f"Pool {9000:,} USD/day, {args.deals} deals, {args.days} day(s), {args.seeds} seed(s);")
    print("hs = hindsight reference (pool filled by value over realised capacity, per day).")
    for scenario, runs in results.items():
        print()
        print(table(scenario, runs))
    # per-seed comparison: where greedy beats the reallocator
    print()
    print("## greedy vs reallocator, per seed (util% / value-hs%)")
    for scenario, runs in results.items():
        if "greedy" not in runs or "reallocator" not in runs:
            continue
        cells = []
        for g, ra in zip(runs["greedy"], runs["reallocator"], strict=True):
            gm, rm = g.metrics, ra.metrics
            better = gm["value_hs"] > rm["value_hs"] + 0.05 or gm["util"] > rm["util"] + 0.05
            cells.append(
                f"s{g.world.seed}: {gm['util']:.1f}/{gm['value_hs']:.1f} vs "
                f"{rm['util']:.1f}/{rm['value_hs']:.1f}{' <-greedy' if better else ''}"
            )
        print(f"{scenario}: " + "; ".join(cells))
    print()
    print("## anomalies (reallocator), first examples per kind")
    for (scenario, name), found in events.items():
        if not name.startswith("reallocator"):
            continue
        kinds: dict[str, list[tuple[Run, Event]]] = {}
        for run, ev in found:
            kinds.setdefault(ev.kind, []).append((run, ev))
        for kind, items in kinds.items():
            print(f"\n### {scenario} / {name}: {kind} ({len(items)} in all seeds)")
            for run, ev in items[: args.examples]:
                print(describe(run, ev, 3))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()

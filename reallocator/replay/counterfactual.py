"""Counterfactual replay: what the planner would have done over a recorded flight, under the
recorded policy and under others, and what that would have delivered. Pure: records in, tables
out; the plans come from the same `build_plan` the Replan RPC calls.

Two questions, two computations:

* **What would it have planned?** (`replan_recorded`) The planner re-run on each recorded
  snapshot as it was. Under the recorded policy and history this reproduces the recorded plans
  exactly (the planner is deterministic), and comparing each plan with what the deals delivered
  until the next snapshot measures the forecast (`forecast_error`).
* **Would it have been better?** (`project`) A closed loop over the recorded intervals: at each
  snapshot the policy plans on its *own* state (its delivery so far and its bookings), then each
  deal delivers, until the next snapshot, what the plan asks of it in that interval, capped by
  the capacity the recording revealed there.

The capacity model (`interval_capacity`): in an interval a deal could have delivered what it did
divided by the share of auctions it took part in (a deal throttled to 0.5 could have delivered
twice as much), and at least what its new bid requests were worth at its win rate - a deal that
stopped because its allocation ran out still saw supply. That is a lower bound where nothing was
throttled and no avails are reported: a replay cannot see supply a recording never exposed, so
it favours the recorded decisions there. Guaranteed deals are assumed to follow accepted
requests (the replay does not model seller refusals), and a deal's hourly share follows the
campaign's pacing curve (pace_ahead x for deals the plan paces AHEAD).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from reallocator.core.model import DELIVERED_COLUMN, BudgetType, CampaignSnapshot, Policy
from reallocator.core.pacing.calendar import campaign_span
from reallocator.core.pacing.curves import build_curve
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import DealPacing, Plan, RequestHistory
from reallocator.core.plan.rolling import WindowStarts
from reallocator.replay.source import Recorded

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

RECORDED = "recorded"
"""Name of the first column: what the recorded decisions delivered."""

_UNIT_COLUMNS = ("spend_micros", "impressions", "clicks", "completes", "requests")


PolicyChange = Callable[[Policy], Policy]
"""Turns the policy a snapshot was planned under into the policy to replay it with."""


def same_policy(policy: Policy) -> Policy:
    return policy


@dataclass(frozen=True)
class Candidate:
    """A policy to replay: `change` applied to each snapshot's recorded policy; None means no
    reallocation at all (the bookings are kept)."""

    name: str
    change: PolicyChange | None = same_policy


@dataclass(frozen=True, eq=False)
class Flight:
    """The recorded flight as arrays over (snapshot, deal), deals in the first snapshot's order."""

    records: tuple[Recorded, ...]
    deal_ids: npt.NDArray[np.object_]
    seller_ids: npt.NDArray[np.object_]
    channel_ids: npt.NDArray[np.object_]
    value: FloatArray  # value per budget unit
    delivered: IntArray  # (snapshots, deals), budget units
    booked: IntArray  # (snapshots, deals), booked allocation at each snapshot
    capacity: FloatArray  # (snapshots - 1, deals): what each deal could deliver per interval
    interval_share: FloatArray  # (snapshots - 1,): share of the remaining curve per interval
    expected: FloatArray  # (snapshots,): the campaign curve's expected cumulative delivery
    budget: float  # the flight's budget in budget units (for shares)
    budget_type: BudgetType

    @property
    def n_snapshots(self) -> int:
        return len(self.records)


def _aligned(snapshot: CampaignSnapshot, ids: pd.Index, column: str) -> FloatArray:
    deals = snapshot.deals
    pos = pd.Index(deals["deal_id"]).get_indexer(ids)
    if (pos < 0).any():
        missing = ids[pos < 0][:5].tolist()
        raise ValueError(
            f"snapshot at {snapshot.as_of.isoformat()} lacks deal(s) {missing} of the first one"
        )
    out: FloatArray = deals[column].to_numpy(np.float64)[pos]
    return out


def interval_capacity(
    first: CampaignSnapshot, second: CampaignSnapshot, ids: pd.Index
) -> FloatArray:
    """What each deal could have delivered between two snapshots (module docstring)."""
    unit = DELIVERED_COLUMN[first.pacing.budget_type]
    got = np.maximum(_aligned(second, ids, unit) - _aligned(first, ids, unit), 0.0)
    part = _aligned(second, ids, "participation_rate")
    part = np.clip(np.nan_to_num(part, nan=1.0), 0.05, 1.0)
    avails = np.maximum(_aligned(second, ids, "avails") - _aligned(first, ids, "avails"), 0.0)
    wins = _aligned(second, ids, "wins")
    all_avails = _aligned(second, ids, "avails")
    units = _aligned(second, ids, unit)
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = np.where(all_avails > 0, wins / all_avails, 0.0)
        per_win = np.where(wins > 0, units / wins, 0.0)
    supply = np.nan_to_num(avails * win_rate * per_win)
    out: FloatArray = np.maximum(got / part, supply)
    return out


def load_flight(records: Sequence[Recorded]) -> Flight:
    """Arrays of the recorded flight (all snapshots must hold the first one's deals)."""
    if not records:
        raise ValueError("no snapshot to replay")
    first = records[0].snapshot
    bt = first.pacing.budget_type
    unit = DELIVERED_COLUMN[bt]
    ids = pd.Index(first.deals["deal_id"])
    delivered = np.stack([_aligned(r.snapshot, ids, unit) for r in records]).astype(np.int64)
    booked = np.stack([_aligned(r.snapshot, ids, "allocation") for r in records]).astype(np.int64)
    capacity = (
        np.stack(
            [interval_capacity(a.snapshot, b.snapshot, ids) for a, b in itertools.pairwise(records)]
        )
        if len(records) > 1
        else np.zeros((0, len(ids)))
    )
    if campaign_span(first.pacing) is None:
        raise ValueError(
            f"campaign {first.campaign_id!r} has no start and end dates (or flights), only "
            "periodic budgets: a replay measures pacing against a flight's curve"
        )
    curve = build_curve(first.pacing, first.timezone)
    times = np.array([r.snapshot.as_of.timestamp() for r in records])
    expected = np.asarray(curve.cumulative(times, left=True), dtype=np.float64)
    end = float(curve.calendar.end)
    left = float(curve.cumulative(end, left=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(left - expected[:-1] > 0, np.diff(expected) / (left - expected[:-1]), 1.0)
    budget = float(curve.total()) if curve.budget_units else float(booked[0].sum())
    return Flight(
        records=tuple(records),
        deal_ids=ids.to_numpy(dtype=object),
        seller_ids=first.deals["seller_id"].to_numpy(dtype=object),
        channel_ids=first.deals["channel_id"].to_numpy(dtype=object),
        value=first.deals["value_per_unit"].to_numpy(np.float64),
        delivered=delivered,
        booked=booked,
        capacity=capacity,
        interval_share=np.clip(share, 0.0, 1.0),
        expected=expected,
        budget=max(budget, 1.0),
        budget_type=bt,
    )


def _plan(
    snapshot: CampaignSnapshot, history: RequestHistory, windows: WindowStarts | None = None
) -> Plan | None:
    try:
        return build_plan(
            snapshot,
            history=None if history.empty else history,
            relax=True,
            windows=windows,
        )
    except PlanRejected:
        return None


Tick = Callable[[], None]
"""Called once per snapshot planned (a progress bar's update)."""


def _no_tick() -> None:
    return None


def replan_recorded(
    flight: Flight, policy: Policy | None = None, tick: Tick = _no_tick
) -> list[Plan | None]:
    """The planner re-run on every recorded snapshot as it was (the recorded policy when
    `policy` is None), with the recorded seller history. None where constraints conflicted
    beyond relaxation."""
    out: list[Plan | None] = []
    for r in flight.records:
        snapshot = r.snapshot if policy is None else replace(r.snapshot, policy=policy)
        out.append(_plan(snapshot, r.history, r.windows if policy is None else None))
        tick()
    return out


def _interval_target(plan: Plan, share: float, pace_ahead: float) -> FloatArray:
    """What a plan asks each deal to deliver in the next interval."""
    new = plan.deals["new_allocation"].to_numpy(np.float64)
    ahead = plan.deals["pacing"].to_numpy(dtype=object) == DealPacing.AHEAD.value
    ask = new * share * np.where(ahead, max(pace_ahead, 1.0), 1.0)
    out: FloatArray = np.minimum(ask, new)
    return out


def forecast_error(flight: Flight, plans: Sequence[Plan | None]) -> pd.DataFrame:
    """Per replan and deal, seller and channel: what the plan asked for the interval until the
    next snapshot (`planned`), what its capacity forecast implied (`forecast`), what was
    delivered, and the errors delivered - planned and delivered - forecast."""
    frames = []
    for i, plan in enumerate(plans[:-1]):
        if plan is None:
            continue
        share = float(flight.interval_share[i])
        pace = flight.records[i].snapshot.policy.pace_ahead
        planned = _interval_target(plan, share, pace)
        forecast = plan.deals["capacity"].to_numpy(np.float64) * share
        got = (flight.delivered[i + 1] - flight.delivered[i]).astype(np.float64)
        frames.append(
            pd.DataFrame(
                {
                    "replan": i,
                    "as_of": flight.records[i].snapshot.as_of,
                    "deal_id": flight.deal_ids,
                    "seller_id": flight.seller_ids,
                    "channel_id": flight.channel_ids,
                    "planned": planned,
                    "forecast": forecast,
                    "delivered": got,
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=["level", "replan", "as_of", "id", "planned", "forecast", "delivered"]
        )
    deals = pd.concat(frames, ignore_index=True)
    out = []
    for level, key in (("deal", "deal_id"), ("seller", "seller_id"), ("channel", "channel_id")):
        grouped = (
            deals.groupby(["replan", "as_of", key], sort=True)[["planned", "forecast", "delivered"]]
            .sum()
            .reset_index()
            .rename(columns={key: "id"})
        )
        grouped.insert(0, "level", level)
        out.append(grouped)
    table = pd.concat(out, ignore_index=True)
    table["plan_error"] = table["delivered"] - table["planned"]
    table["forecast_error"] = table["delivered"] - table["forecast"]
    return table


def _state_snapshot(
    snapshot: CampaignSnapshot, ids: pd.Index, delivered: FloatArray, booked: IntArray
) -> CampaignSnapshot:
    """The recorded snapshot with a policy's own delivery and bookings in place of the recorded
    ones (other delivery counters scaled alike; the recent series kept as recorded)."""
    deals = snapshot.deals.copy()
    pos = pd.Index(deals["deal_id"]).get_indexer(ids)
    unit = DELIVERED_COLUMN[snapshot.pacing.budget_type]
    recorded = deals[unit].to_numpy(np.float64)[pos]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(recorded > 0, delivered / recorded, 0.0)
    for column in _UNIT_COLUMNS:
        values = deals[column].to_numpy(np.int64).copy()
        if column == unit:
            values[pos] = np.rint(delivered).astype(np.int64)
        else:
            values[pos] = np.rint(values[pos] * ratio).astype(np.int64)
        deals[column] = values
    allocation = deals["allocation"].to_numpy(np.int64).copy()
    allocation[pos] = booked
    deals["allocation"] = allocation
    never = deals["plan_applied_at"].to_numpy(np.int64).copy()
    never[pos] = -1
    deals["plan_applied_at"] = never
    return replace(snapshot, deals=deals)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One policy's projected flight: cumulative delivery per snapshot and deal, bookings, and
    what its plans did."""

    name: str
    delivered: FloatArray  # (snapshots, deals)
    booked: FloatArray  # (snapshots, deals), totals in force from each snapshot on
    moved: FloatArray  # (snapshots,): budget units moved by the plan at each snapshot
    requests: IntArray  # (snapshots,): seller requests sent
    statuses: tuple[str, ...]


def project(flight: Flight, candidate: Candidate, tick: Tick = _no_tick) -> Trajectory:
    """The closed loop (module docstring) under one candidate policy."""
    n_snap = flight.n_snapshots
    ids = pd.Index(flight.deal_ids)
    x = flight.delivered[0].astype(np.float64)
    booked = flight.booked[0].astype(np.float64)
    delivered = np.zeros((n_snap, len(ids)))
    bookings = np.zeros((n_snap, len(ids)))
    moved = np.zeros(n_snap)
    requests = np.zeros(n_snap, dtype=np.int64)
    statuses: list[str] = []
    for i in range(n_snap):
        tick()
        delivered[i] = x
        record = flight.records[i]
        target: FloatArray | None = None
        share = float(flight.interval_share[i]) if i < n_snap - 1 else 0.0
        if candidate.change is None:
            statuses.append("KEPT")
        else:
            policy = candidate.change(record.snapshot.policy)
            state = _state_snapshot(
                replace(record.snapshot, policy=policy),
                ids,
                x,
                np.rint(booked).astype(np.int64),
            )
            plan = _plan(state, RequestHistory())
            if plan is None:
                statuses.append("REJECTED")
            else:
                statuses.append(str(plan.status))
                new_total = plan.deals["new_total"].to_numpy(np.float64)
                moved[i] = float(np.abs(new_total - np.maximum(booked, x)).sum())
                requests[i] = len(plan.requests)
                booked = new_total
                target = _interval_target(plan, share, policy.pace_ahead)
        bookings[i] = booked
        if i == n_snap - 1:
            break
        if target is None:  # bookings kept: the curve's share of what remains
            target = np.maximum(booked - x, 0.0) * share
        got = np.minimum(np.minimum(target, flight.capacity[i]), np.maximum(booked - x, 0.0))
        x = x + got
    return Trajectory(candidate.name, delivered, bookings, moved, requests, tuple(statuses))


def recorded_trajectory(flight: Flight) -> Trajectory:
    """What the recorded decisions delivered (the first column of every comparison)."""
    booked = flight.booked.astype(np.float64)
    moved = np.zeros(flight.n_snapshots)
    moved[1:] = np.abs(np.diff(booked, axis=0)).sum(axis=1)
    last = flight.records[-1].history.requests
    t0 = flight.records[0].snapshot.as_of.timestamp()
    requests = np.zeros(flight.n_snapshots, dtype=np.int64)
    if len(last):
        times = np.array([r.snapshot.as_of.timestamp() for r in flight.records])
        at = last["requested_at"].to_numpy(np.float64)
        at = at[at >= t0]
        requests = np.bincount(
            np.clip(np.searchsorted(times, at, side="right") - 1, 0, None),
            minlength=flight.n_snapshots,
        ).astype(np.int64)[: flight.n_snapshots]
    return Trajectory(
        RECORDED,
        flight.delivered.astype(np.float64),
        booked,
        moved,
        requests,
        ("RECORDED",) * flight.n_snapshots,
    )


def summarise(flight: Flight, runs: Sequence[Trajectory]) -> pd.DataFrame:
    """Per policy: utilisation (delivered / what the curve expected over the replayed window),
    value delivered, churn (budget moved / flight budget), requests, worst pacing gap
    (|delivered - expected| / flight budget at any snapshot), one row per policy."""
    window = float(flight.expected[-1] - flight.expected[0])
    rows = []
    for run in runs:
        got = run.delivered[-1] - run.delivered[0]
        total = run.delivered.sum(axis=1)
        offset = total[0] - flight.expected[0]
        gap = np.abs(total - flight.expected - offset) / flight.budget
        rows.append(
            {
                "policy": run.name,
                "delivered": float(got.sum()),
                "utilisation": float(got.sum() / window) if window > 0 else float("nan"),
                "value": float((got * flight.value).sum()),
                "churn": float(run.moved.sum() / flight.budget),
                "requests": int(run.requests.sum()),
                "worst_gap": float(gap.max()),
            }
        )
    return pd.DataFrame(rows).set_index("policy")


def steps_table(flight: Flight, runs: Sequence[Trajectory]) -> pd.DataFrame:
    """Per policy and snapshot: cumulative delivery against the curve, budget moved, requests
    and plan status (long form, for CSVs and plots)."""
    times = [r.snapshot.as_of for r in flight.records]
    frames = [
        pd.DataFrame(
            {
                "policy": run.name,
                "as_of": times,
                "delivered": run.delivered.sum(axis=1),
                "expected": flight.expected,
                "moved": run.moved,
                "requests": run.requests,
                "status": list(run.statuses),
            }
        )
        for run in runs
    ]
    return pd.concat(frames, ignore_index=True)


def channel_table(flight: Flight, runs: Sequence[Trajectory]) -> pd.DataFrame:
    """Per policy, channel and interval: what was delivered (for the per-channel plot)."""
    times = [r.snapshot.as_of for r in flight.records[1:]]
    frames = []
    for run in runs:
        per = np.diff(run.delivered, axis=0)
        frame = pd.DataFrame(per, columns=flight.channel_ids.astype(str))
        frame = frame.T.groupby(level=0).sum().T
        frame.insert(0, "as_of", times)
        long = frame.melt(id_vars="as_of", var_name="channel_id", value_name="delivered")
        long.insert(0, "policy", run.name)
        frames.append(long)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True, eq=False)
class ReplayResult:
    summary: pd.DataFrame
    steps: pd.DataFrame
    channels: pd.DataFrame
    forecast_error: pd.DataFrame
    recorded_plans: tuple[Plan | None, ...]
    budget_type: BudgetType = BudgetType.SPEND
    currency: str = ""


def replay(
    records: Sequence[Recorded], candidates: Sequence[Candidate], tick: Tick = _no_tick
) -> ReplayResult:
    """Everything a replay reports: the recorded decisions first, then each candidate policy.
    `tick` is called (1 + len(candidates)) x len(records) times, as the work goes."""
    flight = load_flight(records)
    plans = replan_recorded(flight, tick=tick)
    runs = [recorded_trajectory(flight), *(project(flight, c, tick) for c in candidates)]
    return ReplayResult(
        summary=summarise(flight, runs),
        steps=steps_table(flight, runs),
        channels=channel_table(flight, runs),
        forecast_error=forecast_error(flight, plans),
        recorded_plans=tuple(plans),
        budget_type=flight.budget_type,
        currency=records[0].snapshot.currency,
    )


__all__ = [
    "RECORDED",
    "Candidate",
    "Flight",
    "PolicyChange",
    "ReplayResult",
    "Trajectory",
    "forecast_error",
    "interval_capacity",
    "load_flight",
    "project",
    "recorded_trajectory",
    "replan_recorded",
    "replay",
    "same_policy",
    "summarise",
]

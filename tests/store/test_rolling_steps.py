"""Step limits per rolling hour, from the plans the store knows were applied: replanning every
ten minutes moves a deal no further within the hour than the hourly share, while the same
snapshot without the hourly limit grows a deal further. (As with the per-plan step, what a deal
cannot deliver by its capacity forecast is not held for it.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from google.protobuf import json_format

from reallocator.core.model import Policy
from reallocator.core.plan.rolling import WindowStarts, rolling_room, window_starts
from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
SHARE = 0.15


def _request(campaign: str, hourly: bool, minutes: int, totals: dict[str, int]) -> pb.ReplanRequest:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    request.dry_run = False
    request.snapshot.campaign_id = campaign
    request.snapshot.as_of.seconds += 60 * minutes
    for d in request.snapshot.deals:
        d.allocation = totals.get(d.deal_id, d.allocation)
    limits = request.policy.step_limits
    limits.max_step_abs = 1  # no automatic floor: the shares decide
    limits.max_step_rel = 1.0
    if hourly:
        limits.max_step_rel_per_hour = SHARE
    return request


def _apply(stub: rpc.ReallocatorServiceStub, plan: plan_pb2.Plan) -> None:
    if plan.state == plan_pb2.PLAN_STATE_PROPOSED:
        plan = stub.ReviewPlan(
            pb.ReviewPlanRequest(name=plan.name, etag=plan.etag, decision=1), timeout=10
        ).plan
    stub.ConfirmApplied(pb.ConfirmAppliedRequest(name=plan.name), timeout=10)


def test_replanning_every_ten_minutes_stays_within_the_hourly_step(
    stub: rpc.ReallocatorServiceStub,
) -> None:
    start = {d.deal_id: d.allocation for d in _request("x", False, 0, {}).snapshot.deals}
    totals = dict(start)
    for step in range(4):  # 0, 10, 20, 30 minutes: one rolling hour
        plan = stub.Replan(_request("rolling", True, 10 * step, totals), timeout=60).plan
        _apply(stub, plan)
        for d in plan.deals:
            r = start[d.deal_id]
            # (a cut below the window is a deal's capacity forecast: not held, as per plan)
            assert d.new_total - r <= SHARE * r + 1, (step, d.deal_id, d.new_total, r)
        totals = {d.deal_id: d.new_total for d in plan.deals}
    free = _request("rolling-free", False, 30, totals)
    free.dry_run = True
    unlimited = stub.Replan(free, timeout=60).plan
    grown = [d.new_total - start[d.deal_id] - SHARE * start[d.deal_id] for d in unlimited.deals]
    assert max(grown) > 1, "the example should want to grow a deal further"


def test_window_starts_are_the_totals_before_the_first_plan_within_each_window() -> None:
    def plan(delivered: list[int], old: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"deal_id": ["a", "b"], "delivered": delivered, "old_allocation": old})

    t = 1_000_000.0
    applied = [
        (t - 7200, plan([10, 20], [90, 80])),  # within the day, before the hour
        (t - 600, plan([15, 25], [100, 60])),  # the hour's first
        (t - 300, plan([16, 26], [50, 50])),
    ]
    starts = window_starts(applied, np.array(["b", "a", "c"], dtype=object), t)
    assert starts.hour.tolist()[:2] == [85.0, 115.0] and np.isnan(starts.hour[2])
    assert starts.day.tolist()[:2] == [100.0, 100.0] and np.isnan(starts.day[2])


def test_rolling_room_is_the_tighter_window_and_at_least_the_absolute_step() -> None:
    policy = Policy(step_rel_per_hour=0.1, step_rel_per_day=0.3)
    now = np.array([100, 100, 0], dtype=np.int64)
    starts = WindowStarts(hour=np.array([100.0, 95.0, np.nan]), day=np.array([80.0, 100.0, 0.0]))
    room = rolling_room(now, starts, policy, step_abs=5)
    assert room is not None
    up, down = room
    assert up.tolist() == [4, 4, 5]  # day: 104-100; hour: 104.5 -> 104; zero deal: step_abs
    assert down.tolist() == [10, 14, 5]  # hour; hour (95 - 9.5 -> 86); step_abs
    assert rolling_room(now, starts, Policy(), step_abs=5) is None

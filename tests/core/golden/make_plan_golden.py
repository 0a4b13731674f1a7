"""Writes plan_golden.json: what build_plan decides for ~30 seeded random instances.

The fixture pins allocations, statuses, codes, requests and schedules as the planner computed
them when it was written, so a refactoring of the plan stages can show it changes none of them
(test_plan_golden.py). Run from the repository root:
`.venv/bin/python tests/core/golden/make_plan_golden.py`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from builders import (  # noqa: E402
    build_snapshot,
    default_pacing,
    lifetime_pacing,
    random_snapshot_spec,
)

from reallocator.core.model import Policy  # noqa: E402
from reallocator.core.plan.builder import PlanRejected, build_plan  # noqa: E402
from reallocator.core.plan.model import Plan  # noqa: E402
from reallocator.v1 import common_pb2  # noqa: E402
from reallocator.wire.snapshot import decode_snapshot  # noqa: E402
from reallocator.wire.violations import Violations  # noqa: E402

GOLDEN = HERE / "plan_golden.json"
TIME_ZONES = ("America/New_York", "UTC", "Asia/Kolkata", "Australia/Lord_Howe", "Europe/Berlin")
BUDGET_TYPES = (
    common_pb2.BUDGET_TYPE_SPEND,
    common_pb2.BUDGET_TYPE_IMPRESSIONS,
    common_pb2.BUDGET_TYPE_CLICKS,
    common_pb2.BUDGET_TYPE_COMPLETES,
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One instance: a seed and how its snapshot and plan call differ from the defaults."""

    seed: int
    n_deals: int
    time_zone: str
    budget_type: int
    lifetime: int | None  # None: default_pacing (lifetime and daily cap)
    relax: bool
    n_buckets: int
    min_change: int
    confidence_threshold: float
    window_hours: int


def cases() -> list[Case]:
    out = []
    for i in range(32):
        out.append(
            Case(
                seed=1000 + i,
                n_deals=(5, 12, 30, 60, 150)[i % 5],
                time_zone=TIME_ZONES[i % len(TIME_ZONES)],
                budget_type=BUDGET_TYPES[(i // 2) % len(BUDGET_TYPES)],
                lifetime=None if i % 3 else (10**11, 10**10, 10**12)[(i // 3) % 3],
                relax=i % 7 != 3,
                n_buckets=0 if i % 8 == 5 else 48,
                # A large min_change makes most plans not worth changing (NO_CHANGE).
                min_change=(0, 0, 0, 10**13)[i % 4],
                # ... and no alert passing the threshold makes them NO_CHANGE.
                confidence_threshold=100.0 if i % 4 == 3 and i % 8 != 3 else 60.0,
                window_hours=(6, 3, 24)[i % 3],
            )
        )
    return out


def plan_for(case: Case) -> Plan | str:
    """The plan for `case`, or the PlanRejected message."""
    spec = random_snapshot_spec(case.n_deals, case.seed, n_buckets=case.n_buckets)
    pacing = default_pacing() if case.lifetime is None else lifetime_pacing(case.lifetime)
    pacing.budget_type = case.budget_type  # type: ignore[assignment]
    spec = spec.replace(time_zone=case.time_zone, pacing=pacing)
    errors = Violations()
    policy = Policy(min_change=case.min_change, confidence_threshold=case.confidence_threshold)
    snapshot = decode_snapshot(build_snapshot(spec, "columns"), policy, errors)
    assert snapshot is not None, errors.items
    try:
        return build_plan(
            snapshot, relax=case.relax, schedule_window=timedelta(hours=case.window_hours)
        )
    except PlanRejected as e:
        return f"rejected: {e}"


def summary(plan: Plan | str) -> dict[str, Any]:
    """The numbers and codes of `plan` (no text): what a refactoring must keep."""
    if isinstance(plan, str):
        return {"rejected": plan}
    d = plan.deals
    return {
        "status": str(plan.status),
        "remaining_budget": plan.remaining_budget,
        "allocated": plan.allocated,
        "unspendable": plan.unspendable,
        "max_severity": None if plan.max_severity is None else str(plan.max_severity),
        "deals": {
            c: d[c].tolist()
            for c in (
                "deal_id",
                "old_allocation",
                "new_allocation",
                "lower_bound",
                "upper_bound",
                "capacity",
                "binding",
                "reason",
                "pacing",
            )
        },
        "sellers_new": plan.sellers["new_allocation"].astype(int).tolist(),
        "sellers_binding": plan.sellers["binding"].astype(bool).tolist(),
        "channels_new": plan.channels["new_allocation"].astype(int).tolist(),
        "channels_binding": plan.channels["binding"].astype(bool).tolist(),
        "unspendable_reasons": sorted(
            [u.reason_code, u.entity_kind, u.entity_id, u.amount] for u in plan.unspendable_reasons
        ),
        "violations": [[v.constraint, v.bound, v.relaxation] for v in plan.violations],
        "requests": [
            [r.deal_id, str(r.kind), str(r.severity), r.target_total, str(r.reason)]
            for r in plan.requests
        ],
        "schedules": [
            {
                "deal_id": s.deal_id,
                "window_start": s.window_start.isoformat(),
                "hourly_target": s.hourly_target.tolist(),
                "hourly_ceiling": None if s.hourly_ceiling is None else s.hourly_ceiling.tolist(),
                "pacing": str(s.pacing),
                "reason": str(s.reason),
                "throttle": round(float(s.throttle), 9),
            }
            for s in plan.schedules
        ],
    }


def golden() -> list[dict[str, Any]]:
    return [{"case": dataclasses.asdict(c), "plan": summary(plan_for(c))} for c in cases()]


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(golden(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")

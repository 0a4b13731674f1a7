"""Plans as they were: allocations, statuses, codes, requests, schedules and the words of every
rationale of 28 random campaigns, recorded before the plan became a table rendered on demand.

A change that moves any of them on purpose regenerates the file
(`python tests/core/test_plan_golden.py`) in its own commit saying which and why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import build_snapshot, random_snapshot_spec

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.model import Plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

GOLDEN = Path(__file__).resolve().parent / "golden_plans.json"

CASES: list[tuple[int, int, dict[str, Any]]] = [
    *((40, seed, {}) for seed in range(12)),
    *((300, seed, {}) for seed in range(100, 104)),
    *((60, seed, {"pace_ahead": 1.0}) for seed in range(200, 203)),
    *((60, seed, {"step_rel": 0.2, "churn_deal": 0.05}) for seed in range(300, 303)),
    *((60, seed, {"beyond_forecast": 0.0}) for seed in range(400, 403)),
    *(
        (30, seed, {"confidence_threshold": 100.0, "min_change": 10**15})  # NO_CHANGE
        for seed in range(500, 503)
    ),
]
"""(deals, seed, policy overrides)."""


def _snapshot(n: int, seed: int, overrides: dict[str, Any]) -> CampaignSnapshot:
    errors = Violations()
    msg = build_snapshot(random_snapshot_spec(n, seed), "deals")
    snapshot = decode_snapshot(msg, dataclasses.replace(Policy(), **overrides), errors)
    assert snapshot is not None, errors.items
    return snapshot


def _digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def summary(plan: Plan) -> dict[str, Any]:
    d = plan.deals
    return {
        "status": str(plan.status),
        "allocated": plan.allocated,
        "unspendable": plan.unspendable,
        "new_total": d["new_total"].astype(int).tolist(),
        "binding": d["binding"].astype(str).tolist(),
        "reason": d["reason"].astype(str).tolist(),
        "pacing": d["pacing"].astype(str).tolist(),
        "marginal_value": np.round(d["marginal_value"].to_numpy(float), 9).tolist(),
        "requests": [[r.deal_id, str(r.kind), r.target_total] for r in plan.requests],
        "schedules": [[s.deal_id, s.hourly_target.tolist()] for s in plan.schedules],
        "deal_text": _digest(d["rationale"].astype(str).tolist()),
        "request_text": _digest([r.rationale for r in plan.requests]),
        "schedule_text": _digest([s.rationale for s in plan.schedules]),
        "summary_text": _digest([plan.rationale.summary]),
    }


def plans() -> list[dict[str, Any]]:
    return [
        summary(build_plan(_snapshot(n, seed, o), schedule_window=timedelta(hours=6)))
        for n, seed, o in CASES
    ]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_plans_are_what_they_were(case: int) -> None:
    expected = json.loads(GOLDEN.read_text())[case]
    n, seed, overrides = CASES[case]
    got = summary(build_plan(_snapshot(n, seed, overrides), schedule_window=timedelta(hours=6)))
    for key, value in expected.items():
        assert got[key] == value, f"case {case} ({n} deals, seed {seed}, {overrides}): {key}"


def test_the_cases_cover_every_status() -> None:
    statuses = {case["status"] for case in json.loads(GOLDEN.read_text())}
    assert {"OPTIMAL", "NO_CHANGE"} <= statuses


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    GOLDEN.write_text(json.dumps(plans(), separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN}")

"""build_plan decides today what it decided when the golden fixture was written.

tests/core/golden/plan_golden.json holds the allocations, statuses, binding/reason/pacing codes,
seller requests and hourly schedules of ~30 seeded random instances (relaxed, rejected, NO_CHANGE,
time zones, budget types). A change to the plan's stages must reproduce them exactly; a deliberate
change of a code regenerates the fixture (golden/make_plan_golden.py) in a commit that says why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))

from make_plan_golden import GOLDEN, Case, cases, plan_for, summary

_STORED: list[dict[str, Any]] = json.loads(GOLDEN.read_text())


def test_the_fixture_covers_every_kind_of_plan() -> None:
    statuses = {g["plan"].get("status", "REJECTED") for g in _STORED}
    assert statuses == {"OPTIMAL", "RELAXED", "NO_CHANGE", "REJECTED"}
    assert [g["case"] for g in _STORED] == [c.__dict__ for c in cases()]


@pytest.mark.parametrize("index", range(len(_STORED)))
def test_plan_matches_the_golden_fixture(index: int) -> None:
    stored = _STORED[index]
    case = Case(**stored["case"])
    # Through JSON, so tuples and ints compare as the fixture stores them.
    assert json.loads(json.dumps(summary(plan_for(case)), sort_keys=True)) == stored["plan"]


def test_a_plan_encoded_into_a_response_is_the_plan_encoded_alone() -> None:
    from reallocator.v1 import reallocator_service_pb2 as pb
    from reallocator.wire.plan import encode_plan

    for case in cases()[:8]:
        plan = plan_for(case)
        if isinstance(plan, str):
            continue
        for view in ("all", "changed", "none"):
            response = pb.ReplanResponse()
            filled = encode_plan(plan, deals=view, into=response.plan)
            assert filled is response.plan
            assert response.plan == encode_plan(plan, deals=view)
            assert response.plan.schedules or view == "none" or not plan.schedules

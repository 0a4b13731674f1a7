"""build_plan's stages one at a time (core/plan/builder.py): no stage edits what it was given,
and the gate (gate.py) decides on numbers alone."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.interrupt import never
from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.actions import act
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.conflicts import solve_prepared
from reallocator.core.plan.gate import decide
from reallocator.core.plan.model import (
    ConstraintViolation,
    PlanStatus,
    ReasonCode,
    RequestHistory,
)
from reallocator.core.plan.post_solve import post_solve
from reallocator.core.plan.prepare import Prepared, prepare
from reallocator.core.plan.render import render
from reallocator.core.plan.table import assemble, deal_codes, deal_table
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"


def fingerprint(value: Any, depth: int = 0) -> str:
    """A digest of every array, frame and plain value reachable through dataclass fields,
    tuples and dicts (other objects by type only): equal before and after means untouched."""
    h = hashlib.sha256()

    def walk(v: Any, d: int) -> None:
        if isinstance(v, np.ndarray):
            h.update(f"A{v.dtype.str}{v.shape}".encode())
            h.update(repr(v.tolist()).encode() if v.dtype == object else v.tobytes())
        elif isinstance(v, pd.DataFrame):
            h.update(repr((list(v.columns), [str(t) for t in v.dtypes], list(v.index))).encode())
            h.update(repr(v.to_dict("list")).encode())
        elif isinstance(v, pd.Index | pd.Series):
            h.update(repr(list(v)).encode())
        elif dataclasses.is_dataclass(v) and not isinstance(v, type) and d < 6:
            h.update(type(v).__name__.encode())
            for f in dataclasses.fields(v):
                h.update(f.name.encode())
                walk(getattr(v, f.name), d + 1)
        elif isinstance(v, tuple | list):
            for x in v:
                walk(x, d + 1)
        elif isinstance(v, dict):
            for k, x in v.items():
                h.update(repr(k).encode())
                walk(x, d + 1)
        elif v is None or isinstance(v, str | int | float | bool):
            h.update(repr(v).encode())
        else:
            h.update(type(v).__name__.encode())

    walk(value, depth)
    return h.hexdigest()


def _history(snapshot: CampaignSnapshot, seed: int) -> RequestHistory:
    """Answers to earlier increases (rejected, partial, pending) and recent moves on a few deals:
    every path of the capacity caps and the reversal charge."""
    ids = snapshot.deals["deal_id"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    at = snapshot.as_of.timestamp()
    picked = rng.choice(ids, size=min(3, len(ids)), replace=False)
    requests = pd.DataFrame(
        {
            "deal_id": picked,
            "requested_at": at - 3600.0 * np.arange(1, len(picked) + 1),
            "kind": "INCREASE",
            "target_total": 10**12,
            "response": ["REJECTED", "PARTIAL", "PENDING"][: len(picked)],
            "accepted_total": 10**6,
        }
    )
    moves = pd.DataFrame(
        {
            "deal_id": ids[: max(1, len(ids) // 2)],
            "planned_at": at - 1800.0,
            "delta": rng.integers(-(10**6), 10**6, max(1, len(ids) // 2)),
        }
    )
    return RequestHistory(requests=requests, moves=moves)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 5_000),
    beyond=st.sampled_from([0.0, 0.5]),
    rollback=st.booleans(),
)
def test_no_stage_edits_what_it_was_given(n: int, seed: int, beyond: float, rollback: bool) -> None:
    errors = Violations()
    policy = dataclasses.replace(Policy(), beyond_forecast=beyond)
    snapshot = decode_snapshot(
        build_snapshot(random_snapshot_spec(n, seed, n_buckets=6), "columns"), policy, errors
    )
    assert snapshot is not None, errors.items
    history = _history(snapshot, seed)
    given_in = fingerprint((snapshot, history))
    prepared = prepare(
        snapshot,
        assessment=None,
        history=history,
        forecast=None,
        windows=None,
        time_limit=None,
        checkpoint=never,
    )
    made = [(prepared, fingerprint(prepared))]
    try:
        solved = solve_prepared(prepared, relax=True, checkpoint=never)
    except PlanRejected:
        return
    made.append((solved, fingerprint(solved)))
    post = post_solve(prepared, solved)
    made.append((post, fingerprint(post)))
    why = deal_codes(prepared, post)
    made.append((why, fingerprint(why)))
    decision = decide(prepared, post, solved.violations, why, rollback=rollback)
    made.append((decision, fingerprint(decision)))
    deals = deal_table(prepared, post, why, decision, text=True)
    made.append((deals, fingerprint(deals)))
    draft = assemble(prepared, post, solved.violations, decision, deals, 0.0)
    made.append((draft, fingerprint(draft)))
    actions = act(draft, prepared, history=history, schedule_window=pd.Timedelta(hours=6))
    made.append((actions, fingerprint(actions)))
    plan = render(draft, actions, prepared, text=True)

    assert fingerprint((snapshot, history)) == given_in
    for value, before in made:
        assert fingerprint(value) == before, type(value).__name__
    # The stages in this order are build_plan (the solver's timings aside).
    whole = build_plan(snapshot, history=history, rollback=rollback)
    pd.testing.assert_frame_equal(plan.deals, whole.deals)
    assert plan.requests == whole.requests
    assert plan.rationale == whole.rationale
    assert plan.status is whole.status


@pytest.fixture(scope="module")
def example() -> Prepared:
    request = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
    errors = Violations()
    snapshot = decode_snapshot(request.snapshot, Policy(), errors)
    assert snapshot is not None, errors.items
    return prepare(
        snapshot,
        assessment=None,
        history=None,
        forecast=None,
        windows=None,
        time_limit=None,
        checkpoint=never,
    )


def _with_min_change(prepared: Prepared, min_change: int) -> Prepared:
    policy = dataclasses.replace(prepared.policy, min_change=min_change)
    return dataclasses.replace(
        prepared, snapshot=dataclasses.replace(prepared.snapshot, policy=policy)
    )


def test_the_gate_holds_a_rollback_whose_every_move_is_too_small(example: Prepared) -> None:
    solved = solve_prepared(example, relax=True, checkpoint=never)
    post = post_solve(example, solved)
    why = deal_codes(example, post)
    current = example.built.report.current
    assert (post.result.allocation != current).any()  # the solver moves something

    # A rollback reads no alerts: only the size of its moves decides.
    held = decide(_with_min_change(example, 10**15), post, (), why, rollback=True)
    assert held.status is PlanStatus.NO_CHANGE
    assert (held.allocation == current).all() and not held.delta.any()
    assert held.reason == "UNCHANGED" and held.marginal == 0.0

    made = decide(example, post, (), why, rollback=True)
    assert made.status is not PlanStatus.NO_CHANGE
    moved = made.delta != 0
    assert (made.allocation == post.result.allocation).all()
    assert (np.asarray(made.reason)[moved] == ReasonCode.ROLLBACK.value).all()
    assert (np.asarray(made.reason)[~moved] == "UNCHANGED").all()
    assert (np.asarray(made.binding)[moved] == "NONE").all()


def test_the_gate_never_holds_a_plan_whose_constraints_gave_way(example: Prepared) -> None:
    solved = solve_prepared(example, relax=True, checkpoint=never)
    post = post_solve(example, solved)
    why = deal_codes(example, post)
    gave_way = (ConstraintViolation("seller/s/min_total", "SELLER", "s", 1, 1, "relax s by 1"),)
    small = _with_min_change(example, 10**15)
    decision = decide(small, post, gave_way, why, rollback=True)
    assert decision.status is PlanStatus.RELAXED
    assert (decision.allocation == post.result.allocation).all()

"""The requests a plan reads of a long history (`RequestHistory.deciding`): per deal the last,
per deal and kind the last rejection. The audit store reads and keeps only these, so the plan
made from them must be the plan made from the whole history."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
from builders import build_snapshot, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.plan.builder import PlanRejected, build_plan
from reallocator.core.plan.model import RequestHistory, RequestKind, SellerResponse
from reallocator.wire.plan import encode_plan
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

KINDS = [str(k) for k in RequestKind]
RESPONSES = [str(r) for r in SellerResponse]


def long_history(snapshot: CampaignSnapshot, rows: int, seed: int) -> RequestHistory:
    """`rows` requests over the last ten days on the snapshot's deals and two it does not
    have, some at the same time, every kind and answer; all before the snapshot's as_of; and
    `rows` moves over the last two days (some of 0, some at the as_of itself)."""
    rng = np.random.default_rng(seed)
    ids = [*snapshot.deals["deal_id"].astype(str), "gone-1", "gone-2"]
    as_of = snapshot.as_of.timestamp()
    hours = rng.integers(1, 240, rows)  # whole hours: plans an hour apart tie
    moved = rng.integers(0, 48, rows)  # and the moves of the last two days, 0 changes too
    return RequestHistory(
        requests=pd.DataFrame(
            {
                "deal_id": rng.choice(ids, rows),
                "requested_at": as_of - 3600.0 * hours,
                "kind": rng.choice(KINDS, rows),
                "target_total": rng.integers(0, 10**10, rows),
                "response": rng.choice(RESPONSES, rows),
                "accepted_total": rng.integers(0, 10**10, rows),
            }
        ),
        moves=pd.DataFrame(
            {
                "deal_id": rng.choice(ids, rows),
                "planned_at": as_of - 3600.0 * moved,
                "delta": rng.integers(-3, 4, rows) * 10**6,
            }
        ),
    )


def test_deciding_keeps_the_last_request_the_last_rejection_of_each_kind_and_the_last_move() -> (
    None
):
    t = 1_800_000_000.0
    history = RequestHistory(
        requests=pd.DataFrame(
            {
                "deal_id": ["a", "a", "a", "a", "b", "b"],
                "requested_at": [t, t + 1, t + 2, t + 3, t, t],
                "kind": ["INCREASE", "INCREASE", "DECREASE", "INCREASE", "DECREASE", "INCREASE"],
                "target_total": [1, 2, 3, 4, 5, 6],
                "response": ["REJECTED", "REJECTED", "REJECTED", "ACCEPTED", "PENDING", "PARTIAL"],
                "accepted_total": [0, 0, 0, 0, 0, 6],
            }
        )
    )
    kept = history.deciding().requests
    # a: the last (4), the last rejected increase (2) and decrease (3); b: the later of a tie
    assert sorted(kept["target_total"]) == [2, 3, 4, 6]
    assert RequestHistory().deciding().requests.empty
    moves = (
        RequestHistory(
            moves=pd.DataFrame(
                {
                    "deal_id": ["a", "a", "a", "b", "b"],
                    "planned_at": [t, t + 1, t + 2, t, t],
                    "delta": [5, -3, 0, 1, 2],
                }
            )
        )
        .deciding()
        .moves
    )
    # a: its last change that moved something (-3); b: the later of a tie (2)
    assert sorted(moves["delta"]) == [-3, 2]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 5), st.integers(-2, 2)),
        max_size=40,
    )
)
def test_the_last_moves_are_the_frames_last_rows(rows: list[tuple[str, int, int]]) -> None:
    """Per deal the last change that is not 0, ties in their order: the rows (and labels) the
    frame's filter, stable sort and duplicate search keep."""
    moves = pd.DataFrame(
        {
            "deal_id": pd.Series([r[0] for r in rows], dtype="str"),
            "planned_at": np.array([1e9 + r[1] for r in rows], dtype=np.float64),
            "delta": np.array([r[2] for r in rows], dtype=np.int64),
        },
        index=pd.RangeIndex(100, 100 + len(rows)),
    )
    moved = moves.loc[moves["delta"].to_numpy() != 0].sort_values("planned_at", kind="stable")
    expected = moved.loc[~moved.duplicated("deal_id", keep="last").to_numpy()]
    got = RequestHistory(moves=moves).deciding().moves
    pd.testing.assert_frame_equal(got, expected if len(rows) else moves)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 30),
    rows=st.integers(1, 400),
    seed=st.integers(0, 10_000),
    cooldown_hours=st.sampled_from([0, 24, 72]),
)
def test_a_plan_from_the_deciding_requests_is_the_plan_from_all(
    n: int, rows: int, seed: int, cooldown_hours: int
) -> None:
    errors = Violations()
    policy = Policy()
    snapshot = decode_snapshot(
        build_snapshot(random_snapshot_spec(n, seed), "columns"), policy, errors
    )
    assert snapshot is not None, errors.items
    snapshot = replace(
        snapshot, policy=replace(snapshot.policy, cooldown=timedelta(hours=cooldown_hours))
    )
    history = long_history(snapshot, rows, seed)
    reduced = history.deciding()
    assert len(reduced.requests) <= len(history.requests)
    assert len(reduced.moves) <= len(history.moves)

    def plan(h: RequestHistory) -> bytes | str:
        try:
            made = build_plan(snapshot, history=h, text=True)
        except PlanRejected as exc:
            return str(exc)
        msg = encode_plan(made)
        msg.solver.ClearField("build_duration")  # timings: the only fields that differ
        msg.solver.ClearField("solve_duration")
        msg.solver.ClearField("verify_duration")
        msg.solver.ClearField("total_duration")
        return msg.SerializeToString(deterministic=True)

    assert plan(reduced) == plan(history)

"""A guaranteed deal grows only by what it can deliver once its seller has answered
(`Policy.answer_time`): its seller paces it to the commitment until then, so of its capacity
above the commitment (or above an ask still unanswered) only the share of the remaining
opportunity left after the answer is planned, and none in a flight's last `answer_time`."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from builders import AS_OF, DealSpec, SnapshotSpec, build_snapshot, lifetime_pacing
from hypothesis import given
from hypothesis import strategies as st

from reallocator.core.model import CampaignSnapshot, Policy
from reallocator.core.pacing.curves import build_curve
from reallocator.core.plan.builder import build_plan
from reallocator.core.plan.capacity import answer_limited, answer_times, share_after_answer
from reallocator.core.plan.model import Plan, RequestHistory
from reallocator.v1 import common_pb2
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

B = 10**9  # 1,000 USD in micros


def snapshot(left: timedelta, policy: Policy, pg_spent: int = 1 * B) -> CampaignSnapshot:
    """Ten days in, `left` to go. The guaranteed deal (worth twice as much a unit) has 1,000 USD
    of its commitment left, has delivered 1,000 in ten days (its seller's pace: 100 a day) and
    has supply for 4,000; the buyer-paced deal holds 5,000, all it can spend. The budget is
    what the two hold: growing the guaranteed deal takes from the other."""
    deals = (
        DealSpec(
            deal_id="pg",
            seller_id="s1",
            channel_id="ctv",
            allocation=pg_spent + 1 * B,
            spend_micros=pg_spent,
            impressions=100_000,
            deal_type=common_pb2.DEAL_TYPE_PROGRAMMATIC_GUARANTEED,
            value_per_unit=2.0,
            capacity_forecast=4 * B,
        ),
        DealSpec(
            deal_id="pd",
            seller_id="s2",
            channel_id="display",
            allocation=6 * B,
            spend_micros=1 * B,
            impressions=100_000,
            value_per_unit=1.0,
            capacity_forecast=5 * B,
        ),
    )
    spec = SnapshotSpec(
        deals=deals,
        seller_ids=("s1", "s2"),
        channel_ids=("ctv", "display"),
        pacing=lifetime_pacing(
            pg_spent + 7 * B, start=AS_OF - timedelta(days=10), end=AS_OF + left
        ),
    )
    errors = Violations()
    out = decode_snapshot(build_snapshot(spec), policy, errors)
    assert out is not None, errors.items
    return out


def planned(
    left: timedelta, answer: timedelta, pg_spent: int = 1 * B
) -> tuple[Plan, dict[str, int]]:
    plan = build_plan(snapshot(left, Policy(answer_time=answer), pg_spent))
    d = plan.deals.set_index("deal_id")
    new = {k: int(v) for k, v in d["new_allocation"].items()}
    assert sum(new.values()) <= plan.remaining_budget
    return plan, new


def test_mid_flight_the_guaranteed_deal_grows_by_what_it_can_deliver_after_the_answer() -> None:
    _, now = planned(timedelta(days=20), timedelta(0))
    _, later = planned(timedelta(days=20), timedelta(hours=12))
    assert now["pg"] == 4 * B  # its whole supply: worth twice the other's
    # Until its seller answers, 12 h of the 20 days' even traffic, the deal delivers at its
    # pace (100 a day, 2,000 over the 20 days): 2.5 % of the 2,000 of supply beyond that pace
    # cannot be delivered.
    assert later["pg"] == pytest.approx(2 * B + 2 * B * (1 - 0.5 / 20), rel=1e-3)
    assert later["pg"] < 4 * B
    assert later["pd"] == 5 * B - (later["pg"] - 1 * B)


def test_a_deal_running_ahead_of_its_supply_loses_nothing_waiting() -> None:
    # Four days left: its seller paces to the 1,000 its commitment leaves (its rate to date,
    # 100 a day, would deliver less), so 12 h of waiting cost 12.5 % of the 3,000 of supply
    # beyond that; at 1,000 a day (10,000 delivered in ten days) it would deliver all 4,000 of
    # its supply before any answer mattered.
    _, slow = planned(timedelta(days=4), timedelta(hours=12))
    assert slow["pg"] == 1 * B + int(3 * B * (1 - 0.5 / 4))
    _, fast = planned(timedelta(days=4), timedelta(hours=12), pg_spent=10 * B)
    assert fast["pg"] == 4 * B


def test_in_the_last_hours_no_guaranteed_deal_is_grown() -> None:
    plan, new = planned(timedelta(hours=6), timedelta(hours=12))
    assert new == {"pg": 1 * B, "pd": 5 * B}  # the answer would come after the flight
    assert not [r for r in plan.requests if r.deal_id == "pg" and r.target_total > 2 * B]
    _, asked = planned(timedelta(hours=6), timedelta(0))  # sized on the whole time left
    assert asked["pg"] > 1 * B


@pytest.mark.parametrize(
    ("left", "answer", "share"),
    [
        (timedelta(days=20), timedelta(hours=12), 1 - 0.5 / 20),
        (timedelta(hours=24), timedelta(hours=12), 0.5),
        (timedelta(hours=12), timedelta(hours=12), 0.0),
        (timedelta(hours=6), timedelta(hours=12), 0.0),
    ],
)
def test_share_after_answer_is_the_opportunity_left_once_answered(
    left: timedelta, answer: timedelta, share: float
) -> None:
    snap = snapshot(left, Policy())
    curve = build_curve(snap.pacing, snap.timezone, as_of=snap.as_of)
    got = share_after_answer(curve, snap.as_of, answer.total_seconds())
    assert float(got) == pytest.approx(share, abs=1e-9)


@given(
    st.lists(
        st.tuples(st.integers(0, 10**15), st.integers(0, 10**15), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.floats(0.0, 1.0),
)
def test_answer_limited_stays_between_the_floor_and_the_capacity(
    rows: list[tuple[int, int, bool]], share: float
) -> None:
    capacity, floor, paced = (np.array(c) for c in zip(*rows, strict=True))
    capacity, floor = capacity.astype(np.int64), floor.astype(np.int64)
    out = answer_limited(capacity, floor, paced.astype(bool), share)
    grown = paced & (capacity > floor)
    assert (out[~grown] == capacity[~grown]).all()  # buyer-paced, or nothing above the floor
    assert (floor[grown] <= out[grown]).all() and (out[grown] <= capacity[grown]).all()
    if share == 1.0:
        assert (out == capacity).all()
    if share == 0.0:
        assert (out[grown] == floor[grown]).all()


def history(answered_after: list[float | None], deal: str = "pg") -> RequestHistory:
    """Requests on `deal` an hour apart, each answered that many hours later (None: not yet)."""
    at = AS_OF.timestamp() - 48 * 3600 + 3600 * np.arange(len(answered_after))
    waited = np.array([np.nan if a is None else a for a in answered_after], dtype=np.float64)
    return RequestHistory(
        pd.DataFrame(
            {
                "deal_id": [deal] * len(at),
                "requested_at": at,
                "kind": ["INCREASE"] * len(at),
                "target_total": [2 * B] * len(at),  # nothing above the commitment: no ask awaited
                "response": ["PENDING" if a is None else "ACCEPTED" for a in answered_after],
                "accepted_total": [-1 if a is None else 2 * B for a in answered_after],
                "answered_at": at + 3600 * waited,
            }
        )
    )


def test_each_seller_is_read_at_its_own_answer_time() -> None:
    snap = snapshot(timedelta(days=20), Policy())
    deals = snap.deals
    default = timedelta(hours=12)
    assert answer_times(deals, None, default).tolist() == [43_200.0, 43_200.0]
    # s1 answered three times, in 1, 2 and 9 hours: its median, 2 h; s2 has no answers.
    got = answer_times(deals, history([1.0, 2.0, 9.0, None]), default)
    assert got.tolist() == [7_200.0, 43_200.0]
    # Without the column (a history kept before it existed): the default for every seller.
    old = history([1.0]).requests.drop(columns="answered_at")
    assert answer_times(deals, RequestHistory(old), default).tolist() == [43_200.0, 43_200.0]


def test_a_seller_that_answers_within_the_hour_is_still_asked_near_the_end() -> None:
    # Six hours left: at the default 12 h the answer would come after the flight; this
    # seller has answered in an hour, so five of the six hours' supply can still be asked for.
    snap = snapshot(timedelta(hours=6), Policy())
    late = build_plan(snap, history=history([1.0]))
    new = late.deals.set_index("deal_id")["new_allocation"]
    assert new["pg"] > 1 * B
    assert int(new["pg"]) == pytest.approx(1 * B + 3 * B * 5 / 6, rel=1e-3)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(0, 48 * 60))),
        max_size=40,
    ),
    st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_answer_times_are_each_seller_s_median(
    answers: list[tuple[int, int | None]], sellers: list[int]
) -> None:
    """Six deals on up to four sellers; any answers on any of them (None: still awaited):
    each deal's time is its seller's median as pandas computes it, else the default. Answer
    times in whole minutes: a fraction of a second is lost to the unix time it is added to."""
    deals = snapshot(timedelta(days=20), Policy()).deals.iloc[[0, 1, 0, 1, 0, 1]]
    deals = deals.assign(
        deal_id=[f"d{i}" for i in range(6)], seller_id=[f"s{k}" for k in sellers]
    ).reset_index(drop=True)
    at = 1.7e9 + 3600.0 * np.arange(len(answers))
    waited = np.array([np.nan if a is None else a * 60 for _, a in answers], dtype=np.float64)
    frame = pd.DataFrame(
        {
            "deal_id": [f"d{d}" for d, _ in answers],
            "requested_at": at,
            "kind": "INCREASE",
            "target_total": 1,
            "response": ["PENDING" if a is None else "ACCEPTED" for _, a in answers],
            "accepted_total": 1,
            "answered_at": at + waited,
        }
    )
    got = answer_times(deals, RequestHistory(frame), timedelta(hours=12))
    seller_of = dict(zip(deals["deal_id"], deals["seller_id"], strict=True))
    known = frame.assign(seller=frame["deal_id"].map(seller_of), wait=waited).dropna()
    median = known.groupby("seller")["wait"].median()
    expected = [median.get(s, 43_200.0) for s in deals["seller_id"]]
    assert got.tolist() == pytest.approx(expected)


def test_the_words_name_the_answer_time_where_it_limits_the_deal() -> None:
    plan, _ = planned(timedelta(days=20), timedelta(hours=12))
    words = plan.deals.set_index("deal_id")["rationale"]
    # 12 h of the 20 days' even traffic pass before the answer: 97.5 % of the rest is left.
    assert words["pg"].endswith(
        "its present pace and the 98% of its further supply left once its seller answers"
    ), words["pg"]
    assert "answers" not in words["pd"]
    late, _ = planned(timedelta(hours=6), timedelta(hours=12))
    assert late.deals.set_index("deal_id")["rationale"]["pg"].endswith(
        "its present pace: its seller could not answer an increase before the end"
    )
    # Without a wait nothing limits it, and nothing is said.
    now, _ = planned(timedelta(days=20), timedelta(0))
    assert "answers" not in now.deals.set_index("deal_id")["rationale"]["pg"]
    assert np.isnan(now.deals.set_index("deal_id")["answer_share"]["pg"])

"""The DSP and ad-server pacing rules the service imitates, exactly, through AssessPacing on the
real server: the campaign verdict's `expected` (what should be delivered by `as_of`) and
`allocation` (what the campaign's budgets let it deliver over the flight), in USD micros.

* DSP lifetime pacing: $1000 over 10 days with a $200 daily budget "will spend no more than
  $100/day" -- EVEN with `catch_up_fraction: 1` (the default 0.95 keeps a 5% catch-up buffer and
  paces $105.26/day).
* DSP daily pacing: $1000 over 10 days with a $200 daily budget "will spend $200/day until it runs
  out of budget" (day 5) -- `paced_period: PERIOD_DAY`; with $50/day "only $500 over the 10 days".
* `max_spend_micros` on a SPEND goal bounds the curve and the allocation.
* Ad-server front-loaded: "the first 35% of the budget ASAP, then the rest evenly over the
  flight" -- FRONT_LOADED with `fraction: 0`.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from conftest import bad_request, rpc_error
from google.protobuf import json_format

from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc

USD = 1_000_000
START = "2026-03-02T00:00:00Z"  # a Monday, UTC campaign: days are plain 24 h
END = "2026-03-12T00:00:00Z"  # 10 days


def _request(pacing: dict[str, Any], as_of: str) -> pb.AssessPacingRequest:
    body = {
        "snapshot": {
            "campaign_id": "seed-rules",
            "as_of": as_of,
            "time_zone": "UTC",
            "currency_code": "USD",
            "pacing": {
                "budget_type": "BUDGET_TYPE_SPEND",
                "start_time": START,
                "end_time": END,
                **pacing,
            },
            "sellers": [{"seller_id": "s1"}],
            "channels": [{"channel_id": "display"}],
            "deals": [
                {
                    "deal_id": "d1",
                    "seller_id": "s1",
                    "channel_id": "display",
                    "deal_type": "DEAL_TYPE_PREFERRED",
                    "allocation": str(1000 * USD),
                }
            ],
        }
    }
    return json_format.ParseDict(body, pb.AssessPacingRequest())


def _campaign(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, pacing: dict[str, Any], day: float
) -> tuple[float, float]:
    """(expected by the start of `day` + fraction, allocation), in USD."""
    hours = round(day * 24)
    as_of = f"2026-03-{2 + hours // 24:02d}T{hours % 24:02d}:00:00Z"
    reply = stub.AssessPacing(_request(pacing, as_of), timeout=30)
    campaign = reply.assessment.campaign
    return campaign.expected / USD, campaign.allocation / USD


def _budgets(lifetime: int, daily: int) -> list[dict[str, str]]:
    return [
        {"period": "PERIOD_LIFETIME", "amount": str(lifetime * USD)},
        {"period": "PERIOD_DAY", "amount": str(daily * USD)},
    ]


LIFETIME = {
    "mode": "PACING_MODE_EVEN",
    "even": {"catch_up_fraction": 1},
    "budgets": _budgets(1000, 200),
}


@pytest.mark.parametrize("day", [1, 3, 5, 9.5])
def test_dsp_lifetime_pacing_is_exactly_100_a_day(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, day: float
) -> None:
    expected, allocation = _campaign(stub, LIFETIME, day)
    assert expected == pytest.approx(100 * day, abs=0.01)
    assert allocation == pytest.approx(1000, abs=0.01)


def test_default_even_keeps_a_catch_up_buffer(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    default = {"mode": "PACING_MODE_EVEN", "budgets": _budgets(1000, 200)}
    expected, _ = _campaign(stub, default, 1)
    assert expected == pytest.approx(1000 / 9.5, abs=0.01)  # $105.26/day: 100% by 95% of time


DAILY = {"mode": "PACING_MODE_EVEN", "even": {"catch_up_fraction": 1}, "paced_period": "PERIOD_DAY"}


@pytest.mark.parametrize(
    ("day", "want"),
    [(0.5, 100), (1, 200), (2.5, 500), (4.75, 950), (5, 1000), (7, 1000), (9.5, 1000)],
)
def test_dsp_daily_pacing_spends_200_a_day_until_the_budget_runs_out(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, day: float, want: float
) -> None:
    expected, allocation = _campaign(stub, {**DAILY, "budgets": _budgets(1000, 200)}, day)
    assert expected == pytest.approx(want, abs=0.01)
    assert allocation == pytest.approx(1000, abs=0.01)


@pytest.mark.parametrize("day", [1, 5, 9.5])
def test_dsp_daily_pacing_at_50_a_day_spends_500_over_10_days(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, day: float
) -> None:
    expected, allocation = _campaign(stub, {**DAILY, "budgets": _budgets(1000, 50)}, day)
    assert expected == pytest.approx(50 * day, abs=0.01)
    assert allocation == pytest.approx(500, abs=0.01)


@pytest.mark.parametrize(("day", "want"), [(3, 600), (5, 1000), (6, 1000), (9.5, 1000)])
def test_max_spend_bounds_the_expected_curve_and_the_allocation(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, day: float, want: float
) -> None:
    daily_only = {
        "mode": "PACING_MODE_EVEN",
        "even": {"catch_up_fraction": 1},
        "budgets": [{"period": "PERIOD_DAY", "amount": str(200 * USD)}],
        "max_spend_micros": str(1000 * USD),
    }
    expected, allocation = _campaign(stub, daily_only, day)
    assert expected == pytest.approx(want, abs=0.01)
    assert allocation == pytest.approx(1000, abs=0.01)


@pytest.mark.parametrize(("day", "want"), [(0.01, 350), (1, 415), (5, 675), (9.5, 967.5)])
def test_ad_server_front_loaded_rule_is_an_asap_head_then_even(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub, day: float, want: float
) -> None:
    front = {
        "mode": "PACING_MODE_FRONT_LOADED",
        "front_loaded": {"share": 0.35, "fraction": 0},
        "budgets": [{"period": "PERIOD_LIFETIME", "amount": str(1000 * USD)}],
    }
    expected, _ = _campaign(stub, front, day)
    assert expected == pytest.approx(want, abs=0.01)  # 350 at once, then 65 a day


def test_paced_period_needs_a_budget_of_that_period(
    stub: reallocator_service_pb2_grpc.ReallocatorServiceStub,
) -> None:
    pacing = {**DAILY, "paced_period": "PERIOD_HOUR", "budgets": _budgets(1000, 200)}
    error = rpc_error(lambda: stub.AssessPacing(_request(pacing, START), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field: v.description for v in bad_request(error)}
    assert "must be the period of one of the budgets" in fields["snapshot.pacing.paced_period"]

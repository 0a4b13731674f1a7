"""Policy.churn_relative and Policy.cut_confidence on the wire: range [0, 10], round trip."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from reallocator.core.model import Policy
from reallocator.v1 import policy_pb2
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.violations import Violations


@pytest.mark.parametrize("name", ["churn_relative", "cut_confidence"])
@pytest.mark.parametrize("value", [-0.1, 10.5, math.nan, math.inf])
def test_out_of_range_is_a_field_violation(name: str, value: float) -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(**{name: value}), Policy(), errors)
    assert [v.field for v in errors.items] == [f"policy.{name}"]


def test_round_trip_and_defaults() -> None:
    errors = Violations()
    assert decode_policy(policy_pb2.Policy(), Policy(), errors) == Policy()
    custom = Policy(churn_relative=0.0, cut_confidence=3.5, forecast_prior=timedelta(hours=6))
    assert decode_policy(encode_policy(custom), Policy(), errors) == custom
    assert not errors.items
    assert Policy().churn_relative == 0.1 and Policy().cut_confidence == 2.0


def test_negative_forecast_prior_is_a_field_violation() -> None:
    errors = Violations()
    msg = policy_pb2.Policy()
    msg.forecast_prior.FromTimedelta(timedelta(hours=-1))
    decode_policy(msg, Policy(), errors)
    assert [v.field for v in errors.items] == ["policy.forecast_prior"]

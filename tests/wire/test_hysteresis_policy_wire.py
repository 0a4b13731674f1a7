"""Policy.move_band, reversal_band (range [0, 1]), reversal_window, reversal_churn and
churn_request (range [0, 100]) on the wire."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from reallocator.core.model import Policy
from reallocator.v1 import policy_pb2
from reallocator.wire.policy import decode_policy, encode_policy
from reallocator.wire.violations import Violations


@pytest.mark.parametrize("name", ["move_band", "reversal_band"])
@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf])
def test_out_of_range_is_a_field_violation(name: str, value: float) -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(**{name: value}), Policy(), errors)
    assert [v.field for v in errors.items] == [f"policy.{name}"]


@pytest.mark.parametrize("name", ["reversal_churn", "churn_request"])
@pytest.mark.parametrize("value", [-1.0, 100.5, math.nan, math.inf])
def test_churn_multiples_out_of_range_are_field_violations(name: str, value: float) -> None:
    errors = Violations()
    decode_policy(policy_pb2.Policy(**{name: value}), Policy(), errors)
    assert [v.field for v in errors.items] == [f"policy.{name}"]


def test_round_trip_and_defaults() -> None:
    errors = Violations()
    custom = Policy(
        move_band=0.0, reversal_band=0.7, reversal_window=timedelta(hours=6), reversal_churn=9.0
    )
    assert decode_policy(encode_policy(custom), Policy(), errors) == custom
    assert decode_policy(policy_pb2.Policy(), Policy(), errors) == Policy()
    assert not errors.items
    assert Policy().move_band == 0.2 and Policy().reversal_band == 0.3
    assert Policy().reversal_window == timedelta(hours=24) and Policy().reversal_churn == 2.0
    assert Policy().churn_request == 1.0


def test_negative_reversal_window_is_a_field_violation() -> None:
    errors = Violations()
    msg = policy_pb2.Policy()
    msg.reversal_window.FromTimedelta(timedelta(hours=-1))
    decode_policy(msg, Policy(), errors)
    assert [v.field for v in errors.items] == ["policy.reversal_window"]

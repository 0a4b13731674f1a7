"""Error statuses stay small enough for the trailers that carry them, whatever they report."""

from __future__ import annotations

from google.rpc import code_pb2, error_details_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.server.errors import (
    DETAILS_BUDGET,
    MESSAGE_BUDGET,
    bad_request_status,
    field_violations,
    precondition_status,
)
from reallocator.wire.violations import FieldViolation


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3_000), width=st.integers(1, 300))
def test_bad_requests_list_what_fits_and_count_the_rest(n: int, width: int) -> None:
    violations = [FieldViolation(f"snapshot.deals[{i}].allocation", "x" * width) for i in range(n)]
    status = bad_request_status(violations)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert len(status.message) <= MESSAGE_BUDGET
    listed = field_violations(status)
    assert status.details[0].ByteSize() <= DETAILS_BUDGET + 400  # one entry may pass the budget
    whole = sum(len(v.field) + len(v.description) + 8 for v in violations)
    if listed[-1].description.endswith("left out"):
        kept = len(listed) - 1
        assert 1 <= kept < n
        assert listed[:kept] == violations[:kept]
        assert f"and {n - kept} more violations" in listed[-1].description
    else:
        assert listed == violations
        assert whole < 2 * DETAILS_BUDGET  # only what fits travels whole


def test_a_huge_report_is_cut() -> None:
    violations = [
        FieldViolation(f"snapshot.deals[{i}].allocation", "must be >= 0") for i in range(5000)
    ]
    listed = field_violations(bad_request_status(violations))
    assert 10 < len(listed) < 500
    assert listed[-1].description == f"... and {5000 - len(listed) + 1} more violations, left out"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3_000))
def test_precondition_failures_list_what_fits_and_count_the_rest(n: int) -> None:
    failures = [
        ("CONSTRAINT", f"deal/d{i}/min_allocation", f"relax it by {i} USD") for i in range(n)
    ]
    status = precondition_status(
        "constraints conflict: " + "; ".join(f[2] for f in failures), failures
    )
    assert status.code == code_pb2.FAILED_PRECONDITION
    assert len(status.message) <= MESSAGE_BUDGET
    detail = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(detail)
    assert detail.ByteSize() <= DETAILS_BUDGET + 200
    got = [(v.type, v.subject, v.description) for v in detail.violations]
    if got and got[-1][1] == "...":
        kept = len(got) - 1
        assert got[:kept] == failures[:kept]
        assert got[-1][2] == f"and {n - kept} more, left out"
    else:
        assert got == failures

"""Properties of the concurrency limiter and of what the call log takes from a request."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reallocator.server.limits import CallLimiter
from reallocator.server.logs import MAX_FIELD, campaign_of, clean
from reallocator.v1 import reallocator_service_pb2 as pb

steps = st.lists(st.tuples(st.booleans(), st.sampled_from("abc")), max_size=60)


@given(total=st.integers(1, 5), per_caller=st.integers(1, 5), steps=steps)
def test_the_limiter_never_admits_beyond_its_limits(
    total: int, per_caller: int, steps: list[tuple[bool, str]]
) -> None:
    """Any interleaving of starts and ends: admitted calls stay within both limits, a call is
    refused only when a limit is reached, and all slots come back."""
    limiter = CallLimiter(total, per_caller)
    running: list[str] = []
    for start, caller in steps:
        if start:
            refusal = limiter.try_acquire(caller)
            full = len(running) >= total or running.count(caller) >= per_caller
            assert (refusal is not None) == full
            if refusal is None:
                running.append(caller)
        elif caller in running:
            running.remove(caller)
            limiter.release(caller)
        assert limiter.running == len(running) <= total
        assert all(running.count(c) <= per_caller for c in running)
    for caller in list(running):
        limiter.release(caller)
    assert limiter.running == 0 and limiter.try_acquire("a") is None


@given(st.text())
def test_clean_makes_any_string_one_short_safe_token(value: str) -> None:
    out = clean(value)
    assert len(out) <= MAX_FIELD
    assert not any(ch in out for ch in '\n\r\t "\\{}')
    assert all(ch.isprintable() for ch in out)


def test_campaign_comes_from_the_id_the_snapshot_or_a_resource_name() -> None:
    assert campaign_of(pb.GetPacingHistoryRequest(campaign_id="c-1")) == "c-1"
    request = pb.ReplanRequest()
    request.snapshot.campaign_id = "c-2"
    assert campaign_of(request) == "c-2"
    assert campaign_of(pb.GetPlanRequest(name="campaigns/c-3/plans/p9")) == "c-3"
    assert campaign_of(pb.ListPlansRequest(parent="campaigns/c-4")) == "c-4"
    assert campaign_of(pb.GetPlanRequest(name="plans/p9")) == ""
    assert campaign_of(pb.GetPacingHistoryRequest(campaign_id="x\ny")) == "x?y"

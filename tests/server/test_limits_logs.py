"""Properties of the concurrency limiter and of what the call log takes from a request."""

from __future__ import annotations

import contextlib

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


def test_the_interceptor_wraps_each_handler_once_and_counts_every_call() -> None:
    """grpcio asks the interceptor for a handler on every call: the same handler gets the same
    wrapper, a new one (another server's) a new wrapper, health is not wrapped; the metrics'
    series looked up once still count each call under its method and status."""
    from types import SimpleNamespace
    from typing import Any

    import grpc

    from reallocator.config import ServerConfig
    from reallocator.server.operations import Operations

    ops = Operations(ServerConfig())
    interceptor = ops.interceptor

    def answer(request: Any, context: Any) -> Any:
        if request == b"fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "no")
        return pb.GetPlanResponse()

    class Context:
        def __init__(self) -> None:
            self.trailers: tuple[Any, ...] = ()
            self.status: grpc.StatusCode | None = None

        def invocation_metadata(self) -> tuple[Any, ...]:
            return ()

        def peer(self) -> str:
            return "ipv4:127.0.0.1:5555"

        def code(self) -> grpc.StatusCode | None:
            return self.status

        def is_active(self) -> bool:
            return True

        def trailing_metadata(self) -> tuple[Any, ...]:
            return self.trailers

        def set_trailing_metadata(self, trailers: tuple[Any, ...]) -> None:
            self.trailers = trailers

        def abort(self, code: grpc.StatusCode, details: str) -> None:
            self.status = code
            raise RuntimeError(details)

    handler = grpc.unary_unary_rpc_method_handler(answer)
    details = SimpleNamespace(method="/reallocator.v1.ReallocatorService/GetPlan")
    wrapped = interceptor.intercept_service(lambda _: handler, details)
    assert wrapped is not handler
    assert interceptor.intercept_service(lambda _: handler, details) is wrapped
    other = grpc.unary_unary_rpc_method_handler(answer)
    assert interceptor.intercept_service(lambda _: other, details) not in (wrapped, None)
    health = SimpleNamespace(method="/grpc.health.v1.Health/Check")
    assert interceptor.intercept_service(lambda _: handler, health) is handler
    for request in (b"", b"", b"fail"):
        context = Context()
        with contextlib.suppress(RuntimeError):
            wrapped.unary_unary(request, context)
        assert ("x-request-id", context.trailers[-1][1]) == context.trailers[-1]
    registry = ops.metrics.registry
    labels = {"method": "GetPlan", "code": "OK"}
    assert registry.get_sample_value("reallocator_calls_total", labels) == 2
    labels["code"] = "NOT_FOUND"
    assert registry.get_sample_value("reallocator_calls_total", labels) == 1
    count = registry.get_sample_value("reallocator_call_seconds_count", {"method": "GetPlan"})
    assert count == 3

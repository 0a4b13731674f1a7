"""Every floating-point field a Replan carries, at the ends of what a double holds: the call
answers a plan, or INVALID_ARGUMENT naming that field; never INTERNAL, and no numpy warning on
the way (an overflow to inf inside the core is how a wrong figure starts). Found this way:
value_per_unit, churn and relaxation weights and relative step limits near 1e308 overflowed
weight x amount (now bounded on the wire)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from reallocator.config import ServerConfig
from reallocator.server.app import SERVICE
from reallocator.server.dispatch import _unary
from reallocator.server.errors import field_violations
from reallocator.server.servicer import ReallocatorServicer
from reallocator.store.sql import SqlStore
from reallocator.v1 import reallocator_service_pb2 as pb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replan_request.json"
EXTREMES = (1.7e308, -1.7e308, 5e-324, math.inf, math.nan, 0.0)
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


class _Aborted(Exception):
    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class _Context:
    """What the servicer reads of a call's context (no deadline, the caller waiting)."""

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort_with_status(self, status: grpc.Status) -> None:
        raise _Aborted(status)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AssertionError(f"plain abort {code}: {details}")

    def code(self) -> None:  # nothing aborted before the dispatch layer maps an error
        return None


def _float_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[str]:
    """Dotted paths (a repeated message's first element as [0]) of the service's own floats."""
    for field in descriptor.fields:
        path = prefix + field.name
        if field.type in _FLOATS:
            yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name.startswith(
            "reallocator."
        ):
            repeated = field.is_repeated
            yield from _float_paths(field.message_type, path + ("[0]." if repeated else "."))


def _set(message: Message, path: str, value: float) -> None:
    target: Any = message
    *parents, leaf = path.split(".")
    for part in parents:
        if part.endswith("[0]"):
            items = getattr(target, part[:-3])
            target = items[0] if len(items) else items.add()
        else:
            target = getattr(target, part)
    items = getattr(target, leaf)
    if isinstance(items, float | int):
        setattr(target, leaf, value)
    elif len(items):
        items[0] = value
    else:
        items.append(value)


PATHS = sorted(set(_float_paths(pb.ReplanRequest.DESCRIPTOR)))


Handler = Callable[[bytes, _Context], Any]


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Handler]:
    """The server's own handlers (request bytes in; errors mapped to statuses by the dispatch
    layer), in this process so numpy's warnings can be made errors."""
    url = f"sqlite:///{tmp_path_factory.mktemp('extreme') / 'store.db'}"
    servicer = ReallocatorServicer(ServerConfig(), SqlStore.open(url))
    return {
        name: _unary(SERVICE.methods_by_name[name], getattr(servicer, attr), None)
        for name, attr in (("Replan", "replan"), ("AssessPacing", "assess_pacing"))
    }


def _calls(base: pb.ReplanRequest) -> Iterator[tuple[str, Message]]:
    """The request as a dry and a recorded Replan, and as an AssessPacing."""
    for dry_run in (True, False):
        request = pb.ReplanRequest()
        request.CopyFrom(base)
        request.dry_run = dry_run
        yield "Replan", request
    yield "AssessPacing", pb.AssessPacingRequest(snapshot=base.snapshot, policy=base.policy)


def test_the_walk_reaches_the_floats_that_matter() -> None:
    for path in ("snapshot.deals[0].value_per_unit", "policy.churn.deal",
                 "policy.step_limits.max_step_rel", "snapshot.pacing.custom_curve.hour_weights",
                 "snapshot.sellers[0].limits.max_share"):  # fmt: skip
        assert path in PATHS


@pytest.mark.parametrize("path", PATHS)
def test_a_float_at_its_extremes_is_planned_or_named(
    handlers: dict[str, Handler], path: str
) -> None:
    for value in EXTREMES:
        base = json_format.Parse(EXAMPLE.read_text(), pb.ReplanRequest())
        _set(base, path, value)
        for method, request in _calls(base):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                try:
                    answer = handlers[method](request.SerializeToString(), _Context())
                except _Aborted as aborted:
                    status = aborted.status
                    assert status.code == grpc.StatusCode.INVALID_ARGUMENT, (value, status.details)
                    (detail,) = (v for k, v in status.trailing_metadata if k.endswith("-bin"))
                    fields = [
                        v.field for v in field_violations(status_pb2.Status.FromString(detail))
                    ]
                    assert fields, (value, status.details)
                    continue
            done = answer.message
            assert done.plan.deals if method == "Replan" else done.assessment.campaign.status

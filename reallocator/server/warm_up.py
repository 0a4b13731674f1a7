"""A worker's first calls, made before it listens. A fresh process's first Replan loads and
compiles what later calls reuse (modules imported on first use, Arrow's conversions, the
solver, SQLAlchemy's compiled statements, which are cached per engine): measured in process,
the first dry 50-deal call took ~1.7x a warm one and the first recorded call ~2x, and with
one such call per worker a short latency run's p99 was that first call. `warm_up` runs the
README's example Replan through the worker's own servicer, dry and recorded, and an
AssessPacing, in both deal forms; the recorded ones run under the store's rehearsal, so the
real engine and statements are used and nothing is stored."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from reallocator.core.model import Policy
from reallocator.server.servicer import ReallocatorServicer
from reallocator.v1 import assessment_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.wire.encode import encode_snapshot
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

log = logging.getLogger(__name__)

REQUEST = Path(__file__).with_name("warm_up_request.json")
"""The warm-up's Replan: a copy of examples/replan_request.json (a test keeps them equal)."""


class InProcessContext:
    """The few `grpc.ServicerContext` calls the servicer's methods make, for a call made in
    process (no server, no channel): no deadline, a caller that waits, no metadata (the
    store's actor is then "anonymous"); an abort raises."""

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")

    def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(str(status))

    def set_trailing_metadata(self, metadata: Any) -> None:
        del metadata


def requests() -> tuple[pb.ReplanRequest, pb.ReplanRequest, pb.AssessPacingRequest]:
    """The warm-up's calls: the example Replan dry with its deals as messages, then recorded
    and assessed with them as Arrow tables (each form has its own decoding)."""
    dry = json_format.Parse(REQUEST.read_text(), pb.ReplanRequest())
    dry.dry_run, dry.view = True, pb.PLAN_VIEW_FULL
    errors = Violations()
    snapshot = decode_snapshot(dry.snapshot, Policy(), errors)
    errors.raise_if_any()
    assert snapshot is not None
    columns = encode_snapshot(snapshot, "arrow")
    recorded = pb.ReplanRequest(snapshot=columns, policy=dry.policy, view=pb.PLAN_VIEW_FULL)
    assess = pb.AssessPacingRequest(
        snapshot=columns, policy=dry.policy, view=assessment_pb2.ASSESSMENT_VIEW_FULL
    )
    return dry, recorded, assess


def warm_up(servicer: ReallocatorServicer) -> float:
    """Runs the warm-up's calls through `servicer` (before the server listens: the store's
    rehearsal rolls back every transaction meanwhile); seconds taken. A call that fails (the
    database not there yet) is logged and skipped: the first caller then pays what it would
    have without the warm-up, and the server still starts."""
    started = time.perf_counter()
    dry, recorded, assess = requests()
    context: Any = InProcessContext()
    calls: list[tuple[str, Callable[[], object]]] = [
        ("Replan (dry run)", lambda: servicer.replan(dry, context)),
        ("Replan (recorded)", lambda: servicer.replan(recorded, context)),
        ("AssessPacing", lambda: servicer.assess_pacing(assess, context)),
    ]
    with servicer.store.rehearsal():
        for name, call in calls:
            try:
                call()
            except Exception as exc:  # a warm-up must never keep the server from starting
                log.warning("warm-up: %s failed (%s); the first such call is slower", name, exc)
    return time.perf_counter() - started


__all__ = ["REQUEST", "InProcessContext", "requests", "warm_up"]

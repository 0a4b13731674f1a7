"""Hostile requests for the fuzz run (tests/fuzz) and its long form (benchmarks/fuzz.py), and
the server they are sent to, in a child process so a crash is a finding, not a dead runner.

Each case starts from a valid snapshot (tests/builders.py) and breaks it one way: an extreme
value in a field (0, -1, 2**53+1, int64 bounds, NaN, inf), a date at or past the ends of time,
an unknown enum number, a huge string or count, duplicates, flipped bytes in an Arrow stream or
in the whole request, or a decompression bomb. `check` then states the property: a known status
(OK, INVALID_ARGUMENT, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED), and an OK
response that keeps its own rules (allocations within their bounds and the budget, no negative
or overflowing amount).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from builders import (  # noqa: E402
    arrow_ipc,
    build_snapshot,
    deal_arrow_table,
    random_snapshot_spec,
)
from ports import free_port  # noqa: E402

from reallocator.v1 import reallocator_service_pb2 as pb  # noqa: E402

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
SERVICE = "/reallocator.v1.ReallocatorService/"
INTS = [0, 1, -1, 2**31, 2**53, 2**53 + 1, 2**62, 2**63 - 1, -(2**63)]
FLOATS = [0.0, -0.0, -1.0, 1e308, -1e308, math.nan, math.inf, -math.inf, 5e-324]
SECONDS = [-62135596800, -1, 0, 86400 * 365 * 3000, 253402300799, 2**40, -(2**40)]
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    kind: str
    method: str  # "AssessPacing" or "Replan"
    payload: bytes
    timeout: float = 20.0


def _fields(msg: Message) -> list[tuple[Message, object]]:
    """Every (message, field descriptor) in `msg`, recursively through set sub-messages."""
    out: list[tuple[Message, object]] = []
    for field in msg.DESCRIPTOR.fields:
        out.append((msg, field))
        if field.type == field.TYPE_MESSAGE:
            if field.is_repeated:
                if field.message_type.GetOptions().map_entry:
                    continue
                for item in list(getattr(msg, field.name))[:3]:
                    out.extend(_fields(item))
            elif msg.HasField(field.name):
                out.extend(_fields(getattr(msg, field.name)))
    return out


def _extreme(rng: random.Random, field: object, current: object) -> object:
    f = field
    if f.type == f.TYPE_STRING:  # type: ignore[attr-defined]
        return rng.choice(["", "x" * rng.choice([300, 20_000, 100_000]), "é" * 50_000, "\x00"])
    if f.type == f.TYPE_BOOL:  # type: ignore[attr-defined]
        return not current
    if f.type in (f.TYPE_DOUBLE, f.TYPE_FLOAT):  # type: ignore[attr-defined]
        return rng.choice(FLOATS)
    if f.type == f.TYPE_ENUM:  # type: ignore[attr-defined]
        return rng.choice([-1, 0, 99, 2**31 - 1, -(2**31)])
    if f.type in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32):  # type: ignore[attr-defined]
        return rng.choice([-1, 0, 2**31 - 1, -(2**31)])
    if f.type in (f.TYPE_UINT32, f.TYPE_FIXED32):  # type: ignore[attr-defined]
        return rng.choice([0, 2**32 - 1])
    if f.type in (f.TYPE_UINT64, f.TYPE_FIXED64):  # type: ignore[attr-defined]
        return rng.choice([0, 2**64 - 1])
    if f.name in ("seconds",):  # type: ignore[attr-defined]
        return rng.choice(SECONDS)
    if f.name in ("nanos",):  # type: ignore[attr-defined]
        return rng.choice([-1, 10**9, 2**31 - 1])
    return rng.choice(INTS)


def _set(msg: Message, field: object, value: object) -> None:
    f = field
    try:
        if f.is_repeated:  # type: ignore[attr-defined]
            if f.type == f.TYPE_MESSAGE:  # type: ignore[attr-defined]
                return
            getattr(msg, f.name).extend([value] * 3)  # type: ignore[attr-defined]
        elif f.type != f.TYPE_MESSAGE:  # type: ignore[attr-defined]
            setattr(msg, f.name, value)  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        pass


def valid_request(rng: random.Random) -> tuple[str, Message]:
    n = rng.choice([1, 3, 20, 120])
    form = rng.choice(["deals", "columns", "arrow"])
    spec = random_snapshot_spec(n, seed=rng.randrange(10**6), n_buckets=rng.choice([0, 6, 24]))
    snapshot = build_snapshot(spec, form)  # type: ignore[arg-type]
    if rng.random() < 0.5:  # a policy, so its fields can be broken too
        snapshot_policy = pb.ReplanRequest().policy
        snapshot_policy.over_threshold = 1.2
        snapshot_policy.stalled_window.seconds = 3600
        # Its sub-messages set (at their defaults), so their fields are walked and broken too.
        snapshot_policy.requests.answer_time.seconds = 12 * 3600
        snapshot_policy.requests.cooldown.seconds = 24 * 3600
        snapshot_policy.churn.deal = 0.0
        snapshot_policy.step_limits.max_step_rel = 1.0
        snapshot_policy.severity.material_share = 0.1
    else:
        snapshot_policy = None
    if rng.random() < 0.4:
        request_a = pb.AssessPacingRequest(snapshot=snapshot)
        if snapshot_policy is not None:
            request_a.policy.CopyFrom(snapshot_policy)
        return "AssessPacing", request_a
    request = pb.ReplanRequest(snapshot=snapshot, dry_run=True)
    request.on_infeasible = rng.choice([0, 1, 2])
    if snapshot_policy is not None:
        request.policy.CopyFrom(snapshot_policy)
    if rng.random() < 0.5:
        request.schedule_window.seconds = rng.choice([3600, 6 * 3600, 86400])
        request.time_limit.seconds = 5
    return "Replan", request


def _field_values(rng: random.Random) -> Case:
    method, request = valid_request(rng)
    fields = _fields(request)
    for _ in range(rng.choice([1, 1, 2, 3])):
        msg, field = rng.choice(fields)
        _set(msg, field, _extreme(rng, field, getattr(msg, field.name)))  # type: ignore[attr-defined]
    return Case("field", method, request.SerializeToString())


def _duplicates(rng: random.Random) -> Case:
    method, request = valid_request(rng)
    snap = request.snapshot  # type: ignore[attr-defined]
    choice = rng.choice(["sellers", "channels", "deals", "budgets", "flights"])
    if choice in ("sellers", "channels") and len(getattr(snap, choice)):
        getattr(snap, choice).append(getattr(snap, choice)[0])
    elif choice == "deals" and len(snap.deals):
        snap.deals.extend([snap.deals[0]] * rng.choice([1, 2000]))
    elif choice == "budgets":
        snap.pacing.budgets.extend(list(snap.pacing.budgets) * 2)
    else:
        for i in range(rng.choice([2, 1200])):
            f = snap.pacing.flights.add(flight_id=f"f{i % 3}")
            f.start_time.CopyFrom(snap.pacing.start_time)
            f.end_time.CopyFrom(snap.pacing.end_time)
    return Case("duplicates", method, request.SerializeToString())


def _arrow_flips(rng: random.Random) -> Case:
    spec = random_snapshot_spec(rng.choice([5, 200, 600]), seed=rng.randrange(10**6), n_buckets=0)
    data = bytearray(arrow_ipc(deal_arrow_table(spec.deals)))
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    snapshot = build_snapshot(spec, "arrow")
    snapshot.deals_table.arrow_ipc = bytes(data)
    return Case(
        "arrow-bytes", "AssessPacing", pb.AssessPacingRequest(snapshot=snapshot).SerializeToString()
    )


def _request_flips(rng: random.Random) -> Case:
    method, request = valid_request(rng)
    data = bytearray(request.SerializeToString())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.2:
        data = data[: rng.randrange(len(data) + 1)]
    return Case("request-bytes", method, bytes(data))


_BOMB: dict[str, bytes] = {}
BOMB_ROWS = 10_000_000
"""About 310 MB declared (over the default max_arrow_bytes of 256 MiB) in a 0.3 MB request."""


def bomb_stream(rows: int) -> bytes:
    """A zstd Arrow stream of `rows` zeros in every int64 column the deals table needs (one
    buffer per column, so the declared size is 8 bytes x rows x columns); cached."""
    key = f"zeros-{rows}"
    if key not in _BOMB:
        zeros = pa.array(np.zeros(rows, np.int64))
        ids = pa.nulls(rows, pa.string())
        table = pa.table({"deal_id": ids, "seller_id": ids, "channel_id": ids,
                          "deal_type": zeros, "allocation": zeros})  # fmt: skip
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        _BOMB[key] = bytes(sink.getvalue().to_pybytes())
    return _BOMB[key]


def _bomb(rng: random.Random) -> Case:
    spec = random_snapshot_spec(3, seed=rng.randrange(10**6), n_buckets=0)
    snapshot = build_snapshot(spec, "arrow")
    rows = BOMB_ROWS
    data = bytearray(bomb_stream(rows))
    if rng.random() < 0.5:  # a length prefix that lies: 2**33 declared for one buffer
        at = bytes(data).find((8 * rows).to_bytes(8, "little"))
        if at > 0:
            data[at : at + 8] = (2**33).to_bytes(8, "little")
    snapshot.deals_table.arrow_ipc = bytes(data)
    return Case(
        "bomb", "AssessPacing", pb.AssessPacingRequest(snapshot=snapshot).SerializeToString()
    )


_LIFECYCLE = (
    "GetPlan",
    "ListPlans",
    "ReviewPlan",
    "ConfirmApplied",
    "RollbackPlan",
    "RecordSellerResponse",
    "GetPacingHistory",
    "WatchCampaign",
)


KNOWN_PLANS: list[str] = []
"""Plans the server holds (seed_plans): half the life-cycle cases name one, so reviews,
applications and rollbacks really change state under the fuzz, not only answer NOT_FOUND."""


def _plan_name(rng: random.Random) -> str:
    if KNOWN_PLANS and rng.random() < 0.5:
        return rng.choice(KNOWN_PLANS)
    campaign = rng.choice(["campaign-1", "c", "x" * 300, "a/b", ""])
    return rng.choice(
        [
            f"campaigns/{campaign}/plans/{rng.getrandbits(80):020x}",
            f"campaigns/{campaign}",
            "",
            "plans/1",
        ]
    )


def _token(rng: random.Random) -> str:
    return rng.choice(["", "nonsense", "MTIzOmFi", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ojo=", "%%%"])


def _lifecycle(rng: random.Random) -> Case:
    """A request to one of the life-cycle RPCs: plausible names and tokens, then 0-3 fields set
    to extreme values (as `field` does for Replan)."""
    method = rng.choice(_LIFECYCLE)
    name, campaign = _plan_name(rng), rng.choice(["campaign-1", "", "x" * 1000])
    request: Message
    if method == "GetPlan":
        request = pb.GetPlanRequest(name=name, view=rng.choice([0, 1, 2, 3, 4, 7]))
    elif method == "ListPlans":
        request = pb.ListPlansRequest(
            parent=f"campaigns/{campaign}",
            page_size=rng.choice([0, 1, 1000, 1001, -1]),
            page_token=_token(rng),
            state=rng.choice([0, 1, 5, 99]),
        )
        if rng.random() < 0.5:
            request.start_time.seconds = rng.choice(SECONDS)
    elif method == "ReviewPlan":
        request = pb.ReviewPlanRequest(
            name=name,
            decision=rng.choice([0, 1, 2, 9]),
            etag=rng.choice(["", "0" * 32]),
            request_id=rng.choice(["r", "", f"r{rng.getrandbits(32)}"]),
        )
        for _ in range(rng.choice([0, 1, 3])):
            request.deal_decisions.add(
                deal_id=rng.choice(["", "d1", "deal-000001"]), decision=rng.choice([0, 1, 2, 5])
            )
    elif method == "ConfirmApplied":
        request = pb.ConfirmAppliedRequest(name=name, etag=rng.choice(["", "e"]))
        if rng.random() < 0.5:
            request.apply_time.seconds = rng.choice(SECONDS)
    elif method == "RollbackPlan":
        request = pb.RollbackPlanRequest(name=name, reason="r" * rng.choice([0, 5, 5000]))
    elif method == "RecordSellerResponse":
        request = pb.RecordSellerResponseRequest(
            plan=name,
            request_id=rng.choice(["", "req-1"]),
            response=rng.choice([0, 1, 3, 6, 9]),
            accepted_total=rng.choice(INTS),
            available_inventory=rng.choice(INTS),
        )
    elif method == "GetPacingHistory":
        request = pb.GetPacingHistoryRequest(
            campaign_id=campaign, page_size=rng.choice([0, 5, -3]), page_token=_token(rng)
        )
        request.entity.kind = rng.choice([0, 1, 2, 3, 4, 9])
        request.end_time.seconds = rng.choice(SECONDS)
    else:
        request = pb.WatchCampaignRequest(
            campaign_id=campaign,
            include_plans=rng.random() < 0.5,
            min_severity=rng.choice([0, 1, 3, 99]),
        )
    fields = _fields(request)
    for _ in range(rng.choice([0, 1, 2, 3])):
        msg, field = rng.choice(fields)
        _set(msg, field, _extreme(rng, field, getattr(msg, field.name)))  # type: ignore[attr-defined]
    timeout = 1.5 if method == "WatchCampaign" else 20.0
    return Case("lifecycle", method, request.SerializeToString(), timeout)


LIFECYCLE_ALLOWED = {
    grpc.StatusCode.NOT_FOUND,  # no such plan
    grpc.StatusCode.ABORTED,  # a stale etag
    grpc.StatusCode.ALREADY_EXISTS,  # a request id reused with another body
}


def allowed(case: Case) -> set[grpc.StatusCode]:
    """The statuses a clean answer to `case` may carry."""
    return ALLOWED | LIFECYCLE_ALLOWED if case.kind == "lifecycle" else ALLOWED


MUTATIONS: dict[str, Callable[[random.Random], Case]] = {
    "field": _field_values,
    "duplicates": _duplicates,
    "arrow-bytes": _arrow_flips,
    "request-bytes": _request_flips,
    "bomb": _bomb,
    "lifecycle": _lifecycle,
}
WEIGHTS = {
    "field": 6,
    "duplicates": 1,
    "arrow-bytes": 2,
    "request-bytes": 2,
    "bomb": 1,
    "lifecycle": 2,
}


def random_case(rng: random.Random) -> Case:
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    return MUTATIONS[kind](rng)


# --- what a response must satisfy --------------------------------------------------------------

_SIGNED = {"delta", "capacity_forecast"}  # may be negative: a decrease; -1 = no forecast
LIMIT = 2**62


def _ints(msg: Message, path: str = "") -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for field, value in msg.ListFields():
        name = f"{path}.{field.name}"
        if field.type == field.TYPE_MESSAGE:
            if field.is_repeated:
                if field.message_type.GetOptions().map_entry:
                    continue
                for item in value:
                    out.extend(_ints(item, name))
            else:
                out.extend(_ints(value, name))
        elif field.type in (field.TYPE_INT64, field.TYPE_SINT64):
            values = value if field.is_repeated else [value]
            out.extend((name, int(v)) for v in values if field.name not in _SIGNED)
    return out


def check_response(method: str, data: bytes) -> list[str]:
    """What an OK response breaks of its own rules (empty when nothing)."""
    problems = [f"{name} = {v}" for name, v in _ints(_parse(method, data)) if not 0 <= v < LIMIT]
    if method == "Replan":
        plan = pb.ReplanResponse.FromString(data).plan
        if plan.allocated > plan.remaining_budget:
            problems.append(f"allocated {plan.allocated} > budget {plan.remaining_budget}")
        for d in plan.deals:
            if d.upper_bound >= d.lower_bound and not (
                d.lower_bound <= d.new_allocation <= d.upper_bound
            ):
                problems.append(f"deal {d.deal_id[:40]} outside its bounds")
                break
    return problems


def _parse(method: str, data: bytes) -> Message:
    kind: type[Message] = getattr(pb, f"{method}Response")
    return kind.FromString(data)


# --- the server in a child process ---------------------------------------------------------


class ServerProcess:
    """`reallocator serve` (one worker, so its RSS is the server's) on a free port. Its folder
    (audit store, log) goes when it stops, unless `keep_files` (the fuzz benchmark prints where
    the log is)."""

    def __init__(self, workers: int = 1, keep_files: bool = False, **env: str) -> None:
        self.port = free_port()
        self.keep_files = keep_files
        clean = {k: v for k, v in os.environ.items() if not k.startswith("REALLOCATOR_")}
        # its own audit store, never a reallocator.db left in the working directory
        self.folder = tempfile.mkdtemp(prefix="reallocator-fuzz-")
        clean["REALLOCATOR_DATABASE_URL"] = f"sqlite:///{self.folder}/fuzz.db"
        self.log_path = Path(self.folder) / "server.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reallocator.cli", "--log-level", "WARNING", "serve",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,  # a file: a pipe nobody reads would stall a chatty server
            env=clean | env,
        )  # fmt: skip
        options = [("grpc.max_receive_message_length", 256 * MIB),
                   ("grpc.max_send_message_length", 256 * MIB)]  # fmt: skip
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=options)
        deadline = time.monotonic() + 90
        while self.health() != "SERVING":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.stop()}")
            time.sleep(0.2)

    def call(self, case: Case) -> tuple[grpc.StatusCode, bytes | None, str]:
        if case.method == "WatchCampaign":  # a stream: read until its deadline
            stream = self.channel.unary_stream(SERVICE + case.method)
            try:
                replies = list(stream(case.payload, timeout=case.timeout))
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                    return grpc.StatusCode.OK, b"", ""  # watched until the caller left
                return error.code(), None, error.details() or ""  # type: ignore[attr-defined]
            return grpc.StatusCode.OK, replies[-1] if replies else b"", ""
        method = self.channel.unary_unary(SERVICE + case.method)
        try:
            reply = method(case.payload, timeout=case.timeout)
        except grpc.RpcError as error:
            return error.code(), None, error.details() or ""  # type: ignore[attr-defined]
        return grpc.StatusCode.OK, reply, ""

    def seed_plans(self, count: int, campaign: str = "campaign-1") -> list[str]:
        """Records `count` plans (Replan, not a dry run, of the example request) for the life-cycle
        cases to act on; returns their names (also added to KNOWN_PLANS)."""
        from google.protobuf import json_format

        example = TESTS.parent / "examples" / "replan_request.json"
        request = json_format.Parse(example.read_text(), pb.ReplanRequest())
        request.dry_run = False
        request.snapshot.campaign_id = campaign
        replan = self.channel.unary_unary(SERVICE + "Replan")
        names = []
        for _ in range(count):
            reply = pb.ReplanResponse.FromString(replan(request.SerializeToString(), timeout=120))
            names.append(reply.plan.name)
        KNOWN_PLANS.extend(names)
        return names

    def health(self, timeout: float = 1.0) -> str:
        try:
            reply = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as error:
            return str(error.code().name)  # type: ignore[attr-defined]
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def children(self) -> set[int]:
        """Process ids of the serving workers the supervisor started (empty with one worker,
        which serves in the process itself); a changed set means a worker died and was
        restarted."""
        found: set[int] = set()
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            try:
                found.update(int(p) for p in task.read_text().split())
            except OSError:
                continue
        return found

    def rss(self) -> int:
        """Resident bytes of the server: its process and every worker it started (Linux /proc)."""
        total = 0
        for pid in [self.proc.pid, *sorted(self.children())]:
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            total += sum(int(x.split()[1]) * 1024 for x in lines if x.startswith("VmRSS:"))
        return total

    def stop(self) -> str:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        err = self.log_path.read_text(errors="replace")
        if not self.keep_files:
            shutil.rmtree(self.folder, ignore_errors=True)
        return f"exit {self.proc.returncode}: {err}"

"""The crash-safety run (tests/store/test_crash_safety.py, benchmarks/crash_safety.py):
`reallocator serve` as a child process on a database, a client sending a stream of recorded
Replan, ReviewPlan and ConfirmApplied calls, SIGKILL at seeded random moments, a restart on the
same database, and the checks at the end (see the test's docstring). `crash_run` returns the
figures: kills, calls acknowledged and cut, plans, rows, seconds.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import sqlalchemy as sa
from builders import build_snapshot, random_snapshot_spec, replan_request

from reallocator.v1 import plan_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from fuzz_cases import ServerProcess

KILLS = 6
CAMPAIGNS = ("crash-a", "crash-b", "crash-c")
LIFE_CYCLE = ("name", "state", "etag", "create_time", "history", "previous_plan")
S = plan_pb2
LATER = {  # the states a plan may reach from each state (itself included)
    S.PLAN_STATE_PROPOSED: {S.PLAN_STATE_PROPOSED, S.PLAN_STATE_APPROVED, S.PLAN_STATE_REJECTED,
                            S.PLAN_STATE_APPLIED, S.PLAN_STATE_SUPERSEDED},
    S.PLAN_STATE_APPROVED: {S.PLAN_STATE_APPROVED, S.PLAN_STATE_APPLIED, S.PLAN_STATE_SUPERSEDED},
    S.PLAN_STATE_REJECTED: {S.PLAN_STATE_REJECTED},
    S.PLAN_STATE_APPLIED: {S.PLAN_STATE_APPLIED},
    S.PLAN_STATE_SUPERSEDED: {S.PLAN_STATE_SUPERSEDED},
}  # fmt: skip
REJECTED = object()
"""A Replan refused on its merits (FAILED_PRECONDITION): answered, and nothing to record."""
WRITES = ("ReviewPlan", "ConfirmApplied")
LOST = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
"""What a call killed with its server ends with: its outcome is unknown."""


def _body(plan: plan_pb2.Plan) -> bytes:
    """The plan without its life cycle: what must come back intact."""
    out = plan_pb2.Plan()
    out.CopyFrom(plan)
    for name in LIFE_CYCLE:
        out.ClearField(name)  # type: ignore[arg-type]
    return out.SerializeToString(deterministic=True)


@dataclass
class Known:
    """What the client knows of one plan from acknowledged answers."""

    campaign: str
    request: pb.ReplanRequest
    body: bytes
    state: int
    etag: str
    acked_states: list[int] = field(default_factory=list)  # each acknowledged change
    uncertain: bool = False  # a call on it got no answer: read it again before using it


class Client:
    """The stream of calls, seeded; the log of what was acknowledged."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.plans: dict[str, Known] = {}
        self.pending: list[pb.ReplanRequest] = []  # sent, not yet answered: retried as they are
        self.acked: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.steps = 0
        self.rejected = 0  # Replans answered FAILED_PRECONDITION (the plan builder's verdict)
        self.on_write: Callable[[], None] | None = None  # called as the next write is sent

    # --- one step -------------------------------------------------------------------------

    def step(self, stub: rpc.ReallocatorServiceStub) -> None:
        self.steps += 1
        uncertain = [n for n, k in self.plans.items() if k.uncertain]
        if self.pending:
            self._replan(stub, self.pending[0])
        elif uncertain:
            self._refresh(stub, uncertain[0])
        else:
            roll = self.rng.random()
            proposed = self._latest(S.PLAN_STATE_PROPOSED)
            approved = self._latest(S.PLAN_STATE_APPROVED)
            if roll < 0.35 and proposed:
                self._review(stub, self.rng.choice(proposed), self.rng.random() < 0.8)
            elif roll < 0.6 and approved:
                self._confirm(stub, self.rng.choice(approved))
            else:
                self._replan(stub, self._new_request())

    def _latest(self, state: int) -> list[str]:
        return [n for n, k in self.plans.items() if k.state == state]

    def _new_request(self) -> pb.ReplanRequest:
        spec = random_snapshot_spec(self.rng.randint(5, 20), seed=self.rng.randrange(10**6))
        snapshot = build_snapshot(spec)
        snapshot.campaign_id = self.rng.choice(CAMPAIGNS)
        request = replan_request(
            snapshot, request_id=f"req-{self.steps}", on_infeasible=pb.INFEASIBILITY_HANDLING_RELAX
        )
        self.pending.append(request)
        return request

    def _call(self, method: str, call: object) -> object | None:
        """Runs one call: its answer, or None when the outcome is unknown (the server died)."""
        if self.on_write is not None and method in WRITES:
            self.on_write()
            self.on_write = None
        try:
            answer = call()  # type: ignore[operator]
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            if code in LOST:
                self.lost[method] += 1
                return None
            if method == "Replan" and code == grpc.StatusCode.FAILED_PRECONDITION:
                self.rejected += 1  # a snapshot whose constraints conflict: nothing recorded
                return REJECTED
            raise AssertionError(f"{method}: {code} {error.details()}") from error  # type: ignore[attr-defined]
        self.acked[method] += 1
        return answer

    def _replan(self, stub: rpc.ReallocatorServiceStub, request: pb.ReplanRequest) -> None:
        reply = self._call("Replan", lambda: stub.Replan(request, timeout=30))
        if reply is None:
            return
        self.pending.remove(request)
        if reply is REJECTED:
            return
        plan = reply.plan  # type: ignore[attr-defined]
        campaign = request.snapshot.campaign_id
        for known in self.plans.values():  # a newer plan supersedes the campaign's open ones
            if known.campaign == campaign and known.state in (S.PLAN_STATE_PROPOSED,
                                                              S.PLAN_STATE_APPROVED):  # fmt: skip
                known.state, known.etag = S.PLAN_STATE_SUPERSEDED, ""
        assert plan.name not in self.plans, "a new request id returned an existing plan"
        self.plans[plan.name] = Known(campaign, request, _body(plan), plan.state, plan.etag,
                                      [plan.state])  # fmt: skip

    def _review(self, stub: rpc.ReallocatorServiceStub, name: str, approve: bool) -> None:
        known = self.plans[name]
        decision = pb.REVIEW_DECISION_APPROVE if approve else pb.REVIEW_DECISION_REJECT
        request = pb.ReviewPlanRequest(name=name, decision=decision, etag=known.etag,
                                       reviewer="crash-test")  # fmt: skip
        reply = self._call("ReviewPlan", lambda: stub.ReviewPlan(request, timeout=30))
        self._acknowledged(name, reply)

    def _confirm(self, stub: rpc.ReallocatorServiceStub, name: str) -> None:
        request = pb.ConfirmAppliedRequest(name=name)
        reply = self._call("ConfirmApplied", lambda: stub.ConfirmApplied(request, timeout=30))
        self._acknowledged(name, reply)

    def _acknowledged(self, name: str, reply: object | None) -> None:
        known = self.plans[name]
        if reply is None:
            known.uncertain = True
            return
        plan = reply.plan  # type: ignore[attr-defined]
        known.state, known.etag = plan.state, plan.etag
        known.acked_states.append(plan.state)

    def _refresh(self, stub: rpc.ReallocatorServiceStub, name: str) -> None:
        request = pb.GetPlanRequest(name=name)
        reply = self._call("GetPlan", lambda: stub.GetPlan(request, timeout=30))
        if reply is not None:
            known = self.plans[name]
            plan = reply.plan  # type: ignore[attr-defined]
            assert plan.state in LATER[known.state], (name, known.state, plan.state)
            known.state, known.etag, known.uncertain = plan.state, plan.etag, False

    # --- the end --------------------------------------------------------------------------

    def check_through_the_api(self, stub: rpc.ReallocatorServiceStub) -> None:
        for name, known in self.plans.items():
            plan = stub.GetPlan(pb.GetPlanRequest(name=name), timeout=30).plan
            assert _body(plan) == known.body, f"{name}: the stored plan differs from the answer"
            assert plan.state in LATER[known.state], (name, known.state, plan.state)
            if plan.state == known.state and known.etag:
                assert plan.etag == known.etag, name
            history = [e.state for e in plan.history if e.state]
            for state in known.acked_states:
                assert state in history, (name, state, history)
            again = stub.Replan(known.request, timeout=30).plan
            assert again.name == name, f"retried {known.request.request_id} gave another plan"
        for campaign in CAMPAIGNS:
            listed = stub.ListPlans(pb.ListPlansRequest(parent=f"campaigns/{campaign}",
                                                        page_size=1000), timeout=30)  # fmt: skip
            mine = {n for n, k in self.plans.items() if k.campaign == campaign}
            assert {p.name for p in listed.plans} == mine, f"{campaign}: plans nobody was given"


def check_database(url: str) -> dict[str, int]:
    """Nothing half-written, read from the tables themselves."""
    engine = sa.create_engine(url)
    orphans = {
        "plans without events": "SELECT name FROM plans p WHERE NOT EXISTS "
        "(SELECT 1 FROM plan_events e WHERE e.plan_name = p.name)",
        "events without plan": "SELECT plan_name FROM plan_events e WHERE NOT EXISTS "
        "(SELECT 1 FROM plans p WHERE p.name = e.plan_name)",
        "seller requests without plan": "SELECT plan_name FROM seller_requests r WHERE NOT "
        "EXISTS (SELECT 1 FROM plans p WHERE p.name = r.plan_name)",
        "request ids without plan": "SELECT key FROM idempotency i WHERE NOT EXISTS "
        "(SELECT 1 FROM plans p WHERE p.name = i.result)",
        "plans without content": "SELECT name FROM plans p WHERE NOT EXISTS "
        "(SELECT 1 FROM plan_tables t WHERE t.name = p.name)",
        "content without plan": "SELECT name FROM plan_tables t WHERE NOT EXISTS "
        "(SELECT 1 FROM plans p WHERE p.name = t.name)",
        "plans without snapshot": "SELECT name FROM plans p WHERE NOT EXISTS "
        "(SELECT 1 FROM snapshots s WHERE s.content_hash = p.snapshot_hash)",
    }
    try:
        with engine.connect() as db:
            for what, sql in orphans.items():
                found = db.execute(sa.text(sql)).scalars().all()
                assert not found, f"{what}: {found[:5]}"
            events = (
                "SELECT p.name, p.state, e.state FROM plans p JOIN plan_events e ON "
                "e.plan_name = p.name WHERE e.state <> '' ORDER BY p.name, e.id"
            )
            states = db.execute(sa.text(events)).all()
            first: dict[str, str] = {}
            last: dict[str, tuple[str, str]] = {}
            for name, state, event in states:
                first.setdefault(name, event)
                last[name] = (state, event)
            assert set(first.values()) <= {"PROPOSED", "APPROVED"}, Counter(first.values())
            wrong = {n: s for n, s in last.items() if s[0] != s[1]}
            assert not wrong, f"state and latest event disagree: {list(wrong.items())[:5]}"
            if engine.dialect.name == "sqlite":
                assert db.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
            tables = ("plans", "plan_events", "seller_requests", "idempotency")
            count = "SELECT count(*) FROM {}"
            return {t: int(db.execute(sa.text(count.format(t))).scalar() or 0) for t in tables}
    finally:
        engine.dispose()


def crash_run(url: str, seed: int, kills: int = KILLS) -> dict[str, object]:
    """The stream of calls with `kills` SIGKILLs at seeded random moments; the checks; figures."""
    rng = random.Random(seed)
    client = Client(seed)
    started = time.monotonic()
    server = ServerProcess(REALLOCATOR_DATABASE_URL=url)
    moments: list[str] = []
    for i in range(kills):
        if i % 2 == 0:  # anywhere: most often in a Replan (decoding, solving, recording)
            moment = rng.uniform(0.2, 2.0)
            killer = threading.Timer(moment, server.proc.kill)  # SIGKILL
            killer.start()
            moments.append(f"{moment:.2f}s")
        else:  # inside a short write: 0-8 ms after a ReviewPlan or ConfirmApplied is sent
            moment = rng.uniform(0.0, 0.008)
            killer = threading.Timer(moment, server.proc.kill)
            client.on_write = killer.start
            moments.append(f"write+{moment * 1000:.1f}ms")
        stub = rpc.ReallocatorServiceStub(server.channel)
        while not killer.finished.is_set():  # the call in flight at the kill ends unanswered
            client.step(stub)
        killer.join()
        server.proc.wait(30)
        log = server.stop()
        assert "Traceback" not in log, log
        server = ServerProcess(REALLOCATOR_DATABASE_URL=url)  # the same database
    stub = rpc.ReallocatorServiceStub(server.channel)
    for _ in range(20):  # a calm end: the last unanswered calls settle
        client.step(stub)
    while client.pending or any(k.uncertain for k in client.plans.values()):
        client.step(stub)
    client.check_through_the_api(stub)
    log = server.stop()
    assert "Traceback" not in log, log
    rows = check_database(url)
    return {
        "kills": kills,
        "kill_moments": moments,
        "acknowledged": dict(client.acked),
        "unanswered": dict(client.lost),  # cut by a kill: outcome unknown to the client
        "plans": len(client.plans),
        "replans_rejected": client.rejected,
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
    }


__all__ = ["KILLS", "Client", "check_database", "crash_run"]

"""The audit store's interface: what the server needs from any database, nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from reallocator.core.lifecycle.states import Action, PlanState


@dataclass(frozen=True)
class PlanEvent:
    kind: str  # CREATED, APPROVE, REJECT, CONFIRM_APPLIED, SUPERSEDE, ROLL_BACK
    state: PlanState  # after the event
    event_time: datetime
    actor: str
    comment: str = ""
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class PlanRecord:
    name: str  # campaigns/{campaign_id}/plans/{plan_id}
    campaign_id: str
    state: PlanState
    etag: str
    previous_plan: str
    create_time: datetime
    update_time: datetime
    actor: str
    seq: int  # the store's order of creation (page tokens)
    as_of: datetime  # the snapshot's as_of
    max_severity: str  # "" when the plan changes nothing
    snapshot_hash: str = ""  # the snapshot it was computed from ("" if none)
    policy: bytes = b""  # the request's serialised Policy
    body: bytes | None = None  # plan_codec bytes; None when listed without bodies
    events: tuple[PlanEvent, ...] = ()


@dataclass(frozen=True)
class NewPlan:
    """One Replan's result to record, with what it was computed from."""

    campaign_id: str
    as_of: datetime
    body: bytes  # plan_codec bytes
    state: PlanState
    max_severity: str
    snapshot: bytes | None = None  # the request's snapshot, serialised (stored deduplicated)
    requests: tuple[SellerRequest, ...] = ()
    summary: bytes = b""  # plan_codec bytes of the plan without deal rows and schedules
    policy: bytes = b""  # the request's serialised Policy (a revision re-solves with it)
    rolls_back: str = ""  # the APPLIED plan this one rolls back (ROLLED_BACK in the same call)
    comment: str = ""  # why (recorded on the events)


@dataclass(frozen=True)
class SellerRequest:
    """What a plan asks of a seller, as the next plan's history needs it."""

    request_id: str
    deal_id: str
    kind: str  # RequestKind
    target_total: int


@dataclass(frozen=True)
class SellerAnswer:
    """A seller's recorded answer to one request."""

    plan_name: str
    request_id: str
    status: str  # SellerResponse: PENDING, ACCEPTED, PARTIAL, REJECTED
    iab_status: str  # pending_approval, approved, rejected, applied, failed ("" if not given)
    accepted_total: int | None
    available_inventory: int | None
    message: str
    response_time: datetime


@dataclass(frozen=True)
class IdempotencyKey:
    method: str
    request_id: str
    body_hash: str  # sha256 of the request without its request_id


class AuditStore(Protocol):
    """Append-only history of what the service decided; one transaction per call."""

    def upgrade(self) -> None:
        """Applies the migrations not yet applied (idempotent; safe from several processes)."""

    def replay(self, key: IdempotencyKey) -> str | None:
        """The resource a request with this key produced, None if new; AlreadyExists when the
        key was used with a different body."""

    def record_plan(
        self, plan: NewPlan, actor: str, now: datetime, key: IdempotencyKey | None = None
    ) -> PlanRecord:
        """Records a plan (superseding the campaign's unapplied ones) and `key`, atomically.
        When `key` was recorded meanwhile, returns the plan it names (or AlreadyExists)."""

    def get_plan(self, name: str, *, body: bool = True, summary: bool = False) -> PlanRecord:
        """The plan and its events; NotFound. `summary`: body holds the summary bytes."""

    def list_plans(
        self,
        campaign_id: str,
        *,
        state: PlanState | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[PlanRecord]:
        """The campaign's plans, newest first, without bodies."""

    def transition(
        self,
        name: str,
        action: Action,
        *,
        etag: str,
        actor: str,
        now: datetime,
        comment: str = "",
        detail: dict[str, Any] | None = None,
        event_time: datetime | None = None,
    ) -> PlanRecord:
        """Moves the plan to its next state if its etag is still `etag` ("" = any): StaleEtag,
        InvalidTransition, NotFound."""

    def record_seller_response(self, answer: SellerAnswer, actor: str, now: datetime) -> None:
        """Appends a seller's answer to a request of an applied plan: NotFound (plan or
        request), InvalidTransition (the plan was never applied)."""

    def request_history(self, campaign_id: str) -> list[dict[str, Any]]:
        """Every request of the campaign's applied plans with its latest answer (PENDING when
        none): rows of core RequestHistory.requests."""

    def plan_events_after(
        self, campaign_id: str, after: int | None, limit: int = 100
    ) -> list[tuple[int, str, datetime]]:
        """(event id, plan name, event time) of the campaign's plan events after event id
        `after`, oldest first; `after` None: the newest id only (a watch starts now)."""

    def snapshot_body(self, content_hash: str) -> bytes:
        """The stored snapshot (serialised CampaignSnapshot); NotFound."""

    def purge(self, older_than: datetime) -> dict[str, int]:
        """Deletes snapshots and assessments recorded before `older_than`; keeps decisions."""

"""The audit store's interface: what the service asks of a store, in domain terms.

One implementation today (`sql.SqlStore`: SQLite or PostgreSQL through SQLAlchemy); every method
is one transaction, so nothing half-written is ever visible and nothing acknowledged is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reallocator.core.lifecycle import Action, PlanState
from reallocator.core.plan.model import RequestHistory


@dataclass(frozen=True)
class PlanEvent:
    """One append-only entry of a plan's history."""

    time: datetime
    actor: str
    action: Action
    state: PlanState  # after the event
    comment: str = ""


@dataclass(frozen=True)
class CampaignEvent:
    """A plan event with its place in the store's order (for WatchCampaign)."""

    sequence: int
    plan_name: str
    event: PlanEvent


@dataclass(frozen=True)
class StoredPlan:
    """A plan's record: the encoded core plan (`plan_codec`) and its life-cycle fields."""

    name: str
    campaign_id: str
    state: PlanState
    etag: str
    previous_plan: str
    create_time: datetime
    actor: str
    body: bytes
    events: tuple[PlanEvent, ...] = ()


@dataclass(frozen=True)
class NewPlan:
    """What Replan hands the store: the encoded plan and where it came from."""

    campaign_id: str
    body: bytes  # plan_codec.encode_plan
    severity: str  # "" when the plan changes nothing
    auto_apply_up_to: str  # Policy.auto_apply_up_to
    snapshot: bytes  # the request's snapshot (deterministic protobuf bytes)
    request_id: str = ""  # idempotency key ("" = none)
    request_hash: str = ""  # hash of the request body the key guards
    seller_requests: tuple[SellerRequestRow, ...] = ()
    options: bytes = b""  # the Replan request without its snapshot (policy, limits): to re-solve
    replaces: tuple[str, str] | None = None  # (name, etag) a review revises: Conflict if stale
    comment: str = ""  # on the creation event


@dataclass(frozen=True)
class SellerRequestRow:
    request_id: str
    deal_id: str
    kind: str
    target_total: int
    requested_at: datetime  # the plan's as_of: cooldowns run on the snapshot's clock


@dataclass(frozen=True)
class PlanPage:
    plans: tuple[StoredPlan, ...]
    next_after: int | None  # keyset cursor for the next page, None at the end


class AuditStore(Protocol):
    def upgrade(self) -> None:
        """Applies pending migrations (idempotent)."""

    def find_replan(self, request_id: str, request_hash: str) -> StoredPlan | None:
        """The plan an earlier Replan with this key stored; AlreadyExists for another body."""

    def save_plan(self, new: NewPlan, actor: str) -> StoredPlan:
        """Stores a plan (superseding the campaign's unapplied ones); a retry with the same key
        returns the first plan."""

    def get_plan(self, name: str, summary: bool = False) -> StoredPlan:
        """With `summary`, the body holds only what plan_codec.decode_summary reads."""

    def list_plans(
        self, campaign_id: str, state: PlanState | None, after: int | None, limit: int
    ) -> PlanPage:
        """Newest first; bodies cut for a summary (see get_plan)."""

    def change_state(
        self, name: str, etag: str, action: Action, actor: str, comment: str = ""
    ) -> StoredPlan:
        """Applies a life-cycle action if `etag` (when given) is current: Conflict otherwise.
        Returns the plan with its body cut for a summary."""

    def record_seller_response(
        self,
        plan_name: str,
        request_id: str,
        response: str,
        accepted_total: int,
        message: str,
        time: datetime,
        actor: str,
    ) -> SellerRequestRow: ...

    def request_history(self, campaign_id: str) -> RequestHistory:
        """Every stored seller request of the campaign with its latest answer."""

    def replan_inputs(self, name: str) -> tuple[bytes, bytes]:
        """The snapshot bytes and request options a stored plan was computed from (NotFound if
        the snapshot was purged)."""

    def campaign_events(self, campaign_id: str, after: int | None) -> tuple[CampaignEvent, ...]:
        """Plan events of the campaign after sequence `after`, in order; `after` None: none,
        only the current last sequence (as a single-element tuple with an empty plan name)."""

    def purge_snapshots(self, before: datetime) -> int:
        """Retention: drops snapshots older than `before`; the decision record stays."""

    def close(self) -> None: ...

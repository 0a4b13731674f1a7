"""The audit store's tables (SQLAlchemy Core). Append-only history: snapshots are deduplicated
by content hash; a plan row changes only its life-cycle state and etag (each change is also a
plan_events row), its content (summary and tables) is a plan_tables row written once;
idempotency keys map a caller's request id to what it created.

Times are unix microseconds (BIGINT), so SQLite and PostgreSQL compare them alike.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData()

snapshots = Table(
    "snapshots",
    metadata,
    Column("content_hash", String(64), primary_key=True),  # sha256 of the serialised snapshot
    Column("campaign_id", Text, nullable=False),
    Column("as_of", BigInteger, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),  # serialised bytes before compression
    Column("payload", LargeBinary, nullable=False),  # zstd of the CampaignSnapshot message
    Index("ix_snapshots_campaign", "campaign_id", "as_of"),
)

plans = Table(
    "plans",
    metadata,
    Column("name", Text, primary_key=True),  # campaigns/{campaign}/plans/{plan}
    Column("campaign_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),  # creation order within the store
    Column("state", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("etag", String(64), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("as_of", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("previous_plan", Text, nullable=False),
    Column("snapshot_hash", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),  # of the summary, serialised (plan_tables)
    Column("deal_count", BigInteger, nullable=False, server_default="0"),
    Column("kind", String(16), nullable=False, server_default="REPLAN"),  # REVISION, ROLLBACK
    Column("apply_time", BigInteger, nullable=True),  # when ConfirmApplied said it was applied
    # When it was approved (its seller requests went out), kept when a newer plan supersedes it
    Column("approve_time", BigInteger, nullable=True),
    Index("ix_plans_campaign", "campaign_id", "seq"),
    Index("ix_plans_campaign_state", "campaign_id", "state"),
    Index("ix_plans_campaign_approved", "campaign_id", "approve_time"),
)

plan_tables = Table(
    "plan_tables",
    metadata,
    # A plan's content, apart from its life cycle (0009): a state change (review, apply,
    # supersede) rewrites the small `plans` row only. SQLite rewrites a whole row on any UPDATE
    # (a 100k-deal plan's was ~12 MB: ReviewPlan took 82 ms), and reading a column walks the
    # overflow pages of the ones before it: the columns are in the order they are read most.
    Column("name", Text, primary_key=True),  # plans.name
    # zstd of the Plan message, life cycle cleared: without per-deal rows and schedules when
    # the tables below are set (plan_codec.py), whole for plans stored before they existed;
    # its seller requests alone are ~2 MB at 100k deals with 30% guaranteed
    Column("payload", LargeBinary, nullable=False),
    Column("options", LargeBinary, nullable=True),  # the ReplanRequest minus its snapshot
    # Arrow IPC: plan_codec.MOVED_COLUMNS of the deals this plan changes (what later Replans
    # read once it is applied); NULL for plans stored before 0007 (their deals_table is read)
    Column("moved_table", LargeBinary, nullable=True),
    Column("deals_table", LargeBinary, nullable=True),  # Arrow IPC (zstd) of Plan.deals
    Column("schedules_table", LargeBinary, nullable=True),  # Arrow IPC (zstd) of the schedules
    # What the store supplied the plan beyond its snapshot (plan_codec.PlanInputs), for replay:
    Column("history_table", LargeBinary, nullable=True),  # Arrow IPC: the seller history
    Column("inputs_table", LargeBinary, nullable=True),  # Arrow IPC: per-deal filled inputs
    Column("moves_table", LargeBinary, nullable=True),  # Arrow IPC: earlier plans' moves read
)

assessments = Table(
    "assessments",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("campaign_id", Text, nullable=False),
    Column("as_of", BigInteger, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("snapshot_hash", String(64), nullable=False),
    Column("plan_name", Text, nullable=False),  # the plan made from it; "" for AssessPacing
    Column("actor", Text, nullable=False),
    Column("max_severity", Integer, nullable=False),  # of its alerts (common.Severity), 0 none
    Column("size", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # zstd of the PacingAssessment, BASIC view
    Index("ix_assessments_campaign", "campaign_id", "as_of", "id"),
)

plan_events = Table(
    "plan_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_name", Text, nullable=False),
    Column("event_time", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("state", String(32), nullable=False),
    Column("comment", Text, nullable=False),
    Index("ix_plan_events_plan", "plan_name", "id"),
)

seller_requests = Table(
    "seller_requests",
    metadata,
    Column("plan_name", Text, primary_key=True),
    Column("request_id", Text, primary_key=True),
    Column("campaign_id", Text, nullable=False),
    Column("deal_id", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("target_total", BigInteger, nullable=False),
    Column("requested_at", BigInteger, nullable=False),  # the plan's as_of, unix micros
    Column("response", String(32), nullable=False),  # SellerResponse; PENDING until answered
    Column("accepted_total", BigInteger, nullable=False),
    Column("response_time", BigInteger, nullable=False),  # 0 until answered
    Column("message", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("available_inventory", BigInteger, nullable=True),  # declared with the answer
    # Its plan was approved, so it went out (plans.approve_time, copied so that a Replan finds
    # the requests it reads in one index, without joining every request to its plan)
    Column("sent", Boolean, nullable=False, server_default=false()),
    Index("ix_seller_requests_campaign", "campaign_id", "requested_at"),
    # A Replan reads per deal its last request sent and per deal and kind its last rejection
    # (SqlStore._requests): grouped in this index alone, whatever the campaign's age
    Index(
        "ix_seller_requests_sent",
        "campaign_id",
        "sent",
        "deal_id",
        "requested_at",
        "response",
        "kind",
    ),
    # ... and per deal the newest answer that declared an inventory (SqlStore._declared)
    Index(
        "ix_seller_requests_declared",
        "campaign_id",
        "deal_id",
        "response_time",
        sqlite_where=text("available_inventory IS NOT NULL"),
        postgresql_where=text("available_inventory IS NOT NULL"),
    ),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("key", Text, primary_key=True),  # method:campaign:request_id
    Column("request_hash", String(64), nullable=False),
    Column("result", Text, nullable=False),  # the plan name created
    Column("create_time", BigInteger, nullable=False),
)

__all__ = [
    "idempotency",
    "metadata",
    "plan_events",
    "plan_tables",
    "plans",
    "seller_requests",
    "snapshots",
]

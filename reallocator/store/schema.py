"""The audit store's tables (SQLAlchemy Core). Migrations in ./migrations create them.

History tables are append-only (snapshots, assessments, plan_events, seller_responses,
idempotency_keys); `plans` holds each plan's body once and its current state, changed only by a
conditional UPDATE on its etag, with every change also appended to `plan_events`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),  # sha256 of the body
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # the request's snapshot, zstd
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
)

assessments = sa.Table(
    "assessments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("snapshot_hash", sa.String(64), nullable=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verdict", sa.String(40), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # list order
    sa.Column("name", sa.String(300), nullable=False, unique=True),
    sa.Column("campaign_id", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("etag", sa.String(40), nullable=False),
    sa.Column("previous_plan", sa.String(300), nullable=False, default=""),
    sa.Column("snapshot_hash", sa.String(64), nullable=True),
    sa.Column("policy", sa.LargeBinary, nullable=True),  # the request's Policy message
    sa.Column("max_severity", sa.String(20), nullable=False, default=""),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # plan_codec bytes
    # the same without deal rows and schedules: GetPlan SUMMARY reads kilobytes, not megabytes
    sa.Column("summary_body", sa.LargeBinary, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Index("ix_plans_campaign_seq", "campaign_id", "seq"),
)

plan_events = sa.Table(
    "plan_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_name", sa.String(300), sa.ForeignKey("plans.name"), nullable=False),
    sa.Column("campaign_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # CREATED, REVIEWED, APPLIED, ...
    sa.Column("state", sa.String(20), nullable=False),  # the state after the event
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Index("ix_plan_events_campaign_id", "campaign_id", "id"),
)

seller_requests = sa.Table(
    "seller_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_name", sa.String(300), sa.ForeignKey("plans.name"), nullable=False),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("deal_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # RequestKind
    sa.Column("target_total", sa.BigInteger, nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),  # the plan's as_of
    sa.UniqueConstraint("plan_name", "request_id"),
)
"""One row per seller request of a recorded plan: the next Replan's RequestHistory."""

seller_responses = sa.Table(
    "seller_responses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_name", sa.String(300), sa.ForeignKey("plans.name"), nullable=False),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("deal_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),  # SellerResponse
    sa.Column("iab_status", sa.String(30), nullable=False, default=""),  # IAB seller-agent
    sa.Column("accepted_total", sa.BigInteger, nullable=True),
    sa.Column("available_inventory", sa.BigInteger, nullable=True),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("response_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("method", sa.String(60), primary_key=True),
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("result", sa.String(300), nullable=False),  # the resource it created or changed
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

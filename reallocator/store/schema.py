"""The audit store's tables (SQLAlchemy Core), as the migrations leave them.

Append-only: snapshots, plan_events, seller_requests, seller_responses and idempotency_keys only
grow. `plans` rows are written once except `state`/`etag`, which a conditional UPDATE moves
(optimistic concurrency); every move also appends a plan_events row. Every row has time and actor.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys
TIME = sa.DateTime(timezone=True)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("raw_bytes", sa.BigInteger, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # zstd-compressed protobuf bytes
    sa.Column("create_time", TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(300), nullable=False, unique=True),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("etag", sa.String(32), nullable=False),
    sa.Column("previous_plan", sa.String(300), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("snapshot_id", ID, sa.ForeignKey("snapshots.id"), nullable=True),
    sa.Column("request_id", sa.String(200), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=False),  # plan_codec
    sa.Column("summary_bytes", sa.BigInteger, nullable=False),  # plan_codec.summary_length
    sa.Column("options", sa.LargeBinary, nullable=False),  # the ReplanRequest without snapshot
    sa.Column("create_time", TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

plan_events = sa.Table(
    "plan_events",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("plan_name", sa.String(300), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("create_time", TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

seller_requests = sa.Table(
    "seller_requests",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("plan_name", sa.String(300), nullable=False, index=True),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("deal_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("target_total", sa.BigInteger, nullable=False),
    sa.Column("requested_at", TIME, nullable=False),  # the plan's as_of (snapshot clock)
    sa.Column("create_time", TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.UniqueConstraint("plan_name", "request_id"),
)

seller_responses = sa.Table(
    "seller_responses",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("seller_request", ID, sa.ForeignKey("seller_requests.id"), nullable=False),
    sa.Column("response", sa.String(16), nullable=False),
    sa.Column("accepted_total", sa.BigInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("response_time", TIME, nullable=False),
    sa.Column("create_time", TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(40), primary_key=True),  # the RPC
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("result", sa.String(300), nullable=False),  # e.g. the plan's name
    sa.Column("create_time", TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

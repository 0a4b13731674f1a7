"""The audit store: snapshots, plans, plan events, idempotency keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("campaign_id", sa.Text, nullable=False),
        sa.Column("as_of", sa.BigInteger, nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_snapshots_campaign", "snapshots", ["campaign_id", "as_of"])
    op.create_table(
        "plans",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("campaign_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
        sa.Column("as_of", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("previous_plan", sa.Text, nullable=False),
        sa.Column("snapshot_hash", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_plans_campaign", "plans", ["campaign_id", "seq"])
    op.create_table(
        "plan_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plan_name", sa.Text, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
    )
    op.create_index("ix_plan_events_plan", "plan_events", ["plan_name", "id"])
    op.create_table(
        "seller_requests",
        sa.Column("plan_name", sa.Text, primary_key=True),
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("campaign_id", sa.Text, nullable=False),
        sa.Column("deal_id", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target_total", sa.BigInteger, nullable=False),
        sa.Column("requested_at", sa.BigInteger, nullable=False),
        sa.Column("response", sa.String(32), nullable=False),
        sa.Column("accepted_total", sa.BigInteger, nullable=False),
        sa.Column("response_time", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_seller_requests_campaign", "seller_requests", ["campaign_id", "requested_at"]
    )
    op.create_table(
        "idempotency",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("idempotency", "seller_requests", "plan_events", "plans", "snapshots"):
        op.drop_table(table)

"""Audit tables: snapshots, plans, plan events, seller requests and responses, idempotency keys.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _audit() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
        sa.Column("raw_bytes", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        *_audit(),
    )
    op.create_table(
        "plans",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(300), nullable=False, unique=True),
        sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("etag", sa.String(32), nullable=False),
        sa.Column("previous_plan", sa.String(300), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("snapshot_id", ID, sa.ForeignKey("snapshots.id"), nullable=True),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("summary_bytes", sa.BigInteger, nullable=False),
        sa.Column("options", sa.LargeBinary, nullable=False),
        *_audit(),
    )
    op.create_table(
        "plan_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("plan_name", sa.String(300), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        *_audit(),
    )
    op.create_table(
        "seller_requests",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("plan_name", sa.String(300), nullable=False, index=True),
        sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("deal_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target_total", sa.BigInteger, nullable=False),
        sa.Column("requested_at", TIME, nullable=False),  # the plan's as_of
        *_audit(),
        sa.UniqueConstraint("plan_name", "request_id"),
    )
    op.create_table(
        "seller_responses",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("seller_request", ID, sa.ForeignKey("seller_requests.id"), nullable=False),
        sa.Column("response", sa.String(16), nullable=False),
        sa.Column("accepted_total", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("response_time", TIME, nullable=False),
        *_audit(),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("result", sa.String(300), nullable=False),
        *_audit(),
    )


def downgrade() -> None:
    for table in (
        "idempotency_keys",
        "seller_responses",
        "seller_requests",
        "plan_events",
        "plans",
        "snapshots",
    ):
        op.drop_table(table)

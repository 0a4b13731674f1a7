"""Plans as numbers (deals and schedule tables beside a summary), what a re-solve needs, apply
times, and stored assessments (pacing history and alerts).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("deals_table", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("schedules_table", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("deal_count", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="REPLAN"))
        batch.add_column(sa.Column("options", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("apply_time", sa.BigInteger, nullable=True))
    op.create_index("ix_plans_campaign_state", "plans", ["campaign_id", "state"])
    op.create_table(
        "assessments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("campaign_id", sa.Text, nullable=False),
        sa.Column("as_of", sa.BigInteger, nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("snapshot_hash", sa.String(64), nullable=False),
        sa.Column("plan_name", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("max_severity", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_assessments_campaign", "assessments", ["campaign_id", "as_of", "id"])


def downgrade() -> None:
    op.drop_index("ix_assessments_campaign", "assessments")
    op.drop_table("assessments")
    op.drop_index("ix_plans_campaign_state", "plans")
    with op.batch_alter_table("plans") as batch:
        for column in ("apply_time", "options", "kind", "deal_count", "schedules_table",
                       "deals_table"):  # fmt: skip
            batch.drop_column(column)

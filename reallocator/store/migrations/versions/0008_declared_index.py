"""Per deal the newest answer that declared an inventory, found in a partial index: a Replan
reads it for the deals whose snapshot carries none, and read by scanning every such answer the
campaign ever had, it grew with the campaign's age.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DECLARED = sa.text("available_inventory IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_seller_requests_declared",
        "seller_requests",
        ["campaign_id", "deal_id", "response_time"],
        sqlite_where=_DECLARED,
        postgresql_where=_DECLARED,
    )


def downgrade() -> None:
    op.drop_index("ix_seller_requests_declared", table_name="seller_requests")

"""What a plan was made from beyond its snapshot and options: the seller history the store
supplied and the per-deal inputs it filled in (last plan applied, rolling window starts, the
inventory sellers declared), so a replay reproduces the plan exactly; sellers' declared
inventory.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("history_table", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("inputs_table", sa.LargeBinary, nullable=True))
    with op.batch_alter_table("seller_requests") as batch:
        batch.add_column(sa.Column("available_inventory", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("seller_requests") as batch:
        batch.drop_column("available_inventory")
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("inputs_table")
        batch.drop_column("history_table")

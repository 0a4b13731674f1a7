"""A plan's moves on their own: what later Replans read of an applied plan (its changed deals'
id, change, delivery and pacing), so that looking back on a day of applied plans does not read
each one's whole deals table. Plans stored before keep NULL and are read from their table.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("moved_table", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("moved_table")

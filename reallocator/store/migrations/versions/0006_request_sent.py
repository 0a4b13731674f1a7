"""Which seller requests went out, on the request itself: a Replan reads per deal the last
request sent and per deal and kind the last rejection, grouped in one index, instead of every
request the campaign ever sent joined to its plan (a cost that grew with the campaign's age).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = ["campaign_id", "sent", "deal_id", "requested_at", "response", "kind"]


def upgrade() -> None:
    with op.batch_alter_table("seller_requests") as batch:
        batch.add_column(sa.Column("sent", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute(
        sa.text(
            "UPDATE seller_requests SET sent = :yes WHERE plan_name IN "
            "(SELECT name FROM plans WHERE approve_time IS NOT NULL)"
        ).bindparams(sa.bindparam("yes", True, type_=sa.Boolean))
    )
    op.create_index("ix_seller_requests_sent", "seller_requests", _COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_seller_requests_sent", table_name="seller_requests")
    with op.batch_alter_table("seller_requests") as batch:
        batch.drop_column("sent")

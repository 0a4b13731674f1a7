"""When a plan was approved: its seller requests went out then, whatever happens to the plan
after (a newer plan may supersede it before anyone confirms it applied), so the next plans read
them by this column, not by the plan's current state.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("approve_time", sa.BigInteger, nullable=True))
    # Plans approved before this column: the time of their APPROVED event, else (approved,
    # applied or rolled back without one) their last update.
    op.execute(
        "UPDATE plans SET approve_time = (SELECT MIN(e.event_time) FROM plan_events e "
        "WHERE e.plan_name = plans.name AND e.state = 'APPROVED')"
    )
    op.execute(
        "UPDATE plans SET approve_time = update_time WHERE approve_time IS NULL "
        "AND state IN ('APPROVED', 'APPLIED', 'ROLLED_BACK')"
    )
    op.create_index("ix_plans_campaign_approved", "plans", ["campaign_id", "approve_time"])


def downgrade() -> None:
    op.drop_index("ix_plans_campaign_approved", table_name="plans")
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("approve_time")

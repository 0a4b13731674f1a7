"""A plan's content apart from its life cycle: the summary, options and tables move from
`plans` to `plan_tables` (one row per plan, keyed by its name, written once with it), so that a
state change (ReviewPlan, ConfirmApplied, a Replan superseding the open plan) updates a row of a
few hundred bytes. SQLite rewrites a whole row on any UPDATE: a 100k-deal plan's was ~12 MB
(ReviewPlan 82 ms, ConfirmApplied 77 ms).

No foreign key, as plan_events and seller_requests have none: the store writes both rows in one
transaction and deletes no plan.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_MOVED = (
    "payload",
    "options",
    "moved_table",
    "deals_table",
    "schedules_table",
    "history_table",
    "inputs_table",
    "moves_table",
)
"""The columns that move, in plan_tables' order (schema.py: the ones read most first)."""


def upgrade() -> None:
    op.create_table(
        "plan_tables",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        *(sa.Column(column, sa.LargeBinary, nullable=True) for column in _MOVED[1:]),
    )
    columns = ", ".join(_MOVED)
    op.execute(f"INSERT INTO plan_tables (name, {columns}) SELECT name, {columns} FROM plans")
    with op.batch_alter_table("plans") as batch:
        for column in _MOVED:
            batch.drop_column(column)


def downgrade() -> None:
    # Added nullable, filled, then payload made NOT NULL again (PostgreSQL refuses a NOT NULL
    # column without a default on a table with rows).
    with op.batch_alter_table("plans") as batch:
        for column in _MOVED:
            batch.add_column(sa.Column(column, sa.LargeBinary, nullable=True))
    filled = ", ".join(
        f"{column} = (SELECT t.{column} FROM plan_tables t WHERE t.name = plans.name)"
        for column in _MOVED
    )
    op.execute(f"UPDATE plans SET {filled}")
    with op.batch_alter_table("plans") as batch:
        batch.alter_column("payload", existing_type=sa.LargeBinary, nullable=False)
    op.drop_table("plan_tables")

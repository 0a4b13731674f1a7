"""The audit store's first schema: snapshots, assessments, plans, plan events, seller requests
and responses, idempotency keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from reallocator.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = (
    schema.snapshots,
    schema.assessments,
    schema.plans,
    schema.plan_events,
    schema.seller_requests,
    schema.seller_responses,
    schema.idempotency_keys,
)


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind)

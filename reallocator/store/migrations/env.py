"""Alembic environment: the store passes an open connection (see reallocator.store.sql)."""

from __future__ import annotations

from alembic import context

from reallocator.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()

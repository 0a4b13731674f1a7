"""Migrations keep what a store already holds meaning what it meant: 0005 gives every plan that
was approved before the column existed its approval time, also a plan since superseded."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from plans import with_requests

from reallocator.store.sql import MIGRATIONS, SqlStore


def _to(store: SqlStore, revision: str, up: bool) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.upgrade if up else command.downgrade)(config, revision)


def test_0005_backfills_the_approval_of_plans_stored_before_it(tmp_path: Path) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    campaign = "migrated"
    first = store.record_plan(with_requests(campaign), actor="svc")
    store.review(first.name, True, etag=first.etag, actor="ana", comment="")
    second = store.record_plan(with_requests(campaign), actor="svc")  # supersedes the first
    rejected = store.record_plan(with_requests(campaign), actor="svc")
    store.review(rejected.name, False, etag=rejected.etag, actor="ana", comment="")
    before = store.request_history(campaign).requests
    assert len(before)  # the superseded plan's requests went out when it was approved

    _to(store, "0004", up=False)  # the store as 0004 left it: no approval times
    _to(store, "head", up=True)

    with store.engine.connect() as connection:
        rows = dict(connection.execute(sa.text("SELECT name, approve_time FROM plans")).all())
        approved = connection.execute(
            sa.text(
                "SELECT event_time FROM plan_events WHERE plan_name = :n AND state = 'APPROVED'"
            ),
            {"n": first.name},
        ).scalar_one()
    assert rows[first.name] == approved
    assert rows[second.name] is None and rows[rejected.name] is None
    after = store.request_history(campaign).requests
    assert after.equals(before)
    store.close()

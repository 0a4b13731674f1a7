"""Migrations keep what a store already holds meaning what it meant: 0005 gives every plan that
was approved before the column existed its approval time, also a plan since superseded; 0006
marks the requests of those plans as sent; 0007 leaves plans stored before it readable from their
deals tables; and `reallocator db downgrade --to` takes a store back for an older release, without
losing it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from plans import with_requests

from reallocator.cli import main
from reallocator.store.sql import SqlStore


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

    assert "approve_time" not in _round_trip(store, "0004", "plans")

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


def test_db_downgrade_takes_a_store_back_and_upgrade_forward(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = SqlStore.open(url)
    first = store.record_plan(with_requests("back"), actor="svc")
    store.close()
    assert main(["db", "downgrade", "--database-url", url]) == 2
    assert "--to REVISION is required" in capsys.readouterr().err
    assert main(["db", "downgrade", "--to", "0004", "--database-url", url]) == 0
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        kept = connection.execute(sa.text("SELECT name FROM plans")).scalars().all()
    engine.dispose()
    assert version == "0004" and kept == [first.name]
    assert main(["db", "downgrade", "--to", "nonsense", "--database-url", url]) == 1
    assert "nonsense" in capsys.readouterr().err
    assert main(["db", "upgrade", "--database-url", url]) == 0
    again = SqlStore.open(url)
    assert again.life_cycle(first.name).name == first.name
    again.close()


def test_0006_marks_the_requests_of_plans_approved_before_it_as_sent(tmp_path: Path) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    campaign = "sent"
    first = store.record_plan(with_requests(campaign), actor="svc")
    store.review(first.name, True, etag=first.etag, actor="ana", comment="")
    store.record_plan(with_requests(campaign), actor="svc")  # supersedes it, never approved
    last = store.record_plan(with_requests(campaign), actor="svc")
    store.review(last.name, True, etag=last.etag, actor="ana", comment="")
    as_of = store.request_history(campaign).requests["requested_at"].max()
    before = store.request_history(campaign, before=round(as_of * 1e6) + 1).requests

    assert "sent" not in _round_trip(store, "0005", "seller_requests")

    query = "SELECT plan_name, sent FROM seller_requests"
    with store.engine.connect() as connection:
        sent = {str(name): bool(flag) for name, flag in connection.execute(sa.text(query))}
    approved = {first.name, last.name}
    assert sent and all(flag == (name in approved) for name, flag in sent.items())
    after = store.request_history(campaign, before=round(as_of * 1e6) + 1).requests
    assert len(after) and after.equals(before)
    store.close()


def test_0007_keeps_plans_stored_before_it_readable_from_their_tables(tmp_path: Path) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    campaign = "moved"
    lc = store.record_plan(with_requests(campaign), actor="svc")
    store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
    store.confirm_applied(lc.name, actor="ana", apply_time=None)
    past = store.campaign_past(campaign, moves_since=0, application=True)

    assert "moved_table" not in _round_trip(store, "0006", "plans")

    with store.engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT moved_table FROM plans")).scalar_one()
    assert kept is None  # read from its deals table
    again = store.campaign_past(campaign, moves_since=0, application=True)
    assert len(past.history.moves) and again.history.moves.equals(past.history.moves)
    assert again.application is not None and past.application is not None
    assert again.application[:2] == past.application[:2]
    store.close()


def _round_trip(store: SqlStore, revision: str, table: str) -> set[str]:
    """Takes the store back to `revision` and forward to the newest again: the columns `table`
    had back there."""
    SqlStore.downgrade(str(store.engine.url), revision)
    with store.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns(table)}
    store.upgrade()
    return columns

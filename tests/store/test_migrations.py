"""Migrations keep what a store already holds meaning what it meant: 0005 gives every plan that
was approved before the column existed its approval time, also a plan since superseded; 0006
marks the requests of those plans as sent; 0007 leaves plans stored before it readable from their
deals tables; 0009 moves every plan's content to plan_tables and back, each plan reading as it did;
and `reallocator db downgrade --to` takes a store back for an older release, without losing it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from both_databases import opened_store
from plans import new_plan, with_requests
from test_store_backends import postgres_url  # noqa: F401  (a fixture)

from reallocator.cli import main
from reallocator.store.plan_codec import StoredInputs
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
        kept = connection.execute(sa.text("SELECT moved_table FROM plan_tables")).scalar_one()
    assert kept is None  # read from its deals table
    again = store.campaign_past(campaign, moves_since=0, application=True)
    assert len(past.history.moves) and again.history.moves.equals(past.history.moves)
    assert again.application is not None and past.application is not None
    assert again.application[:2] == past.application[:2]
    store.close()


_CONTENT = (
    "payload",
    "options",
    "moved_table",
    "deals_table",
    "schedules_table",
    "history_table",
    "inputs_table",
    "moves_table",
)
"""What 0009 moved from plans to plan_tables."""


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    yield from opened_store(request, tmp_path, "migrated")


def test_0009_moves_the_content_of_plans_written_before_it_and_back(any_store: SqlStore) -> None:
    """Plans written at 0008 (content in their plans row) read after 0009 as before, GetPlan for
    GetPlan, as do the moves, applications and replay inputs later Replans read of them; and a
    downgrade puts every byte back in plans."""
    store = any_store
    url = str(store.engine.url.render_as_string(hide_password=False))
    campaign = f"content-{id(store)}"
    inputs = StoredInputs(
        history=pd.DataFrame({"deal_id": ["d1"], "requested_at": np.array([1.5])}),
        deals=pd.DataFrame({"deal_id": ["d1", "d2"], "window_hour": np.array([0.0, np.nan])}),
    )
    names = []
    for k, new in enumerate((with_requests(campaign), new_plan(campaign, n=40, seed=5))):
        lc = store.record_plan(replace(new, options=b"opts-%d" % k, inputs=inputs), actor="svc")
        store.review(lc.name, True, etag=lc.etag, actor="ana", comment="")
        store.confirm_applied(lc.name, actor="svc", apply_time=None)
        names.append(lc.name)
    names.append(store.record_plan(new_plan(campaign, n=20, seed=7), actor="svc").name)
    SqlStore.downgrade(url, "0008")
    assert "plan_tables" not in _tables(store)
    # A plan written by the 0008 release: another's row and history copied under a new name
    written = names[0].replace("/plans/", "/plans/at0008-")
    with store.engine.begin() as connection:
        for table, key in (("plans", "name"), ("plan_events", "plan_name"),
                           ("seller_requests", "plan_name")):  # fmt: skip
            columns = [c["name"] for c in sa.inspect(connection).get_columns(table)]
            if table == "plan_events":
                columns.remove("id")
            others = ", ".join(c for c in columns if c != key)
            connection.execute(
                sa.text(
                    f"INSERT INTO {table} ({key}, {others}) SELECT :new, {others} FROM {table} "
                    f"WHERE {key} = :old"
                ),
                {"new": written, "old": names[0]},
            )
        at_0008 = _content(connection, "plans", [*names, written])
    assert all(at_0008[n]["payload"] for n in names) and at_0008[written] == at_0008[names[0]]

    store.upgrade()
    with store.engine.connect() as connection:
        assert not {c["name"] for c in sa.inspect(connection).get_columns("plans")} & set(_CONTENT)
        assert _content(connection, "plan_tables", [*names, written]) == at_0008
    shown = {name: store.get_plan(name, "all") for name in [*names, written]}
    copy = shown.pop(written)
    copy.name = names[0]
    assert copy == shown[names[0]] and len(copy.deals) and len(copy.seller_requests)
    past = store.campaign_past(campaign, moves_since=0, applied_since=0, application=True)
    replans = store.recorded_replans(campaign)
    latest = store.latest_applied(campaign)

    SqlStore.downgrade(url, "0008")  # and back: every byte in plans again
    with store.engine.connect() as connection:
        assert _content(connection, "plans", [*names, written]) == at_0008
    assert "plan_tables" not in _tables(store)
    store.upgrade()
    assert {n: store.get_plan(n, "all") for n in names} == shown
    again = store.campaign_past(campaign, moves_since=0, applied_since=0, application=True)
    assert len(past.history.moves) and again.history.moves.equals(past.history.moves)
    assert len(past.applied) == 3  # the copy is APPLIED too
    assert all(
        a[0] == b[0] and a[1].equals(b[1]) for a, b in zip(past.applied, again.applied, strict=True)
    )
    assert again.application is not None and past.application is not None
    assert again.application[:2] == past.application[:2]
    assert again.application[2].equals(past.application[2])
    # ordered by as_of and seq, which the copy shares with its original: compared by name
    replans.sort(key=lambda r: r[3])
    replayed = sorted(store.recorded_replans(campaign), key=lambda r: r[3])
    assert [(r[0], r[1], r[3]) for r in replayed] == [(r[0], r[1], r[3]) for r in replans]
    assert sum(r[2] is not None for r in replans) == 3
    assert sorted(r[1] for r in replans) == [b"", b"opts-0", b"opts-0", b"opts-1"]
    for before, after in zip(replans, replayed, strict=True):
        assert (before[2] is None) == (after[2] is None)
        if before[2] is not None and after[2] is not None:
            assert before[2].deals.equals(after[2].deals)
            assert before[2].history.equals(after[2].history)
    assert latest is not None and latest[0] == names[1]
    newest = store.latest_applied(campaign)
    assert newest is not None and newest[:2] == latest[:2] and newest[2].equals(latest[2])


def _tables(store: SqlStore) -> set[str]:
    with store.engine.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def _content(
    connection: sa.Connection, table: str, names: list[str]
) -> dict[str, dict[str, bytes | None]]:
    """Each plan's content columns as `table` holds them."""
    rows = connection.execute(
        sa.text(f"SELECT name, {', '.join(_CONTENT)} FROM {table} WHERE name IN :names").bindparams(
            sa.bindparam("names", expanding=True)
        ),
        {"names": names},
    ).all()
    out = {
        str(r[0]): {
            c: None if v is None else bytes(v) for c, v in zip(_CONTENT, r[1:], strict=True)
        }
        for r in rows
    }
    assert set(out) == set(names)
    return out


def _round_trip(store: SqlStore, revision: str, table: str) -> set[str]:
    """Takes the store back to `revision` and forward to the newest again: the columns `table`
    had back there."""
    SqlStore.downgrade(str(store.engine.url), revision)
    with store.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns(table)}
    store.upgrade()
    return columns

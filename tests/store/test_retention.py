"""Retention: `reallocator db purge` removes old snapshots and assessments and keeps the decision
record; a plan whose snapshot went can still be read, not re-solved; bad ages are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from plans import new_plan

from reallocator.cli import main
from reallocator.store.errors import WrongState
from reallocator.store.schema import snapshots
from reallocator.store.sql import SqlStore


def test_purge_keeps_the_decision_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = SqlStore.open(url)
    name = store.record_plan(new_plan("keep", assessment=b"verdicts"), actor="a").name
    assert main(["db", "purge", "--older-than", "1d", "--database-url", url]) == 0
    assert "purged 0 snapshot(s) and 0 assessment(s)" in capsys.readouterr().out
    store.plan_inputs(name)  # recent: still there
    assert main(["db", "purge", "--older-than", "0s", "--database-url", url]) == 0
    assert "purged 1 snapshot(s) and 1 assessment(s)" in capsys.readouterr().out
    with store.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(snapshots)).scalar() == 0
    assert store.get_plan(name).deals  # the plan and its rows are kept
    with pytest.raises(WrongState, match="purged"):
        store.plan_inputs(name)


@pytest.mark.parametrize("age", ["90", "d", "-1d", "3w"])
def test_purge_refuses_what_is_not_an_age(
    tmp_path: Path, age: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["db", "purge", f"--older-than={age}", "--database-url", url]) == 2
    assert "--older-than" in capsys.readouterr().err


def test_purge_needs_an_age_or_a_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["db", "purge", "--database-url", url]) == 2
    assert "retention_days" in capsys.readouterr().err
    config = tmp_path / "c.toml"
    config.write_text("[store]\nretention_days = 30\n")
    assert main(["db", "purge", "--config", str(config), "--database-url", url]) == 0

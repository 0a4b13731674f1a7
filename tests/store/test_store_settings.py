"""Store settings ([store], REALLOCATOR_DATABASE_URL) and the `reallocator db` commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from reallocator.cli import main
from reallocator.config import ConfigError, load_config
from reallocator.store import SqlStore, default_database_url


def test_store_table_env_and_flag_order(tmp_path: Path) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text('[store]\ndatabase_url = "sqlite:///from-toml.db"\nretention_days = 90\n')
    assert load_config(toml, env={}).database_url == "sqlite:///from-toml.db"
    assert load_config(toml, env={}).retention_days == 90
    env = {"REALLOCATOR_DATABASE_URL": "sqlite:///from-env.db"}
    assert load_config(toml, env=env).database_url == "sqlite:///from-env.db"
    flag = load_config(toml, env=env, database_url="sqlite:///flag.db")
    assert flag.database_url == "sqlite:///flag.db"
    assert load_config(None, env={}).database_url == ""  # the library default records nothing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store]\nurl = 'x'\n", "store: unknown settings ['url']"),
        ("[store]\nretention_days = -1\n", "store.retention_days: must not be negative"),
        ("[store]\ndatabase_url = 5\n", "store.database_url: expected str"),
    ],
)
def test_bad_store_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(toml, env={})


def test_default_database_follows_xdg_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_database_url() == f"sqlite:///{tmp_path}/reallocator/reallocator.db"


def test_db_upgrade_and_purge_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REALLOCATOR_DATABASE_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    store = SqlStore(url)
    old = datetime.now(UTC) - timedelta(days=100)
    with store.engine.begin() as conn:
        for name, when in (("old", old), ("new", datetime.now(UTC))):
            conn.execute(
                sa.text(
                    "INSERT INTO snapshots (content_hash, campaign_id, as_of, body, create_time,"
                    " actor) VALUES (:h, 'c', :t, :b, :t, 'a')"
                ),
                {"h": name, "t": when, "b": b"x"},
            )
    assert main(["db", "purge", "--database-url", url, "--older-than", "90d"]) == 0
    assert "1 snapshots removed" in capsys.readouterr().out
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT content_hash FROM snapshots")).scalars().all() == [
            "new"
        ]
    store.close()
    assert main(["db", "purge", "--database-url", url]) == 2  # no age given, none configured
    with pytest.raises(SystemExit):
        main(["db", "purge", "--database-url", url, "--older-than", "soon"])
    assert main(["db", "upgrade", "--database-url", "mysql://x/y"]) == 1


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    store.close()

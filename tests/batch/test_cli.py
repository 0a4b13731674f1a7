"""`reallocator batch replan` end to end on files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_run import book

from reallocator.cli import main


def test_batch_replan_writes_the_tables_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deals, campaigns = book()
    deals.to_parquet(tmp_path / "deals.parquet")
    campaigns.to_parquet(tmp_path / "campaigns.parquet")
    argv = ["batch", "replan", "--deals", str(tmp_path / "deals.parquet"), "--quiet"]
    argv += ["--campaigns", str(tmp_path / "campaigns.parquet"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--processes", "2", "--chunk-size", "4"]) == 0
    summary = capsys.readouterr().out
    assert "7 campaigns" in summary and "INVALID 2" in summary and "REJECTED 1" in summary
    status = pd.read_parquet(tmp_path / "out" / "status")
    assert sorted(status["campaign_id"]) == sorted(campaigns["campaign_id"])
    assert main([*argv, "--processes", "2", "--chunk-size", "4"]) == 0
    assert "(0 replanned" in capsys.readouterr().out


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["batch", "replan", "--deals", str(tmp_path / "nope.parquet")]
    assert main([*argv, "--campaigns", "x.csv", "--out", str(tmp_path)]) == 2
    assert "--deals: no such file" in capsys.readouterr().err

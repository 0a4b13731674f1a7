"""A real audit store (SQLite) holding campaigns recorded as Replan records them, shared by the
dashboard's tests of one module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_data import record_campaign

from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SqlStore, dict[str, list[plan_pb2.Plan]]]]:
    """Store with `alpha` (30 deals, 3 snapshots, 3 channels) and `beta` (12 deals, 2)."""
    folder: Path = tmp_path_factory.mktemp("web-store")
    store = SqlStore.open(f"sqlite:///{folder / 'store.db'}")
    plans = {
        "alpha": record_campaign(store, "alpha", 30, 3, 11, n_channels=3),
        "beta": record_campaign(store, "beta", 12, 2, 12, n_channels=2),
    }
    yield store, plans
    store.close()

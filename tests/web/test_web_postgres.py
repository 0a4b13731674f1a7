"""The dashboard on PostgreSQL: its read-only queries (campaign list, snapshots, history, events)
and a review through the page, on a real server started here as tests/store does (a temporary
folder, a free port of 127.0.0.1, run through the postgres user when root). Without
PostgreSQL's binaries this skips, saying why; with REALLOCATOR_REQUIRE_POSTGRES=1 (CI) it
fails instead."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from web_data import record_campaign

from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2
from reallocator.web import queries
from reallocator.web.app import create_app
from reallocator.web.security import CSRF_FIELD


@pytest.fixture(scope="module")
def postgres_store() -> Iterator[SqlStore]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.environ.get("REALLOCATOR_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL's server binaries are missing (apt-get install postgresql)")
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="reallocator-web-pg-"))
    shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = folder / "data"
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust"], check=True, capture_output=True, timeout=120)  # fmt: skip
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(folder / "log"), "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    store = SqlStore.open(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    try:
        yield store
    finally:
        store.close()
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_the_dashboard_reads_and_reviews_on_postgresql(postgres_store: SqlStore) -> None:
    store = postgres_store
    alpha = record_campaign(store, "pg-alpha", 12, 3, 41, n_channels=2)
    record_campaign(store, "pg-beta", 6, 1, 42, n_channels=1)
    rows = {r.campaign_id: r for r in queries.list_campaigns(store.engine)}
    assert set(rows) == {"pg-alpha", "pg-beta"}
    assert (rows["pg-alpha"].plans, rows["pg-alpha"].pending) == (3, 1)
    assert rows["pg-alpha"].latest_plan == alpha[-1].name
    assert len(queries.campaign_snapshots(store.engine, "pg-alpha")) == 3
    client = TestClient(create_app(store), follow_redirects=False)
    page = client.get("/campaigns/pg-alpha")
    assert page.status_code == 200 and "Cumulative delivery" in page.text
    token = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert token
    before = queries.last_event_id(store.engine)
    done = client.post("/review", data={
        CSRF_FIELD: token.group(1), "plan": alpha[-1].name, "etag": alpha[-1].etag,
        "decision": "reject", "comment": "not now",
    })  # fmt: skip
    assert done.status_code == 303
    assert store.get_plan(alpha[-1].name).state == plan_pb2.PLAN_STATE_REJECTED
    events = queries.events_after(store.engine, before, campaign="pg-alpha")
    assert [(e.state, e.comment) for e in events] == [("REJECTED", "not now")]
    history = client.get("/campaigns/pg-alpha/history").text
    assert history.count('class="step-snapshot"') == 3 and "not now" in history

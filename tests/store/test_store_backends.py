"""The same store on both databases: SQLite and a real PostgreSQL server (started here, in a
temporary folder on a free port of 127.0.0.1, as /work/shared-style CI runs it as root through
the postgres user, and stopped afterwards). Without PostgreSQL's binaries the PostgreSQL case
skips, saying why; with REALLOCATOR_REQUIRE_POSTGRES=1 (CI) it fails instead."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from plans import new_plan, with_requests

from reallocator.store.errors import AlreadyExists, NotFound, StaleEtag, WrongState
from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get("REALLOCATOR_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL's server binaries are missing (apt-get install postgresql)")
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="reallocator-pg-"))
    shutil.chown(folder, "postgres")
    data = folder / "data"
    port = _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust"], **run)  # type: ignore[call-overload]  # fmt: skip
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(folder / "log"), "-o", f"-h 127.0.0.1 -p {port} -k {folder}",
                    "start"], **run)  # type: ignore[call-overload]  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = SqlStore.open(url)
    yield opened
    opened.close()


def test_the_life_cycle_on_each_database(store: SqlStore) -> None:
    campaign = f"c-{os.getpid()}-{id(store)}"
    key = f"Replan:{campaign}:a"
    new = with_requests(campaign)
    first = store.record_plan(new, actor="svc", key=key, request_hash="h1")
    assert first.state == "PROPOSED" and not first.replayed
    assert store.find_key(key, "h1", campaign) == first.name
    assert store.record_plan(new, actor="svc", key=key, request_hash="h1").replayed
    with pytest.raises(AlreadyExists):
        store.find_key(key, "h2", campaign)
    with pytest.raises(StaleEtag):
        store.review(first.name, True, etag="stale", actor="ana", comment="")
    approved = store.review(first.name, True, etag=first.etag, actor="ana", comment="ok")
    with pytest.raises(WrongState):
        store.review(first.name, False, etag=approved.etag, actor="bo", comment="")
    assert store.confirm_applied(first.name, actor="svc", apply_time=None).state == "APPLIED"
    requests = list(new.msg.seller_requests)
    partial = plan_pb2.SELLER_RESPONSE_KIND_PARTIAL
    store.record_response(
        first.name, requests[1].request_id, response=partial, accepted_total=1_500, message="",
        response_time=None, actor="seller",
    )  # fmt: skip
    history = store.request_history(campaign).requests.set_index("deal_id")
    assert history.loc[requests[1].deal_id, "response"] == "PARTIAL"
    assert history.loc[requests[1].deal_id, "accepted_total"] == 1_500
    assert history.loc[requests[0].deal_id, "response"] == "PENDING"
    second = store.record_plan(new_plan(campaign, approve=True), actor="svc")
    assert second.previous_plan == first.name and second.state == "APPROVED"
    plans, token = store.list_plans(campaign, page_size=1)
    assert [p.name for p in plans] == [second.name] and token
    more, last = store.list_plans(campaign, page_size=1, page_token=token)
    assert [p.name for p in more] == [first.name] and not last
    # APPLIED stays APPLIED: the newer plan does not supersede what was applied.
    assert store.get_plan(first.name).state == plan_pb2.PLAN_STATE_APPLIED
    answered = {r.request_id: r.response for r in store.get_plan(first.name).seller_requests}
    assert answered[requests[1].request_id] == partial
    with pytest.raises(NotFound):
        store.get_plan(f"campaigns/{campaign}/plans/0000")

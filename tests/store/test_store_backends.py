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


def _plan(campaign: str, requests: int = 0) -> plan_pb2.Plan:
    plan = plan_pb2.Plan(campaign_id=campaign, status=plan_pb2.PLAN_STATUS_OPTIMAL)
    plan.as_of.FromSeconds(1_790_000_000)
    for i in range(requests):
        plan.seller_requests.add(
            request_id=f"r{i}", deal_id=f"d{i}", kind=plan_pb2.REQUEST_KIND_INCREASE,
            target_total=1_000 * (i + 1),
        )  # fmt: skip
    return plan


def test_the_life_cycle_on_each_database(store: SqlStore) -> None:
    campaign = f"c-{os.getpid()}-{id(store)}"
    first = store.record_plan(_plan(campaign, 2), snapshot=b"s1", actor="svc", approve=False,
                              request_id="a", request_hash="h1")  # fmt: skip
    assert first.state == plan_pb2.PLAN_STATE_PROPOSED
    assert store.find_retry(campaign, "a", "h1") == first
    with pytest.raises(AlreadyExists):
        store.find_retry(campaign, "a", "h2")
    with pytest.raises(StaleEtag):
        store.review(first.name, True, etag="stale", actor="ana", comment="")
    approved = store.review(first.name, True, etag=first.etag, actor="ana", comment="ok")
    with pytest.raises(WrongState):
        store.review(first.name, False, etag=approved.etag, actor="bo", comment="")
    assert store.confirm_applied(first.name, actor="svc", apply_time=None).state == (
        plan_pb2.PLAN_STATE_APPLIED
    )
    partial = plan_pb2.SELLER_RESPONSE_KIND_PARTIAL
    store.record_response(
        first.name, "r1", response=partial, accepted_total=1_500, message="",
        response_time=None, actor="seller",
    )  # fmt: skip
    history = store.request_history(campaign).requests.sort_values("deal_id")
    rows = history[["deal_id", "response", "accepted_total"]].values.tolist()
    assert rows == [["d0", "PENDING", 0], ["d1", "PARTIAL", 1_500]]
    second = store.record_plan(_plan(campaign), snapshot=b"s1", actor="svc", approve=True)
    assert second.previous_plan == first.name and second.state == plan_pb2.PLAN_STATE_APPROVED
    plans, token = store.list_plans(campaign, page_size=1)
    assert [p.name for p in plans] == [second.name] and token
    more, last = store.list_plans(campaign, page_size=1, page_token=token)
    assert [p.name for p in more] == [first.name] and not last
    # APPLIED stays APPLIED: the newer plan does not supersede what was applied.
    assert store.get_plan(first.name).state == plan_pb2.PLAN_STATE_APPLIED
    with pytest.raises(NotFound):
        store.get_plan(f"campaigns/{campaign}/plans/0000")

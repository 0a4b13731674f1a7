"""Batch replanning: status and errors tables, resumption, runners and Replan agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import build_snapshot, random_snapshot_spec
from call_context import CallContext

from reallocator.batch.book import book_rows
from reallocator.batch.campaign import Options, plan_campaign
from reallocator.batch.dask_runner import _sorted_deals, replan_on_dask
from reallocator.batch.runner import read_table, replan_book
from reallocator.cli import main
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as rpc


def _book(n: int, n_deals: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, deals = [], []
    for seed in range(n):
        spec = random_snapshot_spec(n_deals, seed, n_buckets=0)
        row, d = book_rows(build_snapshot(spec, "arrow"))
        rows.append(row)
        deals.append(d)
    return pd.DataFrame(rows), pd.concat(deals, ignore_index=True)


def _bad_book() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Campaigns 0-1 good; 2 a bad deal row; 3 a bad currency; 4-5 infeasible (reject, relax)."""
    campaigns, deals = _book(6, n_deals=24)
    bad = deals.index[deals["campaign_id"] == "campaign-2"][3]
    deals.loc[bad, "allocation"] = -5
    campaigns.loc[3, "currency_code"] = "dollars"
    for i, mode in ((4, "REJECT"), (5, "RELAX")):  # seller floors summing over the budget
        totals = deals[deals["campaign_id"] == f"campaign-{i}"].groupby("seller_id")["allocation"]
        floors = totals.sum()
        campaigns.loc[i, "sellers"] = json.dumps(
            [{"sellerId": s, "limits": {"minTotal": str(int(v))}} for s, v in floors.items()]
        )
        pacing = json.loads(campaigns.loc[i, "pacing"])
        pacing["budgets"] = [{"period": "PERIOD_LIFETIME", "amount": str(int(floors.sum() // 2))}]
        campaigns.loc[i, "pacing"] = json.dumps(pacing)
        campaigns.loc[i, "on_infeasible"] = mode
    ghost = deals.iloc[[0]].assign(campaign_id="campaign-ghost")  # a deal of no campaign
    return campaigns, pd.concat([deals, ghost], ignore_index=True)


def _read(out: Path, part: str) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted((out / part).glob("part-*.parquet"))],
        ignore_index=True,
    )


def test_status_and_errors_tables(tmp_path: Path) -> None:
    campaigns, deals = _bad_book()
    summary = replan_book(campaigns, deals, tmp_path, Options(), processes=1, chunk_size=4)
    status = _read(tmp_path, "status").set_index("campaign_id")["status"]
    assert status["campaign-0"] in ("OPTIMAL", "NO_CHANGE")
    assert status["campaign-1"] in ("OPTIMAL", "NO_CHANGE")
    assert status["campaign-2"] == "INVALID"
    assert status["campaign-3"] == "INVALID"
    assert status["campaign-4"] == "REJECTED"
    assert status["campaign-5"] == "RELAXED"
    assert summary.campaigns == 6 and summary.orphan_deals == 1
    errors = _read(tmp_path, "errors")
    bad_deal = deals[deals["campaign_id"] == "campaign-2"]["deal_id"].iloc[3]
    row = errors[errors["campaign_id"] == "campaign-2"].iloc[0]
    assert (row["deal_id"], row["column"]) == (bad_deal, "allocation")
    assert errors[errors["campaign_id"] == "campaign-3"]["column"].tolist() == ["currency_code"]
    st = _read(tmp_path, "status").set_index("campaign_id")
    assert "min_total" in st.loc["campaign-4", "violations"]
    assert st.loc["campaign-4", "reason"].startswith("constraints conflict")
    assert "min_total" in st.loc["campaign-5", "violations"]
    planned = set(_read(tmp_path, "deals")["campaign_id"])
    assert planned == {"campaign-0", "campaign-1", "campaign-5"}


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_interrupted_run_resumed_is_byte_identical(tmp_path: Path) -> None:
    campaigns, deals = _book(5, n_deals=8)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    replan_book(campaigns, deals, whole, Options(), processes=1, chunk_size=2, progress=False)
    replan_book(campaigns, deals, resumed, Options(), processes=1, chunk_size=2, progress=False)
    # an interruption: the last chunk never finished (its status part missing, a temp file left)
    (resumed / "status" / "part-00002.parquet").unlink()
    (resumed / "deals" / "part-00002.parquet").write_bytes(b"half")
    (resumed / "status" / ".part-00002.parquet.tmp-1").write_bytes(b"half")
    summary = replan_book(
        campaigns, deals, resumed, Options(), processes=1, chunk_size=2, progress=False
    )
    assert summary.skipped_chunks == 2 and summary.campaigns == 1
    (resumed / "status" / ".part-00002.parquet.tmp-1").unlink()
    assert _files(resumed) == _files(whole)


def test_local_processes_agree_with_one_process(tmp_path: Path) -> None:
    campaigns, deals = _book(4, n_deals=8)
    replan_book(campaigns, deals, tmp_path / "a", Options(), processes=1, chunk_size=2)
    replan_book(campaigns, deals, tmp_path / "b", Options(), processes=2, chunk_size=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_pandas_groupby_apply_calls_the_same_function() -> None:
    """The README's Spark snippet, run with pandas: groupBy + applyInPandas over plan_campaign."""
    campaigns, deals = _book(3, n_deals=8)
    by_id = campaigns.set_index("campaign_id", drop=False)

    def plan_deals(group: pd.DataFrame) -> pd.DataFrame:
        cid = group["campaign_id"].iloc[0]
        return plan_campaign(by_id.loc[cid], group, Options()).deals

    out = pd.concat(
        [plan_deals(g) for _, g in deals.groupby("campaign_id", sort=True)], ignore_index=True
    )
    direct = pd.concat(
        [
            plan_campaign(row, deals[deals["campaign_id"] == row["campaign_id"]], Options()).deals
            for _, row in campaigns.iterrows()
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(out, direct)
    assert len(out) == 24


def test_batch_and_replan_give_the_same_plan(stub: rpc.ReallocatorServiceStub) -> None:
    msg = build_snapshot(random_snapshot_spec(30, 7, n_buckets=0), "arrow")
    row, deals = book_rows(msg)
    result = plan_campaign(pd.Series(row), deals, Options())
    request = pb.ReplanRequest(view=pb.PLAN_VIEW_FULL)
    request.snapshot.CopyFrom(msg)
    plan = stub.Replan(request, timeout=30).plan
    wire = [(d.deal_id, d.old_allocation, d.new_allocation) for d in plan.deals]
    batch = list(
        zip(
            result.deals["deal_id"],
            result.deals["old_allocation"],
            result.deals["new_allocation"],
            strict=True,
        )
    )
    assert wire == batch
    assert plan.seller_requests
    targets = result.requests["target_total"].tolist()
    assert [r.target_total for r in plan.seller_requests] == targets
    assert result.status_table["allocated"].iloc[0] == plan.allocated


def test_cli_writes_parts_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, deals = _bad_book()
    campaigns.to_parquet(tmp_path / "campaigns.parquet")
    deals.to_parquet(tmp_path / "deals.parquet")
    args = ["batch", "replan", "--deals", str(tmp_path / "deals.parquet")]
    args += ["--campaigns", str(tmp_path / "campaigns.parquet"), "--out", str(tmp_path / "out")]
    assert main([*args, "--processes", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "6 campaigns planned" in captured.out
    assert "1 deal row(s) name a campaign_id missing" in captured.err
    assert len(read_table(next((tmp_path / "out" / "status").glob("*.parquet")))) == 6


def test_dask_local_cluster_gives_the_local_runners_plans(tmp_path: Path) -> None:
    """Dask reads the files per partition and groups by campaign on the workers; the plans
    (every part, in campaign order) are the local runner's."""
    campaigns, deals = _bad_book()
    deals = deals.sample(frac=1.0, random_state=3)  # campaigns interleaved across partitions
    deals.to_parquet(tmp_path / "deals.parquet", row_group_size=40)
    campaigns.to_parquet(tmp_path / "campaigns.parquet")
    replan_book(campaigns, deals, tmp_path / "a", Options(), processes=1, chunk_size=2)
    summary = replan_on_dask(
        tmp_path / "campaigns.parquet",
        tmp_path / "deals.parquet",
        tmp_path / "b",
        Options(),
        workers=2,
        chunk_size=2,
        progress=False,
    )
    assert summary.campaigns == 6 and summary.orphan_deals == 1
    for part in ("deals", "requests", "schedules", "status", "errors"):
        pd.testing.assert_frame_equal(_read(tmp_path / "a", part), _read(tmp_path / "b", part))
    assert _sorted_deals(tmp_path / "deals.parquet") is None  # interleaved: shuffled


def test_dask_cuts_a_book_sorted_by_campaign_without_a_shuffle(tmp_path: Path) -> None:
    """Deal rows written in campaign order (one row group per campaign): the row groups'
    statistics give the divisions, the table is cut at the campaigns' bounds, same plans."""
    campaigns, deals = _bad_book()
    table = pa.Table.from_pandas(deals, preserve_index=False)
    with pq.ParquetWriter(tmp_path / "deals.parquet", table.schema) as writer:
        for cid in sorted(deals["campaign_id"].unique()):
            rows = deals[deals["campaign_id"] == cid]
            writer.write_table(pa.Table.from_pandas(rows, preserve_index=False))
    campaigns.sort_values("campaign_id").to_parquet(tmp_path / "campaigns.parquet")
    for table in ("deals", "campaigns"):
        grouped = _sorted_deals(tmp_path / f"{table}.parquet")
        assert grouped is not None and grouped.known_divisions
    replan_book(campaigns, deals, tmp_path / "a", Options(), processes=1, chunk_size=2)
    dask_args = (tmp_path / "campaigns.parquet", tmp_path / "deals.parquet", tmp_path / "b")
    import dask.dataframe as dd

    with mock.patch.object(dd.DataFrame, "set_index", side_effect=AssertionError("shuffled")):
        replan_on_dask(*dask_args, Options(), workers=2, chunk_size=2, progress=False)
    for part in ("deals", "requests", "schedules", "status", "errors"):
        pd.testing.assert_frame_equal(_read(tmp_path / "a", part), _read(tmp_path / "b", part))
    # interrupted: one chunk's status part missing; the rerun plans that chunk only
    whole = _files(tmp_path / "b")
    last = sorted((tmp_path / "b" / "status").glob("part-*.parquet"))[-1]
    last.unlink()
    summary = replan_on_dask(*dask_args, Options(), workers=2, chunk_size=2, progress=False)
    assert summary.campaigns == 2 and summary.skipped_chunks == 2
    assert _files(tmp_path / "b") == whole


def test_csv_input_gives_the_same_status_as_parquet(tmp_path: Path) -> None:
    """CSV on both runners (Dask reads it typed: an empty optional column is not a null column
    in one block and an integer one in the next)."""
    campaigns, deals = _bad_book()
    campaigns.to_csv(tmp_path / "c.csv", index=False)
    deals.to_csv(tmp_path / "d.csv", index=False)
    args = ["batch", "replan", "--deals", str(tmp_path / "d.csv"), "--campaigns"]
    args += [str(tmp_path / "c.csv"), "--out", str(tmp_path / "csv"), "--processes", "1"]
    assert main([*args, "--no-progress"]) == 0
    replan_book(campaigns, deals, tmp_path / "pq", Options(), processes=1, progress=False)
    expected = _read(tmp_path / "pq", "status")
    pd.testing.assert_frame_equal(_read(tmp_path / "csv", "status"), expected)
    replan_on_dask(
        tmp_path / "c.csv", tmp_path / "d.csv", tmp_path / "dask", Options(), workers=1,
        progress=False,
    )  # fmt: skip
    pd.testing.assert_frame_equal(_read(tmp_path / "dask", "status"), expected)


def test_rationale_only_when_asked() -> None:
    """--rationale adds the words (deals, requests, schedules); without it no column carries
    them, and the numbers are the same either way."""
    msg = build_snapshot(random_snapshot_spec(30, 7, n_buckets=0), "arrow")
    row, deals = book_rows(msg)
    bare = plan_campaign(pd.Series(row), deals, Options())
    worded = plan_campaign(pd.Series(row), deals, Options(rationale=True))
    for part in ("deals", "requests", "schedules"):
        assert "rationale" not in bare.frame(part)
        assert "rationale" in worded.frame(part)
        pd.testing.assert_frame_equal(
            bare.frame(part), worded.frame(part).drop(columns="rationale")
        )
    assert len(worded.deals) and (worded.deals["rationale"].str.len() > 20).all()
    assert len(worded.requests) and (worded.requests["rationale"].str.len() > 20).all()
    assert len(worded.schedules) and (worded.schedules["rationale"].str.len() > 20).all()


def test_the_stored_snapshot_is_the_replan_callers_message() -> None:
    """--store keeps each plan's input as the CampaignSnapshot a Replan caller would send."""
    from reallocator.batch.record import snapshot_message
    from reallocator.wire.deals import read_arrow_stream
    from reallocator.wire.violations import Violations

    msg = build_snapshot(random_snapshot_spec(12, 3, n_buckets=0), "arrow")
    row, deals = book_rows(msg)
    table = pa.Table.from_pandas(deals.drop(columns="campaign_id"), preserve_index=False)
    again = snapshot_message(row, table)
    original_deals = read_arrow_stream(msg.deals_table.arrow_ipc, "deals", Violations())
    assert read_arrow_stream(again.deals_table.arrow_ipc, "deals", Violations()).equals(table)
    assert original_deals is not None and original_deals.num_rows == table.num_rows
    again.ClearField("deals_table")
    msg.ClearField("deals_table")
    assert again == msg


def test_store_records_planned_campaigns_as_replan_does(tmp_path: Path) -> None:
    """--store: planned campaigns are recorded (INVALID and REJECTED ones are not), a rerun
    records nothing again, and a stored batch plan goes through the life cycle like any other
    (a partial approval re-solves it from what was stored)."""
    from reallocator.lifecycle import PlanLifecycle
    from reallocator.store.sql import SqlStore

    campaigns, deals = _bad_book()
    campaigns.to_parquet(tmp_path / "campaigns.parquet")
    deals.to_parquet(tmp_path / "deals.parquet")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["batch", "replan", "--deals", str(tmp_path / "deals.parquet"), "--campaigns",
            str(tmp_path / "campaigns.parquet"), "--out", str(tmp_path / "out"), "--store",
            "--database-url", url, "--processes", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 0  # resumed: nothing planned, nothing recorded again
    status = read_table(next((tmp_path / "out" / "status").glob("*.parquet")))
    planned = status.loc[status["status"].isin(["OPTIMAL", "RELAXED", "NO_CHANGE"]), "campaign_id"]
    store = SqlStore.open(url)
    recorded = {c: store.list_plans(str(c))[0] for c in status["campaign_id"]}
    assert {c for c, p in recorded.items() if p} == set(planned)
    assert all(len(p) == 1 for c, p in recorded.items() if c in set(planned))
    plan = next(
        store.get_plan(p[0].name) for p in recorded.values()
        if p and p[0].state == 1 and sum(d.delta != 0 for d in store.get_plan(p[0].name).deals) > 1
    )  # fmt: skip
    moved = [d.deal_id for d in plan.deals if d.delta != 0]
    revision = PlanLifecycle(store).revise(plan.name, plan.etag, moved[:1], actor="t", comment="")
    assert revision.previous_plan == plan.name
    assert moved[0] not in [d.deal_id for d in revision.deals if d.delta != 0]
    store.close()


def test_store_supplies_batch_what_it_supplies_replan(tmp_path: Path) -> None:
    """With --store, a campaign whose last plan was applied and whose seller declared its
    inventory is planned by batch exactly as Replan plans it from the same store (the last
    application and the declared inventory filled in, the seller history read)."""
    from reallocator.config import ServerConfig
    from reallocator.server.servicer import ReallocatorServicer
    from reallocator.store.sql import SqlStore
    from reallocator.v1 import plan_pb2

    msg = build_snapshot(random_snapshot_spec(24, 22, n_buckets=0), "arrow")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore.open(url)
    servicer = ReallocatorServicer(ServerConfig(), store)
    context: Any = CallContext()
    first = servicer.replan(pb.ReplanRequest(snapshot=msg), context).message.plan
    assert any(d.delta for d in first.deals) and first.seller_requests
    approved = store.review(first.name, True, etag=first.etag, actor="t", comment="")
    as_of = msg.as_of.ToMicroseconds()
    store.confirm_applied(
        first.name, actor="t", apply_time=as_of - 3_600_000_000, etag=approved.etag
    )
    request = first.seller_requests[0]
    store.record_response(
        first.name, request.request_id, response=plan_pb2.SELLER_RESPONSE_KIND_PARTIAL,
        accepted_total=request.target_total // 2, message="", response_time=as_of - 1,
        actor="seller", available_inventory=1_000,
    )  # fmt: skip
    again = servicer.replan(pb.ReplanRequest(snapshot=msg, dry_run=True), context).message.plan
    row, deals = book_rows(msg)
    alone = plan_campaign(pd.Series(row), deals, Options())  # no store: planned from msg only
    assert list(alone.deals["new_allocation"]) != [d.new_allocation for d in again.deals]
    pd.DataFrame([row]).to_parquet(tmp_path / "campaigns.parquet")
    deals.to_parquet(tmp_path / "deals.parquet")
    args = ["batch", "replan", "--deals", str(tmp_path / "deals.parquet"), "--campaigns",
            str(tmp_path / "campaigns.parquet"), "--out", str(tmp_path / "out"), "--store",
            "--database-url", url, "--processes", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    batch = read_table(next((tmp_path / "out" / "deals").glob("*.parquet")))
    assert list(batch["new_allocation"]) == [d.new_allocation for d in again.deals]
    newest = store.list_plans(msg.campaign_id)[0][0]
    assert [d.new_allocation for d in store.get_plan(newest.name).deals] == list(
        batch["new_allocation"]
    )
    store.close()

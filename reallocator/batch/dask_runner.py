"""The same job on Dask (`dask.distributed`): the book is read per partition on the workers
(`dask.dataframe.read_parquet` / `read_csv`), never collected on the client, and grouped by
campaign with `set_index("campaign_id")` on both tables with the same divisions (the campaign
table's id ranges): partition p of the deals then holds exactly the deal rows of partition p of
the campaigns. Each aligned pair goes through the local runner's own `group_book` and
`plan_chunk`, so both runners call `plan_campaign` the same way, and is written as parts
`part-PPPPP-CCCCC.parquet` (partition, chunk of `chunk_size` campaigns), status last.

The divisions are kept in `_job.json`: a rerun cuts the same partitions and skips the chunks
whose status part exists."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from google.protobuf.descriptor import FieldDescriptor

from reallocator.batch.campaign import Options
from reallocator.batch.runner import (
    BatchError,
    Summary,
    group_book,
    job_file,
    plan_chunk,
    progress_bar,
    write_parts,
)

PARTITION_CHUNKS = 4
"""Chunks of campaigns per Dask partition (a task): big enough to amortise a task's fixed cost,
small enough that every worker gets several."""

_ROW = "_reallocator_row"
_META = pd.DataFrame({"status": pd.Series(dtype=str), "campaigns": pd.Series(dtype="int64")})


def _dd() -> Any:
    try:
        import dask.dataframe as dd
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BatchError(
            "--engine dask needs Dask: pip install 'reallocator[batch]' "
            "(dask[dataframe] and distributed)"
        ) from exc
    return dd


def read_dask(source: Path | pd.DataFrame, npartitions: int = 1) -> Any:
    """A Dask DataFrame read per partition on the workers (Parquet, or CSV by suffix), with
    Arrow-backed columns so integer columns with nulls stay exact; a pandas frame is split."""
    dd = _dd()
    if isinstance(source, pd.DataFrame):
        return dd.from_pandas(source, npartitions=npartitions, sort=False)
    if not source.exists():
        raise BatchError(f"cannot read {source}: no such file or directory")
    if source.suffix.lower() == ".csv":  # typed up front: blocks inferred apart disagree
        return dd.read_csv(str(source), dtype_backend="pyarrow", dtype=_csv_dtypes())
    return dd.read_parquet(str(source), dtype_backend="pyarrow")


def _sorted_deals(source: Path | pd.DataFrame) -> Any | None:
    """A table (deals or campaigns) indexed by campaign_id with known divisions, when its
    Parquet row groups are already in campaign order (their min/max statistics say so): then
    the runner cuts it at the campaigns' divisions without a shuffle. None otherwise."""
    if not isinstance(source, Path) or source.suffix.lower() == ".csv":
        return None
    try:
        frame = _dd().read_parquet(
            str(source), dtype_backend="pyarrow", index="campaign_id", calculate_divisions=True
        )
    except (ValueError, KeyError, TypeError):
        return None
    if not frame.known_divisions or not all(isinstance(d, str) for d in frame.divisions):
        return None
    return frame


def _csv_dtypes() -> dict[str, Any]:
    """The DealColumns fields' types (from the proto), so an empty optional column in one block
    of a CSV file is not read as another type than in the next."""
    import pyarrow as pa

    from reallocator.v1 import snapshot_pb2

    kinds = {
        FieldDescriptor.TYPE_STRING: pa.string(),
        FieldDescriptor.TYPE_BOOL: pa.bool_(),
        FieldDescriptor.TYPE_DOUBLE: pa.float64(),
    }
    out: dict[str, Any] = {"campaign_id": pd.ArrowDtype(pa.string())}
    for f in snapshot_pb2.DealColumns.DESCRIPTOR.fields:
        if not f.name.startswith("has_"):
            out[f.name] = pd.ArrowDtype(kinds.get(f.type, pa.int64()))
    return out


def _with_row(frame: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    """A global row number (input partition, row), so a campaign's deals keep their order
    through the shuffle (a partition's sort by index is not stable)."""
    number = partition_info["number"] if partition_info is not None else 0
    return frame.assign(**{_ROW: (number << 32) + pd.RangeIndex(len(frame)).to_numpy()})


def _plan_partition(
    campaigns: pd.DataFrame,
    deals: pd.DataFrame,
    out: str,
    options: Options,
    chunk_size: int,
    store: str | None,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Plans one aligned pair of partitions and writes its chunks; campaigns per status."""
    number = partition_info["number"] if partition_info is not None else 0
    counts: Counter[str] = Counter()
    counts["orphan_deals"] = 0 if len(campaigns) else len(deals)
    if len(campaigns):
        book = group_book(
            campaigns.reset_index(),
            deals.reset_index().sort_values(_ROW, kind="stable").drop(columns=[_ROW]),
        )
        counts["orphan_deals"] = book.orphans
        for k, lo in enumerate(range(0, len(book.rows), chunk_size)):
            name = f"part-{number:05d}-{k:05d}.parquet"
            status = Path(out) / "status" / name
            hi = min(lo + chunk_size, len(book.rows))
            if status.exists():  # written by an earlier run
                counts["skipped_chunk"] += 1
                counts["skipped_campaigns"] += hi - lo
                continue
            results = plan_chunk(book.chunk(lo, hi), options, store)
            write_parts(results, Path(out), name, options.rationale)
            counts.update(r.status for r in results)
    return pd.DataFrame(
        {"status": list(counts), "campaigns": list(counts.values())}, columns=list(_META)
    ).astype(_META.dtypes.to_dict())


def _cut(table: Any, divisions: list[str]) -> Any | None:
    """A table with known divisions cut at the inner bounds of `divisions` (its own first and
    last ids kept as its ends, as `repartition` requires), so partition p holds the same
    campaigns in every table; None when its ids do not reach past the inner bounds (then the
    caller shuffles it)."""
    lo, hi = str(table.divisions[0]), str(table.divisions[-1])
    inner = list(divisions[1:-1])
    if inner and not (lo < inner[0] and inner[-1] < hi):
        return None
    if not inner and lo == hi:
        return table.repartition(npartitions=1)
    return table.repartition(divisions=[lo, *inner, hi])


def _divisions(ids: Any, per_partition: int) -> list[str]:
    """Partition bounds holding `per_partition` campaigns each: only the id column comes to the
    client (a few MB at a million campaigns), and the partitions are exact, not estimated."""
    unique = sorted(set(ids.tolist()))
    if not unique:
        return ["", ""]
    starts = unique[::per_partition]
    if len(starts) > 1 and starts[-1] == unique[-1]:
        starts = starts[:-1]
    return [*starts, unique[-1]]


def replan_on_dask(
    campaigns: Path | pd.DataFrame,
    deals: Path | pd.DataFrame,
    out: Path,
    options: Options,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    store: str | None = None,
) -> Summary:
    """Replans every campaign on the Dask scheduler at `scheduler`, or on a LocalCluster of
    `workers` processes (default: all cores). Workers must see the input files and `out`."""
    dd = _dd()
    from distributed import Client, LocalCluster, as_completed

    workers = workers or os.cpu_count() or 1
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    summary = Summary()
    try:
        with Client(scheduler or cluster) as client:  # type: ignore[no-untyped-call]
            sorted_camps = _sorted_deals(campaigns)  # in campaign order: no shuffle either
            camps = read_dask(campaigns, workers)
            if "campaign_id" not in camps.columns:
                raise BatchError("the campaigns table needs a campaign_id column")
            camps = camps.assign(campaign_id=camps["campaign_id"].astype(str))
            deal_rows = _sorted_deals(deals)
            if deal_rows is None:  # not sorted by campaign: a shuffle groups the rows
                deal_rows = read_dask(deals, workers)
                if "campaign_id" not in deal_rows.columns:
                    raise BatchError("the deals table needs a campaign_id column")
                deal_rows = deal_rows.assign(campaign_id=deal_rows["campaign_id"].astype(str))
            path = out / "_job.json"
            earlier = json.loads(path.read_text()) if path.exists() else {}
            divisions = earlier.get("divisions")
            ids = camps["campaign_id"].compute().to_numpy(dtype=object)
            n = len(ids)
            if divisions is None:
                divisions = _divisions(ids, chunk_size * PARTITION_CHUNKS)
                for table in (deal_rows, sorted_camps):  # cover every row's id (repartition)
                    if table is not None and table.known_divisions:
                        divisions[0] = min(divisions[0], str(table.divisions[0]))
                        divisions[-1] = max(divisions[-1], str(table.divisions[-1]))
            cut = _cut(sorted_camps, divisions) if sorted_camps is not None else None
            # already in campaign order: cut, no shuffle
            camps = cut if cut is not None else camps.set_index("campaign_id", divisions=divisions)
            job_file(out, {"engine": "dask", "chunk_size": chunk_size,
                           "rationale": options.rationale, "divisions": divisions})  # fmt: skip
            deal_rows = deal_rows.map_partitions(_with_row)
            cut = _cut(deal_rows, divisions) if deal_rows.known_divisions else None
            if cut is not None:  # already in campaign order: cut, no shuffle
                deal_rows = cut
            else:
                if deal_rows.known_divisions:
                    deal_rows = deal_rows.reset_index()
                deal_rows = deal_rows.set_index("campaign_id", divisions=divisions)
            planned = dd.map_partitions(
                _plan_partition,
                camps,
                deal_rows,
                str(out),
                options,
                chunk_size,
                store,
                meta=_META,
            )
            futures = client.compute(planned.to_delayed())
            bar = progress_bar(n, progress)
            try:
                for future in as_completed(futures):  # type: ignore[no-untyped-call]
                    frame = future.result()
                    for status, count in zip(frame["status"], frame["campaigns"], strict=True):
                        if status == "skipped_chunk":
                            summary.skipped_chunks += int(count)
                            continue
                        if status == "orphan_deals":
                            summary.orphan_deals += int(count)
                            continue
                        bar.update(int(count))
                        if status == "skipped_campaigns":
                            continue
                        summary.statuses[str(status)] += int(count)
                        summary.campaigns += int(count)
            finally:
                bar.close()
    finally:
        if cluster is not None:
            cluster.close()
    return summary

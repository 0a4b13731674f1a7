"""Reading the book, grouping it by campaign once, running `plan_campaign` over chunks of
campaigns on local processes and writing each chunk's Parquet parts (temporary name, then rename).

The book is grouped once: campaigns sorted by id, deal rows sorted by their campaign's position
(a stable numpy argsort, so each campaign keeps its deal order) and cut at the offsets of each
campaign. A chunk is then a run of campaign rows plus one zero-copy Arrow slice of the deal rows;
a worker slices each campaign out of it (no filtering, no DataFrame per campaign) and writes one
table per part for the whole chunk.

A chunk is the unit of resumption: its `status` part is written last, so a chunk whose status
part exists is complete and a rerun skips it. Chunks are fixed by the sorted campaign ids and the
chunk size (kept in `_job.json`), so a resumed run writes the same bytes as an uninterrupted one."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from reallocator.batch.campaign import (
    PARTS,
    CampaignResult,
    Options,
    _error_columns,
    _status,
    plan_decoded,
    tables,
)
from reallocator.batch.chunk import decode_chunk
from reallocator.wire.violations import Violations


class BatchError(Exception):
    """A job that cannot start (unreadable input, output of another job's chunking)."""


NULLABLE_INTS = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}
"""Arrow -> pandas: integer and bool columns stay exact where some rows are null (unset)."""


def read_arrow(path: Path) -> pa.Table:
    """A Parquet or CSV file (by suffix) as an Arrow table."""
    try:
        csv = path.suffix.lower() == ".csv"
        table: pa.Table = pacsv.read_csv(path) if csv else pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BatchError(f"cannot read {path}: {exc}") from exc
    return table


def read_table(path: Path) -> pd.DataFrame:
    """A Parquet or CSV file (by suffix) as pandas; string columns stay strings."""
    frame: pd.DataFrame = read_arrow(path).to_pandas(types_mapper=NULLABLE_INTS.get)
    return frame


@dataclass
class Summary:
    """What a job did: campaigns per status, chunks skipped because already written."""

    campaigns: int = 0
    skipped_chunks: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    orphan_deals: int = 0  # deal rows whose campaign_id is not in the campaign table


@dataclass(frozen=True)
class Book:
    """The book grouped by campaign: campaign rows sorted by id (`rows`), the deal rows in the
    same campaign order (`deals`), and campaign row i's deal rows at
    `deals[starts[i]:stops[i]]`. `duplicate[i]`: a second row with an id already seen."""

    rows: list[dict[str, Any]]
    deals: pa.Table
    starts: npt.NDArray[np.int64]
    stops: npt.NDArray[np.int64]
    duplicate: npt.NDArray[np.bool_]
    orphans: int = 0  # deal rows of no campaign in the table (left out)

    def chunk(self, lo: int, hi: int) -> Chunk:
        """Campaign rows lo..hi and one Arrow slice holding all their deal rows."""
        base, top = int(self.starts[lo:hi].min()), int(self.stops[lo:hi].max())
        return Chunk(
            rows=self.rows[lo:hi],
            deals=_compact(self.deals.slice(base, top - base)),
            starts=self.starts[lo:hi] - base,
            stops=self.stops[lo:hi] - base,
            duplicate=self.duplicate[lo:hi],
        )


@dataclass(frozen=True)
class Chunk:
    """What one task plans: the same layout as `Book`, offsets relative to `deals`."""

    rows: list[dict[str, Any]]
    deals: pa.Table
    starts: npt.NDArray[np.int64]
    stops: npt.NDArray[np.int64]
    duplicate: npt.NDArray[np.bool_]


def _compact(table: pa.Table) -> pa.Table:
    """A slice that pickles as its own rows only (an IPC round trip drops the parent buffers)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


def group_book(campaigns: pd.DataFrame | pa.Table, deals: pd.DataFrame | pa.Table) -> Book:
    """Groups the book once (see the module docstring). Deal rows of a campaign missing from the
    campaign table are left out."""
    if isinstance(campaigns, pa.Table):
        campaigns = campaigns.to_pandas(types_mapper=NULLABLE_INTS.get)
    if isinstance(deals, pd.DataFrame):
        deals = pa.Table.from_pandas(deals.reset_index(drop=True), preserve_index=False)
    if "campaign_id" not in campaigns or "campaign_id" not in deals.column_names:
        raise BatchError("both tables need a campaign_id column")
    ids = campaigns["campaign_id"].astype(str)
    ordered = campaigns.assign(campaign_id=ids).sort_values("campaign_id", kind="stable")
    sorted_ids = ordered["campaign_id"].to_numpy(dtype=object)
    duplicate = np.asarray(ordered["campaign_id"].duplicated(keep="first").to_numpy(), dtype=bool)
    unique = pd.Index(sorted_ids[~duplicate])
    deal_ids = deals.column("campaign_id").cast(pa.string()).to_numpy(zero_copy_only=False)
    position = unique.get_indexer(deal_ids)
    known = np.flatnonzero(position >= 0)
    order = known[np.argsort(position[known], kind="stable")]
    counts = np.bincount(position[known], minlength=len(unique))
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    which = np.cumsum(~duplicate) - 1  # each campaign row's unique id
    names = [n for n in deals.column_names if n != "campaign_id"]
    return Book(
        rows=[{str(k): v for k, v in r.items()} for r in ordered.to_dict("records")],
        deals=deals.select(names).take(pa.array(order, type=pa.int64())),
        starts=bounds[which],
        stops=bounds[which + 1],
        duplicate=duplicate,
        orphans=len(deal_ids) - len(known),
    )


def _duplicate(row: dict[str, Any], options: Options) -> CampaignResult:
    cid = str(row["campaign_id"])
    errors = Violations()
    errors.add("campaign.campaign_id", "duplicate row for this campaign_id (the first is planned)")
    columns = {
        "status": _status(cid, "INVALID", "1 error(s)", None, 1),
        "errors": _error_columns(cid, [], errors),
    }
    return CampaignResult(cid, "INVALID", columns, options.rationale)


def plan_chunk(chunk: Chunk, options: Options, store: str | None = None) -> list[CampaignResult]:
    """`plan_campaign` for every campaign of a chunk (decoded together, `chunk.decode_chunk`,
    then planned one by one with `plan_decoded`), each on its Arrow slice of the deal rows;
    with `store` (a database URL), each plan is recorded in the audit store as Replan does."""
    recorder = None
    if store is not None:
        from reallocator.batch.record import recorder_for

        recorder = recorder_for(store)
    decoded = decode_chunk(chunk.rows, chunk.deals, chunk.starts, chunk.stops, options)
    results = []
    for i, row in enumerate(chunk.rows):
        if chunk.duplicate[i]:
            results.append(_duplicate(row, options))
            continue
        cid = str(row["campaign_id"])
        if recorder is None:
            results.append(plan_decoded(cid, decoded[i], options))
            continue
        supply = recorder.supply(decoded[i])
        result = plan_decoded(
            cid,
            supply.decoded,
            options,
            history=None if supply.history.empty else supply.history,
            windows=supply.windows,
        )
        recorder.record(result, row, decoded[i].deals, supply)
        results.append(result)
    return results


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_parts(results: Sequence[CampaignResult], out: Path, name: str, rationale: bool) -> None:
    """One file per part for these campaigns, status last: its presence marks them complete."""
    parts = tables(results, rationale)
    for part in PARTS:
        if part != "status":
            _write(parts[part], out / part / name)
    _write(parts["status"], out / "status" / name)


def run_chunk(
    index: int, chunk: Chunk, out: Path, options: Options, store: str | None = None
) -> Counter[str]:
    """Plans one chunk and writes its parts (status last). Returns campaigns per status."""
    results = plan_chunk(chunk, options, store)
    write_parts(results, out, f"part-{index:05d}.parquet", options.rationale)
    return Counter(r.status for r in results)


def job_file(out: Path, job: dict[str, Any]) -> None:
    """Records the settings that fix the output's layout, and refuses to resume another's."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "_job.json"
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != job:
            raise BatchError(
                f"{out} holds a job run with {earlier}; this run asks {job}: "
                "use another --out folder, or the same settings to resume"
            )
        return
    path.write_text(json.dumps(job))


def replan_book(
    campaigns: pd.DataFrame | pa.Table,
    deals: pd.DataFrame | pa.Table,
    out: Path,
    options: Options,
    *,
    processes: int | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    store: str | None = None,
) -> Summary:
    """Replans every campaign on local processes ("forkserver"; default all cores), one task
    per chunk of `chunk_size` campaigns. `store`: record each plan in the audit store at this
    database URL."""
    job_file(out, {"chunk_size": chunk_size, "rationale": options.rationale})
    book = group_book(campaigns, deals)
    n = len(book.rows)
    summary = Summary(orphan_deals=book.orphans)
    todo = []
    for i, lo in enumerate(range(0, n, chunk_size)):
        if (out / "status" / f"part-{i:05d}.parquet").exists():
            summary.skipped_chunks += 1
            continue
        todo.append((i, lo, min(lo + chunk_size, n)))
    bar = progress_bar(sum(hi - lo for _, lo, hi in todo), progress)
    workers = processes or os.cpu_count() or 1

    def done(counts: Counter[str]) -> None:
        summary.statuses.update(counts)
        summary.campaigns += sum(counts.values())
        bar.update(sum(counts.values()))

    try:
        if workers == 1:
            for i, lo, hi in todo:
                done(run_chunk(i, book.chunk(lo, hi), out, options, store))
        else:
            context = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                pending: set[Future[Counter[str]]] = set()
                for i, lo, hi in todo:  # a few chunks in flight: the book is not copied at once
                    if len(pending) >= 2 * workers:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            done(future.result())
                    pending.add(pool.submit(run_chunk, i, book.chunk(lo, hi), out, options, store))
                for future in as_completed(pending):
                    done(future.result())
    finally:
        bar.close()
    return summary


def progress_bar(total: int, enabled: bool) -> Progress:
    from tqdm import tqdm  # type: ignore[import-untyped]

    return Progress(tqdm(total=total, unit="campaign", disable=not enabled, smoothing=0.1))


class Progress:
    """A thin typed wrapper over tqdm (rate and ETA on stderr)."""

    def __init__(self, bar: object) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        self._bar.update(n)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._bar.close()  # type: ignore[attr-defined]

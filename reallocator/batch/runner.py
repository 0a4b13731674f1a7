"""Reading the book, splitting it into chunks of campaigns, running `plan_campaign` on local
processes and writing each chunk's Parquet parts (temporary name, then rename).

A chunk is the unit of resumption: its `status` part is written last, so a chunk whose status
part exists is complete and a rerun skips it. Chunks are fixed by the sorted campaign ids and the
chunk size (kept in `_job.json`), so a resumed run writes the same bytes as an uninterrupted one."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from reallocator.batch.campaign import PARTS, Options, plan_campaign


class BatchError(Exception):
    """A job that cannot start (unreadable input, output of another job's chunking)."""


def read_table(path: Path) -> pd.DataFrame:
    """A Parquet or CSV file (by suffix) as pandas; string columns stay strings."""
    try:
        csv = path.suffix.lower() == ".csv"
        table = pacsv.read_csv(path) if csv else pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BatchError(f"cannot read {path}: {exc}") from exc
    frame: pd.DataFrame = table.to_pandas(types_mapper=NULLABLE_INTS.get)
    return frame


NULLABLE_INTS = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}
"""Arrow -> pandas: integer and bool columns stay exact where some rows are null (unset)."""


@dataclass
class Summary:
    """What a job did: campaigns per status, chunks skipped because already written."""

    campaigns: int = 0
    skipped_chunks: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


def _chunks(campaigns: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    ordered = campaigns.sort_values("campaign_id", kind="stable").reset_index(drop=True)
    return [ordered.iloc[i : i + size] for i in range(0, len(ordered), size)]


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    os.replace(tmp, path)


def run_chunk(
    index: int, campaigns: pd.DataFrame, deals: pd.DataFrame, out: Path, options: Options
) -> Counter[str]:
    """Plans one chunk and writes its parts (status last). Returns campaigns per status."""
    groups = {str(k): g for k, g in deals.groupby("campaign_id", sort=False)}
    empty = deals.iloc[:0]
    results = [
        plan_campaign(row, groups.get(str(row["campaign_id"]), empty), options)
        for _, row in campaigns.iterrows()
    ]
    name = f"part-{index:05d}.parquet"
    for part in PARTS:  # status last: its presence marks the chunk complete
        frames = [r.part(part) for r in results if len(r.part(part))]
        frame = pd.concat(frames, ignore_index=True) if frames else results[0].part(part)
        _write(frame, out / part / name)
    return Counter(str(r.status["status"].iloc[0]) for r in results)


def _job_file(out: Path, chunk_size: int, rationale: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    job = {"chunk_size": chunk_size, "rationale": rationale}
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
    campaigns: pd.DataFrame,
    deals: pd.DataFrame,
    out: Path,
    options: Options,
    *,
    processes: int | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    engine: str = "local",
    scheduler: str | None = None,
) -> Summary:
    """Replans every campaign on local processes ("forkserver"; default all cores), or on Dask
    (`engine="dask"`: the scheduler at `scheduler`, or a LocalCluster of `processes` workers);
    both run the same `run_chunk`. Dask workers must see `out` (a shared file system)."""
    if "campaign_id" not in campaigns or "campaign_id" not in deals:
        raise BatchError("both tables need a campaign_id column")
    _job_file(out, chunk_size, options.rationale)
    deals = deals.assign(campaign_id=deals["campaign_id"].astype(str))
    campaigns = campaigns.assign(campaign_id=campaigns["campaign_id"].astype(str))
    chunks = _chunks(campaigns, chunk_size)
    by_campaign = deals.groupby("campaign_id", sort=False).indices
    summary = Summary()
    todo = []
    for i, chunk in enumerate(chunks):
        if (out / "status" / f"part-{i:05d}.parquet").exists():
            summary.skipped_chunks += 1
            continue
        todo.append((i, chunk))

    def deal_rows(chunk: pd.DataFrame) -> pd.DataFrame:
        idx = [by_campaign[c] for c in chunk["campaign_id"] if c in by_campaign]
        return deals.iloc[sorted(i for a in idx for i in a)] if idx else deals.iloc[:0]

    total = sum(len(c) for _, c in todo)
    bar = _bar(total, progress)
    workers = processes or os.cpu_count() or 1

    def done(counts: Counter[str]) -> None:
        summary.statuses.update(counts)
        n = sum(counts.values())
        summary.campaigns += n
        bar.update(n)

    try:
        if engine == "dask":
            _on_dask(todo, deal_rows, out, options, workers, scheduler, done)
        elif workers == 1:
            for i, chunk in todo:
                done(run_chunk(i, chunk, deal_rows(chunk), out, options))
        else:
            context = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures: list[Future[Counter[str]]] = [
                    pool.submit(run_chunk, i, chunk, deal_rows(chunk), out, options)
                    for i, chunk in todo
                ]
                for future in as_completed(futures):
                    done(future.result())
    finally:
        bar.close()
    return summary


def _on_dask(
    todo: list[tuple[int, pd.DataFrame]],
    deal_rows: Callable[[pd.DataFrame], pd.DataFrame],
    out: Path,
    options: Options,
    workers: int,
    scheduler: str | None,
    done: Callable[[Counter[str]], None],
) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise BatchError(
            "--engine dask needs Dask: pip install 'reallocator[batch]' "
            "(dask[dataframe] and distributed)"
        ) from exc
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    try:
        with Client(scheduler or cluster) as client:  # type: ignore[no-untyped-call]
            futures = [
                client.submit(run_chunk, i, chunk, deal_rows(chunk), out, options, pure=False)
                for i, chunk in todo
            ]
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                done(future.result())
    finally:
        if cluster is not None:
            cluster.close()


def _bar(total: int, enabled: bool) -> _Progress:
    from tqdm import tqdm  # type: ignore[import-untyped]

    return _Progress(tqdm(total=total, unit="campaign", disable=not enabled, smoothing=0.1))


class _Progress:
    """A thin typed wrapper over tqdm (rate and ETA on stderr)."""

    def __init__(self, bar: object) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        self._bar.update(n)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._bar.close()  # type: ignore[attr-defined]


def iter_parts(out: Path, part: str) -> Iterator[Path]:
    """The written parts of one kind, in chunk order."""
    yield from sorted((out / part).glob("part-*.parquet"))

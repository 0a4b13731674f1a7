"""The local batch runner: reads the book, replans every campaign on a process pool, and writes
Parquet parts atomically (temporary name, then rename) so a rerun resumes where one stopped."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reallocator.batch.campaign import ERROR_COLUMNS, CampaignResult, replan_campaign
from reallocator.core.model import Policy

TABLES = ("deals", "requests", "schedules", "errors", "status")
"""Output tables, one folder each; `status` is written last, so its part marks a chunk done."""

STATUS_COLUMNS = ("campaign_id", "status", "reason", "violations")


def read_table(path: str | Path) -> pd.DataFrame:
    """Parquet or CSV, with Arrow-backed dtypes so nullable integers stay integers."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p, dtype_backend="pyarrow")
    return pd.read_parquet(p, dtype_backend="pyarrow")


def _str(value: Any) -> Any:
    return str(value) if hasattr(value, "value") else value


def result_tables(result: CampaignResult, *, rationale: bool) -> dict[str, pd.DataFrame]:
    """One campaign's result as rows of the output tables."""
    plan, cid = result.plan, result.campaign_id
    violations = "" if plan is None else json.dumps([v.message for v in plan.violations])
    status = pd.DataFrame([[cid, result.status, result.reason, violations]], columns=STATUS_COLUMNS)
    errors = pd.DataFrame(result.errors, columns=list(ERROR_COLUMNS))
    if plan is None:
        return {"status": status, "errors": errors}
    deals = plan.deals.copy()
    if not rationale and "rationale" in deals:
        deals = deals.drop(columns=["rationale"])
    deals.insert(0, "campaign_id", cid)
    requests = pd.DataFrame(
        [
            {
                "campaign_id": cid,
                "request_id": r.request_id,
                "deal_id": r.deal_id,
                "seller_id": r.seller_id,
                "order_id": r.order_id,
                "kind": str(r.kind),
                "severity": str(r.severity),
                "target_total": r.target_total,
                "target_rate": r.target_rate,
                "window_start": r.window_start,
                "window_end": r.window_end,
                "reason": str(r.reason),
                "idempotency_key": r.idempotency_key,
                "change_request": json.dumps(r.change_request, sort_keys=True, default=str),
                **({"rationale": r.rationale} if rationale else {}),
            }
            for r in plan.requests
        ]
    )
    schedules = pd.DataFrame(
        [
            {
                "campaign_id": cid,
                "deal_id": s.deal_id,
                "window_start": s.window_start,
                "hourly_target": s.hourly_target.tolist(),
                "hourly_spend_micros": s.hourly_spend_micros.tolist(),
                "throttle": s.throttle,
                "reason": str(s.reason),
                "pacing": str(s.pacing),
            }
            for s in plan.schedules
        ]
    )
    return {
        "status": status,
        "errors": errors,
        "deals": deals.map(_str) if len(deals) else deals,
        "requests": requests,
        "schedules": schedules,
    }


@dataclass(frozen=True)
class Job:
    """Settings every worker needs (picklable: it crosses the process boundary)."""

    default_policy: Policy
    relax: bool = False
    rationale: bool = False
    time_limit: float | None = None


def replan_chunk(
    job: Job, deals: pd.DataFrame, campaigns: Sequence[Mapping[str, Any]]
) -> dict[str, pd.DataFrame]:
    """A chunk of campaigns -> concatenated output tables (pure; the unit both runners ship)."""
    groups = dict(tuple(deals.groupby("campaign_id", sort=False)))
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for campaign in campaigns:
        cid = str(campaign.get("campaign_id") or "")
        rows = groups.get(cid, deals.iloc[:0])
        result = replan_campaign(
            rows,
            campaign,
            default_policy=job.default_policy,
            relax=job.relax,
            time_limit=job.time_limit,
        )
        for name, frame in result_tables(result, rationale=job.rationale).items():
            if len(frame):
                parts[name].append(frame)
    return {
        name: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        for name, frames in parts.items()
    }


def write_chunk(out: Path, index: int, tables: Mapping[str, pd.DataFrame]) -> None:
    """Each table to `<table>/part-<index>.parquet` via a temporary name; status last."""
    for name in TABLES:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"part-{index:06d}.parquet"
        tmp = folder / f".part-{index:06d}.parquet.tmp"
        table = tables.get(name, pd.DataFrame())
        if table.columns.empty:  # nothing of this kind in the chunk: no part (status never)
            continue
        table.to_parquet(tmp, index=False)
        os.replace(tmp, final)


def chunks(campaigns: pd.DataFrame, size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Campaigns in a stable order (by id), `size` at a time, numbered."""
    ordered: list[dict[str, Any]] = campaigns.sort_values("campaign_id", kind="stable").to_dict(
        "records"
    )  # type: ignore[assignment]
    for i in range(0, len(ordered), size):
        yield i // size, ordered[i : i + size]


def done(out: Path, index: int) -> bool:
    return (out / "status" / f"part-{index:06d}.parquet").exists()


def run_local(
    job: Job,
    deals: pd.DataFrame,
    campaigns: pd.DataFrame,
    out: Path,
    *,
    processes: int | None = None,
    chunk_size: int = 50,
) -> int:
    """Replans every campaign not already written; returns how many chunks were written."""
    todo = [(i, c) for i, c in chunks(campaigns, chunk_size) if not done(out, i)]
    if not todo:
        return 0
    grouped = dict(tuple(deals.groupby("campaign_id", sort=False)))
    empty = deals.iloc[:0]

    def rows(batch: list[dict[str, Any]]) -> pd.DataFrame:
        frames = [grouped.get(str(c.get("campaign_id") or ""), empty) for c in batch]
        return pd.concat(frames, ignore_index=True) if frames else empty

    workers = processes or os.cpu_count() or 1
    if workers == 1:
        for i, batch in todo:
            write_chunk(out, i, replan_chunk(job, rows(batch), batch))
        return len(todo)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {i: pool.submit(replan_chunk, job, rows(batch), batch) for i, batch in todo}
        for i, future in futures.items():
            write_chunk(out, i, future.result())
    return len(todo)

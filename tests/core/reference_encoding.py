"""The PacingVerdict encoder as it was before the one-constructor encoder (wire/assessment.py):
one verdict added per row, each column converted on its own. The fast encoder must give the
same bytes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from reallocator.core.pacing import EntityKind
from reallocator.v1 import assessment_pb2
from reallocator.wire.assessment import KIND, STATUS, timestamp

Columns = Callable[[str], np.ndarray]


def _ints(column: Columns, name: str) -> list[int]:
    values = np.asarray(column(name), dtype=np.float64)
    out: list[int] = np.rint(np.where(np.isfinite(values), values, 0.0)).astype(np.int64).tolist()
    return out


def _floats(column: Columns, name: str) -> list[float]:
    values = np.asarray(column(name), dtype=np.float64)
    out: list[float] = np.where(np.isfinite(values), values, 0.0).tolist()
    return out


def verdicts(frame: pd.DataFrame, kind: EntityKind) -> list[assessment_pb2.PacingVerdict]:
    """One PacingVerdict per row of a verdict frame."""
    ids = frame.index.astype(str).tolist()
    holder = assessment_pb2.PacingAssessment()
    add_verdicts(ids, lambda name: frame[name].to_numpy(), kind, holder.sellers)
    return list(holder.sellers)


def add_verdicts(ids: list[str], column: Columns, kind: EntityKind, into: Any) -> None:
    ratio = np.asarray(column("pacing_ratio"), dtype=np.float64)
    ratio_out = np.where(np.isinf(ratio), np.finfo(np.float64).max, np.nan_to_num(ratio)).tolist()
    exhaustion = np.asarray(column("projected_exhaustion"), dtype=np.float64).tolist()
    columns = {
        name: _ints(column, name)
        for name in ("expected", "actual", "expected_spend_micros", "actual_spend_micros",
                     "projected_end", "allocation")
    }  # fmt: skip
    floats = {
        name: _floats(column, name)
        for name in ("recent_rate", "recent_rate_clock", "required_rate", "confidence",
                     "conf_gap", "conf_outlook", "conf_trend", "conf_evidence",
                     "evidence_hours", "evidence_events")
    }  # fmt: skip
    status = [STATUS[str(s)] for s in column("status")]
    reason = [str(r) for r in column("reason")]
    alerted = np.asarray(column("alert"), dtype=bool).tolist()
    kind_code = KIND[kind]
    add = into.add
    for i, entity_id in enumerate(ids):
        verdict = add(
            entity={"kind": kind_code, "id": entity_id},
            expected=columns["expected"][i],
            actual=columns["actual"][i],
            expected_spend_micros=columns["expected_spend_micros"][i],
            actual_spend_micros=columns["actual_spend_micros"][i],
            pacing_ratio=ratio_out[i],
            status=status[i],
            recent_rate_per_hour=floats["recent_rate"][i],
            projected_end=columns["projected_end"][i],
            required_rate_per_hour=floats["required_rate"][i],
            confidence=floats["confidence"][i],
            allocation=columns["allocation"][i],
            recent_rate_per_clock_hour=floats["recent_rate_clock"][i],
            confidence_factors={
                "gap": floats["conf_gap"][i],
                "outlook": floats["conf_outlook"][i],
                "trend": floats["conf_trend"][i],
                "evidence": floats["conf_evidence"][i],
                "evidence_hours": floats["evidence_hours"][i],
                "evidence_impressions": floats["evidence_events"][i],
            },
            reason_code=reason[i],
            alerted=alerted[i],
        )
        if math.isfinite(exhaustion[i]):
            verdict.projected_exhaustion_time.CopyFrom(timestamp(exhaustion[i]))

"""`--store`: each batch plan recorded in the audit store as `Replan` records it (the same
`SqlStore.record_plan`, with what the store supplies a Replan passed to the planner: the seller
history, the last application, declared inventory and the rolling step windows), so a plan made
in a nightly job is approved, applied and rolled back like any other."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import pyarrow as pa
from google.protobuf import json_format

from reallocator.batch.campaign import CampaignResult, Decoded
from reallocator.core.plan.model import RequestHistory
from reallocator.core.plan.rolling import WindowStarts
from reallocator.lifecycle import PlanLifecycle, supplied
from reallocator.store.sql import SqlStore
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import snapshot_pb2
from reallocator.wire.plan import encode_plan
from reallocator.wire.policy import encode_policy

ACTOR = "batch"
"""The actor recorded on plans a batch job creates."""


def snapshot_message(campaign: Mapping[str, Any], deals: pa.Table) -> snapshot_pb2.CampaignSnapshot:
    """The campaign as the snapshot message a Replan caller would send (deals as Arrow IPC): the
    store keeps the input of every plan, so a batch plan can be replayed like any other."""
    msg = snapshot_pb2.CampaignSnapshot(
        campaign_id=str(campaign["campaign_id"]),
        time_zone=str(campaign.get("time_zone") or ""),
        currency_code=str(campaign.get("currency_code") or ""),
    )
    stamp = pd.Timestamp(campaign["as_of"])  # naive: UTC, as decode_fields reads it
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    msg.as_of.FromDatetime(stamp.to_pydatetime())
    if text := _text(campaign.get("pacing")):
        json_format.Parse(text, msg.pacing)
    for name, target in (("sellers", msg.sellers), ("channels", msg.channels)):
        if text := _text(campaign.get(name)):
            for item in json.loads(text):
                json_format.ParseDict(item, target.add())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, deals.schema) as writer:
        writer.write_table(deals)
    msg.deals_table.arrow_ipc = sink.getvalue().to_pybytes()
    return msg


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


class Recorder:
    """One process's connection to the store (opened once per process, migrations applied)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.lifecycle = PlanLifecycle(store)

    def supply(self, decoded: Decoded) -> Supplied:
        """What the store supplies this campaign's plan, as it supplies a Replan's
        (`PlanLifecycle.supply`: the last application and declared inventory filled in, the
        seller history and the rolling step windows), read in one transaction."""
        if decoded.snapshot is None or decoded.errors:
            return Supplied(decoded, RequestHistory(), None)
        snapshot, history, windows = self.lifecycle.supply(decoded.snapshot)
        return Supplied(replace(decoded, snapshot=snapshot), history, windows)

    def record(
        self,
        result: CampaignResult,
        campaign: Mapping[str, Any],
        deals: pa.Table,
        supply: Supplied,
    ) -> None:
        """Records a planned campaign (INVALID and REJECTED ones have no plan to record) through
        the life cycle Replan uses: its numbers, its snapshot, its policy and infeasibility
        handling (so a review can re-solve it) and what the store supplied it."""
        if result.plan is None or result.snapshot is None:
            return
        plan, snapshot = result.plan, result.snapshot
        msg = encode_plan(plan, deals="none")
        request = pb.ReplanRequest(
            policy=encode_policy(snapshot.policy),
            on_infeasible=(
                pb.INFEASIBILITY_HANDLING_RELAX
                if supply.decoded.relax
                else pb.INFEASIBILITY_HANDLING_REJECT
            ),
        )
        data = snapshot_message(campaign, deals).SerializeToString(deterministic=True)
        new = self.lifecycle.new_plan(plan, msg, data, request, snapshot.policy)
        new = replace(
            new,
            inputs=supplied(snapshot, supply.history, supply.windows),
            comment="created by batch",
        )
        self.store.record_plan(new, actor=ACTOR)


@dataclass(frozen=True)
class Supplied:
    """A decoded campaign with what the store supplied it (`Recorder.supply`)."""

    decoded: Decoded
    history: RequestHistory
    windows: WindowStarts | None


_RECORDERS: dict[str, Recorder] = {}


def recorder_for(url: str) -> Recorder:
    """The process's recorder for this database URL."""
    if url not in _RECORDERS:
        _RECORDERS[url] = Recorder(SqlStore.open(url))
    return _RECORDERS[url]

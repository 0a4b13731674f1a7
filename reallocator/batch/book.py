"""A gRPC snapshot message as batch rows (campaign row + deal rows), so a book can be built from
what a `Replan` caller sends and the two paths compared on the same campaign."""

from __future__ import annotations

import json

import pandas as pd
from google.protobuf import json_format

from reallocator.batch.runner import NULLABLE_INTS
from reallocator.v1 import snapshot_pb2
from reallocator.wire.deals import read_arrow_stream
from reallocator.wire.violations import Violations


def book_rows(
    msg: snapshot_pb2.CampaignSnapshot, on_infeasible: str = "REJECT"
) -> tuple[dict[str, object], pd.DataFrame]:
    """The campaign row and deal rows of a snapshot whose deals travel as Arrow IPC."""
    errors = Violations()
    table = read_arrow_stream(msg.deals_table.arrow_ipc, "deals", errors)
    if table is None:
        raise ValueError(f"deals_table.arrow_ipc: {errors.items}")
    deals = table.to_pandas(types_mapper=NULLABLE_INTS.get)
    deals.insert(0, "campaign_id", msg.campaign_id)
    row: dict[str, object] = {
        "campaign_id": msg.campaign_id,
        "as_of": pd.Timestamp(msg.as_of.ToDatetime(), tz="UTC"),
        "time_zone": msg.time_zone,
        "currency_code": msg.currency_code,
        "pacing": json_format.MessageToJson(msg.pacing, indent=None),
        "sellers": json.dumps([json_format.MessageToDict(s) for s in msg.sellers]),
        "channels": json.dumps([json_format.MessageToDict(c) for c in msg.channels]),
        "policy": "",
        "on_infeasible": on_infeasible,
    }
    return row, deals

"""The per-campaign batch function: same validation and same plan as the Replan RPC."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from builders import build_snapshot, deal_arrow_table, random_snapshot_spec, replan_request
from google.protobuf import json_format

from reallocator.batch.campaign import replan_campaign
from reallocator.config import load_config
from reallocator.v1 import reallocator_service_pb2_grpc as rpc


def book_rows(seed: int, n_deals: int = 12) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """One campaign as the gRPC snapshot and as batch rows (deal table + campaign row)."""
    spec = random_snapshot_spec(n_deals, seed, n_buckets=0)
    msg = build_snapshot(spec, "arrow")
    deals = deal_arrow_table(spec.deals).to_pandas(types_mapper=pd.ArrowDtype)
    deals.insert(0, "campaign_id", spec.campaign_id)
    groups = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    campaign = {
        "campaign_id": msg.campaign_id,
        "as_of": pd.Timestamp(spec.as_of),
        "time_zone": msg.time_zone,
        "currency_code": msg.currency_code,
        "pacing": json.dumps(groups["pacing"]),
        "groups": json.dumps({"sellers": groups["sellers"], "channels": groups["channels"]}),
    }
    return msg, deals, campaign


def test_batch_and_replan_give_the_same_plan(stub: rpc.ReallocatorServiceStub) -> None:
    policy = load_config(env={}).default_policy
    for seed in (1, 2, 3):
        msg, deals, campaign = book_rows(seed)
        result = replan_campaign(deals, campaign, default_policy=policy, relax=True)
        assert result.plan is not None, result.errors
        wire = stub.Replan(replan_request(msg), timeout=30).plan
        got = dict(
            zip(result.plan.deals["deal_id"], result.plan.deals["new_allocation"], strict=True)
        )
        assert got == {d.deal_id: d.new_allocation for d in wire.deals}
        assert result.status == result.plan.status


def test_bad_rows_are_reported_per_deal_and_column() -> None:
    policy = load_config(env={}).default_policy
    _, deals, campaign = book_rows(4)
    deals.loc[2, "allocation"] = -5
    bad_id = deals.loc[2, "deal_id"]
    result = replan_campaign(deals, campaign, default_policy=policy)
    assert result.status == "INVALID" and result.plan is None
    assert any(e["deal_id"] == bad_id and e["column"] == "allocation" for e in result.errors), (
        result.errors
    )


def test_bad_campaign_fields_are_named() -> None:
    policy = load_config(env={}).default_policy
    _, deals, campaign = book_rows(5)
    result = replan_campaign(
        deals, {**campaign, "currency_code": "usd", "time_zone": "Mars/Base"}, default_policy=policy
    )
    assert result.status == "INVALID"
    assert {e["column"] for e in result.errors} >= {"currency_code", "time_zone"}

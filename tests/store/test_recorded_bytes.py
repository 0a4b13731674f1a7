"""`recorded_bytes`: the snapshot read out of the request's one serialisation is the snapshot
serialised apart, and both hashes are the sha256 the store and the idempotency key use."""

from __future__ import annotations

import hashlib

from builders import build_snapshot, random_snapshot_spec
from google.protobuf.duration_pb2 import Duration

from reallocator.store.sql import recorded_bytes, request_hash
from reallocator.v1 import reallocator_service_pb2 as pb


def _request(n: int, **fields: object) -> pb.ReplanRequest:
    request = pb.ReplanRequest(snapshot=build_snapshot(random_snapshot_spec(n, 3), "deals"))
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def test_the_snapshot_and_the_hashes_are_those_serialised_apart() -> None:
    for n in (3, 2000):  # a short snapshot (one byte of length) and a long one (several)
        request = _request(n, request_id="r-1", view=pb.PLAN_VIEW_SUMMARY)
        request.time_limit.CopyFrom(Duration(seconds=3))
        snapshot, snapshot_hash, digest = recorded_bytes(request, whole=True)
        assert snapshot == request.snapshot.SerializeToString(deterministic=True)
        assert snapshot_hash() == hashlib.sha256(snapshot).hexdigest()
        assert digest() == request_hash(request.SerializeToString(deterministic=True))


def test_without_a_key_the_request_is_not_hashed() -> None:
    request = _request(3)
    snapshot, snapshot_hash, digest = recorded_bytes(request, whole=False)
    assert snapshot == request.snapshot.SerializeToString(deterministic=True)
    assert snapshot_hash() == hashlib.sha256(snapshot).hexdigest()
    assert digest() == ""


def test_a_request_without_a_snapshot_stores_none() -> None:
    request = pb.ReplanRequest(request_id="r-2", dry_run=False)
    snapshot, _, digest = recorded_bytes(request, whole=True)
    assert snapshot == b""
    assert digest() == request_hash(request.SerializeToString(deterministic=True))

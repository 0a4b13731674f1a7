"""The assessment's alerts on the wire are the core's alerts, one for one and in order, whether
few (looked up row by row) or many (mapped per category)."""

from __future__ import annotations

import pytest
from builders import build_snapshot, random_snapshot_spec

from reallocator.core.model import Policy
from reallocator.core.pacing.assessment import assess
from reallocator.v1 import assessment_pb2, common_pb2
from reallocator.wire.assessment import KIND, SEVERITY, STATUS, encode_assessment
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations


@pytest.mark.parametrize(("deals", "seed"), [(12, 3), (40, 5), (600, 1)])
def test_alerts_on_the_wire_are_the_core_alerts(deals: int, seed: int) -> None:
    snapshot = decode_snapshot(
        build_snapshot(random_snapshot_spec(deals, seed), "deals"), Policy(), Violations()
    )
    assert snapshot is not None
    result = assess(snapshot)
    expected = [
        assessment_pb2.Alert(
            entity=common_pb2.EntityRef(kind=KIND[a.entity_kind], id=a.entity_id),
            status=STATUS[str(a.status)],
            severity=SEVERITY[str(a.severity)],
            reason_code=str(a.reason),
            message=a.message,
            confidence=a.confidence,
            create_time=encode_assessment(result, include_deals=False).as_of,
        )
        for a in result.alert_list()
    ]
    assert expected  # every case raises some
    for include_deals in (False, True):
        msg = encode_assessment(result, include_deals=include_deals)
        assert list(msg.alerts) == expected
    if deals >= 600:
        assert len(expected) >= 256  # the per-category path

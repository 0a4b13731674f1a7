"""`reallocator error-details` decodes the base64 details buf curl prints, whatever the padding."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from google.rpc import error_details_pb2

from reallocator.cli import main


def _status(detail: error_details_pb2.ErrorInfo, *, strip: bool) -> str:
    value = base64.b64encode(detail.SerializeToString()).decode()
    value = value.rstrip("=") if strip else value
    return json.dumps(
        {
            "code": "resource_exhausted",
            "message": "response too large",
            "details": [{"type": "google.rpc.ErrorInfo", "value": value}],
        }
    )


@pytest.mark.parametrize("strip", [True, False])
def test_error_info_is_decoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strip: bool
) -> None:
    info = error_details_pb2.ErrorInfo(
        reason="RESPONSE_TOO_LARGE",
        domain="reallocator.v1",
        metadata={"limit_bytes": "1048576", "size_bytes": "2000000"},
    )
    path = tmp_path / "error.json"
    path.write_text("ERROR: some preamble\n" + _status(info, strip=strip))
    assert main(["error-details", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "resource_exhausted: response too large",
        "  RESPONSE_TOO_LARGE (reallocator.v1): limit_bytes=1048576, size_bytes=2000000",
    ]


def test_input_that_is_no_status_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.json"
    path.write_text('{"status": "SERVING"}')
    assert main(["error-details", str(path)]) == 2
    assert "not an error status" in capsys.readouterr().err
    path.write_text("nothing here")
    assert main(["error-details", str(path)]) == 2

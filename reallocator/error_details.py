"""`reallocator error-details`: reads a failed call's status as `buf curl` prints it (JSON with
base64-encoded `details`) and prints it decoded, one line per violation.

gRPC carries error details as `google.rpc.Status` in a binary trailer; JSON clients show each
detail as `{"type": ..., "value": <base64 of the message>}`. The types this service sends are
google.rpc.BadRequest (INVALID_ARGUMENT), PreconditionFailure (FAILED_PRECONDITION) and ErrorInfo
(RESOURCE_EXHAUSTED and others). Imports protobuf only when run (the CLI starts light).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any


def _decode_base64(value: str) -> bytes:
    """Standard or URL-safe base64, with or without padding (clients differ)."""
    padded = value + "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def describe(status: dict[str, Any]) -> Iterator[str]:
    """Lines for a status: `code: message`, then one indented line per violation or fact."""
    from google.rpc import error_details_pb2

    yield f"{status.get('code', 'unknown')}: {status.get('message', '')}"
    for detail in status.get("details", []):
        kind = str(detail.get("type", "")).rsplit("/", 1)[-1]
        raw = _decode_base64(str(detail.get("value", "")))
        if kind == "google.rpc.BadRequest":
            bad = error_details_pb2.BadRequest.FromString(raw)
            for v in bad.field_violations:
                yield f"  {v.field}: {v.description}"
        elif kind == "google.rpc.PreconditionFailure":
            failure = error_details_pb2.PreconditionFailure.FromString(raw)
            for p in failure.violations:
                yield f"  {p.type} {p.subject}: {p.description}"
        elif kind == "google.rpc.ErrorInfo":
            info = error_details_pb2.ErrorInfo.FromString(raw)
            facts = ", ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
            yield f"  {info.reason} ({info.domain}): {facts}"
        else:
            yield f"  {kind}: {len(raw)} bytes (not decoded)"


def main_text(text: str) -> str:
    """The decoded form of buf curl's error output (its JSON object, wherever it starts)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the input (pipe in buf curl's error output, 2>&1)")
    status = json.JSONDecoder().raw_decode(text[start:])[0]
    if not isinstance(status, dict) or "code" not in status:
        raise ValueError("the JSON is not an error status (no 'code')")
    return "\n".join(describe(status))

"""A client nobody here wrote: buf curl, through server reflection (no .proto files given)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from reallocator.server.app import RunningServer

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
EXAMPLE = ROOT / "examples" / "assess_request.json"


def buf_curl(server: RunningServer, method: str, body: str) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), f"{BUF} missing: run the README's test set-up command (npm install ...)"
    url = f"http://127.0.0.1:{server.port}/{method}"
    return subprocess.run(
        [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", url, "-d", body],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_health_check_with_buf_curl(server: RunningServer) -> None:
    done = buf_curl(server, "grpc.health.v1.Health/Check", "{}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "SERVING"}


def test_readme_example_assess_pacing_with_buf_curl(server: RunningServer) -> None:
    done = buf_curl(server, "reallocator.v1.ReallocatorService/AssessPacing", f"@{EXAMPLE}")
    assert done.returncode == 0, done.stderr
    assessment = json.loads(done.stdout)["assessment"]
    statuses = {v["entity"]["id"]: v["status"] for v in assessment["deals"]}
    assert statuses == {
        "ctv-pg-001": "PACING_STATUS_OVER",
        "display-pd-002": "PACING_STATUS_ON_PACE",
        "audio-pmp-003": "PACING_STATUS_STALLED",
    }
    alerted = {
        (a["entity"]["kind"], a["entity"]["id"], a["reasonCode"]) for a in assessment["alerts"]
    }
    assert ("ENTITY_KIND_DEAL", "ctv-pg-001", "OVERPACING") in alerted
    assert ("ENTITY_KIND_DEAL", "audio-pmp-003", "STALLED") in alerted
    assert not any(a["entity"]["id"] == "display-pd-002" for a in assessment["alerts"])
    # The campaign total is the sum of its deals (money is exact integer micros on the wire).
    deals_actual = sum(int(v["actualSpendMicros"]) for v in assessment["deals"])
    assert int(assessment["campaign"]["actualSpendMicros"]) == deals_actual == 13_350_000_000


def test_invalid_request_with_buf_curl_names_the_fields(server: RunningServer) -> None:
    body = json.dumps({"snapshot": {"campaign_id": "c1", "currency_code": "usd",
                                    "deals": [{"deal_id": "d1", "allocation": "-5"}]}})  # fmt: skip
    done = buf_curl(server, "reallocator.v1.ReallocatorService/AssessPacing", body)
    assert done.returncode != 0
    error = json.loads(done.stdout or done.stderr)
    assert error["code"] == "invalid_argument"
    assert "snapshot.as_of: required" in error["message"]
    assert any(d["type"] == "google.rpc.BadRequest" for d in error["details"])


def test_readme_example_replan_with_buf_curl(server: RunningServer) -> None:
    example = ROOT / "examples" / "replan_request.json"
    done = buf_curl(server, "reallocator.v1.ReallocatorService/Replan", f"@{example}")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["plan"]
    assert plan["status"] == "PLAN_STATUS_OPTIMAL" and plan["state"] == "PLAN_STATE_DRY_RUN"
    moved = {d["dealId"]: int(d.get("delta", "0")) for d in plan["deals"]}
    assert moved["audio-pmp-003"] == -4_900_000_000  # the stalled deal gives what CTV can take
    assert sum(moved.values()) == 0  # ... to the deals that can deliver it
    assert plan["sellerRequests"][0]["sellerChangeRequest"]["order_id"] == "SO-88121"

"""Every example in README.md, run against a live server, with the outputs it shows asserted.

The README's `buf curl` blocks run as written (buf from the test set-up's .tools/, the port of
the session's server); the block, table or JSON shown after each is compared with what comes
back. The Python blocks run too, and the TOML block is loaded as a configuration. A new `buf curl`
example without a check here fails `test_every_buf_curl_example_is_checked`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reallocator.config import load_config
from reallocator.core.model import Policy
from reallocator.server.app import RunningServer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def _blocks() -> list[tuple[str, str, int, int]]:
    """(language, body, start, end) of every fenced block, in order."""
    return [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(README)]


def _buf_blocks() -> list[str]:
    return [body for lang, body, _, _ in _blocks() if lang == "sh" and "buf curl" in body]


def _block_with(text: str, lang: str = "sh") -> tuple[str, int]:
    """The one block of `lang` containing `text`, and where it ends in the README."""
    found = [(b, end) for lg, b, _, end in _blocks() if lg == lang and text in b]
    assert len(found) == 1, f"expected one {lang} block with {text!r}, found {len(found)}"
    return found[0]


def _next_block(after: int, lang: str = "") -> str:
    """The first fenced block of `lang` after README offset `after`."""
    return next(b for lg, b, start, _ in _blocks() if start >= after and lg == lang)


def _commands(block: str) -> list[str]:
    """The block's commands: one per command line (continuations joined, quotes may span
    lines), comments and blanks dropped."""
    commands: list[str] = []
    for line in block.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if commands and (commands[-1].endswith("\\") or commands[-1].count("'") % 2):
            commands[-1] += "\n" + line
        else:
            commands.append(line)
    return commands


def _run(command: str, server: RunningServer) -> str:
    """A README command as written, against the session's server; stdout (and stderr)."""
    assert BUF.exists(), f"{BUF} missing: run the README's test set-up command (npm install ...)"
    bin_dir = Path(sys.executable).parent
    command = command.replace("127.0.0.1:50051", f"127.0.0.1:{server.port}")
    command = re.sub(r"(^|\s)buf curl", rf"\1{BUF} curl", command)
    command = command.replace(".venv/bin/reallocator", str(bin_dir / "reallocator"))
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout + done.stderr


CHECKED = (
    "Health/Check",
    "AssessPacing -d @examples",
    "Replan -d @examples/replan",
    "s9",
    "conflict",
    "ListPlans",
    "RollbackPlan",
)


def test_every_buf_curl_example_is_checked() -> None:
    for block in _buf_blocks():
        assert any(key in block for key in CHECKED), f"README example without a check:\n{block}"


def test_health_and_list_methods(server: RunningServer) -> None:
    block, _ = _block_with("Health/Check")
    health, methods = _commands(block)
    shown = re.search(r"^# (\{.*\})$", block, re.M)
    assert shown is not None
    assert json.loads(_run(health, server)) == json.loads(shown.group(1))
    listed = _run(methods, server).split()
    assert "reallocator.v1.ReallocatorService/AssessPacing" in listed
    assert "reallocator.v1.ReallocatorService/Replan" in listed


@pytest.fixture(scope="module")
def assessment(server: RunningServer) -> dict[str, Any]:
    block, _ = _block_with("AssessPacing -d @examples/assess_request.json")
    (command,) = _commands(block)
    reply: dict[str, Any] = json.loads(_run(command, server))["assessment"]
    return reply


def _table_after(header: str) -> list[list[str]]:
    """Rows (cells) of the Markdown table whose header line starts with `header`."""
    lines = README[README.index(header) :].splitlines()
    table = [
        line for line in lines[: next(i for i, x in enumerate(lines) if not x.startswith("|"))]
    ]
    return [[c.strip() for c in row.strip("|").split("|")] for row in table[2:]]


def test_assess_pacing_alerts_are_those_shown(assessment: dict[str, Any]) -> None:
    kinds = {"ENTITY_KIND_CHANNEL": "channel", "ENTITY_KIND_SELLER": "seller"}
    kinds["ENTITY_KIND_DEAL"] = "deal"
    got = [
        [
            a["severity"],
            a["reasonCode"],
            f"{kinds[a['entity']['kind']]} {a['entity']['id']}",
            str(round(a["confidence"])),
        ]
        for a in assessment["alerts"]
    ]
    assert _table_after("| severity | reason_code") == got
    _, end = _block_with("AssessPacing -d @examples/assess_request.json")
    messages = _next_block(README.index("The deals' alert messages", end)).splitlines()
    deal_alerts = [
        a["message"] for a in assessment["alerts"] if a["entity"]["kind"].endswith("DEAL")
    ]
    assert messages == deal_alerts


@pytest.fixture(scope="module")
def plan(server: RunningServer) -> dict[str, Any]:
    block, _ = _block_with("Replan -d @examples/replan_request.json")
    (command,) = _commands(block)
    reply: dict[str, Any] = json.loads(_run(command, server))["plan"]
    return reply


def _usd(micros: str | int | None) -> str:
    return f"{int(micros or 0) / 1e6:,.2f}"


ROW = re.compile(
    r"^(?P<deal>\S+)\s+(?:(?P<delta>[+-][\d,.]+) USD \((?P<old>[\d,.]+) USD -> "
    r"(?P<new>[\d,.]+) USD remaining\)|unchanged at (?P<kept>[\d,.]+) USD remaining)"
    r".*?\[(?P<reason>REASON_CODE_\w+), (?P<binding>BINDING_CONSTRAINT_\w+)\]",
    re.S | re.M,
)


def test_replan_plan_is_the_one_shown(plan: dict[str, Any]) -> None:
    _, end = _block_with("Replan -d @examples/replan_request.json")
    shown = _next_block(end)
    summary, rows = shown.split("\n\n", 1)
    # The summary's figures (its words belong to the explanation renderer) are the plan's.
    amounts = re.findall(r"[\d,]+\.\d\d USD|\d+%|\d+ alert", summary)
    for figure in amounts:
        assert figure in plan["rationale"]["summary"], figure
    assert plan["status"] == "PLAN_STATUS_OPTIMAL"
    deals = {d["dealId"]: d for d in plan["deals"]}
    matches = list(ROW.finditer(rows))
    assert [m["deal"] for m in matches] and {m["deal"] for m in matches} == set(deals)
    for m in matches:
        deal = deals[m["deal"]]
        delta = int(deal.get("delta", 0))
        assert (m["reason"], m["binding"]) == (deal["reason"], deal["binding"])
        if m["kept"] is not None:  # an unchanged deal
            assert delta == 0
            assert m["kept"] == _usd(deal["oldAllocation"]) == _usd(deal.get("newAllocation"))
            assert deal["rationale"].startswith(f"unchanged at {m['kept']} USD remaining")
            continue
        assert m["delta"] == ("+" if delta >= 0 else "-") + _usd(abs(delta))
        assert (m["old"], m["new"]) == (
            _usd(deal["oldAllocation"]),
            _usd(deal.get("newAllocation")),
        )
        assert deal["rationale"].startswith(f"{m['delta']} USD ({m['old']} USD -> {m['new']} USD")


def test_replan_seller_request_is_the_one_shown(plan: dict[str, Any]) -> None:
    shown = json.loads(_next_block(README.index("change-request shape"), "json"))
    (request,) = plan["sellerRequests"]
    assert request["sellerChangeRequest"] == shown


def test_bad_request_details_decode_as_shown(server: RunningServer) -> None:
    block, end = _block_with('"s9"')
    (command,) = _commands(block)
    assert _run(command, server).strip() == _next_block(end).strip()


def test_conflict_example_conflicts_as_shown(server: RunningServer) -> None:
    block, end = _block_with("examples/conflict_request.json")
    (command,) = _commands(block)
    got = _run(command, server).strip().splitlines()
    shown = _next_block(end).strip().splitlines()
    # The explanation renderer owns the message's wording; its prefix once, however it is built.
    got[0] = re.sub(r"(constraints conflict: )+", "constraints conflict: ", got[0])
    assert got == shown


def _python_blocks() -> Iterator[str]:
    for lang, body, _, _ in _blocks():
        if lang == "python":
            yield body


def test_python_client_example(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = [b for b in _python_blocks() if "ReallocatorServiceStub" in b]
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code.replace("127.0.0.1:50051", f"127.0.0.1:{server.port}"), {})
    printed = out.getvalue().splitlines()
    promised = [m.group(1).strip() for m in re.finditer(r"#\s*(.+)$", code, re.M)]
    assert printed == promised


def test_arrow_example_builds_a_snapshot_the_server_accepts(server: RunningServer) -> None:
    import grpc
    import pandas as pd
    from google.protobuf import json_format

    from reallocator.v1 import reallocator_service_pb2 as pb
    from reallocator.v1 import reallocator_service_pb2_grpc as rpc

    (code,) = [b for b in _python_blocks() if "BufferOutputStream" in b]
    request = json_format.Parse(
        (ROOT / "examples" / "assess_request.json").read_text(), pb.AssessPacingRequest()
    )
    deals = [
        json_format.MessageToDict(d, preserving_proto_field_name=True)
        for d in request.snapshot.deals
    ]
    deals_df = pd.DataFrame(
        {
            "deal_id": [d["deal_id"] for d in deals],
            "seller_id": [d["seller_id"] for d in deals],
            "channel_id": [d["channel_id"] for d in deals],
            "deal_type": [request.snapshot.deals[i].deal_type for i in range(len(deals))],
            "allocation": [int(d["allocation"]) for d in deals],
            "spend_micros": [int(d["delivered"]["spend_micros"]) for d in deals],
        }
    )
    snapshot = request.snapshot
    del snapshot.deals[:]
    exec(code, {"deals_df": deals_df, "snapshot": snapshot})
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = rpc.ReallocatorServiceStub(channel).AssessPacing(request, timeout=30)
    assert [v.entity.id for v in reply.assessment.deals] == [d["deal_id"] for d in deals]


def test_configuration_example_is_the_defaults(tmp_path: Path) -> None:
    # The Configuration section's block (the Security section has its own, tested there).
    (toml,) = [b for lg, b, _, _ in _blocks() if lg == "toml" and "[policy]" in b]
    path = tmp_path / "reallocator.toml"
    path.write_text(toml)
    config = load_config(path, env={})
    assert (config.port, config.max_workers) == (50051, 2)
    assert config.default_policy == Policy()


def test_conflict_example_relaxed_returns_the_closest_plan(server: RunningServer) -> None:
    """'With INFEASIBILITY_HANDLING_RELAX it returns the closest plan instead, status
    PLAN_STATUS_RELAXED, with the same list in violations.'"""
    import grpc
    from google.protobuf import json_format

    from reallocator.v1 import plan_pb2
    from reallocator.v1 import reallocator_service_pb2 as pb
    from reallocator.v1 import reallocator_service_pb2_grpc as rpc

    assert "INFEASIBILITY_HANDLING_RELAX` it returns the closest plan" in README
    request = json_format.Parse(
        (ROOT / "examples" / "conflict_request.json").read_text(), pb.ReplanRequest()
    )
    request.on_infeasible = pb.INFEASIBILITY_HANDLING_RELAX
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = rpc.ReallocatorServiceStub(channel).Replan(request, timeout=60)
    assert reply.plan.status == plan_pb2.PLAN_STATUS_RELAXED
    assert [(v.constraint, v.relaxation) for v in reply.plan.violations] == [
        ("seller/streamco/min_total", 90_000_000)
    ]


def test_life_cycle_example(server: RunningServer) -> None:
    """The audit store's worked example, its placeholders (plan names, etag, request id) filled
    in from the answers as a reader would, with the states it shows."""
    block, _ = _block_with("RollbackPlan")
    prepare, replan, review, confirm, answer, rollback, listing, history = _commands(block)
    _run(prepare, server)
    plan = json.loads(_run(replan, server))["plan"]
    assert plan["state"] == "PLAN_STATE_PROPOSED" and plan["name"].startswith(
        "campaigns/acme-holiday-2026/plans/"
    )
    names = {"campaigns/acme-holiday-2026/plans/5c1d...": plan["name"], "9f2e...": plan["etag"]}

    def filled(command: str) -> str:
        for shown, real in names.items():
            command = command.replace(shown, real)
        return command

    revision = json.loads(_run(filled(review), server))["plan"]
    assert revision["state"] == "PLAN_STATE_APPROVED"
    assert revision["previousPlan"] == plan["name"]
    moves = {d["dealId"]: int(d.get("delta", 0)) for d in revision["deals"]}
    assert moves == {"ctv-pg-001": 4_900_000_000, "audio-pmp-003": -4_900_000_000}
    names["campaigns/acme-holiday-2026/plans/7a0b..."] = revision["name"]
    names["req-..."] = revision["sellerRequests"][0]["requestId"]
    assert json.loads(_run(filled(confirm), server))["plan"]["state"] == "PLAN_STATE_APPLIED"
    answered = json.loads(_run(filled(answer), server))["request"]
    assert answered["response"] == "SELLER_RESPONSE_KIND_REJECTED"
    rolled = json.loads(_run(filled(rollback), server))
    assert rolled["plan"]["state"] == "PLAN_STATE_ROLLED_BACK"
    assert rolled["rollback"]["state"] == "PLAN_STATE_APPROVED"
    assert {d["dealId"] for d in rolled["restored"]} == set(moves)
    listed = json.loads(_run(filled(listing), server))["plans"]
    states = {p["name"]: p["state"] for p in listed}
    assert states[plan["name"]] == "PLAN_STATE_SUPERSEDED"
    assert states[revision["name"]] == "PLAN_STATE_ROLLED_BACK"
    points = json.loads(_run(filled(history), server))["points"]
    assert plan["name"] in [p.get("plan") for p in points]
    assert {p["verdict"]["entity"]["id"] for p in points} == {"ctv"}

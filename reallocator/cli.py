"""The `reallocator` command.

Start-up must stay light: `reallocator --help` and `reallocator health` (the Docker health check,
5 s timeout) import neither numpy, pandas, OR-Tools nor the generated API; each command imports
what it needs when it runs (tests/test_imports.py checks the import graph).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reallocator.replay.cli import add_arguments as add_replay_arguments
from reallocator.sim.args import add_arguments as add_simulate_arguments


def _serve(args: argparse.Namespace) -> int:
    from reallocator.config import ConfigError, load_config
    from reallocator.server.app import serve

    try:
        config = load_config(
            args.config,
            host=args.host,
            port=args.port,
            max_workers=args.max_workers,
            interleave_after_seconds=args.interleave_after_seconds,
            max_message_bytes=args.max_message_bytes,
            database_url=args.database_url,
            solver_time_limit_seconds=args.solver_time_limit_seconds,
            grace_period_seconds=args.grace_period_seconds,
            workers=args.workers,
            share_calls=args.share_calls,
            warm_up=args.warm_up,
            **_security_flags(args),
        )
    except ConfigError as exc:
        print(f"reallocator serve: configuration error: {exc}", file=sys.stderr)
        return 2
    from reallocator.server.logs import configure

    configure(config.ops.log_format, args.log_level)
    try:
        serve(config)
    except OSError as exc:
        print(f"reallocator serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _health(args: argparse.Namespace) -> int:
    """Asks a running server's health service; exit 0 only when SERVING (for Docker/k8s probes)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from reallocator.client import open_channel
    from reallocator.config_error import ConfigError

    target = f"{args.host}:{args.port}"
    token = _read_token(args.token_file) if args.token_file else os.environ.get(TOKEN_ENV) or None
    try:
        channel = open_channel(
            target,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            token=token,
            server_name=args.tls_server_name,
            tls=args.tls,
        )
    except ConfigError as exc:
        print(f"reallocator health: {exc}", file=sys.stderr)
        return 2
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(
                f"reallocator health: {target}: {exc.code().name}: {exc.details()}", file=sys.stderr
            )
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


TOKEN_ENV = "REALLOCATOR_TOKEN"


def _read_token(path: Path) -> str:
    return path.read_text().strip()


def _security_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The serve flags of [security], [overload], [metrics] and [logging] (None: not given)."""
    return {
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
        "reflection": False if args.no_reflection else None,
        "max_concurrent_calls": args.max_concurrent_calls,
        "max_calls_per_caller": args.max_calls_per_caller,
        "metrics_port": args.metrics_port,
        "metrics_host": args.metrics_host,
        "log_format": args.log_format,
    }


def _token(args: argparse.Namespace) -> int:
    """`token new`: a fresh token and its hash; `token hash`: the hash of a token on stdin."""
    from reallocator.server.auth import hash_token, new_token

    if args.action == "new":
        token = new_token()
        print(f"token:  {token}")
        print(f"sha256: {hash_token(token)}")
        return 0
    token = sys.stdin.readline().strip()
    if not token:
        print("reallocator token hash: expected the token on stdin", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from reallocator.sim.cli import simulate_command

    return simulate_command(args)


def _error_details(args: argparse.Namespace) -> int:
    from reallocator.error_details import main_text

    text = args.file.read_text() if args.file else sys.stdin.read()
    try:
        print(main_text(text))
    except ValueError as exc:
        print(f"reallocator error-details: {exc}", file=sys.stderr)
        return 2
    return 0


def _replay(args: argparse.Namespace) -> int:
    from reallocator.replay.cli import replay_command

    return replay_command(args)


_AGE = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def _age_seconds(text: str) -> float:
    """'90d', '12h', '30m' or '3600s' as seconds (ValueError otherwise)."""
    number, unit = text[:-1], text[-1:]
    if unit not in _AGE or not number.replace(".", "", 1).isdigit():
        raise ValueError(f"{text!r} is not an age such as 90d, 12h, 30m or 3600s")
    return float(number) * _AGE[unit]


def _db(args: argparse.Namespace) -> int:
    """`reallocator db upgrade`: applies the audit store's migrations (serve does it at start);
    `reallocator db purge`: removes snapshots and assessments older than `--older-than` (or
    the configured retention_days), keeping the decision record; `reallocator db downgrade
    --to REVISION`: undoes the migrations after REVISION, for an older release."""
    import time

    from reallocator.config import ConfigError, load_config
    from reallocator.store.sql import SqlStore, default_database_url

    try:
        config = load_config(args.config, database_url=args.database_url)
    except ConfigError as exc:
        print(f"reallocator db: configuration error: {exc}", file=sys.stderr)
        return 2
    age = None
    if args.action == "purge":
        try:
            age = _age_seconds(args.older_than) if args.older_than else None
        except ValueError as exc:
            print(f"reallocator db purge: --older-than: {exc}", file=sys.stderr)
            return 2
        if age is None and config.retention_days:
            age = config.retention_days * 86_400.0
        if age is None:
            print(
                "reallocator db purge: --older-than is required (or set [store] retention_days)",
                file=sys.stderr,
            )
            return 2
    url = config.database_url or default_database_url()
    shown = url.split("@")[-1]
    if args.action == "downgrade":
        if not args.to:
            print(
                "reallocator db downgrade: --to REVISION is required (e.g. 0004)", file=sys.stderr
            )
            return 2
        try:
            SqlStore.downgrade(url, args.to)
        except Exception as exc:
            print(f"reallocator db downgrade: {shown}: {exc}", file=sys.stderr)
            return 1
        print(f"audit store at revision {args.to}: {shown}")
        return 0
    try:
        store = SqlStore.open(url)
        if age is not None:
            gone = store.purge(int((time.time() - age) * 1e6))
            print(f"purged {gone[0]} snapshot(s) and {gone[1]} assessment(s) from {shown}")
        store.close()
    except Exception as exc:
        print(f"reallocator db {args.action}: {shown}: {exc}", file=sys.stderr)
        return 1
    if age is None:
        print(f"audit store up to date: {shown}")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from reallocator.batch.cli import batch_command

    return batch_command(args)


def _web(args: argparse.Namespace) -> int:
    from reallocator.web.cli import web_command

    return web_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reallocator",
        description="Keeps programmatic ad campaigns on budget: pacing assessment and budget "
        "reallocation, served over gRPC.",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the gRPC service (health, reflection included)",
        description="Run the gRPC service. Settings: embedded defaults < --config "
        "TOML file < REALLOCATOR_* environment variables < flags.",
    )
    serve.add_argument("--config", type=Path, help="TOML file with [server] and [policy] tables")
    serve.add_argument("--host", help="interface to bind (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default 50051; 0 picks a free one)")
    serve.add_argument("--max-workers", type=int, help="calls one process runs at once (default 2)")
    serve.add_argument(
        "--interleave-after-seconds",
        type=float,
        help="a second call starts beside a running one only after it has run this long "
        "(default 0.02; 0: at once)",
    )
    serve.add_argument(
        "--database-url",
        help="the audit store (SQLAlchemy URL; default: SQLite reallocator.db in the working "
        "directory; postgresql+psycopg://user@host/db for PostgreSQL)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port (default: one per core)",
    )
    serve.add_argument(
        "--no-share-calls",
        dest="share_calls",
        action="store_const",
        const=False,
        help="each worker runs the calls of its own connections (default: a busy worker hands "
        "Replan and AssessPacing calls to an idle one)",
    )
    serve.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_const",
        const=False,
        help="listen at once (default: each worker first runs the example Replan through "
        "itself, nothing stored, so that no caller's call is its first)",
    )
    serve.add_argument(
        "--max-message-bytes",
        type=int,
        help="largest request/response (default 128 MiB; at least 1 MiB)",
    )
    serve.add_argument(
        "--solver-time-limit-seconds",
        type=float,
        help="solver time limit per Replan when the request sets none (default 10)",
    )
    serve.add_argument(
        "--grace-period-seconds", type=float, help="drain time on SIGTERM (default 5)"
    )
    tls = serve.add_argument_group("security and operations (README: Security, Operations)")
    tls.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    tls.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    tls.add_argument("--tls-client-ca", type=Path, help="CA of client certificates: mutual TLS")
    tls.add_argument("--no-reflection", action="store_true", help="turn server reflection off")
    tls.add_argument("--max-concurrent-calls", type=int, help="calls in progress (process)")
    tls.add_argument("--max-calls-per-caller", type=int, help="calls in progress per caller")
    tls.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    tls.add_argument("--metrics-host", help="interface of the metrics port (default 127.0.0.1)")
    tls.add_argument("--log-format", choices=["json", "text"], help="log lines (default json)")
    serve.set_defaults(run=_serve)
    health = sub.add_parser(
        "health",
        help="check a running server's health (exit 0 if SERVING)",
        description="Call grpc.health.v1.Health/Check on a running server.",
    )
    health.add_argument("--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    health.add_argument("--port", type=int, default=50051, help="server port (default 50051)")
    health.add_argument("--service", default="", help="service name ('' = the whole server)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    health.add_argument("--tls", action="store_true", help="TLS, trusting the system CAs")
    health.add_argument("--tls-ca", type=Path, help="PEM CA to trust (implies TLS)")
    health.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    health.add_argument("--tls-key", type=Path, help="client key (mutual TLS)")
    health.add_argument("--tls-server-name", help="name to expect in the server certificate")
    health.add_argument(
        "--token-file", type=Path, help=f"file holding a bearer token (else ${TOKEN_ENV})"
    )
    health.set_defaults(run=_health)
    token = sub.add_parser(
        "token",
        help="make a bearer token, or hash one for [[security.tokens]]",
        description="`token new` prints a fresh random token and its sha256 (store only the "
        "sha256 in the configuration); `token hash` reads a token on stdin and prints its sha256.",
    )
    token.add_argument("action", choices=["new", "hash"])
    token.set_defaults(run=_token)
    simulate = sub.add_parser(
        "simulate",
        help="simulate a campaign scenario: static, rules and reallocator against the oracle",
        description="Simulate whole flights of a scenario (a JSON file, or a standard one shipped "
        "with the package: steady, stalled_seller, ...) for some seeds: the static booking, "
        "the rules baseline and the "
        "reallocator (in-process, or a running service with --target) on the same random draws, "
        "against the hindsight oracle. Prints the pacing-quality table and writes a report "
        "folder: metrics.csv, summary.csv, targets.csv, summary.txt and, with matplotlib "
        "(pip install 'reallocator[sim]'), PNG plots.",
    )
    add_simulate_arguments(simulate)
    simulate.set_defaults(run=_simulate)
    details = sub.add_parser(
        "error-details",
        help="decode a failed call's error details as buf curl prints them (base64)",
        description="Read a failed call's status as `buf curl` prints it (JSON; pipe it in with "
        "2>&1) and print its google.rpc details decoded: BadRequest field violations, "
        "PreconditionFailure constraints, ErrorInfo.",
    )
    details.add_argument("file", nargs="?", type=Path, help="the JSON (default: stdin)")
    details.set_defaults(run=_error_details)

    replay = sub.add_parser(
        "replay",
        help="replay recorded snapshots: what the planner would have done under other policies",
        description="Re-run the planner over a campaign's recorded snapshots under the recorded "
        "policy and alternatives, and project what each would have delivered (capacity as the "
        "recording revealed it). Prints the policies side by side, the recorded decisions first; "
        "--out writes CSVs and PNG plots.",
    )
    add_replay_arguments(replay)
    replay.set_defaults(run=_replay)
    db = sub.add_parser(
        "db",
        help="manage the audit store (upgrade: apply the migrations)",
        description="The audit store's database: SQLite (default: reallocator.db in the working "
        "directory) or PostgreSQL (postgresql+psycopg://...). Settings as for serve.",
    )
    db.add_argument(
        "action",
        choices=["upgrade", "purge", "downgrade"],
        help="upgrade: apply the migrations; purge: remove old snapshots and assessments "
        "(plans, reviews and seller answers are kept); downgrade: undo the migrations after "
        "--to, so an older release can open the store",
    )
    db.add_argument("--to", metavar="REVISION", help="downgrade: the revision to keep, e.g. 0004")
    db.add_argument(
        "--older-than",
        metavar="AGE",
        help="purge: what was recorded before this age ago, e.g. 90d, 12h (default: "
        "[store] retention_days)",
    )
    db.add_argument("--config", type=Path, help="TOML file with a [store] table")
    db.add_argument("--database-url", help="SQLAlchemy URL (default REALLOCATOR_DATABASE_URL)")
    db.set_defaults(run=_db)

    batch = sub.add_parser(
        "batch",
        help="replan a whole book of campaigns from Parquet/CSV tables, on all local cores",
        description="Replan every campaign of a book (deal rows + campaign rows, Parquet or CSV) "
        "with no server: plan deals, seller requests, schedules, a status table and an errors "
        "table as Parquet parts in --out. A rerun skips parts already written.",
    )
    from reallocator.batch.args import add_arguments as add_batch_arguments

    add_batch_arguments(batch)
    batch.set_defaults(run=_batch)

    web = sub.add_parser(
        "web",
        help="serve the pacing dashboard: campaigns, plans, alerts and approvals in a browser",
        description="Serve the pacing dashboard on the audit store the service writes: the "
        "campaign list, each campaign's delivery against its pacing curve and plan, alerts, "
        "the pending plan to approve or reject, and the decision history, updated live. "
        "Needs pip install 'reallocator[web]'.",
    )
    from reallocator.web.cli import add_arguments as add_web_arguments

    add_web_arguments(web)
    web.set_defaults(run=_web)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

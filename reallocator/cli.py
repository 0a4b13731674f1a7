"""The `reallocator` command."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reallocator.config import ConfigError, load_config
from reallocator.sim.args import add_arguments as add_simulate_arguments


def _serve(args: argparse.Namespace) -> int:
    from reallocator.server.app import serve

    try:
        config = load_config(
            args.config,
            host=args.host,
            port=args.port,
            max_workers=args.max_workers,
            max_message_bytes=args.max_message_bytes,
            database_url=args.database_url,
        )
    except ConfigError as exc:
        print(f"reallocator serve: configuration error: {exc}", file=sys.stderr)
        return 2
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

    target = f"{args.host}:{args.port}"
    with grpc.insecure_channel(target) as channel:
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


def _db(args: argparse.Namespace) -> int:
    """`reallocator db upgrade` applies the audit store's migrations; `db purge --older-than 90d`
    removes old snapshots (retention) and keeps the decision record."""
    import sqlalchemy as sa

    from reallocator.store.errors import StoreError
    from reallocator.store.sql import default_database_url, open_store

    try:
        config = load_config(args.config, database_url=args.database_url)
    except ConfigError as exc:
        print(f"reallocator db: configuration error: {exc}", file=sys.stderr)
        return 2
    url = config.database_url or default_database_url()
    shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    age = None
    if args.action == "purge":
        age = _age(args.older_than)
        if age is None:
            print(
                f"reallocator db purge: --older-than: expected a whole number of days or hours "
                f"such as 90d or 36h, got {args.older_than!r}",
                file=sys.stderr,
            )
            return 2
    try:
        store = open_store(url)
        try:
            if age is not None:
                removed = store.purge_snapshots(datetime.now(UTC) - age)
                print(f"{shown}: removed {removed} snapshot(s) older than {args.older_than}")
            else:
                print(f"{shown}: up to date")
        finally:
            store.close()
    except (sa.exc.SQLAlchemyError, StoreError, OSError) as exc:
        print(f"reallocator db {args.action}: {shown}: {exc}", file=sys.stderr)
        return 1
    return 0


def _age(text: str | None) -> timedelta | None:
    """ "90d" / "36h" as a timedelta; None if malformed or zero."""
    match = re.fullmatch(r"(\d{1,6})([dh])", (text or "").strip())
    if match is None or int(match[1]) == 0:
        return None
    unit = "days" if match[2] == "d" else "hours"
    return timedelta(**{unit: int(match[1])})


def _simulate(args: argparse.Namespace) -> int:
    from reallocator.sim.cli import simulate_command

    return simulate_command(args)


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
    serve.add_argument("--max-workers", type=int, help="threads serving calls (default 8)")
    serve.add_argument(
        "--max-message-bytes", type=int, help="largest request/response (default 128 MiB)"
    )
    serve.add_argument(
        "--database-url",
        help="audit store (SQLAlchemy URL: sqlite:///path or postgresql+psycopg://...; "
        "default SQLite under ~/.local/state/reallocator)",
    )
    serve.set_defaults(run=_serve)
    db = sub.add_parser(
        "db",
        help="manage the audit store",
        description="Manage the audit store. Settings as for serve: --config [store] "
        "database_url < REALLOCATOR_DATABASE_URL < --database-url.",
    )
    db.add_argument(
        "action",
        choices=["upgrade", "purge"],
        help="upgrade: apply pending migrations; purge: remove snapshots older than --older-than "
        "(plans, reviews and seller answers are kept)",
    )
    db.add_argument("--older-than", help="for purge: an age such as 90d or 36h")
    db.add_argument("--config", type=Path, help="TOML file with a [store] table")
    db.add_argument("--database-url", help="audit store URL (see serve --database-url)")
    db.set_defaults(run=_db)
    health = sub.add_parser(
        "health",
        help="check a running server's health (exit 0 if SERVING)",
        description="Call grpc.health.v1.Health/Check on a running server.",
    )
    health.add_argument("--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    health.add_argument("--port", type=int, default=50051, help="server port (default 50051)")
    health.add_argument("--service", default="", help="service name ('' = the whole server)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    health.set_defaults(run=_health)
    simulate = sub.add_parser(
        "simulate",
        help="simulate a campaign scenario: static, rules and reallocator against the oracle",
        description="Simulate whole flights of a scenario (a JSON file, or a standard one from "
        "benchmarks/scenarios) for some seeds: the static booking, the rules baseline and the "
        "reallocator (in-process, or a running service with --target) on the same random draws, "
        "against the hindsight oracle. Prints the pacing-quality table and writes a report "
        "folder: metrics.csv, summary.csv, targets.csv, summary.txt and PNG plots.",
    )
    add_simulate_arguments(simulate)
    simulate.set_defaults(run=_simulate)
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

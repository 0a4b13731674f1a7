"""The `reallocator` command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reallocator.config import ConfigError, ServerConfig, load_config
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
    from reallocator.store import StoreError

    try:
        serve(_with_default_store(config))
    except (OSError, ValueError, StoreError) as exc:
        print(f"reallocator serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _with_default_store(config: ServerConfig) -> ServerConfig:
    """`serve` and `db` record to the embedded default database unless told otherwise."""
    from reallocator.store import default_database_url

    if config.database_url:
        return config
    return dataclasses.replace(config, database_url=default_database_url())


_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _older_than(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected e.g. 90d, 12h or 30m, got {text!r}")
    amount, unit = int(match[1]), match[2]
    return timedelta(**{_UNITS[unit]: amount})


def _db(args: argparse.Namespace) -> int:
    """`db upgrade` applies the migrations; `db purge` removes old snapshots and assessments."""
    from reallocator.store import SqlStore, StoreError

    try:
        config = _with_default_store(load_config(args.config, database_url=args.database_url))
    except ConfigError as exc:
        print(f"reallocator db: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        store = SqlStore(config.database_url)
    except (ValueError, StoreError) as exc:
        print(f"reallocator db: {exc}", file=sys.stderr)
        return 1
    try:
        if args.db_command == "upgrade":
            print(f"database at the newest schema: {store.url}")
            return 0
        older = args.older_than
        if older is None:
            if not config.retention_days:
                print(
                    "reallocator db purge: give --older-than or [store] retention_days",
                    file=sys.stderr,
                )
                return 2
            older = timedelta(days=config.retention_days)
        counts = store.purge(datetime.now(UTC) - older)
        print(", ".join(f"{n} {what} removed" for what, n in counts.items()))
        return 0
    finally:
        store.close()


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
        help="audit store (default sqlite:///$XDG_DATA_HOME/reallocator/reallocator.db; "
        "postgresql+psycopg://user@host/db for PostgreSQL)",
    )
    serve.set_defaults(run=_serve)
    db = sub.add_parser(
        "db",
        help="manage the audit store: upgrade (apply migrations), purge (retention)",
        description="Manage the audit store. The server applies migrations at start-up too.",
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    for name, text in (("upgrade", "apply pending migrations"), ("purge", "remove old history")):
        cmd = db_sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--config", type=Path, help="TOML file with a [store] table")
        cmd.add_argument("--database-url", help="the database (default: as `serve`)")
        cmd.set_defaults(run=_db)
        if name == "purge":
            cmd.add_argument(
                "--older-than",
                type=_older_than,
                help="remove snapshots and assessments older than this (90d, 12h, 30m); "
                "plans, reviews and seller responses are kept. Default: [store] retention_days",
            )
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

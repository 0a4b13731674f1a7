"""The `reallocator` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
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


def _simulate(args: argparse.Namespace) -> int:
    from reallocator.sim.cli import simulate_command

    return simulate_command(args)


def _batch_replan(args: argparse.Namespace) -> int:
    from reallocator.batch.cli import replan_command

    return replan_command(args)


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
    batch = sub.add_parser("batch", help="batch jobs over a whole book of campaigns, no server")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True, metavar="JOB")
    replan = batch_sub.add_parser(
        "replan",
        help="replan every campaign of a book (Parquet/CSV) on all local cores",
        description="Replan every campaign of --campaigns (one row each) with its rows of --deals "
        "(DealColumns names plus campaign_id) and write Parquet tables under --out: deals, "
        "requests, schedules, errors, status. A rerun skips the campaigns already written.",
    )
    replan.add_argument("--deals", type=Path, required=True, help="deal rows (.parquet or .csv)")
    replan.add_argument("--campaigns", type=Path, required=True, help="campaign rows")
    replan.add_argument("--out", type=Path, required=True, help="output folder")
    replan.add_argument("--processes", type=int, default=0, help="worker processes (0: all cores)")
    replan.add_argument("--chunk-size", type=int, default=50, help="campaigns per output part")
    replan.add_argument("--relax", action="store_true", help="RELAXED plans instead of REJECTED")
    replan.add_argument("--rationale", action="store_true", help="keep the rationale text")
    replan.add_argument("--quiet", action="store_true", help="no progress bar")
    replan.set_defaults(run=_batch_replan)
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

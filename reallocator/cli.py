"""The `reallocator` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from reallocator.config import ConfigError, load_config


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
        "--max-message-bytes", type=int, help="largest request/response (default 64 MiB)"
    )
    serve.set_defaults(run=_serve)
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

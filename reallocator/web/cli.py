"""`reallocator web`: the dashboard's flags (imported by the CLI parser: keep it light) and
the command, which imports the web stack only when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument(
        "--database-url",
        help="the audit store the service writes (SQLAlchemy URL; default as for serve: "
        "REALLOCATOR_DATABASE_URL, else SQLite reallocator.db in the working directory)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="the service's TOML file: its [store] URL and [security] tokens (with tokens, "
        "reading needs the read role and approving the review role)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        help="how often live pages look for new plan events (default 1)",
    )
    parser.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure (serve behind HTTPS)"
    )


def web_command(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from reallocator.web.app import Settings, create_app
    except ImportError as exc:
        print(
            f"reallocator web: {exc.name} is missing: pip install 'reallocator[web]'",
            file=sys.stderr,
        )
        return 2
    from reallocator.config import ConfigError, load_config
    from reallocator.store.sql import SqlStore, default_database_url

    if args.poll_seconds <= 0:
        print("reallocator web: --poll-seconds: must be > 0", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, database_url=args.database_url)
    except ConfigError as exc:
        print(f"reallocator web: configuration error: {exc}", file=sys.stderr)
        return 2
    url = config.database_url or default_database_url()
    try:
        store = SqlStore.open(url)
    except Exception as exc:
        print(f"reallocator web: {url.split('@')[-1]}: {exc}", file=sys.stderr)
        return 1
    settings = Settings(
        security=config.security,
        poll_seconds=args.poll_seconds,
        secure_cookies=args.secure_cookies,
        default_policy=config.default_policy,
    )
    app = create_app(store, settings)
    print(f"dashboard on http://{args.host}:{args.port}/ (store {url.split('@')[-1]})")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except OSError as exc:
        print(f"reallocator web: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0

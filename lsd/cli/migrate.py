"""`lsd migrate`: apply pending migrations (under the migration lock) and create partitions ahead."""

from __future__ import annotations

import argparse

from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.startup import database_urls
from lsd.store import admin, migrate
from lsd.store.database import connect_with_retry


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("migrate", help="apply pending database migrations and exit")
    add_config_argument(p, required_default=False, help="config files (for gateway.database settings)")


def run(args: argparse.Namespace) -> int:
    config = None if args.config is None else load_checked(args.config).config
    url = database_urls().session_url  # the migration lock is a session lock
    timeout = config.gateway.database.connect_timeout_s if config else 30.0
    with connect_with_retry(url, timeout) as conn:
        applied = migrate.apply(conn)
        admin.ensure_partitions(conn, config.gateway.database.partitions_ahead_days if config else 7)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")  # noqa: T201
    return 0

"""`lsd stats refresh`: fold the rows written since the last refresh into the statistics tables."""

from __future__ import annotations

import argparse

from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.exits import EXIT_DATABASE, CommandExit
from lsd.startup import database_urls
from lsd.store import statistics
from lsd.store.database import connect_with_retry


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("stats", help="statistics tables")
    sub = p.add_subparsers(dest="stats_command", required=True, metavar="SUBCOMMAND")
    refresh = sub.add_parser("refresh", help="fold the rows written since the last refresh into the statistics")
    add_config_argument(refresh, required_default=False, help="config files (for gateway.database settings)")


def run(args: argparse.Namespace) -> int:
    config = None if args.config is None else load_checked(args.config).config
    url = database_urls().session_url  # the statistics lock is a session lock
    timeout = config.gateway.database.connect_timeout_s if config else 10.0
    with connect_with_retry(url, timeout) as conn:
        try:
            result = statistics.refresh_statistics_sync(conn)
        except statistics.RefreshConflict as exc:
            raise CommandExit(EXIT_DATABASE, str(exc)) from None
    if result is None:
        print("another process is refreshing the statistics; nothing to do")  # noqa: T201
        return 0
    counts = ", ".join(f"{table} {n}" for table, n in sorted(result.rows.items()))
    print(f"statistics refreshed in {result.duration_s:.3f}s; new rows: {counts}")  # noqa: T201
    return 0

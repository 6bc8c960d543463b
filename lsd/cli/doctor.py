"""`lsd doctor`: the database's version, migrations, partitions and a pool's stats; exit 1 on a problem."""

from __future__ import annotations

import argparse
import asyncio

from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.config.model import Config
from lsd.startup import database_urls
from lsd.store import admin, migrate
from lsd.store.database import Database, PoolStats, connect_with_retry


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check the database: version, migrations, partitions, pool")
    add_config_argument(p, required_default=False, help="TOML config file or glob, repeatable")


def run(args: argparse.Namespace) -> int:
    config = None if args.config is None else load_checked(args.config).config
    url = database_urls().primary
    timeout = config.gateway.database.connect_timeout_s if config else 10.0
    with connect_with_retry(url, timeout) as conn:
        report = admin.doctor(conn)
    out = [
        f"server version: {report.server_version}",
        f"migrations applied: {list(report.migrations.applied)}; pending: {list(report.migrations.pending)}",
    ]
    for table, days in sorted(report.partition_days.items()):
        span = f"{days[0]} .. {days[-1]} ({len(days)})" if days else "none"
        out.append(f"partitions {table}: {span}")
    pool = asyncio.run(_pool_stats(url, config))
    out.append(f"pool: size={pool.size} available={pool.available} waiting={pool.waiting} max={pool.max_size}")
    if report.migrations.unknown:
        out.append(f"WARNING: {migrate.unknown_message(report.migrations)}")
    for problem in report.problems:
        out.append(f"PROBLEM: {problem}")
    print("\n".join(out))  # noqa: T201
    return 1 if report.problems else 0


async def _pool_stats(url: str, config: Config | None) -> PoolStats:
    db = config.gateway.database if config else None
    database = Database(
        url,
        min_size=1,
        max_size=db.pool_max_size if db else 20,
        prepared_statements=db.prepared_statements if db else True,
    )
    await database.open(timeout_s=10)
    try:
        await database.ping()
        return database.stats()
    finally:
        await database.close()

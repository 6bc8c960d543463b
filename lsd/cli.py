"""The `lsd` command line: serve, migrate, config check, doctor, stats, evaluate, batch, keys, localdb."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from lsd import __version__, batch_cli, keys_cli
from lsd.app import build_app
from lsd.config import load
from lsd.config.model import Config
from lsd.errors import ConfigError
from lsd.evaluations import cli as evaluate_cli
from lsd.exits import EXIT_CONFIG, EXIT_DATABASE, EXIT_MIGRATION, EXIT_USAGE, CommandExit
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates
from lsd.startup import database_urls, prepare
from lsd.store import admin, migrate, statistics
from lsd.store.database import Database, DatabaseUnreachable, DatabaseUrls, PoolStats, connect_with_retry
from lsd.store.local import LocalServer, LocalServerError
from lsd.supervisor import handover
from lsd.telemetry import logging as lsd_logging

log = logging.getLogger("lsd")

DEFAULT_CONFIG = "config/lsd.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsd", description="LSD, the LLM Service Daemon")
    parser.add_argument("--version", action="version", version=f"lsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_config = os.environ.get("LSD_CONFIG", DEFAULT_CONFIG)

    serve = sub.add_parser("serve", help="run the gateway (migrates first unless disabled)")
    serve.add_argument("--config", default=default_config, help=f"TOML config file (default {default_config})")
    serve.add_argument("--bind", help="HOST:PORT (default: gateway.bind_address)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")

    mig = sub.add_parser("migrate", help="apply pending database migrations and exit")
    mig.add_argument("--config", default=None, help="config file (for gateway.database settings)")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="validate a config file; print every error with its key path")
    check.add_argument("path")

    doctor = sub.add_parser("doctor", help="check the database: version, migrations, partitions, pool")
    doctor.add_argument("--config", default=None)

    stats = sub.add_parser("stats", help="statistics tables")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True, metavar="SUBCOMMAND")
    refresh = stats_sub.add_parser("refresh", help="fold the rows written since the last refresh into the statistics")
    refresh.add_argument("--config", default=None, help="config file (for gateway.database settings)")

    evaluate_cli.add_parser(sub)
    keys_cli.add_parser(sub)
    batch_cli.add_parser(sub)

    local = sub.add_parser("localdb", help="a local PostgreSQL for development (used by `make run`)")
    local_sub = local.add_subparsers(dest="localdb_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("start", "start (initialising if needed) and print its URL"), ("stop", "stop it")):
        p = local_sub.add_parser(name, help=text)
        p.add_argument("--data-dir", default=".lsd/pgdata")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    lsd_logging.configure()
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "config":
            return _config_check(args.path)
        if args.command == "stats":
            return _stats_refresh(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "evaluate":
            return evaluate_cli.run(args)
        if args.command == "keys":
            return keys_cli.run(args)
        if args.command == "batch":
            return batch_cli.run(args)
        return _localdb(args)
    except CommandExit as exc:
        sys.stderr.write(f"lsd: {exc.message}\n")
        return exc.code


# -- shared start-up steps ---------------------------------------------------------------------------------


def _load_config(path: str | None) -> Config | None:
    if path is None:
        return None
    try:
        config = load(path)
        ModelTable.from_config(config)  # providers validate their own keys
        ModelTable.embeddings_from_config(config)
        Templates(config)  # templates compile, schemas are valid
    except ConfigError as exc:
        raise CommandExit(EXIT_CONFIG, "invalid config:\n  " + "\n  ".join(exc.errors)) from None
    return config


def _database_url() -> str:
    return database_urls().primary


def _session_url() -> str:
    """Where session advisory locks may be taken: LSD_SESSION_DATABASE_URL, else LSD_DATABASE_URL."""
    return database_urls().session_url


def _connect(url: str, timeout_s: float):  # type: ignore[no-untyped-def]
    try:
        return connect_with_retry(url, timeout_s)
    except DatabaseUnreachable as exc:
        raise CommandExit(EXIT_DATABASE, str(exc)) from None


def _prepare_database(config: Config, url: DatabaseUrls) -> None:
    """Migrate (or check migrations), create partitions ahead and snapshot the config."""
    applied = prepare(config, url)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))


# -- commands ----------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    assert config is not None
    url = database_urls()
    _prepare_database(config, url)
    hconfig = HypercornConfig()
    hconfig.bind = [args.bind or config.gateway.bind_address]
    _check_bind(hconfig.bind[0])
    hconfig.graceful_timeout = config.gateway.graceful_timeout_s
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    hconfig.keep_alive_timeout = 75
    hconfig.h11_max_incomplete_size = config.gateway.max_header_bytes  # the request line and headers
    hconfig.h2_max_header_list_size = config.gateway.max_header_bytes
    hconfig.worker_class = "uvloop"
    log.info("lsd %s serving %s on http://%s", __version__, args.config, hconfig.bind[0])
    if args.workers > 1:
        os.environ["LSD_CONFIG"] = str(Path(args.config).resolve())
        hconfig.application_path = "lsd.app:from_environment()"
        handover(hconfig, args.workers)  # this process becomes the slim supervisor; never returns
    app = build_app(config, url)
    uvloop.run(_serve_async(app, hconfig))
    log.info("lsd stopped")
    return 0


def _check_bind(bind: str) -> None:
    """Fail before start-up work when the address cannot be bound (hypercorn binds only after the lifespan)."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except (OSError, ValueError) as exc:
        raise CommandExit(EXIT_USAGE, f"cannot listen on {bind}: {exc}") from None


async def _serve_async(app: object, hconfig: HypercornConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, hconfig, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def _migrate(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    url = _session_url()  # the migration lock is a session lock
    timeout = config.gateway.database.connect_timeout_s if config else 30.0
    with _connect(url, timeout) as conn:
        try:
            applied = migrate.apply(conn)
        except migrate.MigrationError as exc:
            raise CommandExit(EXIT_MIGRATION, str(exc)) from None
        admin.ensure_partitions(conn, config.gateway.database.partitions_ahead_days if config else 7)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")  # noqa: T201
    return 0


def _config_check(path: str) -> int:
    config = _load_config(path)
    assert config is not None
    print(f"{path}: ok ({len(config.models)} models, {len(config.functions)} functions)")  # noqa: T201
    return 0


def _doctor(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    url = _database_url()
    timeout = config.gateway.database.connect_timeout_s if config else 10.0
    with _connect(url, timeout) as conn:
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


def _stats_refresh(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    url = _session_url()  # the statistics lock is a session lock
    timeout = config.gateway.database.connect_timeout_s if config else 10.0
    with _connect(url, timeout) as conn:
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


def _localdb(args: argparse.Namespace) -> int:
    server = LocalServer(Path(args.data_dir))
    try:
        if args.localdb_command == "start":
            print(server.start())  # noqa: T201
        else:
            server.stop()
    except LocalServerError as exc:
        raise CommandExit(EXIT_DATABASE, str(exc)) from None
    return 0

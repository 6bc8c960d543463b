"""`lsd serve`: prepare the database, then run the gateway under its HTTP server (one process, or N workers)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from dataclasses import replace

import uvloop

from lsd import __version__
from lsd.app import build_app
from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.exits import EXIT_USAGE, CommandExit
from lsd.servers import ServerSettings, serve
from lsd.startup import database_urls, prepare
from lsd.supervisor import handover
from lsd.telemetry.metrics_dir import configured_multiprocess_dir, prepare_multiprocess_dir

log = logging.getLogger("lsd")


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the gateway (migrates first unless disabled)")
    add_config_argument(p, required_default=True, help="TOML config file or glob, repeatable: the files are merged")
    p.add_argument("--bind", help="HOST:PORT (default: gateway.bind_address)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--http-server", choices=("uvicorn", "hypercorn"), help="default: gateway.http_server (uvicorn)")


def run(args: argparse.Namespace) -> int:
    config = load_checked(args.config).config
    url = database_urls()
    applied = prepare(config, url)  # migrate (or check migrations), create partitions ahead, snapshot the config
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    settings = ServerSettings.from_gateway(config.gateway, args.bind)
    if args.http_server:
        settings = replace(settings, kind=args.http_server)
    _check_bind(settings.bind)
    files = ", ".join(str(p) for p in config.paths)
    log.info("lsd %s serving %s on http://%s (%s)", __version__, files, settings.bind, settings.kind)
    if args.workers > 1:
        # The workers load the very files this process checked, whatever the globs would match by then.
        os.environ["LSD_CONFIG"] = os.pathsep.join(str(p.resolve()) for p in config.paths)
        settings = replace(settings, application_path="lsd.app:from_environment")
        handover(settings, args.workers)  # this process becomes the slim supervisor; never returns
    configured = configured_multiprocess_dir()
    if configured:  # one process, values in the operator's folder: a previous run's must not be summed with ours
        prepare_multiprocess_dir(configured)
    app = build_app(config, url)
    uvloop.run(serve(app, settings))
    log.info("lsd stopped")
    return 0


def _check_bind(bind: str) -> None:
    """Fail before start-up work when the address cannot be bound (the server binds only after the lifespan)."""
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

"""`lsd serve`: prepare the database, then run the gateway under hypercorn (one process, or a supervisor and N)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from lsd import __version__
from lsd.app import build_app
from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.exits import EXIT_USAGE, CommandExit
from lsd.startup import database_urls, prepare
from lsd.supervisor import handover

log = logging.getLogger("lsd")


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the gateway (migrates first unless disabled)")
    add_config_argument(p, required_default=True, help="TOML config file or glob, repeatable: the files are merged")
    p.add_argument("--bind", help="HOST:PORT (default: gateway.bind_address)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    config = load_checked(args.config).config
    url = database_urls()
    applied = prepare(config, url)  # migrate (or check migrations), create partitions ahead, snapshot the config
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
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
    files = ", ".join(str(p) for p in config.paths)
    log.info("lsd %s serving %s on http://%s", __version__, files, hconfig.bind[0])
    if args.workers > 1:
        # The workers load the very files this process checked, whatever the globs would match by then.
        os.environ["LSD_CONFIG"] = os.pathsep.join(str(p.resolve()) for p in config.paths)
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

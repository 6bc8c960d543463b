"""`lsd localdb start|stop`: a local PostgreSQL for development (used by `make run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lsd.cli.options import Subparsers
from lsd.store.local import LocalServer


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("localdb", help="a local PostgreSQL for development (used by `make run`)")
    sub = p.add_subparsers(dest="localdb_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("start", "start (initialising if needed) and print its URL"), ("stop", "stop it")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--data-dir", default=".lsd/pgdata")


def run(args: argparse.Namespace) -> int:
    server = LocalServer(Path(args.data_dir))
    if args.localdb_command == "start":
        print(server.start())  # noqa: T201
    else:
        server.stop()
    return 0

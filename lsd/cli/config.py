"""`lsd config check PATH`: load a config file as `lsd serve` would; every error is printed with its key path."""

from __future__ import annotations

import argparse

from lsd.cli.options import Subparsers, load_checked


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("config", help="configuration tools")
    sub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="validate a config file; print every error with its key path")
    check.add_argument("path")


def run(args: argparse.Namespace) -> int:
    config = load_checked(args.path).config
    print(f"{args.path}: ok ({len(config.models)} models, {len(config.functions)} functions)")  # noqa: T201
    return 0

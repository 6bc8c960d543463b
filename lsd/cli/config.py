"""`lsd config check PATH...`: load config files as `lsd serve` would; every error is printed with its key path."""

from __future__ import annotations

import argparse

from lsd.cli.options import Subparsers, add_config_argument, load_checked


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("config", help="configuration tools")
    sub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="validate a config file; print every error with its key path")
    check.add_argument("path", nargs="*", help="config files or globs, merged as `lsd serve --config` merges them")
    add_config_argument(check, required_default=True, help="the same, as `lsd serve` takes them")


def run(args: argparse.Namespace) -> int:
    patterns = [*args.path, *(args.config or [])] or None
    config = load_checked(patterns).config
    names = ", ".join(str(p) for p in config.paths)
    print(f"{names}: ok ({len(config.models)} models, {len(config.functions)} functions)")  # noqa: T201
    return 0

"""`lsd keys create|list|disable`: manage API keys in the database (LSD_DATABASE_URL)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from lsd.auth import PREFIX, new_key
from lsd.cli.options import Subparsers
from lsd.exits import EXIT_OK, EXIT_USAGE, CommandExit
from lsd.startup import database_urls
from lsd.store import keys
from lsd.store.database import connect_with_retry

EXIT_NOT_FOUND = 1


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("keys", help="API keys: create (printed once), list, disable")
    sub = p.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    create = sub.add_parser("create", help="make a key and print it (it is shown only this once)")
    create.add_argument("--description")
    create.add_argument("--organization")
    create.add_argument("--workspace")
    create.add_argument(
        "--console-role", choices=("read-only", "admin"), help="may sign in to the console at /ui with this role"
    )
    listing = sub.add_parser("list", help="every key: public id, created, disabled, labels (never a secret)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    disable = sub.add_parser("disable", help="disable a key; every replica refuses it within a second")
    disable.add_argument("public_id")


def run(args: argparse.Namespace) -> int:
    with connect_with_retry(database_urls().primary, 10.0) as conn:
        keys.check_table(conn)  # raises NotMigrated
        return _command(conn, args)


def _command(conn: Any, args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.keys_command == "create":
        made = new_key()
        keys.insert_key(
            conn,
            made.public_id,
            made.secret_sha256,
            description=args.description,
            organization=args.organization,
            workspace=args.workspace,
            console_role=args.console_role,
        )
        out.write(made.token + "\n")
        sys.stderr.write(f"created key {made.public_id}; store it now: it is not shown again\n")
        return EXIT_OK
    if args.keys_command == "list":
        for key in keys.list_keys(conn):
            row = {
                "public_id": key.public_id,
                "created_at": key.created_at.isoformat(),
                "disabled_at": key.disabled_at.isoformat() if key.disabled_at else None,
                "description": key.description,
                "organization": key.organization,
                "workspace": key.workspace,
                "console_role": key.console_role,
            }
            if args.json:
                out.write(orjson.dumps(row).decode() + "\n")
            else:
                state = f"disabled {row['disabled_at']}" if key.disabled_at else "active"
                labels = " ".join(f"{k}={row[k]}" for k in ("organization", "workspace", "console_role") if row[k])
                out.write(f"{key.public_id}  {row['created_at']}  {state}  {key.description or ''}  {labels}".rstrip())
                out.write("\n")
        return EXIT_OK
    public_id = args.public_id
    if public_id.startswith(PREFIX):
        raise CommandExit(EXIT_USAGE, "give the public id (12 characters), not the whole key")
    if keys.disable_key(conn, public_id) is None:
        raise CommandExit(EXIT_NOT_FOUND, f"no key with public id {public_id!r}")
    out.write(f"disabled {public_id}\n")
    return EXIT_OK

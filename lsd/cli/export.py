"""`lsd export inferences`: stored inferences streamed from PostgreSQL to a Parquet, CSV or JSON Lines file."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from lsd.cli.options import Subparsers
from lsd.errors import DatabaseUnavailable, InvalidRequest
from lsd.exits import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, CommandExit
from lsd.export import FORMATS, parse_export_request, stream_inferences
from lsd.startup import database_urls
from lsd.store.database import Database, connect_with_retry
from lsd.store.export import DEFAULT_BATCH_ROWS

CONNECT_TIMEOUT_S = 10.0
_OPTIONS = {"function_name": "--function", "variant_name": "--variant", "since": "--since", "until": "--until"}


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("export", help="stored inferences to Parquet, CSV or JSON Lines")
    sub = p.add_subparsers(dest="export_command", required=True, metavar="SUBCOMMAND")
    inferences = sub.add_parser(
        "inferences",
        help="write stored chat and json inferences, oldest first, to a file",
        description="Reads LSD_DATABASE_URL (LSD_READ_DATABASE_URL when set); streams in batches, so memory stays "
        "the same whatever the number of rows. Columns: docs/querying.md#export. Exit status: 0 ok, 2 usage, "
        "3 database unreachable.",
    )
    inferences.add_argument("--function", help="only this function's inferences")
    inferences.add_argument("--variant", help="only this variant's inferences")
    inferences.add_argument("--since", help="RFC 3339 time: inferences at or after it (e.g. 2026-12-01T00:00:00Z)")
    inferences.add_argument("--until", help="RFC 3339 time: inferences before it")
    inferences.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only inferences with this tag (repeat for several), e.g. --tag lsd::session_id=ses_123",
    )
    inferences.add_argument(
        "--with-feedback", action="store_true", help="add each inference's latest metric values and demonstration"
    )
    inferences.add_argument("--format", choices=FORMATS, required=True)
    inferences.add_argument("--out", type=Path, required=True, help="the file to write ('-': stdout)")
    inferences.add_argument(
        "--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help=f"rows per batch (default {DEFAULT_BATCH_ROWS})"
    )


def _tags(values: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag = value.partition("=")
        if not sep or not key:
            raise CommandExit(EXIT_USAGE, f"--tag: expected KEY=VALUE, got {value!r}")
        tags[key] = tag
    return tags


def run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "function_name": args.function,
        "variant_name": args.variant,
        "since": args.since,
        "until": args.until,
        "with_feedback": args.with_feedback,
        "format": args.format,
        "tags": _tags(args.tag) or None,
    }
    try:
        query, format = parse_export_request({k: v for k, v in body.items() if v is not None})
    except InvalidRequest as exc:
        option = _OPTIONS.get(exc.field or "", exc.field)
        raise CommandExit(EXIT_USAGE, exc.message.replace(f"{exc.field}:", f"{option}:", 1)) from None
    if args.batch_rows < 1:
        raise CommandExit(EXIT_USAGE, "--batch-rows must be at least 1")
    urls = database_urls()
    # Reachable first (DatabaseUnreachable: exit 3 with PostgreSQL's reason), then the pool the export reads with.
    with connect_with_retry(urls.read or urls.primary, CONNECT_TIMEOUT_S):
        pass
    database = Database.from_urls(urls, min_size=1, max_size=1)

    async def export() -> int:
        await database.open()
        try:
            out = sys.stdout.buffer if str(args.out) == "-" else args.out.open("wb")
            try:
                written = 0
                async for chunk in stream_inferences(database, query, format, args.batch_rows):
                    out.write(chunk)
                    written += len(chunk)
            finally:
                if out is not sys.stdout.buffer:
                    out.close()
            return written
        except DatabaseUnavailable as exc:
            raise CommandExit(EXIT_DATABASE, exc.message) from None
        finally:
            await database.close()

    written = asyncio.run(export())
    sys.stderr.write(f"lsd: exported inferences as {format} to {args.out} ({written:,} bytes)\n")
    return EXIT_OK

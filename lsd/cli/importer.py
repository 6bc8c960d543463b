"""`lsd import tensorzero --from-postgres URL`: copy a TensorZero deployment's stored history into LSD's database.

The rows go to LSD_DATABASE_URL's database (migrated first with `lsd migrate`); the mapping is in
lsd.store.tensorzero_import and docs/migrating-from-tensorzero.md. No URL's password is ever printed: databases are
named as host:port/dbname.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date

from lsd.cli.options import Subparsers
from lsd.exits import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, CommandExit
from lsd.startup import database_urls
from lsd.store.tensorzero_import import (
    BATCH_ROWS,
    ImportReport,
    SourceUnreachable,
    SourceUnrecognised,
    import_tensorzero,
)


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("import", help="copy another gateway's stored data into LSD's database")
    sub = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tz = sub.add_parser(
        "tensorzero",
        help="copy a TensorZero deployment's inferences, model inferences and feedback from its PostgreSQL",
        description=(
            "Reads TensorZero's tables (schema `tensorzero`) read-only and writes LSD's rows to LSD_DATABASE_URL. "
            "Idempotent: a second run skips the rows already imported. Exit status: 0 done, 2 the source holds no "
            "TensorZero tables, 3 a database cannot be reached or LSD's is not migrated."
        ),
    )
    tz.add_argument("--from-postgres", required=True, metavar="URL", help="TensorZero's PostgreSQL URL")
    tz.add_argument(
        "--since", type=date.fromisoformat, default=None, metavar="DATE", help="only rows made on or after DATE (UTC)"
    )
    tz.add_argument("--dry-run", action="store_true", help="read and map every row, write nothing")
    tz.add_argument("--batch-size", type=int, default=BATCH_ROWS, help=f"rows per batch (default {BATCH_ROWS})")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CommandExit(EXIT_USAGE, "--batch-size must be at least 1")
    target = database_urls().primary
    try:
        report = asyncio.run(
            import_tensorzero(
                args.from_postgres, target, since=args.since, dry_run=args.dry_run, batch_rows=args.batch_size
            )
        )
    except SourceUnreachable as exc:
        raise CommandExit(EXIT_DATABASE, str(exc)) from None
    except SourceUnrecognised as exc:
        raise CommandExit(EXIT_USAGE, str(exc)) from None
    sys.stdout.write(render(report))
    return EXIT_OK


def render(report: ImportReport) -> str:
    """What was imported per LSD table, then what was skipped and which source tables this release lacks."""
    verb = "would import" if report.dry_run else "imported"
    lines = [f"TensorZero {report.source}" + (" (dry run: nothing written)" if report.dry_run else "")]
    width = max((len(t) for t in report.tables), default=0)
    for table, count in report.tables.items():
        if report.dry_run:
            lines.append(f"  {table:<{width}}  {verb} {count.read}")
        else:
            present = count.read - count.imported
            lines.append(f"  {table:<{width}}  {verb} {count.imported}, already present {present}")
    if not report.tables:
        lines.append("  no rows to import")
    for table, reasons in report.skipped.items():
        for reason, n in reasons.items():
            lines.append(f"  skipped {n} rows of tensorzero.{table}: {reason}")
    if report.absent:
        lines.append(f"  not in this TensorZero release: {', '.join('tensorzero.' + t for t in report.absent)}")
    return "\n".join(lines) + "\n"

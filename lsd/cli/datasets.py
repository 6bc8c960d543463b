"""`lsd datasets export NAME`: a stored dataset's live datapoints as JSON Lines or Parquet, oldest first."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from lsd.api.datasets_wire import datapoint_json
from lsd.cli.options import Subparsers
from lsd.errors import DatabaseUnavailable
from lsd.exits import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, CommandExit
from lsd.export import Kind, TableWriter
from lsd.startup import database_urls
from lsd.store import datasets as store
from lsd.store.database import Database
from lsd.store.datasets import DatapointQuery, DatapointRow

# Parquet columns (lsd.export.TableWriter: nested values whose shape varies row to row are JSON text).
DATAPOINT_COLUMNS: tuple[tuple[str, Kind], ...] = (
    ("id", "string"),
    ("type", "string"),
    ("dataset_name", "string"),
    ("function_name", "string"),
    ("name", "string"),
    ("episode_id", "string"),
    ("input", "json"),
    ("output", "json"),
    ("tool_params", "json"),
    ("output_schema", "json"),
    ("tags", "tags"),
    ("source_inference_id", "string"),
    ("is_custom", "bool"),
    ("created_at", "timestamp"),
    ("updated_at", "timestamp"),
)


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("datasets", help="stored datasets (the /v1/datasets API's datapoints)")
    sub = p.add_subparsers(dest="datasets_command", required=True, metavar="SUBCOMMAND")
    export = sub.add_parser(
        "export",
        help="write a dataset's datapoints as JSON Lines or Parquet",
        description="Reads LSD_DATABASE_URL. Exit status: 0 ok, 2 usage (unknown dataset, no URL), 3 database "
        "unreachable.",
    )
    export.add_argument("name", help="the dataset name")
    export.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="default jsonl")
    export.add_argument(
        "--output", type=Path, help="the file to write (default: stdout for jsonl; required for parquet)"
    )
    export.add_argument("--function", help="only this function's datapoints")


def run(args: argparse.Namespace) -> int:
    if args.format == "parquet" and args.output is None:
        raise CommandExit(EXIT_USAGE, "--format parquet needs --output FILE")
    rows = asyncio.run(_read(args.name, args.function))
    if not rows:
        raise CommandExit(EXIT_USAGE, f"dataset {args.name!r} has no datapoints")
    if args.format == "parquet":
        with args.output.open("wb") as out:
            writer = TableWriter(out, DATAPOINT_COLUMNS, "parquet")
            writer.write([parquet_row(r) for r in rows])
            writer.close()
    elif args.output is None:
        write_jsonl(rows, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        with args.output.open("wb") as out:
            write_jsonl(rows, out)
    destination = args.output or "stdout"
    sys.stderr.write(f"lsd: exported {len(rows)} datapoints of {args.name!r} to {destination}\n")
    return EXIT_OK


async def _read(name: str, function_name: str | None) -> list[DatapointRow]:
    database = Database(database_urls().primary, min_size=1, max_size=1)
    await database.open()
    try:
        query = DatapointQuery(dataset_name=name, function_name=function_name, descending=False, limit=None)
        return await store.list_rows(database, query)
    except DatabaseUnavailable as exc:
        raise CommandExit(EXIT_DATABASE, exc.message) from None
    finally:
        await database.close()


def write_jsonl(rows: Sequence[DatapointRow], out: IO[bytes]) -> None:
    """One datapoint per line, in the shape list_datapoints answers."""
    for row in rows:
        out.write(orjson.dumps(datapoint_json(row)) + b"\n")


def parquet_row(row: DatapointRow) -> dict[str, object]:
    return {
        "id": row.id,
        "type": row.type,
        "dataset_name": row.dataset_name,
        "function_name": row.function_name,
        "name": row.name,
        "episode_id": row.episode_id,
        "input": row.input,
        "output": row.output,
        "tool_params": row.tool_params,
        "output_schema": row.output_schema,
        "tags": row.tags or {},
        "source_inference_id": row.source_inference_id,
        "is_custom": row.is_custom,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }

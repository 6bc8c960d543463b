"""`lsd datasets export NAME`: a stored dataset's live datapoints as JSON Lines or Parquet, oldest first."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from lsd.api.datasets_wire import datapoint_json
from lsd.cli.options import Subparsers
from lsd.errors import DatabaseUnavailable
from lsd.exits import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, CommandExit
from lsd.startup import database_urls
from lsd.store import datasets as store
from lsd.store.database import Database
from lsd.store.datasets import DatapointQuery, DatapointRow

# Parquet columns. Nested values whose shape varies row to row (input, output, tools, schema) are JSON text:
# one column type for every datapoint, and `json.loads` (or DuckDB's `::JSON`) gives them back.
PARQUET_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("type", pa.string()),
        ("dataset_name", pa.string()),
        ("function_name", pa.string()),
        ("name", pa.string()),
        ("episode_id", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("tool_params", pa.string()),
        ("output_schema", pa.string()),
        ("tags", pa.map_(pa.string(), pa.string())),
        ("source_inference_id", pa.string()),
        ("is_custom", pa.bool_()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
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
        pq.write_table(parquet_table(rows), args.output)
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


def _text(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def parquet_table(rows: Sequence[DatapointRow]) -> pa.Table:
    columns = {
        "id": [str(r.id) for r in rows],
        "type": [r.type for r in rows],
        "dataset_name": [r.dataset_name for r in rows],
        "function_name": [r.function_name for r in rows],
        "name": [r.name for r in rows],
        "episode_id": [str(r.episode_id) if r.episode_id else None for r in rows],
        "input": [_text(r.input) for r in rows],
        "output": [_text(r.output) for r in rows],
        "tool_params": [_text(r.tool_params) for r in rows],
        "output_schema": [_text(r.output_schema) for r in rows],
        "tags": [list((r.tags or {}).items()) for r in rows],
        "source_inference_id": [str(r.source_inference_id) if r.source_inference_id else None for r in rows],
        "is_custom": [r.is_custom for r in rows],
        "created_at": [r.created_at for r in rows],
        "updated_at": [r.updated_at for r in rows],
    }
    return pa.table(columns, schema=PARQUET_SCHEMA)

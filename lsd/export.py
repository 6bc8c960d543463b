"""Exports: rows written batch by batch as Parquet, CSV or JSON Lines (`lsd export`, `POST /v1/inferences/export`,
and `lsd datasets export`).

`TableWriter` takes one batch of rows at a time and writes it out at once (a Parquet row group, CSV lines, JSON
lines), so an export holds one batch in memory whatever its size. Columns are declared once (`Column`) with a kind
that says how each format holds them: nested JSON values (`json`) are JSON text in Parquet and CSV (one column type
for every row; `json.loads`, DuckDB's `::JSON` or Polars' `str.json_decode` give them back) and JSON in JSON Lines;
`tags` are a map<string, string> in Parquet, JSON text in CSV.

`stream_inferences` is the inference export itself: the store's batches (lsd.store.export) through a TableWriter
into byte chunks, which the CLI writes to a file and the HTTP endpoint streams.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncGenerator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol, get_args
from uuid import UUID

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from lsd.errors import InvalidRequest
from lsd.inference.listing import parse_list_request
from lsd.store.database import Database
from lsd.store.export import DEFAULT_BATCH_ROWS, ExportQuery, ExportRow, export_batches

Format = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[str, ...] = get_args(Format)
Kind = Literal["string", "json", "tags", "timestamp", "int", "float", "bool"]

MEDIA_TYPES: Mapping[str, str] = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/jsonl",
}

_ARROW: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "json": pa.string(),
    "tags": pa.map_(pa.string(), pa.string()),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}


class Sink(Protocol):
    """Where a TableWriter writes: a binary file, or a ChunkSink."""

    def write(self, data: bytes, /) -> Any: ...


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _rfc3339(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class TableWriter:
    """Writes batches of rows (mappings of column name to value) with one set of columns to a binary sink.

    Values as Python holds them: str or UUID for `string`, any JSON-able value for `json`, a dict of strings for
    `tags`, an aware datetime for `timestamp`, int, float or Decimal, bool; None is null. `close()` writes what the
    format ends with (Parquet's footer); it does not close the sink."""

    def __init__(self, sink: Sink, columns: Sequence[tuple[str, Kind]], format: Format) -> None:
        self._sink = sink
        self._columns = tuple(columns)
        self._format = format
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        if format != "jsonl":
            # CSV has no map type: tags are JSON text there, as nested values are; and timestamps are written as the
            # RFC 3339 text of JSON Lines (pyarrow's CSV writer would put a space in place of the `T`).
            types = {**_ARROW, "tags": pa.string(), "timestamp": pa.string()} if format == "csv" else _ARROW
            self.schema = pa.schema([(name, types[kind]) for name, kind in self._columns])
            if format == "parquet":
                self._writer = pq.ParquetWriter(sink, self.schema, compression="zstd")
            else:
                self._writer = pa_csv.CSVWriter(sink, self.schema)

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._sink.write(b"".join(orjson.dumps(self._json_row(row)) + b"\n" for row in rows))
            return
        csv = self._format == "csv"
        arrays = {}
        for name, kind in self._columns:
            values = [row.get(name) for row in rows]
            if kind == "json" or (kind == "tags" and csv):
                values = [_json_text(v) for v in values]
            elif kind == "tags":
                values = [None if v is None else list(v.items()) for v in values]
            elif kind == "string":
                values = [None if v is None else str(v) for v in values]
            elif kind == "float":
                values = [None if v is None else float(v) for v in values]
            elif kind == "timestamp" and csv:
                values = [_rfc3339(v) for v in values]
            arrays[name] = values
        self._writer.write_batch(pa.RecordBatch.from_pydict(arrays, schema=self.schema))

    def _json_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, kind in self._columns:
            value = row.get(name)
            if kind == "timestamp":
                value = _rfc3339(value)
            elif isinstance(value, UUID):
                value = str(value)
            elif isinstance(value, Decimal):
                value = float(value)
            out[name] = value
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class ChunkSink(io.RawIOBase):
    """A write-only sink whose bytes are taken out chunk by chunk (`drain`); `tell` counts every byte written, as
    Parquet's writer needs for the offsets in its footer."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


# -- the inference export -------------------------------------------------------------------------------------

INFERENCE_COLUMNS: tuple[tuple[str, Kind], ...] = (
    ("inference_id", "string"),
    ("episode_id", "string"),
    ("type", "string"),
    ("function_name", "string"),
    ("variant_name", "string"),
    ("timestamp", "timestamp"),
    ("input", "json"),
    ("output", "json"),
    ("tool_params", "json"),
    ("output_schema", "json"),
    ("inference_params", "json"),
    ("extra_body", "json"),
    ("tags", "tags"),
    ("processing_time_ms", "int"),
    ("ttft_ms", "int"),
    ("input_tokens", "int"),
    ("output_tokens", "int"),
    ("cost", "float"),
    ("finish_reason", "string"),
    ("model_name", "string"),
    ("model_provider_name", "string"),
)
FEEDBACK_COLUMNS: tuple[tuple[str, Kind], ...] = (("feedback", "json"), ("demonstration", "json"))


def inference_columns(with_feedback: bool) -> tuple[tuple[str, Kind], ...]:
    return INFERENCE_COLUMNS + FEEDBACK_COLUMNS if with_feedback else INFERENCE_COLUMNS


def inference_values(row: ExportRow) -> dict[str, Any]:
    """One exported inference's columns (the values list_inferences answers with, under the same names)."""
    return {
        "inference_id": row.id,
        "episode_id": row.episode_id,
        "type": row.kind,
        "function_name": row.function_name,
        "variant_name": row.variant_name,
        "timestamp": row.created_at,
        "input": row.input,
        "output": row.output,
        "tool_params": row.tool_params,
        "output_schema": row.output_schema,
        "inference_params": row.inference_params,
        "extra_body": row.extra_body or [],
        "tags": row.tags,
        "processing_time_ms": row.processing_time_ms,
        "ttft_ms": row.ttft_ms,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost": row.cost,
        "finish_reason": row.finish_reason,
        "model_name": row.model_name,
        "model_provider_name": row.model_provider_name,
        "feedback": row.feedback,
        "demonstration": row.demonstration,
    }


async def stream_inferences(
    database: Database, query: ExportQuery, format: Format, batch_rows: int = DEFAULT_BATCH_ROWS
) -> AsyncGenerator[bytes, None]:
    """The export of `query` in `format`, as byte chunks (about one per batch, then the format's end). Raises
    DatabaseUnavailable when PostgreSQL cannot answer."""
    sink = ChunkSink()
    writer = TableWriter(sink, inference_columns(query.with_feedback), format)
    async for batch in export_batches(database, query, batch_rows):
        writer.write([inference_values(row) for row in batch])
        chunk = sink.drain()
        if chunk:
            yield chunk
    writer.close()
    yield sink.drain()


# -- the request ---------------------------------------------------------------------------------------------

_FILTER_FIELDS = ("function_name", "variant_name", "since", "until")
_EXPORT_FIELDS = frozenset({*_FILTER_FIELDS, "with_feedback", "format", "tags"})


def parse_export_request(body: Any) -> tuple[ExportQuery, Format]:
    """A POST /v1/inferences/export body: list_inferences' function_name, variant_name, since and until (parsed as
    list_inferences parses them), `tags` (each key with its value), `with_feedback` and `format`. Raises
    InvalidRequest naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    unknown = sorted(set(body) - _EXPORT_FIELDS)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown field")
    filters = parse_list_request({k: body[k] for k in _FILTER_FIELDS if k in body})
    with_feedback = body.get("with_feedback", False)
    if not isinstance(with_feedback, bool):
        raise InvalidRequest.at("with_feedback", "expected a boolean")
    format = body.get("format", "jsonl")
    if format not in FORMATS:
        raise InvalidRequest.at("format", f"expected one of {', '.join(FORMATS)}, got {format!r}")
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise InvalidRequest.at("tags", "expected an object of strings")
    query = ExportQuery(
        filters.function_name, filters.variant_name, filters.since, filters.until, with_feedback, tags or None
    )
    return query, format

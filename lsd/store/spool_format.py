"""The spool file format: a header naming the format version, the database and each table's columns, then frames.

Version 2 (written since this module exists):

    header   b"LSDSPOOL2 " + JSON + b"\\n"   {"database": {"system_identifier", "name"} | null,
                                              "tables": {table: [column, ...], ...}}
    frame    payload length (4 bytes, big-endian) | CRC-32 of the payload (4 bytes, big-endian) | payload

Version 1 (the releases before) is the fixed header b"LSDSPOOL1\\n" and the same frames; its columns are those of
the release that wrote it, kept below as `V1_COLUMNS`, and it names no database.

A payload is one group of records (the rows of one `record()` call, which the writer commits in one transaction),
encoded by orjson as `[[table, value, ...], ...]`, values in the order of that table's columns in the header. Typed
fields are tagged by their declared type: UUIDs as strings, datetimes as ISO 8601 with their UTC offset, Decimals as
"d:<str>" and non-finite floats as "f:<repr>" (JSON has neither). JSON values are stored as orjson writes them, which
is also how the writer sends them to PostgreSQL, so a replayed row is the row a direct write would have inserted.

Reading a file written by another version: a column the file lacks (a newer LSD reading an older spool) gets the
record field's default, or None when the field has none; so a field added for a new column must default to what the
column's default is. A column this version does not know (an older LSD reading a newer spool) is left out.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import typing
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from types import MappingProxyType
from typing import Any
from uuid import UUID

import orjson

from lsd.records import Record

VERSION = 2
MAGIC = b"LSDSPOOL"
HEADER_V1 = b"LSDSPOOL1\n"
MAX_HEADER = 1 << 20  # a header line longer than this is not one
_FRAME = struct.Struct(">II")
FRAME_HEADER = _FRAME.size
_MAX_FRAME = 1 << 30

# The columns version 1 files hold, in their order: the records of the last release that wrote version 1. Never
# edit this when a record changes: it describes files already on disk.
V1_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "embedding_inferences": (
            *("id", "created_at", "embedding_model_name", "model_provider_name", "input", "num_inputs"),
            *("dimensions", "embeddings", "tags", "processing_time_ms", "input_tokens", "cost", "cached"),
            *("config_hash", "api_key_public_id"),
        ),
        "chat_inferences": (
            *("id", "created_at", "function_name", "variant_name", "episode_id", "input", "output", "tool_params"),
            *("inference_params", "tags", "processing_time_ms", "ttft_ms", "input_tokens", "output_tokens", "cost"),
            *("finish_reason", "cached", "config_hash", "api_key_public_id"),
        ),
        "json_inferences": (
            *("id", "created_at", "function_name", "variant_name", "episode_id", "input", "output", "output_schema"),
            *("inference_params", "tags", "processing_time_ms", "ttft_ms", "input_tokens", "output_tokens", "cost"),
            *("finish_reason", "cached", "config_hash", "api_key_public_id"),
        ),
        "chat_inference_data": (
            *("inference_id", "created_at", "rendered_input", "extra_body", "extra_headers", "original_response"),
        ),
        "json_inference_data": (
            *("inference_id", "created_at", "rendered_input", "extra_body", "extra_headers", "original_response"),
        ),
        "model_inferences": (
            *("id", "created_at", "inference_id", "inference_kind", "attempt", "function_name", "variant_name"),
            *("model_name", "model_provider_name", "provider_type", "status", "error_kind", "error", "latency_ms"),
            *("ttft_ms", "input_tokens", "output_tokens", "cost", "finish_reason", "cached", "streamed"),
        ),
        "model_inference_data": (
            *("model_inference_id", "created_at", "inference_id", "raw_request", "raw_response", "request_headers"),
            "api_key_sha256",
        ),
        "boolean_metric_feedback": (
            *("id", "created_at", "target_id", "target_level", "metric_name", "value", "tags", "api_key_public_id"),
        ),
        "float_metric_feedback": (
            *("id", "created_at", "target_id", "target_level", "metric_name", "value", "tags", "api_key_public_id"),
        ),
        "comment_feedback": ("id", "created_at", "target_id", "target_level", "value", "tags", "api_key_public_id"),
        "demonstration_feedback": ("id", "created_at", "inference_id", "value", "tags", "api_key_public_id"),
    }
)


class SpoolDecodeError(ValueError):
    """A frame whose checksum is right but whose payload is not a group of known records."""


class SpoolHeaderError(ValueError):
    """A file that does not start with a spool header this version can read."""


@dataclass(frozen=True, slots=True)
class DatabaseIdentity:
    """Which database a spool file's rows belong to: PostgreSQL's system identifier (`pg_control_system()`; the
    same on a primary and its physical replicas) and the database's name. `system_identifier` is None when the role
    may not read it; the names are compared then."""

    system_identifier: str | None
    name: str

    def matches(self, other: DatabaseIdentity) -> bool:
        if self.name != other.name:
            return False
        mine, theirs = self.system_identifier, other.system_identifier
        return mine is None or theirs is None or mine == theirs

    def __str__(self) -> str:
        return f"{self.name!r} (system identifier {self.system_identifier or 'unknown'})"

    def to_json(self) -> dict[str, str | None]:
        return {"system_identifier": self.system_identifier, "name": self.name}

    @classmethod
    def from_json(cls, value: Any) -> DatabaseIdentity | None:
        if value is None:
            return None
        system, name = value["system_identifier"], value["name"]
        if not isinstance(name, str) or not (system is None or isinstance(system, str)):
            raise TypeError("database: expected {system_identifier: str | null, name: str}")
        return cls(system, name)


def _number_out(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"d:{value}"  # str(Decimal) round-trips exactly: digits, exponent, sign of zero, NaN, Infinity
    if isinstance(value, float) and not math.isfinite(value):
        return f"f:{value!r}"  # orjson would write null
    return value


def _number_in(value: Any) -> Any:
    if isinstance(value, str):
        return Decimal(value[2:]) if value.startswith("d:") else float(value[2:])
    return value


def _same(value: Any) -> Any:
    return value


_Special = tuple[int, Callable[[Any], Any], Callable[[Any], Any]]


def _converters(hint: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]] | None:
    kinds = set(typing.get_args(hint)) or {hint}
    if UUID in kinds:
        return _same, UUID  # orjson writes a UUID as its canonical string
    if datetime in kinds:
        return datetime.isoformat, datetime.fromisoformat
    if float in kinds or Decimal in kinds:
        return _number_out, _number_in
    return None


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one record class is read from a file whose columns for its table are `columns`: `[table, value, ...]`.

    Only the typed fields JSON cannot hold are converted (`special`: position in the list, encoder, decoder); the
    rest go to orjson as they are. When the file's columns are the record's fields (`exact`), the values are the
    constructor's arguments; otherwise they are matched by name and the missing fields get their defaults."""

    cls: type
    columns: tuple[str, ...]
    width: int  # 1 + the number of columns
    special: tuple[_Special, ...]
    exact: bool
    getter: Callable[[Any], tuple[Any, ...]]

    @classmethod
    def of(cls, record_type: type, columns: Sequence[str] | None = None) -> _Codec:
        hints = typing.get_type_hints(record_type)
        names = tuple(f.name for f in dataclasses.fields(record_type))
        columns = names if columns is None else tuple(columns)
        special: list[_Special] = []
        for position, name in enumerate(columns, start=1):
            converters = _converters(hints[name]) if name in hints else None
            if converters is not None:
                special.append((position, *converters))
        return cls(
            record_type, columns, len(columns) + 1, tuple(special), columns == names, attrgetter("TABLE", *names)
        )

    def reading(self, columns: Sequence[str]) -> _Codec:
        """This record class as a file with these columns holds it."""
        return self if tuple(columns) == self.columns else _Codec.of(self.cls, columns)

    def encode(self, record: Any) -> list[Any]:
        values = list(self.getter(record))
        for position, encode, _ in self.special:
            value = values[position]
            if value is not None:
                values[position] = encode(value)
        return values

    def decode(self, values: list[Any]) -> Record:
        if len(values) != self.width:
            raise SpoolDecodeError(f"{self.cls.__name__}: {len(values) - 1} values for {self.width - 1} columns")
        for position, _, decode in self.special:
            value = values[position]
            if value is not None:
                values[position] = decode(value)
        if self.exact:
            exact: Record = self.cls(*values[1:])
            return exact
        given = dict(zip(self.columns, values[1:], strict=True))
        arguments = {f.name: given[f.name] if f.name in given else _default(f) for f in dataclasses.fields(self.cls)}
        record: Record = self.cls(**arguments)
        return record


_CODECS: Mapping[str, _Codec] = MappingProxyType({cls.TABLE: _Codec.of(cls) for cls in typing.get_args(Record)})
CURRENT_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType({t: c.columns for t, c in _CODECS.items()})


@dataclass(frozen=True, slots=True)
class Layout:
    """What a file's header says: its version, its database, and how to read each table's rows."""

    version: int
    database: DatabaseIdentity | None
    codecs: Mapping[str, _Codec]
    size: int  # bytes of the header; the first frame starts here

    @classmethod
    def of(cls, version: int, database: DatabaseIdentity | None, columns: Mapping[str, Sequence[str]]) -> Layout:
        codecs = {table: _CODECS[table].reading(names) for table, names in columns.items() if table in _CODECS}
        return cls(version, database, MappingProxyType(codecs), 0)

    def decode(self, payload: bytes) -> list[Record]:
        """The records of one frame's payload; raises SpoolDecodeError when they are not records it can read."""
        try:
            items = orjson.loads(payload)
            return [self.codecs[item[0]].decode(item) for item in items]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise SpoolDecodeError(f"undecodable frame: {type(exc).__name__}: {exc}") from exc


CURRENT = Layout(VERSION, None, _CODECS, 0)


def header(database: DatabaseIdentity | None) -> bytes:
    """The header a new file starts with: this version, `database`, the current records' columns."""
    body = {"database": None if database is None else database.to_json(), "tables": dict(CURRENT_COLUMNS)}
    return MAGIC + b"2 " + orjson.dumps(body) + b"\n"


def read_header(start: bytes) -> Layout:
    """The layout of a file whose first bytes are `start` (at least its header line, at most MAX_HEADER bytes)."""
    if start.startswith(HEADER_V1):
        return dataclasses.replace(Layout.of(1, None, V1_COLUMNS), size=len(HEADER_V1))
    end = start.find(b"\n")
    if not start.startswith(MAGIC + b"2 ") or end < 0:
        raise SpoolHeaderError("no spool header (LSDSPOOL1 or LSDSPOOL2)")
    try:
        body = orjson.loads(start[len(MAGIC) + 2 : end])
        database = DatabaseIdentity.from_json(body["database"])
        tables = body["tables"]
        if not isinstance(tables, dict) or not all(isinstance(c, list) for c in tables.values()):
            raise TypeError("tables: expected {table: [column, ...]}")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise SpoolHeaderError(f"unreadable LSDSPOOL2 header: {exc}") from exc
    return dataclasses.replace(Layout.of(2, database, tables), size=end + 1)


def encode_frame(group: Sequence[Record]) -> bytes:
    """One group of records as a frame. Raises TypeError (orjson.JSONEncodeError) for a value JSON cannot hold."""
    payload = orjson.dumps([_CODECS[record.TABLE].encode(record) for record in group])
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def encode_payload(rows: Sequence[Sequence[Any]]) -> bytes:
    """A frame around rows already encoded (`[table, value, ...]` each): how a test writes an older version's file."""
    payload = orjson.dumps(rows)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> list[Record]:
    """The records of a frame written by this version."""
    return CURRENT.decode(payload)


def count_rows(payload: bytes) -> int:
    """How many rows one frame holds, without decoding them."""
    try:
        items = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return 0
    return len(items) if isinstance(items, list) else 0


def iter_frames(data: bytes | memoryview, offset: int) -> Iterator[tuple[int, bytes | None]]:
    """(end offset, payload) for each frame from `offset`. Payload None: a frame that cannot be read, skipped to
    its end offset. A torn tail (a crash cut the last append short: too few bytes for the length it names) is one
    such item ending the file. A frame whose checksum fails but whose length fits (damaged on disk or in a copy) is
    skipped alone and the frames after it are read on; if its length field was the damaged part, the next frame
    is misread too and, past a length that does not fit, the rest counts as torn."""
    view = memoryview(data)
    while offset < len(view):
        if len(view) - offset < _FRAME.size:
            yield len(view), None
            return
        length, crc = _FRAME.unpack_from(view, offset)
        start = offset + _FRAME.size
        if length > _MAX_FRAME or start + length > len(view):
            yield len(view), None
            return
        payload = bytes(view[start : start + length])
        offset = start + length
        yield offset, payload if zlib.crc32(payload) == crc else None

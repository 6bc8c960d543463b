"""Datasets: datapoints from a JSONL file (bad lines reported by file:line and skipped), from stored inferences, or
from a stored dataset (the /v1/datasets API's datapoints)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lsd.config.model import FunctionConfig
from lsd.errors import InvalidRequest
from lsd.inference.input_request import parse_input
from lsd.inference.recording import input_to_json
from lsd.store.database import Database
from lsd.store.datasets import DatapointQuery, list_rows
from lsd.store.evaluations import select_inferences
from lsd.types import Input

_LINE_KEYS = frozenset({"id", "input", "output", "tags"})
_FILTER_KEYS = ("function_name", "variant_name", "tags", "limit")
_RESERVED_TAG_PREFIXES = ("lsd::", "tensorzero::")
# Datapoint ids derived from content: the same line gets the same id in every run (human judgements key on it).
DATAPOINT_NAMESPACE = uuid.UUID("5b0f6f1e-8f55-4c0e-9d7a-4c5344657661")
DEFAULT_INFERENCE_LIMIT = 1000


class DatasetError(Exception):
    """The dataset cannot be read at all (a missing file, an invalid filter)."""


@dataclass(frozen=True, slots=True)
class Datapoint:
    id: str
    input: Input
    input_json: Any  # the input as inference rows store it
    reference: Any | None = None  # chat: a string or content blocks; json: the expected value
    has_reference: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    where: str = ""  # file:line, or the source inference


@dataclass(frozen=True, slots=True)
class Dataset:
    source: str
    datapoints: tuple[Datapoint, ...]
    problems: tuple[str, ...] = ()  # one line each, naming file:line


def read_jsonl(path: Path, *, max_datapoints: int | None = None) -> Dataset:
    """Every valid line of a JSONL file (`input`, optional `output`, `tags`, `id`), in order.

    A malformed line becomes a problem naming `file:line`; the other lines still count. Raises DatasetError
    when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read dataset: {exc}") from None
    datapoints: list[Datapoint] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if max_datapoints is not None and len(datapoints) >= max_datapoints:
            break
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            datapoint = _datapoint(line, where)
        except InvalidRequest as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        if datapoint.id in first_line:
            problems.append(
                f"{where}: duplicate datapoint id {datapoint.id!r} (first on line {first_line[datapoint.id]})"
            )
            continue
        first_line[datapoint.id] = number
        datapoints.append(datapoint)
    return Dataset(str(path), tuple(datapoints), tuple(problems))


def _fail(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}" if path else message, field=path or None)


def _datapoint(line: str, where: str) -> Datapoint:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _fail("", f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _fail("", "expected a JSON object {input, output?, tags?, id?}")
    unknown = sorted(set(value) - _LINE_KEYS)
    if unknown:
        raise _fail(unknown[0], "unknown key (a datapoint has input, output, tags, id)")
    if "input" not in value:
        raise _fail("input", "missing required key")
    parsed = parse_input(value["input"], "input")
    tags = _tags(value.get("tags"), "tags")
    input_json = input_to_json(parsed)
    has_reference = value.get("output") is not None
    reference = value.get("output")
    given = value.get("id")
    if given is not None and (not isinstance(given, str) or not given):
        raise _fail("id", "expected a non-empty string")
    datapoint_id = given or str(uuid.uuid5(DATAPOINT_NAMESPACE, _canonical({"input": input_json, "output": reference})))
    return Datapoint(datapoint_id, parsed, input_json, reference, has_reference, tags, where)


def _canonical(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _tags(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _fail(path, "expected an object of strings")
    for key in value:
        if key.startswith(_RESERVED_TAG_PREFIXES):
            raise _fail(f"{path}.{key}", "tag keys starting with 'lsd::' or 'tensorzero::' are reserved")
    return dict(value)


@dataclass(frozen=True, slots=True)
class InferenceFilter:
    """The part of list_inferences' filter `--from-inferences` supports so far."""

    function_name: str | None = None
    variant_name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_INFERENCE_LIMIT


def read_inference_filter(path: Path) -> InferenceFilter:
    """Parse a filter file: `{function_name?, variant_name?, tags?, limit?}`. Raises DatasetError."""
    try:
        value = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read filter: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON: {exc}") from None
    try:
        return parse_inference_filter(value)
    except InvalidRequest as exc:
        raise DatasetError(f"{path}: {exc.message}") from None


def parse_inference_filter(value: Any) -> InferenceFilter:
    if not isinstance(value, dict):
        raise _fail("", "expected a JSON object")
    unknown = sorted(set(value) - set(_FILTER_KEYS))
    if unknown:
        raise _fail(unknown[0], f"not supported by --from-inferences yet (supported: {', '.join(_FILTER_KEYS)})")
    names = {}
    for key in ("function_name", "variant_name"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise _fail(key, "expected a string")
        names[key] = value.get(key)
    limit = value.get("limit", DEFAULT_INFERENCE_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise _fail("limit", "expected a positive integer")
    tags = value["tags"] if value.get("tags") is not None else {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise _fail("tags", "expected an object of strings")
    return InferenceFilter(names["function_name"], names["variant_name"], tags, limit)


async def from_inferences(
    database: Database, function: FunctionConfig, selection: InferenceFilter, *, max_datapoints: int | None = None
) -> Dataset:
    """The function's stored inferences as datapoints (newest first); a demonstration is the reference output."""
    if selection.function_name is not None and selection.function_name != function.name:
        raise DatasetError(
            f"function_name: the filter selects {selection.function_name!r}, the evaluation scores {function.name!r}"
        )
    limit = min(selection.limit, max_datapoints) if max_datapoints is not None else selection.limit
    rows = await select_inferences(
        database,
        function_type=function.type,
        function_name=function.name,
        variant_name=selection.variant_name,
        tags=selection.tags,
        limit=limit,
    )
    datapoints: list[Datapoint] = []
    problems: list[str] = []
    for row in rows:
        where = f"inference {row.id}"
        try:
            parsed = parse_input(row.input, "input")
        except InvalidRequest as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        tags = {k: v for k, v in (row.tags or {}).items() if not k.startswith(_RESERVED_TAG_PREFIXES)}
        datapoints.append(
            Datapoint(str(row.id), parsed, row.input, row.demonstration, row.has_demonstration, tags, where)
        )
    return Dataset("stored inferences", tuple(datapoints), tuple(problems))


async def from_stored_dataset(
    database: Database, function: FunctionConfig, dataset_name: str, *, max_datapoints: int | None = None
) -> Dataset:
    """The live datapoints of a stored dataset for the evaluated function, oldest first. The datapoint id is the
    stored id; the reference is the stored output (a json datapoint's parsed value, its raw text when it did not
    parse). Raises DatasetError when the dataset has no datapoint of the function."""
    query = DatapointQuery(
        dataset_name=dataset_name, function_name=function.name, descending=False, limit=max_datapoints
    )
    rows = await list_rows(database, query)
    if not rows:
        raise DatasetError(f"dataset {dataset_name!r} has no datapoints of function {function.name!r}")
    datapoints: list[Datapoint] = []
    problems: list[str] = []
    for row in rows:
        where = f"datapoint {row.id}"
        if row.type != function.type:
            problems.append(f"{where}: a {row.type} datapoint; {function.name!r} is a {function.type} function")
            continue
        try:
            parsed = parse_input(row.input, "input")
        except InvalidRequest as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        reference = row.output
        if row.type == "json" and isinstance(reference, dict):
            reference = reference["parsed"] if reference.get("parsed") is not None else reference.get("raw")
        tags = {k: v for k, v in (row.tags or {}).items() if not k.startswith(_RESERVED_TAG_PREFIXES)}
        datapoints.append(Datapoint(str(row.id), parsed, row.input, reference, row.output is not None, tags, where))
    return Dataset(f"dataset {dataset_name!r}", tuple(datapoints), tuple(problems))

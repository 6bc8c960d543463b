"""The /v1/datasets request bodies (TensorZero's shapes) parsed into typed requests; every error an
InvalidRequest naming its field path (`datapoints[1].output.raw`).

Parsing here is structural; what needs the config (the function exists and has this type, the output matches its
schema, the tools exist) is checked by the service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from uuid import UUID

import orjson

from lsd.errors import InvalidRequest
from lsd.inference.input_request import parse_input
from lsd.inference.listing import parse_filter
from lsd.inference.recording import input_to_json
from lsd.inference.request import parse_tool, parse_tool_choice, parse_uuid
from lsd.store.datasets import DatapointType
from lsd.store.queries import AndFilter, Filter, NotFilter, OrFilter, TagFilter, TimeFilter

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000  # within bigint, and as deep as OFFSET paging is worth (lsd.inference.listing.MAX_OFFSET)
MAX_ITEMS = 1000  # datapoints or ids in one request
DATASET_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")  # what a URL path segment holds without escaping
OutputSource = Literal["inference", "demonstration", "none"]


class _Unset:
    """A field that was left out (kept as is by an update), as opposed to null (cleared)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class NewDatapoint:
    type: DatapointType
    function_name: str
    input: dict[str, Any]  # as inference rows store it
    output: Any  # chat: blocks; json: {"raw": str} until the service parses it against the schema
    tool_params: dict[str, Any] | None  # chat only
    output_schema: Any  # json only; None: the function's
    tags: dict[str, str]
    name: str | None
    episode_id: UUID | None


@dataclass(frozen=True, slots=True)
class DatapointUpdate:
    """An update: UNSET fields keep their value; `output`/`name`/`output_schema` None clears them."""

    type: DatapointType
    id: UUID
    input: Any = UNSET
    output: Any = UNSET
    tool_changes: Mapping[str, Any] = field(default_factory=dict)  # only the keys given
    output_schema: Any = UNSET
    tags: Any = UNSET
    name: Any = UNSET


@dataclass(frozen=True, slots=True)
class ListRequest:
    function_name: str | None
    condition: Filter | None
    descending: bool
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class FromInferences:
    """`inference_ids`, or a list_inferences body (`query`, handed to the listing parser as is)."""

    output_source: OutputSource
    inference_ids: tuple[UUID, ...] | None = None
    query: Mapping[str, Any] | None = None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(type(value), "value")


def _object(value: Any, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, f"expected an object, got {_type_name(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidRequest.at(_join(path, unknown[0]), "unknown field")
    return value


def _join(path: str, key: str) -> str:
    return key if path == "body" else f"{path}.{key}"


def _list(value: Any, path: str, *, limit: int = MAX_ITEMS) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest.at(
            path, "missing required field" if value is None else f"expected an array, got {_type_name(value)}"
        )
    if len(value) > limit:
        raise InvalidRequest.at(path, f"at most {limit} items per request, got {len(value)}")
    return value


def _str(value: Any, path: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidRequest.at(path, "missing required field")
        return None
    if not isinstance(value, str):
        raise InvalidRequest.at(path, f"expected a string, got {_type_name(value)}")
    return value


def _tags(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, f"expected an object of strings, got {_type_name(value)}")
    for key, tag in value.items():
        if not isinstance(tag, str):
            raise InvalidRequest.at(f"{path}.{key}", f"expected a string, got {_type_name(tag)}")
    return dict(value)


def parse_dataset_name(value: str) -> str:
    if not DATASET_NAME.fullmatch(value):
        raise InvalidRequest.at("dataset_name", "1 to 200 letters, digits, '_', '-' or '.'")
    return value


def _ids(body: Mapping[str, Any], path: str = "ids") -> tuple[UUID, ...]:
    raw = _list(body.get("ids"), path)
    return tuple(dict.fromkeys(parse_uuid(v, f"{path}[{i}]") for i, v in enumerate(raw)))


# -- content -----------------------------------------------------------------------------------------------


def parse_chat_output(value: Any, path: str) -> list[dict[str, Any]]:
    """Chat output blocks as stored: text, tool_call, thought, unknown."""
    blocks = _list(value, path)
    out: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        where = f"{path}[{i}]"
        if not isinstance(block, dict):
            raise InvalidRequest.at(where, f"expected a content block object, got {_type_name(block)}")
        kind = block.get("type")
        if kind == "text":
            _object(block, where, frozenset({"type", "text"}))
            out.append({"type": "text", "text": _str(block.get("text"), f"{where}.text", required=True)})
        elif kind == "tool_call":
            out.append(_tool_call(block, where))
        elif kind in ("thought", "unknown"):
            if kind == "unknown" and "data" not in block:
                raise InvalidRequest.at(f"{where}.data", "missing required field")
            out.append(dict(block))
        else:
            raise InvalidRequest.at(
                f"{where}.type", f"expected 'text', 'tool_call', 'thought' or 'unknown', got {kind!r}"
            )
    return out


def _tool_call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    _object(block, where, frozenset({"type", "id", "name", "arguments", "raw_name", "raw_arguments"}))
    name = _str(block.get("name"), f"{where}.name")
    raw_name = _str(block.get("raw_name"), f"{where}.raw_name") or name
    if raw_name is None:
        raise InvalidRequest.at(f"{where}.name", "missing required field")
    arguments = block.get("arguments")
    raw_arguments = _str(block.get("raw_arguments"), f"{where}.raw_arguments")
    if isinstance(arguments, str):  # the inference input's form: arguments as a JSON string
        raw_arguments, arguments = arguments, None
    if arguments is not None and not isinstance(arguments, dict):
        raise InvalidRequest.at(f"{where}.arguments", f"expected an object, got {_type_name(arguments)}")
    if arguments is None and raw_arguments is not None:
        try:
            decoded = orjson.loads(raw_arguments)
        except orjson.JSONDecodeError:
            decoded = None
        arguments = decoded if isinstance(decoded, dict) else None
    if raw_arguments is None:
        raw_arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {
        "type": "tool_call",
        "id": _str(block.get("id"), f"{where}.id") or "",
        "name": name or raw_name,
        "arguments": arguments,
        "raw_name": raw_name,
        "raw_arguments": raw_arguments,
    }


def parse_json_output(value: Any, path: str) -> dict[str, Any] | None:
    """`{"raw": "..."}` (TensorZero keeps only raw: a datapoint may hold invalid JSON on purpose); null: none."""
    if value is None:
        return None
    node = _object(value, path, frozenset({"raw"}))
    return {"raw": _str(node.get("raw"), f"{path}.raw")}


_TOOL_KEYS = ("allowed_tools", "additional_tools", "tool_choice", "parallel_tool_calls", "provider_tools")


def _tool_value(key: str, value: Any, path: str) -> Any:
    if value is None:
        return [] if key == "provider_tools" else None
    if key == "allowed_tools":
        names = _list(value, path)
        return [_str(n, f"{path}[{i}]", required=True) for i, n in enumerate(names)]
    if key == "additional_tools":
        tools = [parse_tool(t, f"{path}[{i}]") for i, t in enumerate(_list(value, path))]
        return [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
                "strict": t.strict,
            }
            for t in tools
        ]
    if key == "tool_choice":
        return parse_tool_choice(value, path)
    if key == "parallel_tool_calls":
        if not isinstance(value, bool):
            raise InvalidRequest.at(path, f"expected a boolean, got {_type_name(value)}")
        return value
    return _list(value, path)  # provider_tools: kept as given, not interpreted


# -- create ------------------------------------------------------------------------------------------------

_CHAT_CREATE = frozenset({"type", "function_name", "episode_id", "input", "output", "tags", "name", *_TOOL_KEYS})
_JSON_CREATE = frozenset({"type", "function_name", "episode_id", "input", "output", "output_schema", "tags", "name"})


def parse_create(body: Any) -> list[NewDatapoint]:
    """`{"datapoints": [{"type": "chat" | "json", ...}]}`."""
    node = _object(body, "body", frozenset({"datapoints"}))
    items = _list(node.get("datapoints"), "datapoints")
    if not items:
        raise InvalidRequest.at("datapoints", "at least one datapoint is required")
    return [_new_datapoint(item, f"datapoints[{i}]") for i, item in enumerate(items)]


def _kind(item: Any, path: str) -> DatapointType:
    if not isinstance(item, dict):
        raise InvalidRequest.at(path, f"expected an object, got {_type_name(item)}")
    kind = item.get("type")
    if kind not in ("chat", "json"):
        raise InvalidRequest.at(f"{path}.type", f"expected 'chat' or 'json', got {kind!r}")
    return kind  # type: ignore[no-any-return]


def _new_datapoint(item: Any, path: str) -> NewDatapoint:
    kind = _kind(item, path)
    node = _object(item, path, _CHAT_CREATE if kind == "chat" else _JSON_CREATE)
    function_name = _str(node.get("function_name"), f"{path}.function_name", required=True)
    assert function_name is not None
    if node.get("input") is None:
        raise InvalidRequest.at(f"{path}.input", "missing required field")
    stored_input = input_to_json(parse_input(node["input"], f"{path}.input"))
    episode_id = parse_uuid(node["episode_id"], f"{path}.episode_id") if node.get("episode_id") is not None else None
    tool_params = None
    output: Any
    if kind == "chat":
        output = parse_chat_output(node["output"], f"{path}.output") if node.get("output") is not None else None
        if any(node.get(k) is not None for k in _TOOL_KEYS):
            tool_params = {k: _tool_value(k, node.get(k), f"{path}.{k}") for k in _TOOL_KEYS}
    else:
        output = parse_json_output(node.get("output"), f"{path}.output")
    schema = node.get("output_schema")
    if schema is not None and not isinstance(schema, dict):
        raise InvalidRequest.at(f"{path}.output_schema", f"expected a JSON Schema object, got {_type_name(schema)}")
    return NewDatapoint(
        type=kind,
        function_name=function_name,
        input=stored_input,
        output=output,
        tool_params=tool_params,
        output_schema=schema,
        tags=_tags(node.get("tags"), f"{path}.tags"),
        name=_str(node.get("name"), f"{path}.name"),
        episode_id=episode_id,
    )


# -- update ------------------------------------------------------------------------------------------------

_CHAT_UPDATE = frozenset({"type", "id", "input", "output", "tags", "name", "metadata", "tool_params", *_TOOL_KEYS})
_JSON_UPDATE = frozenset({"type", "id", "input", "output", "output_schema", "tags", "name", "metadata"})


def parse_update(body: Any) -> list[DatapointUpdate]:
    """`{"datapoints": [{"type", "id", ...}]}`: a field left out keeps its value; `output` and `name` null clear
    them; `input` and `tags` null keep them (TensorZero's rules)."""
    node = _object(body, "body", frozenset({"datapoints"}))
    items = _list(node.get("datapoints"), "datapoints")
    updates = [_update(item, f"datapoints[{i}]") for i, item in enumerate(items)]
    seen: set[UUID] = set()
    for i, update in enumerate(updates):
        if update.id in seen:
            raise InvalidRequest.at(f"datapoints[{i}].id", f"datapoint {update.id} appears twice")
        seen.add(update.id)
    return updates


def _update(item: Any, path: str) -> DatapointUpdate:
    kind = _kind(item, path)
    node = _object(item, path, _CHAT_UPDATE if kind == "chat" else _JSON_UPDATE)
    if node.get("id") is None:
        raise InvalidRequest.at(f"{path}.id", "missing required field")
    datapoint_id = parse_uuid(node["id"], f"{path}.id")
    new_input = input_to_json(parse_input(node["input"], f"{path}.input")) if node.get("input") is not None else UNSET
    output: Any = UNSET
    if "output" in node:
        raw = node["output"]
        if kind == "chat":
            output = None if raw is None else parse_chat_output(raw, f"{path}.output")
        else:
            output = parse_json_output(raw, f"{path}.output")
    name: Any = UNSET
    metadata = node.get("metadata")
    if metadata is not None:  # TensorZero's deprecated nesting: {"metadata": {"name": ...}}
        nested = _object(metadata, f"{path}.metadata", frozenset({"name"}))
        if "name" in nested:
            name = _str(nested["name"], f"{path}.metadata.name")
    if "name" in node:
        name = _str(node["name"], f"{path}.name")
    tool_changes: dict[str, Any] = {}
    if kind == "chat":
        nested_tools = node.get("tool_params")
        source = (
            _object(nested_tools, f"{path}.tool_params", frozenset(_TOOL_KEYS)) if nested_tools is not None else node
        )
        prefix = f"{path}.tool_params" if nested_tools is not None else path
        for key in _TOOL_KEYS:
            if key in source and (
                source[key] is not None or key in ("allowed_tools", "tool_choice", "parallel_tool_calls")
            ):
                tool_changes[key] = _tool_value(key, source[key], f"{prefix}.{key}")
    schema: Any = UNSET
    if node.get("output_schema") is not None:
        schema = node["output_schema"]
        if not isinstance(schema, dict):
            raise InvalidRequest.at(f"{path}.output_schema", f"expected a JSON Schema object, got {_type_name(schema)}")
    return DatapointUpdate(
        type=kind,
        id=datapoint_id,
        input=new_input,
        output=output,
        tool_changes=tool_changes,
        output_schema=schema,
        tags=_tags(node["tags"], f"{path}.tags") if node.get("tags") is not None else UNSET,
        name=name,
    )


def parse_rename(body: Any) -> list[tuple[UUID, str | None]]:
    """`{"datapoints": [{"id", "name"}]}` (PATCH .../datapoints/metadata)."""
    node = _object(body, "body", frozenset({"datapoints"}))
    items = _list(node.get("datapoints"), "datapoints")
    out = []
    for i, item in enumerate(items):
        path = f"datapoints[{i}]"
        entry = _object(item, path, frozenset({"id", "name"}))
        if entry.get("id") is None:
            raise InvalidRequest.at(f"{path}.id", "missing required field")
        out.append((parse_uuid(entry["id"], f"{path}.id"), _str(entry.get("name"), f"{path}.name")))
    return out


# -- read, delete ------------------------------------------------------------------------------------------


def parse_ids(body: Any) -> tuple[UUID, ...]:
    """`{"ids": [...]}` (get_datapoints, DELETE .../datapoints)."""
    return _ids(_object(body, "body", frozenset({"ids"})))


_LIST_FIELDS = frozenset(
    {"function_name", "limit", "page_size", "offset", "filter", "order_by", "search_query_experimental"}
)


def _count(node: Mapping[str, Any], key: str, default: int, maximum: int | None = None) -> int:
    value = node.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest.at(key, f"expected a non-negative integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidRequest.at(key, f"must be at most {maximum}, got {value}")
    return value


def parse_list(body: Any) -> ListRequest:
    """list_datapoints: `function_name`, `limit` (or the older `page_size`), `offset`, `filter` (tag, time, and,
    or, not), `order_by` (timestamp)."""
    node = _object(body, "body", _LIST_FIELDS)
    if node.get("search_query_experimental") is not None:
        raise InvalidRequest.at("search_query_experimental", "not supported by LSD")
    limit_key = "limit" if node.get("limit") is not None else "page_size"
    descending = True
    order_by = node.get("order_by")
    if order_by is not None:
        for i, term in enumerate(_list(order_by, "order_by")):
            entry = _object(term, f"order_by[{i}]", frozenset({"by", "direction"}))
            if entry.get("by") != "timestamp":
                raise InvalidRequest.at(f"order_by[{i}].by", f"only 'timestamp' is supported, got {entry.get('by')!r}")
            if entry.get("direction") not in ("ascending", "descending"):
                raise InvalidRequest.at(f"order_by[{i}].direction", "expected 'ascending' or 'descending'")
            if i == 0:
                descending = entry["direction"] == "descending"
    return ListRequest(
        function_name=_str(node.get("function_name"), "function_name"),
        condition=_condition(parse_filter(node["filter"], "filter"), "filter")
        if node.get("filter") is not None
        else None,
        descending=descending,
        limit=_count(node, limit_key, DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT,
        offset=_count(node, "offset", 0, MAX_OFFSET),
    )


def _condition(node: Filter, path: str) -> Filter:
    """A datapoint filter: the tag, time and logical nodes of the inference filter (metrics do not apply)."""
    if isinstance(node, AndFilter | OrFilter):
        for i, child in enumerate(node.children):
            _condition(child, f"{path}.children[{i}]")
    elif isinstance(node, NotFilter):
        _condition(node.child, f"{path}.child")
    elif not isinstance(node, TagFilter | TimeFilter):
        raise InvalidRequest.at(f"{path}.type", "datapoints are filtered by 'tag', 'time', 'and', 'or' and 'not'")
    return node


# -- from inferences ---------------------------------------------------------------------------------------


def parse_from_inferences(body: Any) -> FromInferences:
    """`{"type": "inference_ids", "inference_ids", "output_source"?}` or `{"type": "inference_query", ...a
    list_inferences body}`; `output_source` is inference (default), demonstration or none."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", f"expected an object, got {_type_name(body)}")
    kind = body.get("type")
    given = body.get("output_source") or "inference"
    if given not in ("inference", "demonstration", "none"):
        raise InvalidRequest.at("output_source", f"expected 'inference', 'demonstration' or 'none', got {given!r}")
    source = cast(OutputSource, given)
    if kind == "inference_ids":
        node = _object(body, "body", frozenset({"type", "inference_ids", "output_source"}))
        raw = _list(node.get("inference_ids"), "inference_ids")
        ids = tuple(dict.fromkeys(parse_uuid(v, f"inference_ids[{i}]") for i, v in enumerate(raw)))
        return FromInferences(source, inference_ids=ids)
    if kind == "inference_query":
        query = {k: v for k, v in body.items() if k != "type"}
        query["output_source"] = source
        return FromInferences(source, query=query)
    raise InvalidRequest.at("type", f"expected 'inference_ids' or 'inference_query', got {kind!r}")

"""Parse a request's `input` (system, messages and their content blocks), as `/inference`, datasets and
evaluations take it; every error names its field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from lsd.errors import InvalidRequest
from lsd.types import (
    ContentBlock,
    File,
    Input,
    Message,
    RawText,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    Unknown,
)


def expect(value: Any, kinds: type | tuple[type, ...], path: str, what: str) -> Any:
    """`value` when it is one of `kinds` (a boolean only where bool is named); else a 400 naming `path`."""
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise InvalidRequest.at(path, f"expected {what}, got boolean")
    if not isinstance(value, kinds):
        raise InvalidRequest.at(path, f"expected {what}, got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, for error messages."""
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), "null" if value is None else type(value).__name__)


MODEL_PROVIDER_PREFIX = "tensorzero::model_name::"
MODEL_PROVIDER_SEPARATOR = "::provider_name::"


def model_provider(name: str) -> tuple[str, str] | None:
    """(model, provider) of TensorZero's fully qualified `tensorzero::model_name::M::provider_name::P`; None for
    another string (LSD also takes a bare provider name there)."""
    if not name.startswith(MODEL_PROVIDER_PREFIX) or MODEL_PROVIDER_SEPARATOR not in name:
        return None
    model, _, provider = name[len(MODEL_PROVIDER_PREFIX) :].rpartition(MODEL_PROVIDER_SEPARATOR)
    return (model, provider) if model and provider else None


def parse_input(value: Any, path: str) -> Input:
    expect(value, dict, path, "an object")
    unknown = sorted(set(value) - {"system", "messages"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    system = value.get("system")
    if system is not None:
        expect(system, (str, dict), f"{path}.system", "a string or an object")
    raw_messages = value.get("messages", [])  # absent: none; null is not an array (TensorZero refuses it too)
    expect(raw_messages, list, f"{path}.messages", "an array")
    messages = tuple(parse_message(m, f"{path}.messages[{i}]") for i, m in enumerate(raw_messages))
    return Input(system=system, messages=messages)


def parse_message(value: Any, path: str) -> Message:
    expect(value, dict, path, "an object")
    unknown = sorted(set(value) - {"role", "content"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    role = value.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequest.at(f"{path}.role", f"must be 'user' or 'assistant', got {role!r}")
    content = value.get("content")
    if isinstance(content, str):
        return Message(role=role, content=(Text(content),))
    if isinstance(content, dict):  # arguments for the role's schema'd template
        return Message(role=role, content=(Template(name=role, arguments=content),))
    expect(content, list, f"{path}.content", "a string or an array of content blocks")
    blocks = tuple(parse_block(b, f"{path}.content[{i}]") for i, b in enumerate(content))
    return Message(role=role, content=blocks)


def required_str(block: Mapping[str, Any], key: str, path: str) -> str:
    """`block[key]`, which must be a string; a 400 naming the field when it is missing or not one."""
    if block.get(key) is None:
        raise InvalidRequest.at(f"{path}.{key}", "missing required field")
    return str(expect(block[key], str, f"{path}.{key}", "a string"))


def parse_block(value: Any, path: str) -> ContentBlock:
    expect(value, dict, path, "an object")
    kind = value.get("type")
    if kind == "text":
        if "arguments" in value and "text" not in value:
            arguments = expect(value["arguments"], dict, f"{path}.arguments", "an object")
            return Template(name="", arguments=arguments)
        return Text(required_str(value, "text", path))
    if kind == "raw_text":
        return RawText(required_str(value, "value", path))
    if kind == "template":
        arguments = expect(value.get("arguments"), dict, f"{path}.arguments", "an object")
        return Template(required_str(value, "name", path), arguments)
    if kind == "tool_call":
        arguments = value.get("arguments")
        if isinstance(arguments, dict):
            arguments = orjson.dumps(arguments).decode()
        raw = value.get("raw_arguments") if arguments is None else arguments
        name = value.get("name") or value.get("raw_name")
        expect(name, str, f"{path}.name", "a string")
        expect(raw, str, f"{path}.arguments", "a JSON string or object")
        return ToolCall(id=required_str(value, "id", path), name=name, arguments=raw)
    if kind == "tool_result":
        is_error = value.get("is_error")
        if is_error is not None:
            expect(is_error, bool, f"{path}.is_error", "a boolean")
        return ToolResult(
            required_str(value, "id", path),
            required_str(value, "name", path),
            required_str(value, "result", path),
            is_error=True if is_error else None,
        )
    if kind in ("file", "image"):
        file_type = value.get("file_type")
        url = value.get("url")
        data = value.get("data")
        if file_type == "url" or (file_type is None and url is not None):
            return File(
                mime_type=value.get("mime_type"),
                url=required_str(value, "url", path),
                detail=value.get("detail"),
                filename=value.get("filename"),
            )
        if file_type == "base64" or data is not None:
            return File(
                mime_type=value.get("mime_type"),
                data=required_str(value, "data", path),
                detail=value.get("detail"),
                filename=value.get("filename"),
            )
        raise InvalidRequest.at(f"{path}.file_type", "must be 'url' or 'base64'")
    if kind == "thought":
        provider_type = value.get("provider_type")
        if provider_type is not None:
            expect(provider_type, str, f"{path}.provider_type", "a string")
        return Thought(text=value.get("text"), signature=value.get("signature"), provider_type=provider_type)
    if kind == "unknown":
        model, provider = value.get("model_name"), value.get("provider_name")
        qualified = value.get("model_provider_name")  # TensorZero's older form of the two
        if isinstance(qualified, str):
            model, provider = model_provider(qualified) or (model, qualified)
        return Unknown(data=value.get("data"), model_name=model, provider_name=provider)
    raise InvalidRequest.at(f"{path}.type", f"unknown content block type {kind!r}")

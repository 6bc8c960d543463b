"""Google's JSON field conventions, for the Gemini route's parsers: keys in lowerCamelCase or snake_case, and
objects read with their path (lsd.api.gemini_request, lsd.api.gemini_tools, lsd.api.gemini_embed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.errors import InvalidRequest


def camel(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object of Google's API with its snake_case keys (`function_declarations`) in lowerCamelCase, as the JSON
    API takes both; `lsd::` keys are left as they are."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if "_" in key and "::" not in key:
            head, *rest = key.split("_")
            key = head + "".join(word[:1].upper() + word[1:] for word in rest)
        out[key] = value
    return out


def object_at(value: Any, path: str) -> dict[str, Any]:
    """`value` as an object ({} for None); a 400 naming `path` for anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, "expected an object")
    return value


def name_at(obj: Mapping[str, Any], path: str) -> str:
    """`obj`'s `name` (a function's, a declaration's): a non-empty string, else a 400 naming `path.name`."""
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest.at(f"{path}.name", "required: a string")
    return name

"""Gemini's tools, tool config and schemas on the Gemini route: functionDeclarations as LSD's tools, Google's own
tools (googleSearch, ...) for Gemini-bodied providers, toolConfig as the tool choice, and Gemini's OpenAPI-subset
schemas (`{"type": "OBJECT"}`) as JSON Schema (the request side: lsd.api.gemini_request)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.api.gemini_fields import camel, name_at, object_at
from lsd.api.inbound import strings
from lsd.config.inbound import InboundTarget
from lsd.errors import InvalidRequest
from lsd.inference.request import check_schema
from lsd.types import Json
from lsd.types import ToolSpec as Tool

# OpenAPI-subset types of a `parameters`/`responseSchema` Schema, as JSON Schema names them.
_SCHEMA_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}


def output_schema(config: Mapping[str, Any]) -> dict[str, Json] | None:
    """The answer's JSON schema: `responseJsonSchema` as is, or `responseSchema` (Gemini's OpenAPI subset) as JSON
    Schema."""
    for key in ("responseJsonSchema", "responseSchema"):
        value = config.get(key)
        if value is not None:
            path = f"generationConfig.{key}"
            schema = json_schema(object_at(value, path))  # Gemini CLI's router sends upper-case types in either
            check_schema(schema, path)
            return schema
    return None


def json_schema(schema: Mapping[str, Any]) -> dict[str, Json]:
    """A Schema of Gemini's OpenAPI subset (`{"type": "OBJECT", "nullable": true, ...}`) as JSON Schema: types in
    lower case, `nullable` as a "null" type, `propertyOrdering` as the order of `properties` (Gemini answers in
    a JSON schema's key order); the rest (properties, items, enum, anyOf, ...) converted the same way inside."""
    out: dict[str, Json] = {}
    schema = camel(schema)
    ordering = schema.get("propertyOrdering")
    properties = schema.get("properties")
    if isinstance(ordering, list) and isinstance(properties, dict):  # the order Gemini would answer in, as key order
        first = {k: properties[k] for k in ordering if isinstance(k, str) and k in properties}
        schema = {**schema, "properties": {**first, **properties}}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = _SCHEMA_TYPES.get(value.upper(), value.lower())
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {k: json_schema(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = json_schema(value)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            out[key] = [json_schema(v) if isinstance(v, dict) else v for v in value]
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def parse_tools(value: Any, target: InboundTarget, fields: dict[str, Json]) -> tuple[tuple[Tool, ...], str | None]:
    """functionDeclarations as tools; Google's own tools (googleSearch, codeExecution, urlContext, ...) for a
    model's Gemini-bodied providers only, the client's `tools` as given (their field is returned: a model that
    routes to no Gemini-bodied provider cannot serve them)."""
    if value is None:
        return (), None
    if not isinstance(value, list):
        raise InvalidRequest.at("tools", "expected an array")
    tools: list[Tool] = []
    google_tool = None
    for i, raw in enumerate(value):
        path = f"tools[{i}]"
        tool = camel(object_at(raw, path))
        for key, item in tool.items():
            if key != "functionDeclarations":
                if item is not None and google_tool is None:
                    google_tool = f"{path}.{key}"
                continue
            if not isinstance(item, list):
                raise InvalidRequest.at(f"{path}.functionDeclarations", "expected an array")
            for j, declaration in enumerate(item):
                tools.append(_declaration(declaration, f"{path}.functionDeclarations[{j}]"))
    if google_tool is not None:
        if target.kind != "model_name":
            raise InvalidRequest.at(google_tool, "Google's own tools need a model (with a Gemini provider)")
        fields["/tools"] = value
    return tuple(tools), google_tool


def _declaration(value: Any, path: str) -> Tool:
    declaration = camel(object_at(value, path))
    name = name_at(declaration, path)
    description = declaration.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest.at(f"{path}.description", "expected a string")
    if declaration.get("parametersJsonSchema") is not None:
        parameters = json_schema(object_at(declaration["parametersJsonSchema"], f"{path}.parametersJsonSchema"))
    elif declaration.get("parameters") is not None:
        parameters = json_schema(object_at(declaration["parameters"], f"{path}.parameters"))
    else:
        parameters = {"type": "object", "properties": {}}
    return Tool(name, description or "", parameters)


def parse_tool_choice(value: Any) -> str | dict[str, str] | None:
    """toolConfig.functionCallingConfig: AUTO (and VALIDATED) as auto, NONE as none, ANY as required — or, with one
    allowed function name, that function."""
    if value is None:
        return None
    config = camel(object_at(value, "toolConfig"))
    calling = config.get("functionCallingConfig")
    if calling is None:
        return None
    calling = camel(object_at(calling, "toolConfig.functionCallingConfig"))
    mode = calling.get("mode", "AUTO")
    names = strings(calling.get("allowedFunctionNames"), "toolConfig.functionCallingConfig.allowedFunctionNames")
    if not isinstance(mode, str) or mode.upper() not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
        raise InvalidRequest.at("toolConfig.functionCallingConfig.mode", "must be AUTO, ANY, NONE or VALIDATED")
    mode = mode.upper()
    if mode == "NONE":
        return "none"
    if mode == "ANY":
        return {"specific": names[0]} if names and len(names) == 1 else "required"
    return "auto"

"""The Responses API's `tools` and `tool_choice`, as the engine's tool specs.

Function tools are served as they are, and so are those grouped in a `namespace`, named `<namespace>__<name>` for
the provider (two namespaces, or a namespace and the request's own functions, may use one name: Codex's MCP servers
do) and answered with their own name and the namespace. A `custom` (freeform) tool, which the model calls with free
text (Codex's `apply_patch`), is served as a function taking one string, `input`, its grammar or format in the
description; its calls are answered as `custom_tool_call` items carrying that text. A tool search the client runs
(`execution: "client"`, Codex's way to offer its deferred tools) is served as the function `tool_search`, answered
as `tool_search_call` items; the tools a `tool_search_output` in the input brought are offered too. Web search and a
tool search OpenAI would run only widen what the model may do: they are left out of the provider's request and
named in the inference's DROPPED_TOOLS_TAG. Another tool OpenAI runs on its side (file search, code interpreter,
...) is a 400 naming `tools[i].type`, as no LSD provider runs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from lsd.errors import InvalidRequest
from lsd.immutable import immutable
from lsd.inference.request import parse_tool
from lsd.types import Json, ToolSpec

DROPPED_TOOL_PREFIXES = ("web_search", "tool_search")  # tool search run by OpenAI; the client-run one is served
DROPPED_TOOLS_TAG = "lsd::dropped_tools"
CUSTOM_INPUT = "input"  # a custom tool's one parameter, as served to the provider
TOOL_SEARCH = "tool_search"  # the function standing in for a client-run tool search
NAMESPACE_SEPARATOR = "__"  # a namespaced function's name for the provider: <namespace>__<name>
MAX_TOOL_NAME = 64  # OpenAI's (and Anthropic's) limit on a function's name
_SEARCH_PARAMETERS: Mapping[str, Json] = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"],
}


@immutable
class OfferedTools:
    """What a request's `tools` offer: as echoed, as the engine's specs, each namespaced function's namespace and own
    name, the custom tools' names, the tool types left out, and whether a client-run tool search is among them."""

    echo: tuple[Mapping[str, Json], ...] = ()
    specs: tuple[ToolSpec, ...] = ()
    namespaces: Mapping[str, tuple[str, str]] | None = None  # qualified name: (namespace, the function's own name)
    custom: frozenset[str] = frozenset()
    dropped: tuple[str, ...] = ()
    tool_search: bool = False  # a client-run tool search is offered (served as the function TOOL_SEARCH)

    def joined(self, found: OfferedTools) -> OfferedTools:
        """These tools and those a tool search found earlier in the conversation (not echoed; ours win a name)."""
        names = {spec.name for spec in self.specs}
        extra = tuple(spec for spec in found.specs if spec.name not in names)
        kept = {spec.name for spec in extra}
        namespaces = {**{n: v for n, v in (found.namespaces or {}).items() if n in kept}, **(self.namespaces or {})}
        return OfferedTools(
            self.echo,
            self.specs + extra,
            namespaces or None,
            self.custom | (found.custom & kept),
            self.dropped,
            self.tool_search,
        )


def parse_tools(raw: Any) -> OfferedTools:
    """A request's `tools` (see the module's docstring); a 400 naming `tools[i]...` for one LSD cannot serve."""
    if raw is None:
        return OfferedTools()
    if not isinstance(raw, list):
        raise InvalidRequest.at("tools", "expected an array")
    specs: list[ToolSpec] = []
    namespaces: dict[str, tuple[str, str]] = {}
    custom: set[str] = set()
    dropped: list[str] = []
    searched = False
    for i, tool in enumerate(raw):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest.at(path, "expected an object")
        kind = tool.get("type")
        if kind == TOOL_SEARCH and tool.get("execution") == "client":
            specs.append(_tool_search(tool, path))
            searched = True
        elif isinstance(kind, str) and kind.startswith(DROPPED_TOOL_PREFIXES):
            dropped.append(kind)
        elif kind == "function":
            specs.append(_function_tool(tool, path))
        elif kind == "custom":
            spec = _custom_tool(tool, path)
            custom.add(spec.name)
            specs.append(spec)
        elif kind == "namespace":
            for own, spec in _namespace(tool, path):
                namespaces[spec.name] = (str(tool["name"]), own)
                specs.append(spec)
        else:
            raise InvalidRequest.at(
                f"{path}.type",
                f"tool type {kind!r} is not supported by LSD: function, custom, namespace and client-run tool_search "
                "tools are served",
            )
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InvalidRequest.at("tools", f"two tools are named {spec.name!r}")
        seen.add(spec.name)
    return OfferedTools(tuple(raw), tuple(specs), namespaces, frozenset(custom), tuple(dropped), searched)


def parse_found(raw: list[Any]) -> OfferedTools:
    """The tools earlier tool searches found (tool_search_output items), each parsed as a request's tool; one LSD
    cannot serve is left out (the client offered it, not this request: refusing it would refuse every later turn)."""
    found = OfferedTools()
    for tool in raw:
        try:
            found = found.joined(parse_tools([tool]))
        except InvalidRequest:
            continue
    return OfferedTools(specs=found.specs, namespaces=found.namespaces, custom=found.custom)


def parse_tool_choice(raw: Any, offered: OfferedTools) -> tuple[str | dict[str, str] | None, Json]:
    """`tool_choice`: (the engine's, as echoed)."""
    if raw is None:
        return None, "auto"
    if raw == "required" and offered.dropped and not offered.specs:
        raise InvalidRequest.at(
            "tool_choice", f"required, but the only tools offered ({', '.join(offered.dropped)}) are left out by LSD"
        )
    if raw in ("none", "auto", "required"):
        return raw, raw
    if isinstance(raw, dict) and raw.get("type") in ("function", "custom") and isinstance(raw.get("name"), str):
        return {"specific": _provider_name(raw["name"], raw.get("namespace"), offered)}, raw
    raise InvalidRequest.at("tool_choice", "must be none, auto, required or {type: function | custom, name}")


def _provider_name(name: str, namespace: Any, offered: OfferedTools) -> str:
    """The name the provider knows a chosen tool by: a namespaced function's qualified name (by its namespace, or by
    its own name when one namespace has it), else `name`."""
    if isinstance(namespace, str) and namespace:
        return qualified(namespace, name)
    if any(spec.name == name for spec in offered.specs):
        return name
    matches = [q for q, (_, own) in (offered.namespaces or {}).items() if own == name]
    return matches[0] if len(matches) == 1 else name


def custom_input(arguments: str) -> str:
    """The free text of a custom tool's call, from the arguments the provider gave the function standing in for it
    (`{"input": ...}`); the arguments as they are when they hold no such string."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    value = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else arguments


def custom_arguments(text: str) -> str:
    """A custom tool call's free text as the arguments of the function standing in for it."""
    return orjson.dumps({CUSTOM_INPUT: text}).decode()


def _function_tool(tool: Mapping[str, Any], path: str) -> ToolSpec:
    parameters = tool.get("parameters")
    function = {
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": {"type": "object", "properties": {}} if parameters is None else parameters,
        "strict": tool.get("strict"),
    }
    return parse_tool({k: v for k, v in function.items() if v is not None}, path)


def _custom_tool(tool: Mapping[str, Any], path: str) -> ToolSpec:
    """A freeform tool as a function of one string; a grammar `format` goes into the description for the model."""
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest.at(f"{path}.description", "expected a string")
    text = description or ""
    text += f"\n\n(This tool is called as a function: give its whole input as the string `{CUSTOM_INPUT}`.)"
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax") if isinstance(fmt.get("syntax"), str) else "the"
        text += f"\n\nThe input must follow this {syntax} grammar:\n{fmt['definition']}"
    parameters = {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's input, as free text."}},
        "required": [CUSTOM_INPUT],
    }
    return parse_tool({"name": tool.get("name"), "description": text.strip(), "parameters": parameters}, path)


def _tool_search(tool: Mapping[str, Any], path: str) -> ToolSpec:
    """A client-run tool search as a function: the model calls it, the client searches its deferred tools and
    answers with their definitions (a tool_search_output item), which the next requests offer."""
    description = tool.get("description")
    parameters = tool.get("parameters")
    return parse_tool(
        {
            "name": TOOL_SEARCH,
            "description": description if isinstance(description, str) else "Search for more tools to use.",
            "parameters": parameters if isinstance(parameters, dict) else _SEARCH_PARAMETERS,
        },
        path,
    )


def search_arguments(arguments: str) -> dict[str, Json]:
    """A tool search call's arguments as the object a tool_search_call item carries ({} when not a JSON object)."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def qualified(namespace: str, name: str) -> str:
    """A namespaced function's name as the provider sees it: `<namespace>__<name>`, cut to MAX_TOOL_NAME characters
    (OpenAI's limit for a function name) with a hash of the whole when longer, so it stays unique."""
    whole = f"{namespace}{NAMESPACE_SEPARATOR}{name}"
    if len(whole) <= MAX_TOOL_NAME:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
    return f"{whole[: MAX_TOOL_NAME - 9]}_{digest}"


def _namespace(tool: Mapping[str, Any], path: str) -> list[tuple[str, ToolSpec]]:
    namespace, grouped = tool.get("name"), tool.get("tools")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequest.at(f"{path}.name", "expected a non-empty string")
    if not isinstance(grouped, list):
        raise InvalidRequest.at(f"{path}.tools", "expected an array of function tools")
    about = tool.get("description")
    specs = []
    for j, inner in enumerate(grouped):
        ipath = f"{path}.tools[{j}]"
        if not isinstance(inner, dict) or inner.get("type") != "function":
            raise InvalidRequest.at(f"{ipath}.type", "a namespace's tools must be function tools")
        spec = _function_tool(inner, ipath)
        name = spec.name
        description = f"({namespace}: {about})\n{spec.description}" if isinstance(about, str) and about else None
        spec = replace(spec, name=qualified(namespace, name), description=(description or spec.description).strip())
        specs.append((name, spec))
    return specs

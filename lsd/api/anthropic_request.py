"""Anthropic's Messages API request, parsed into the engine's InferenceRequest (its answers: lsd.api.anthropic_wire).

`model` names an LSD function or model: `lsd::function_name::F`, `lsd::model_name::M` (or `tensorzero::`), a name
`[inbound.anthropic] models` maps, or a configured model's own name. Anthropic-only request fields with no place in
the engine's request (`thinking`, `top_k`, the `anthropic-beta` header, and for a model the `cache_control` marks on
system blocks and tools) travel as extra_body/extra_headers entries narrowed to the providers that speak Anthropic's
body, so other providers never see them. Every error names its field (`messages[0].content[1].source.type`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import orjson

from lsd.api.inbound import (
    aliased_target,
    boolean,
    extension,
    is_int,
    number,
    patches,
    raw_extension,
    required_str,
    resolve_target,
    string,
    string_map,
    strings,
    unknown_keys,
)
from lsd.config.inbound import MODEL_ALIAS_TAG, PREFIXES, InboundTarget
from lsd.config.model import Config
from lsd.errors import InvalidRequest
from lsd.immutable import immutable
from lsd.inference.request import (
    InferenceRequest,
    parse_body_patch,
    parse_cache_options,
    parse_header_patch,
    parse_uuid,
)
from lsd.providers.anthropic.wire import build_messages
from lsd.types import (
    ContentBlock,
    File,
    InferenceParams,
    Input,
    Json,
    Message,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    ToolSpec,
)

# Provider types whose request body is Anthropic's Messages body: the Anthropic-only fields go to these alone.
ANTHROPIC_BODY_TYPES = frozenset({"anthropic", "gcp_vertex_anthropic"})
# Anthropic's own fields LSD does not model: passed on as given to Anthropic-bodied providers, left out for the others
# (Claude Code sends `context_management` and `output_config` with every request; LiteLLM sends structured output as
# the beta's `output_format`).
PASSED_ON_FIELDS = frozenset(
    {"context_management", "output_config", "output_format", "container", "inference_geo", "speed", "cache_control"}
)
# A tool's own Anthropic-only keys, passed on with it (the AI SDK, and so opencode, sets eager_input_streaming on
# every tool: Anthropic's fine-grained tool input streaming).
TOOL_FIELDS = ("cache_control", "eager_input_streaming")
_FIELDS = frozenset(
    {
        *("model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k", "stop_sequences"),
        *("stream", "tools", "tool_choice", "metadata", "thinking", "service_tier"),
        *PASSED_ON_FIELDS,
    }
)


@immutable
class MessagesRequest:
    """A parsed Messages request: the engine's request (before the provider-narrowed extras are added), the
    `model` as the client sent it (echoed in answers), what it names, and the Anthropic-only body fields."""

    request: InferenceRequest
    model: str
    target: InboundTarget
    anthropic_fields: Mapping[str, Json]  # JSON pointer -> value, for Anthropic-bodied providers (thinking, top_k)
    # A model's structured output (`output_config.format`, `output_format`) as Chat Completions' `response_format`,
    # for the providers with that body (a `claude-*` name mapped to an OpenAI model, a fallback to one)
    response_format: Mapping[str, Json] | None = None


def resolve_model(model: Any, config: Config) -> InboundTarget:
    """What `model` names on the Messages API (lsd.api.inbound.resolve_target with `[inbound.anthropic] models`)."""
    return resolve_target(model, config, config.inbound.anthropic.models)


def parse_messages_request(body: Any, config: Config) -> MessagesRequest:
    """The engine request for a Messages API body; InvalidRequest (400) naming the field for a body Anthropic
    would refuse or LSD cannot carry."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    unknown_keys(body, _FIELDS)
    target = resolve_model(body.get("model"), config)
    aliased = (
        not body["model"].startswith(PREFIXES)
        and aliased_target(body["model"], config, config.inbound.anthropic.models) is not None
    )
    max_tokens = body.get("max_tokens")
    if not is_int(max_tokens) or max_tokens < 1:
        raise InvalidRequest.at("max_tokens", "required: a positive integer")
    params = InferenceParams(
        max_tokens=max_tokens,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        stop_sequences=strings(body.get("stop_sequences"), "stop_sequences"),
    )
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    tags = dict(extension(body, "tags", string_map) or {})
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest.at("metadata", "expected an object")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise InvalidRequest.at("metadata.user_id", "expected a string")
        if user:
            tags.setdefault("user_id", user)
    if aliased:
        tags[MODEL_ALIAS_TAG] = body["model"]
    episode = extension(body, "episode_id", parse_uuid)
    dryrun = bool(extension(body, "dryrun", boolean))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest.at("stream", "expected a boolean")
    variant = extension(body, "variant_name", string)
    request = InferenceRequest(
        input=Input(system=_system(body.get("system")), messages=parse_messages(body.get("messages"))),
        function_name=target.name if target.kind == "function_name" else None,
        model_name=target.name if target.kind == "model_name" else None,
        episode_id=episode,
        variant_name=variant if target.kind == "function_name" else None,
        stream=bool(stream),
        dryrun=dryrun,
        params=params,
        tags=tags,
        credentials=extension(body, "credentials", string_map) or {},
        extra_body=tuple(extension(body, "extra_body", patches(parse_body_patch)) or ()),
        extra_headers=tuple(extension(body, "extra_headers", patches(parse_header_patch)) or ()),
        additional_tools=_tools(body.get("tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        cache=parse_cache_options(raw_extension(body, "cache_options"), "lsd::cache_options", dryrun),
    )
    fields = _anthropic_fields(body)
    response_format = None
    if target.kind == "model_name":  # no templates, no config tools: the provider's system and tools are the client's
        fields.update(_cache_marks(body, request.input.messages))
        response_format = _response_format(body)
    return MessagesRequest(request, body["model"], target, fields, response_format)


def _response_format(body: Mapping[str, Any]) -> dict[str, Json] | None:
    """The JSON schema a request's structured output asks for (`output_config.format`, or the beta's
    `output_format`), as Chat Completions' `response_format` (not strict: the schema guides, as Anthropic's does
    without its own strict rules being OpenAI's)."""
    config = body.get("output_config")
    for fmt in (config.get("format") if isinstance(config, dict) else None, body.get("output_format")):
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
            schema = {"name": "response", "strict": False, "schema": fmt["schema"]}
            return {"type": "json_schema", "json_schema": schema}
    return None


def parse_messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest.at("messages", "required: a non-empty array")
    tool_names: dict[str, str] = {}
    out: list[Message] = []
    for i, message in enumerate(value):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest.at(path, "expected an object")
        role = message.get("role")
        if role == "system":  # a mid-conversation system message (Claude Code's newer models send one)
            out.append(Message("user", (Text(_system_reminder(message.get("content"), path)),)))
            continue
        if role not in ("user", "assistant"):
            raise InvalidRequest.at(f"{path}.role", f"must be 'user', 'assistant' or 'system', got {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            out.append(Message(role, (Text(content),)))
            continue
        if not isinstance(content, list):
            raise InvalidRequest.at(f"{path}.content", "expected a string or an array of content blocks")
        if not content and not (role == "assistant" and i == len(value) - 1):  # as Anthropic refuses it
            raise InvalidRequest.at(f"{path}.content", "an empty array: a message needs at least one content block")
        blocks: list[ContentBlock] = []
        for j, block in enumerate(content):
            blocks.extend(_block(block, f"{path}.content[{j}]", tool_names))
        out.append(Message(role, tuple(blocks)))
    return tuple(out)


def _system_reminder(content: Any, path: str) -> str:
    """A mid-conversation system message's text, as a user-turn `<system-reminder>` (what Claude Code itself sends
    to an API that takes no such message): LSD's messages are user and assistant turns."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        text = "\n\n".join(required_str(b, "text", f"{path}.content[{j}]") for j, b in enumerate(content))
    else:
        raise InvalidRequest.at(f"{path}.content", "a system message holds a string or text blocks")
    return f"<system-reminder>\n{text}\n</system-reminder>"


def _block(block: Any, path: str, tool_names: dict[str, str]) -> list[ContentBlock]:
    if not isinstance(block, dict):
        raise InvalidRequest.at(path, "expected an object")
    kind = block.get("type")
    if kind == "text":
        return [Text(required_str(block, "text", path))]
    if kind in ("image", "document"):
        return [_source(block, kind, path)]
    if kind == "tool_use":
        call_id, name = required_str(block, "id", path), required_str(block, "name", path)
        arguments = block.get("input", {})
        if not isinstance(arguments, dict):
            raise InvalidRequest.at(f"{path}.input", "expected an object")
        tool_names[call_id] = name
        return [ToolCall(call_id, name, orjson.dumps(arguments).decode())]
    if kind == "tool_result":
        return _tool_result(block, path, tool_names)
    if kind == "thinking":
        return [Thought(required_str(block, "thinking", path), required_str(block, "signature", path))]
    if kind == "redacted_thinking":
        return [Thought(None, required_str(block, "data", path))]
    raise InvalidRequest.at(
        f"{path}.type",
        f"unsupported content block type {kind!r}: expected text, image, document, tool_use, tool_result, "
        "thinking or redacted_thinking",
    )


def _source(block: Mapping[str, Any], kind: str, path: str) -> ContentBlock:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest.at(f"{path}.source", "expected an object")
    spath = f"{path}.source"
    source_type = source.get("type")
    if source_type == "base64":
        return File(mime_type=required_str(source, "media_type", spath), data=required_str(source, "data", spath))
    if source_type == "url":
        mime = "application/pdf" if kind == "document" else None
        return File(mime_type=mime, url=required_str(source, "url", spath))
    if source_type == "text" and kind == "document":
        return Text(required_str(source, "data", spath))
    raise InvalidRequest.at(f"{spath}.type", f"unsupported source type {source_type!r}: expected base64 or url")


def _tool_result(block: Mapping[str, Any], path: str, tool_names: Mapping[str, str]) -> list[ContentBlock]:
    """A tool_result: its text as the ToolResult; images it holds follow it as their own blocks."""
    call_id = required_str(block, "tool_use_id", path)
    content = block.get("content")
    files: list[ContentBlock] = []
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            ppath = f"{path}.content[{k}]"
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(required_str(part, "text", ppath))
            elif isinstance(part, dict) and part.get("type") in ("image", "document"):
                files.append(_source(part, str(part["type"]), ppath))
            else:
                raise InvalidRequest.at(f"{ppath}.type", "expected a text, image or document block")
        text = "\n".join(parts)
    else:
        raise InvalidRequest.at(f"{path}.content", "expected a string or an array of content blocks")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise InvalidRequest.at(f"{path}.is_error", "expected a boolean")
    return [ToolResult(call_id, tool_names.get(call_id, ""), text, is_error=True if is_error else None), *files]


def _system(value: Any) -> str | None:
    """`system` as a string, or an array of text blocks (joined by blank lines)."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InvalidRequest.at("system", "expected a string or an array of text blocks")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest.at(f"system[{i}]", "expected a text block {type: text, text}")
        texts.append(required_str(block, "text", f"system[{i}]"))
    return "\n\n".join(texts)


def _tools(value: Any) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest.at("tools", "expected an array")
    tools = []
    for i, tool in enumerate(value):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest.at(path, "expected an object")
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequest.at(f"{path}.type", f"server tools ({tool['type']!r}) are not supported")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest.at(f"{path}.input_schema", "required: a JSON Schema object")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest.at(f"{path}.description", "expected a string")
        tools.append(ToolSpec(required_str(tool, "name", path), description or "", schema))
    return tuple(tools)


def _tool_choice(value: Any) -> tuple[str | dict[str, str] | None, bool | None]:
    """Anthropic's tool_choice as the engine's (choice, parallel_tool_calls)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise InvalidRequest.at("tool_choice", "expected an object {type: auto | any | tool | none}")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise InvalidRequest.at("tool_choice.disable_parallel_tool_use", "expected a boolean")
    parallel = None if disable is None else not disable
    kind = value.get("type")
    if kind == "tool":
        return {"specific": required_str(value, "name", "tool_choice")}, parallel
    choice = {"auto": "auto", "any": "required", "none": "none"}.get(kind) if isinstance(kind, str) else None
    if choice is None:
        raise InvalidRequest.at("tool_choice.type", f"must be auto, any, tool or none, got {kind!r}")
    return choice, parallel


def _anthropic_fields(body: Mapping[str, Any]) -> dict[str, Json]:
    fields: dict[str, Json] = {}
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
            raise InvalidRequest.at("thinking", "expected {type: enabled, budget_tokens} or {type: disabled}")
        budget = thinking.get("budget_tokens")
        if thinking["type"] == "enabled" and (not is_int(budget) or budget < 1):
            raise InvalidRequest.at("thinking.budget_tokens", "required: a positive integer")
        fields["/thinking"] = thinking
    top_k = body.get("top_k")
    if top_k is not None:
        if not is_int(top_k) or top_k < 0:
            raise InvalidRequest.at("top_k", "expected a non-negative integer")
        fields["/top_k"] = top_k
    for name in sorted(PASSED_ON_FIELDS & body.keys()):
        if body[name] is not None:
            fields[f"/{name}"] = body[name]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        # Anthropic's abuse detection reads it: passed on as given (also kept as the inference's `user_id` tag)
        fields["/metadata"] = {"user_id": metadata["user_id"]}
    return fields


def _cache_marks(body: Mapping[str, Any], messages: tuple[Message, ...]) -> dict[str, Json]:
    """The client's prompt-cache breakpoints (`cache_control`) where the provider's body holds the same content: on
    its system blocks (the system then goes as the client's text blocks), on each tool by its index, and one on the
    last message's last block when the client marked a block of its last message (the provider's messages are built
    by the Anthropic wire's own `build_messages`, which merges and reorders blocks, so that is where it lands)."""
    marks: dict[str, Json] = {}
    last = body["messages"][-1].get("content")
    mark = next((b["cache_control"] for b in last if b.get("cache_control")), None) if isinstance(last, list) else None
    if mark is not None:
        with contextlib.suppress(InvalidRequest):  # what the provider cannot take, it refuses itself
            built = build_messages(messages)
            if built and built[-1]["content"]:
                marks[f"/messages/{len(built) - 1}/content/{len(built[-1]['content']) - 1}/cache_control"] = mark
    system = body.get("system")
    if isinstance(system, list) and any("cache_control" in block for block in system):
        keep = ("type", "text", "cache_control")
        marks["/system"] = [{k: block[k] for k in keep if k in block} for block in system]
    for i, tool in enumerate(body.get("tools") or ()):
        for name in TOOL_FIELDS:
            if tool.get(name) is not None:
                marks[f"/tools/{i}/{name}"] = tool[name]
    return marks

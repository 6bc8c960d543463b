"""Anthropic's Messages API as pure functions: request bodies out, message objects in.

Request mapping: the system prompt is the top-level `system` string. Each content block carries its own
role: a ToolCall is always an assistant `tool_use` block (its arguments parsed to an object), a ToolResult
always a user `tool_result` block, a signed Thought an assistant `thinking` block (`redacted_thinking` when
it has a signature but no text; unsigned thoughts are dropped, Anthropic rejects them), a File an `image`
(or, for application/pdf, a `document`) block by base64 data or URL. Consecutive blocks of one role are
merged into one message because Anthropic requires the roles to alternate, and within a user message the
`tool_result` blocks are moved first, as Anthropic requires. Empty text blocks are dropped (Anthropic
rejects them). An Unknown block is passed through verbatim when it names no provider or this one.
Parameters: temperature, top_p, max_tokens and stop_sequences are sent; seed and the presence/frequency
penalties have no Anthropic equivalent and are dropped.

JSON mode: "tool" and "strict" with an output schema add a tool named `respond` whose input_schema is the
output schema and force it with tool_choice; its `tool_use` input comes back as one Text block holding the
JSON (streamed as Text deltas) and the finish reason "tool_call" becomes "stop" (when no other tool was
called). Beside tools of the request's own (and tool_choice other than "none") `respond` is offered, not
forced: the request's tool_choice stands and the system prompt asks for the answer through `respond`, so the
model may call the other tools first, as OpenAI's response_format allows (an agent with tools and a
structured output); so it is while thinking, when Anthropic refuses a forced tool. A request tool named
`respond` would clash. "on" (and "tool"/"strict" without a schema) appends an instruction to answer with JSON
only to the system prompt (quoting the schema when there is one).

Usage: input_tokens counts every prompt token, cache reads and writes included (Anthropic reports those
separately); cache_read_input_tokens and cache_write_input_tokens (Anthropic's cache_creation_input_tokens)
are those parts. The `cost` table prices them at cache_read_per_million / cache_write_per_million when set,
else at input_per_million.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import orjson

from lsd.errors import InvalidRequest
from lsd.providers.base import alternating_turns, mapped_reason, tool_arguments
from lsd.types import (
    ContentBlock,
    File,
    FinishReason,
    Json,
    Message,
    OutputBlock,
    ProviderRequest,
    RawText,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    ToolSpec,
    Unknown,
    Usage,
)

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL_NAME = "respond"
JSON_INSTRUCTION = "Respond with one valid JSON value only: no prose and no code fences."
JSON_TOOL_INSTRUCTION = f"Give your answer by calling the `{JSON_TOOL_NAME}` tool."

_STOP_REASONS: Mapping[str, FinishReason] = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop_sequence",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",  # the answer was cut by the context window, not max_tokens
        "tool_use": "tool_call",
        "refusal": "content_filter",
    }
)


def thinking_max_tokens(budget: int, limit: int) -> int:
    """The output limit to send while thinking: Claude counts its thinking in it and refuses one not above the
    budget, so a limit at or below the budget (the answer's, or the default) gets the budget on top."""
    return budget + limit if limit <= budget else limit


def thinking_budget(request: ProviderRequest) -> int | None:
    """The thinking budget to ask for: the params', unless the assistant turn under way (since the user's last
    message that is not a tool's answer) calls tools without starting with a signed thought. Claude refuses that
    while thinking (the turn must start with its thinking; its later tool calls need none), and a client of another
    API (Chat Completions: the AI SDK, opencode) cannot send the signature back, so that turn is answered without
    thinking rather than refused."""
    budget = request.params.thinking_budget_tokens
    if budget is None:
        return None
    turn: list[Message] = []  # the assistant messages since the user's last message that answers no tool call
    for message in reversed(request.messages):
        if message.role == "assistant":
            turn.append(message)
        elif not any(isinstance(b, ToolResult) for b in message.content):  # (a tool's image rides with its result)
            break
    if not turn or not any(isinstance(b, ToolCall) for m in turn for b in m.content):
        return budget
    first = turn[-1].content
    return budget if first and isinstance(first[0], Thought) and first[0].signature else None


def uses_json_tool(request: ProviderRequest) -> bool:
    """Whether the request's JSON mode is served by the `respond` tool."""
    return request.params.json_mode in ("tool", "strict") and request.output_schema is not None


def json_tool_beside_tools(request: ProviderRequest) -> bool:
    """Whether `respond` is offered beside tools the model may call first (see the module docstring)."""
    return uses_json_tool(request) and bool(request.tools) and request.tool_choice != "none"


def build_body(
    request: ProviderRequest,
    model_name: str,
    stream: bool,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    provider_name: str | None = None,
) -> dict[str, Json]:
    """The Messages API request body for `request`; raises InvalidRequest for content Anthropic cannot take."""
    params = request.params
    body: dict[str, Json] = {
        "model": model_name,
        "max_tokens": params.max_tokens if params.max_tokens is not None else max_tokens,
        "messages": build_messages(request.messages, provider_name=provider_name),
    }
    system = system_text(request)
    if system:
        body["system"] = system
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop_sequences:
        body["stop_sequences"] = list(params.stop_sequences)
    budget = thinking_budget(request)
    if budget is not None:  # extended thinking (a `thinking` in extra_body still wins), within Anthropic's rules
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body["max_tokens"] = thinking_max_tokens(
            budget, params.max_tokens if params.max_tokens is not None else max_tokens
        )
        body.pop("temperature", None)  # refused while thinking (only 1 is taken: its default)
        body.pop("top_p", None)
    tools, tool_choice = _tools(request)
    if tools:
        body["tools"] = tools
        if tool_choice is not None:
            if budget is not None and tool_choice.get("type") in ("any", "tool"):
                # Anthropic refuses a forced tool while thinking: the model is asked (auto), a JSON function's
                # instruction says to answer with `respond`, and an answer in text is read as the JSON.
                tool_choice = {**tool_choice, "type": "auto"}
                tool_choice.pop("name", None)
            body["tool_choice"] = tool_choice
    if stream:
        body["stream"] = True
    return body


def build_messages(messages: Sequence[Message], *, provider_name: str | None = None) -> list[dict[str, Json]]:
    """Anthropic's alternating messages: every block placed by its role, consecutive same-role runs merged."""
    return alternating_turns(
        messages,
        lambda block, role: _block(block, role, provider_name),
        lambda part: part.get("type") == "tool_result",
    )


def _block(block: ContentBlock, role: str, provider_name: str | None) -> tuple[str, dict[str, Json]] | None:
    if isinstance(block, Text | RawText):
        text = block.text if isinstance(block, Text) else block.value
        return (role, {"type": "text", "text": text}) if text else None
    if isinstance(block, ToolCall):
        part: dict[str, Json] = {"type": "tool_use", "id": block.id, "name": block.name}
        part["input"] = tool_arguments(block)
        return "assistant", part
    if isinstance(block, ToolResult):
        result: dict[str, Json] = {"type": "tool_result", "tool_use_id": block.id, "content": block.result}
        if block.is_error:
            result["is_error"] = True
        return "user", result
    if isinstance(block, File):
        return role, _file(block)
    if isinstance(block, Thought):
        if not block.signature:
            return None
        if block.text is None:
            return "assistant", {"type": "redacted_thinking", "data": block.signature}
        return "assistant", {"type": "thinking", "thinking": block.text, "signature": block.signature}
    if isinstance(block, Template):
        raise InvalidRequest(f"template {block.name!r} was not rendered before the provider call", field="messages")
    if isinstance(block.data, dict) and block.provider_name in (None, provider_name):
        return role, dict(block.data)
    return None


def _file(file: File) -> dict[str, Json]:
    mime, data, url = file.mime_type, file.data, file.url
    if url and url.startswith("data:") and data is None:
        header, _, data = url[5:].partition(",")
        mime = mime or header.split(";")[0] or None
        url = None
    kind = "document" if mime == "application/pdf" else "image"
    if kind == "image" and mime is not None and not mime.startswith("image/"):
        raise InvalidRequest(f"Anthropic accepts images and PDFs, not {mime!r} files", field="messages")
    if data is not None:
        if mime is None:
            raise InvalidRequest("an inline file needs a mime_type", field="messages")
        return {"type": kind, "source": {"type": "base64", "media_type": mime, "data": data}}
    if url:
        return {"type": kind, "source": {"type": "url", "url": url}}
    raise InvalidRequest("a file needs a url or data", field="messages")


def system_text(request: ProviderRequest) -> str | None:
    """The system text with JSON mode's instruction (shared by Converse, whose JSON mode is the same)."""
    mode = request.params.json_mode
    if uses_json_tool(request) and (thinking_budget(request) is not None or json_tool_beside_tools(request)):
        instruction = JSON_TOOL_INSTRUCTION  # the `respond` tool is offered, not forced
    elif mode not in ("on", "tool", "strict") or uses_json_tool(request):
        return request.system
    else:
        instruction = JSON_INSTRUCTION
    if request.output_schema is not None:
        schema = orjson.dumps(request.output_schema, option=orjson.OPT_SORT_KEYS).decode()
        instruction += f" The JSON must match this JSON Schema: {schema}"
    return f"{request.system}\n\n{instruction}" if request.system else instruction


def _tool(spec: ToolSpec) -> dict[str, Json]:
    return {"name": spec.name, "description": spec.description, "input_schema": dict(spec.parameters)}


def _tools(request: ProviderRequest) -> tuple[list[dict[str, Json]], dict[str, Json] | None]:
    tools = [_tool(spec) for spec in request.tools]
    if uses_json_tool(request):
        schema = dict(request.output_schema or {})
        tools.append({"name": JSON_TOOL_NAME, "description": "Respond with the answer.", "input_schema": schema})
        if not json_tool_beside_tools(request):
            return tools, {"type": "tool", "name": JSON_TOOL_NAME}
    if not tools:
        return [], None
    choice = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return tools, choice


def _tool_choice(choice: str | Mapping[str, str] | None) -> dict[str, Json] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mapped = {"auto": "auto", "required": "any", "none": "none"}.get(choice)
        if mapped is not None:
            return {"type": mapped}
    elif set(choice) == {"specific"}:
        return {"type": "tool", "name": choice["specific"]}
    raise InvalidRequest(f"unsupported tool_choice {choice!r}", field="tool_choice")


def finish_reason(stop_reason: object, *, json_tool: bool = False) -> FinishReason | None:
    """Anthropic's stop_reason as a FinishReason (None when absent)."""
    if json_tool and stop_reason == "tool_use":
        return "stop"
    return mapped_reason(_STOP_REASONS, stop_reason)


def parse_usage(usage: object, previous: Usage | None = None) -> Usage:
    """Anthropic's usage object; fields it lacks keep their `previous` value (streams report in two steps).
    Anthropic's `input_tokens` leaves the cached tokens out; ours counts them (the cache counts are parts of it)."""
    before = previous or Usage()
    if not isinstance(usage, dict):
        return before
    fresh, written, read = (
        usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    output = usage.get("output_tokens")
    # A cache count this object leaves out (absent or null) keeps its earlier value, and is part of the input either
    # way: `input_tokens` beside it counts only the uncached tokens.
    written = written if isinstance(written, int) else before.cache_write_input_tokens
    read = read if isinstance(read, int) else before.cache_read_input_tokens
    if isinstance(fresh, int):
        inputs: int | None = fresh + (written or 0) + (read or 0)
    else:
        inputs = before.input_tokens
    return Usage(inputs, output if isinstance(output, int) else before.output_tokens, read, written)


def parse_response(
    body: bytes | str | Mapping[str, Json], *, json_tool: bool = False
) -> tuple[tuple[OutputBlock, ...], Usage, FinishReason | None]:
    """A Messages API response's content blocks, usage and finish reason, from its JSON text or the object
    it decodes to; ValueError when malformed."""
    data = orjson.loads(body) if isinstance(body, bytes | str) else body
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ValueError("expected a message object with a `content` list")
    blocks = tuple(_output_block(block, json_tool) for block in data["content"])
    answered = json_tool and not any(isinstance(block, ToolCall) for block in blocks)  # `respond`, no other tool
    return blocks, parse_usage(data.get("usage")), finish_reason(data.get("stop_reason"), json_tool=answered)


def _output_block(block: object, json_tool: bool) -> OutputBlock:
    if not isinstance(block, dict):
        raise ValueError(f"content block is not an object: {block!r}")
    kind = block.get("type")
    if kind == "text":
        return Text(str_field(block, "text"))
    if kind == "tool_use":
        arguments = orjson.dumps(block.get("input") or {}).decode()
        if json_tool and block.get("name") == JSON_TOOL_NAME:
            return Text(arguments)
        return ToolCall(id=str_field(block, "id"), name=str_field(block, "name"), arguments=arguments)
    if kind == "thinking":
        signature = block.get("signature")
        return Thought(text=str_field(block, "thinking"), signature=signature if isinstance(signature, str) else None)
    if kind == "redacted_thinking":
        return Thought(text=None, signature=str_field(block, "data"))
    return Unknown(data=block)


def str_field(obj: Mapping[str, Json], key: str) -> str:
    """`obj[key]`, which must be a string (ValueError otherwise)."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"expected a string at {key!r}, got {value!r}")
    return value

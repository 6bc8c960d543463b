"""The Chat Completions wire format as pure functions: request bodies out, completion objects in."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from lsd.errors import InvalidRequest
from lsd.providers.anthropic.wire import JSON_INSTRUCTION
from lsd.providers.base import malformed, mapped_reason
from lsd.types import (
    CONTROL_PARAMS,
    File,
    FinishReason,
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

# json_mode = "tool" forces a call to this tool; its arguments are the answer.
JSON_TOOL_NAME = "respond"
_FINISH_REASONS: Mapping[str, FinishReason] = MappingProxyType(
    {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_call",
        "function_call": "tool_call",
        "content_filter": "content_filter",
        "model_length": "length",  # Mistral's, when the context is full
    }
)
_TOOL_CHOICES = ("none", "auto", "required")


# ---- request mapping ---------------------------------------------------------------------------------------


def build_body(
    request: ProviderRequest,
    model_name: str,
    stream: bool,
    *,
    max_tokens_field: str = "max_tokens",
    provider_name: str = "",
    controls: tuple[str, ...] = CONTROL_PARAMS,
    reasoning_input: bool = False,
) -> dict[str, Any]:
    """The Chat Completions request body. `controls`: which of `reasoning_effort`, `service_tier` and `verbosity`
    the vendor takes (OpenAI and Azure all three). `Unknown` blocks are passed through verbatim when they name no
    provider or `provider_name`. `reasoning_input`: the vendor takes an assistant message's reasoning back as
    `reasoning_content` (DeepSeek requires it in a tool loop while thinking); else thoughts are left out. Raises
    InvalidRequest for blocks a provider cannot send (unrendered templates, files without data) and for an invalid
    tool_choice."""
    messages = build_messages(request, provider_name, reasoning_input=reasoning_input)
    body: dict[str, Any] = {"model": model_name, "messages": messages}
    params = request.params
    for key, value in (
        ("temperature", params.temperature),
        (max_tokens_field, params.max_tokens),
        ("top_p", params.top_p),
        ("seed", params.seed),
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
    ):
        if value is not None:
            body[key] = value
    if params.stop_sequences:
        body["stop"] = list(params.stop_sequences)
    for key in controls:  # the reasoning and serving controls this vendor takes (the same names as the params)
        value = getattr(params, key)
        if value is not None:
            body[key] = value
    _add_tools(body, request)
    if body.get("response_format") == {"type": "json_object"}:
        _say_json(body["messages"])
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def build_messages(
    request: ProviderRequest, provider_name: str = "", *, reasoning_input: bool = False
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        messages.extend(_convert_message(message, provider_name, reasoning_input))
    return messages


def _convert_message(message: Message, provider_name: str, reasoning_input: bool = False) -> list[dict[str, Any]]:
    """One of our messages as OpenAI messages: its tool results first (each its own "tool" message, which
    must directly follow the assistant's tool_calls), then the message itself when anything is left."""
    converted: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in message.content:
        if isinstance(block, Text):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, RawText):
            parts.append({"type": "text", "text": block.value})
        elif isinstance(block, File):
            parts.append(_file_part(block))
        elif isinstance(block, ToolCall):
            function = {"name": block.name, "arguments": block.arguments}
            tool_calls.append({"id": block.id, "type": "function", "function": function})
        elif isinstance(block, ToolResult):
            converted.append({"role": "tool", "tool_call_id": block.id, "content": block.result})
        elif isinstance(block, Unknown):
            if block.provider_name in (None, provider_name):
                parts.append(block.data)
        elif isinstance(block, Template):
            raise InvalidRequest(f"template {block.name!r} was not rendered", field="messages")
        elif isinstance(block, Thought) and reasoning_input and block.text and not block.signature:
            reasoning.append(block.text)  # unsigned reasoning text, as these vendors answer it
        # Other thoughts are left out: OpenAI's Chat Completions takes no reasoning input (nor another vendor's
        # signed thinking).
    if not parts and not tool_calls:
        return converted
    out: dict[str, Any] = {"role": message.role, "content": _content(parts)}
    if reasoning and message.role == "assistant":
        out["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        out["tool_calls"] = tool_calls
    converted.append(out)
    return converted


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    if not parts:
        return None  # an assistant message with only tool calls
    if len(parts) == 1 and parts[0].get("type") == "text":
        return str(parts[0]["text"])
    return parts


def _file_part(block: File) -> dict[str, Any]:
    mime = block.mime_type or ""
    if block.url is not None and mime and not mime.startswith("image/"):
        # Chat Completions takes a document inline only (`file_data`); image_url would be refused as no image.
        raise InvalidRequest(
            f"a {mime} file given by URL cannot be sent to an OpenAI-style provider: send its data (base64) instead",
            field="messages",
        )
    if block.url is not None:
        url = block.url
    elif block.data is not None:
        url = f"data:{mime or 'application/octet-stream'};base64,{block.data}"
    else:
        raise InvalidRequest("a file block needs a url or data", field="messages")
    if block.url is None and mime and not mime.startswith("image/"):
        # Inline documents (PDF) go as a "file" part; image_url accepts only images.
        return {"type": "file", "file": {"filename": block.filename or "file", "file_data": url}}
    image: dict[str, Any] = {"url": url}
    if block.detail:
        image["detail"] = block.detail
    return {"type": "image_url", "image_url": image}


def _tool(spec: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "parameters": dict(spec.parameters),
    }
    if spec.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _tool_choice(choice: str | Mapping[str, str]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice in _TOOL_CHOICES:
            return choice
    elif set(choice) == {"specific"}:
        return {"type": "function", "function": {"name": choice["specific"]}}
    raise InvalidRequest(
        f"tool_choice must be 'none', 'auto', 'required' or {{'specific': name}}, got {choice!r}",
        field="tool_choice",
    )


def _say_json(messages: list[dict[str, Any]]) -> None:
    """OpenAI refuses `json_object` unless a message says "json": when none does, the instruction other providers
    get is added to the system message (one is added when there is none)."""
    for message in messages:
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [p.get("text") for p in content or () if isinstance(p, dict)]
        if any(isinstance(t, str) and "json" in t.lower() for t in texts):
            return
    first = messages[0] if messages else None
    if first is not None and first.get("role") == "system" and isinstance(first.get("content"), str):
        first["content"] = f"{first['content']}\n\n{JSON_INSTRUCTION}"
    else:
        messages.insert(0, {"role": "system", "content": JSON_INSTRUCTION})


def _add_tools(body: dict[str, Any], request: ProviderRequest) -> None:
    mode = request.params.json_mode
    if mode == "tool":
        schema = dict(request.output_schema) if request.output_schema is not None else {"type": "object"}
        spec = ToolSpec(JSON_TOOL_NAME, "Respond to the user with these arguments.", schema)
        body["tools"] = [_tool(spec)]
        body["tool_choice"] = {"type": "function", "function": {"name": JSON_TOOL_NAME}}
        return
    # OpenAI rejects tool_choice and parallel_tool_calls without tools.
    if request.tools:
        body["tools"] = [_tool(spec) for spec in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if mode == "strict" and request.output_schema is not None:
        schema_format = {"name": "response", "strict": request.schema_strict, "schema": dict(request.output_schema)}
        body["response_format"] = {"type": "json_schema", "json_schema": schema_format}
    elif mode in ("on", "strict"):
        body["response_format"] = {"type": "json_object"}


# ---- response mapping --------------------------------------------------------------------------------------


def finish_reason(value: Any) -> FinishReason | None:
    return mapped_reason(_FINISH_REASONS, value)


def parse_usage(usage: Any, *, reasoning_apart: bool = False) -> Usage:
    """`reasoning_apart`: the vendor counts reasoning tokens outside `completion_tokens` (xAI: they are billed as
    output, and only `total_tokens` includes them), so they are added to the output here."""
    if not isinstance(usage, dict):
        return Usage()
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    output = completion if isinstance(completion, int) else None
    completion_details = usage.get("completion_tokens_details")
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    if not isinstance(reasoning, int) or isinstance(reasoning, bool):
        reasoning = None
    if reasoning_apart and output is not None and reasoning is not None:
        output += reasoning
    return Usage(
        prompt if isinstance(prompt, int) else None,
        output,
        cache_read_input_tokens=cached if isinstance(cached, int) and not isinstance(cached, bool) else None,
        reasoning_tokens=reasoning,
    )


def reported_cost(usage: Any) -> float | None:
    """A cost the server reports itself (OpenRouter and some proxies put one in `usage.cost`)."""
    cost = usage.get("cost") if isinstance(usage, dict) else None
    return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None


def parse_response(
    body: Any, *, json_tool: bool = False, reasoning_apart: bool = False
) -> tuple[tuple[OutputBlock, ...], Usage, FinishReason | None]:
    """Content blocks, usage and finish reason of a chat.completion object. With `json_tool` (json_mode
    "tool") a call to the `respond` tool becomes a Text block holding its arguments. Raises ProviderError
    (kind "malformed", without provider or raw fields: the caller adds them) when the shape is wrong."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed("no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise malformed("choices[0].message is missing")
    content: list[OutputBlock] = []
    # DeepSeek and older vLLM say `reasoning_content`; OpenRouter, Groq (reasoning_format "parsed"), newer vLLM
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append(Thought(reasoning))
    for key in ("content", "refusal"):
        text = message.get(key)
        if text is not None and not isinstance(text, str):
            raise malformed(f"choices[0].message.{key} is not a string")
        if text:
            content.append(Text(text))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise malformed("choices[0].message.tool_calls is not a list")
    for call in calls:
        block = _parse_tool_call(call)
        content.append(Text(block.arguments) if json_tool and block.name == JSON_TOOL_NAME else block)
    reason = finish_reason(choice.get("finish_reason"))
    if json_tool and reason == "tool_call" and not any(isinstance(b, ToolCall) for b in content):
        reason = "stop"
    if message.get("refusal") and reason == "stop":
        reason = "content_filter"  # the model refused: its text is the refusal, as Anthropic's refusal maps
    return tuple(content), parse_usage(body.get("usage"), reasoning_apart=reasoning_apart), reason


def _parse_tool_call(call: Any) -> ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise malformed("a tool call has no function name")
    return ToolCall(id=str(call.get("id") or ""), name=function["name"], arguments=arguments_text(function))


def arguments_text(function: Mapping[str, Any]) -> str:
    arguments = function.get("arguments")
    if arguments is None:
        return ""
    # Some compatible servers send the arguments as an object instead of a JSON string.
    return arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()


def parse_embeddings(body: Any, count: int) -> tuple[tuple[tuple[float, ...], ...], Usage]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise malformed(f"expected {count} embeddings")
    ordered = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
    embeddings = []
    for item in ordered:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list):
            raise malformed("an embedding is not a list of floats")
        embeddings.append(tuple(float(x) for x in vector))
    usage = parse_usage(body.get("usage"))
    return tuple(embeddings), Usage(usage.input_tokens, None)

"""Bedrock's Converse API as pure functions: request bodies out, Converse responses and errors in.

Request mapping: the system prompt is one `system` text block. Each content block carries its own role, as with
Anthropic: a ToolCall is an assistant `toolUse` (its arguments parsed to an object), a ToolResult a user
`toolResult` with one text item, a signed Thought an assistant `reasoningContent` (`redactedContent` when it has
a signature but no text; unsigned thoughts are dropped), a File an `image` (or, for application/pdf, a
`document`) block from base64 data (Converse takes bytes or S3 locations, not http URLs). Consecutive blocks of
one role are merged into one message (Converse wants the roles to alternate), tool results first in a user
message. An Unknown block is passed through verbatim when it names no provider or this one.
Parameters: max_tokens, temperature, top_p and stop_sequences go in `inferenceConfig`; seed and the penalties
have no Converse field and are dropped.

Tools: `toolConfig.tools[].toolSpec` with the JSON Schema under `inputSchema.json`; tool_choice "auto" -> auto,
"required" -> any, {"specific": name} -> tool; "none" sends no toolConfig (Converse has no "none"), unless the
conversation holds tool blocks, which Converse refuses without one: then the tools go without a choice.

JSON mode, as for Anthropic: "tool"/"strict" with an output schema force a tool `respond` whose input is the
answer (returned as one Text block, finish reason "stop"; Bedrock allows forcing a tool for Anthropic and
Mistral Large models), offered instead of forced beside the request's own tools; "on" (and "tool"/"strict"
without a schema) adds a JSON-only instruction to the system.

Usage: Converse's `inputTokens` leaves the prompt-cache tokens out; ours counts them, with the two cache counts
(`cacheReadInputTokens`, `cacheWriteInputTokens`) as parts of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from lsd.errors import InvalidRequest, ProviderError
from lsd.providers.anthropic.wire import (
    DEFAULT_MAX_TOKENS,
    JSON_TOOL_NAME,
    json_tool_beside_tools,
    system_text,
    thinking_budget,
    thinking_max_tokens,
    uses_json_tool,
)
from lsd.providers.base import alternating_turns, error_from_status, json_object, mapped_reason, tool_arguments
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
    Unknown,
    Usage,
)

_STOP_REASONS: Mapping[str, FinishReason] = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop_sequence",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_call",
        "guardrail_intervened": "content_filter",
        "content_filtered": "content_filter",
    }
)
_IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
# Converse's DocumentBlock formats, by mime type.
_DOCUMENT_FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "application/pdf": "pdf",
        "text/plain": "txt",
        "text/csv": "csv",
        "text/markdown": "md",
        "text/html": "html",
        "application/msword": "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
        "application/vnd.ms-excel": "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    }
)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9\-()\[\] ]+")  # what a document name may hold; runs of others become a space
# Bedrock's exception names (the x-amzn-ErrorType header, a stream's :exception-type) and their HTTP statuses.
EXCEPTION_STATUSES: Mapping[str, int] = MappingProxyType(
    {
        "validationException": 400,
        "accessDeniedException": 403,
        "unrecognizedClientException": 403,
        "invalidSignatureException": 403,
        "resourceNotFoundException": 404,
        "modelTimeoutException": 408,
        "modelNotReadyException": 429,
        "throttlingException": 429,
        "serviceQuotaExceededException": 429,
        "modelErrorException": 424,
        "modelStreamErrorException": 424,
        "internalServerException": 500,
        "serviceUnavailableException": 503,
    }
)
# An error name Bedrock gives for a request it could not authenticate (signature, unknown key, expired token).
_AUTH_EXCEPTIONS = frozenset(
    {"accessDeniedException", "unrecognizedClientException", "invalidSignatureException", "expiredTokenException"}
)


# ---- request mapping ---------------------------------------------------------------------------------------


def build_body(request: ProviderRequest, *, provider_name: str | None = None, model_id: str = "") -> dict[str, Json]:
    """The Converse (and ConverseStream) request body; raises InvalidRequest for content Converse cannot take."""
    params = request.params
    messages = build_messages(request.messages, provider_name=provider_name)
    body: dict[str, Json] = {"messages": messages}
    system = system_text(request)
    if system:
        body["system"] = [{"text": system}]
    config: dict[str, Json] = {}
    for key, value in (("maxTokens", params.max_tokens), ("temperature", params.temperature), ("topP", params.top_p)):
        if value is not None:
            config[key] = value
    if params.stop_sequences:
        config["stopSequences"] = list(params.stop_sequences)
    budget = thinking_budget(request) if "claude" in model_id else None
    if budget is not None:  # Claude's thinking, in its own fields, within Anthropic's rules (as its own wire keeps)
        body["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
        config.pop("temperature", None)
        config.pop("topP", None)
        # Converse sends no limit of its own: without one, the default on top of the budget
        limit = params.max_tokens
        config["maxTokens"] = budget + DEFAULT_MAX_TOKENS if limit is None else thinking_max_tokens(budget, limit)
    if config:
        body["inferenceConfig"] = config
    tool_config = _tool_config(request, _has_tool_blocks(messages))
    if tool_config is not None:
        if budget is not None and "auto" not in tool_config.get("toolChoice", {"auto": {}}):
            tool_config["toolChoice"] = {"auto": {}}  # a forced tool is refused while thinking: offered instead
        body["toolConfig"] = tool_config
    return body


def build_messages(messages: Sequence[Message], *, provider_name: str | None = None) -> list[dict[str, Json]]:
    """Converse's alternating messages: every block placed by its role, consecutive same-role runs merged."""
    turns = alternating_turns(
        messages, lambda block, role: _block(block, role, provider_name), lambda part: "toolResult" in part
    )
    _name_documents(turns)
    return turns


def _name_documents(turns: list[dict[str, Json]]) -> None:
    """Give every document block of the conversation a name Converse takes: its file name without the extension,
    reduced to letters, digits, single spaces, hyphens, parentheses and brackets ("document" when nothing is left),
    and unique in the request (Converse refuses two documents of one name, even turns apart): " (2)", " (3)"..."""
    taken: set[str] = set()
    for turn in turns:
        for part in turn["content"]:
            document = part.get("document") if isinstance(part, dict) else None
            if not isinstance(document, dict):
                continue
            stem = str(document.get("name") or "").rpartition(".")[0] or str(document.get("name") or "")
            base = " ".join(_NAME_CHARS.sub(" ", stem).split())[:180] or "document"
            name, number = base, 1
            while name.lower() in taken:
                number += 1
                name = f"{base} ({number})"
            taken.add(name.lower())
            document["name"] = name


def _block(block: ContentBlock, role: str, provider_name: str | None) -> tuple[str, dict[str, Json]] | None:
    if isinstance(block, Text | RawText):
        text = block.text if isinstance(block, Text) else block.value
        return (role, {"text": text}) if text else None
    if isinstance(block, ToolCall):
        return "assistant", {"toolUse": {"toolUseId": block.id, "name": block.name, "input": tool_arguments(block)}}
    if isinstance(block, ToolResult):
        result: dict[str, Json] = {"toolUseId": block.id, "content": [{"text": block.result}]}
        if block.is_error:
            result["status"] = "error"
        return "user", {"toolResult": result}
    if isinstance(block, File):
        return role, _file(block)
    if isinstance(block, Thought):
        if not block.signature:
            return None
        if block.text is None:
            return "assistant", {"reasoningContent": {"redactedContent": block.signature}}
        reasoning = {"text": block.text, "signature": block.signature}
        return "assistant", {"reasoningContent": {"reasoningText": reasoning}}
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
    if data is None:
        raise InvalidRequest("Bedrock takes files as inline data, not URLs", field="messages")
    document_format = _DOCUMENT_FORMATS.get(mime or "")
    if document_format is not None:  # named by _name_documents once the whole conversation is built
        return {"document": {"format": document_format, "name": file.filename or "", "source": {"bytes": data}}}
    image_format = (mime or "").removeprefix("image/")
    if not (mime or "").startswith("image/") or image_format not in _IMAGE_FORMATS:
        raise InvalidRequest(
            f"Bedrock accepts png, jpeg, gif and webp images and documents ({', '.join(_DOCUMENT_FORMATS.values())}), "
            f"not {mime!r}",
            field="messages",
        )
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _tool(name: str, description: str, schema: Mapping[str, Any]) -> dict[str, Json]:
    return {"toolSpec": {"name": name, "description": description, "inputSchema": {"json": dict(schema)}}}


def _has_tool_blocks(messages: list[dict[str, Json]]) -> bool:
    return any(
        "toolUse" in part or "toolResult" in part
        for message in messages
        for part in message["content"]
        if isinstance(part, dict)
    )


def _tool_config(request: ProviderRequest, history_has_tools: bool) -> dict[str, Json] | None:
    tools = [_tool(spec.name, spec.description, spec.parameters) for spec in request.tools]
    if uses_json_tool(request):
        tools.append(_tool(JSON_TOOL_NAME, "Respond with the answer.", request.output_schema or {}))
        if not json_tool_beside_tools(request):  # else offered under the request's choice (anthropic.wire)
            return {"tools": list(tools), "toolChoice": {"tool": {"name": JSON_TOOL_NAME}}}
    if not tools:
        return None
    choice = request.tool_choice
    config: dict[str, Json] = {"tools": list(tools)}
    if choice is None or choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "none":
        return config if history_has_tools else None
    elif not isinstance(choice, str) and set(choice) == {"specific"}:
        config["toolChoice"] = {"tool": {"name": choice["specific"]}}
    else:
        raise InvalidRequest(f"unsupported tool_choice {choice!r}", field="tool_choice")
    return config


# ---- response mapping --------------------------------------------------------------------------------------


def finish_reason(stop_reason: object, *, json_tool: bool = False) -> FinishReason | None:
    """Converse's stopReason as a FinishReason (None when absent)."""
    if json_tool and stop_reason == "tool_use":
        return "stop"
    return mapped_reason(_STOP_REASONS, stop_reason)


def parse_usage(usage: object) -> Usage:
    """Converse's usage object (see the module docstring for the cache tokens)."""
    if not isinstance(usage, dict):
        return Usage()
    values = [usage.get(k) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")]
    plain, output, read, written = (v if isinstance(v, int) else None for v in values)
    counted = [v for v in (plain, read, written) if v is not None]
    return Usage(sum(counted) if counted else None, output, read, written)


def parse_response(
    body: Mapping[str, Any], *, json_tool: bool = False
) -> tuple[tuple[OutputBlock, ...], Usage, FinishReason | None]:
    """A Converse response's content blocks, usage and finish reason; ValueError when malformed."""
    output = body.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise ValueError("expected output.message.content to be a list")
    blocks = tuple(_output_block(block, json_tool) for block in content)
    answered = json_tool and not any(isinstance(block, ToolCall) for block in blocks)  # `respond`, no other tool
    return blocks, parse_usage(body.get("usage")), finish_reason(body.get("stopReason"), json_tool=answered)


def _output_block(block: object, json_tool: bool) -> OutputBlock:
    if not isinstance(block, dict):
        raise ValueError("a content block is not an object")
    if isinstance(block.get("text"), str):
        return Text(block["text"])
    use = block.get("toolUse")
    if isinstance(use, dict):
        if not isinstance(use.get("toolUseId"), str) or not isinstance(use.get("name"), str):
            raise ValueError("a toolUse block lacks its toolUseId or name")
        arguments = orjson.dumps(use.get("input") or {}).decode()
        if json_tool and use["name"] == JSON_TOOL_NAME:
            return Text(arguments)
        return ToolCall(id=use["toolUseId"], name=use["name"], arguments=arguments)
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        text = reasoning.get("reasoningText")
        if isinstance(text, dict):
            signature = text.get("signature")
            return Thought(str(text.get("text") or ""), signature if isinstance(signature, str) else None)
        if isinstance(reasoning.get("redactedContent"), str):
            return Thought(None, signature=reasoning["redactedContent"])
    return Unknown(dict(block))


# ---- errors ------------------------------------------------------------------------------------------------


def exception_name(raw: str | None) -> str:
    """`ValidationException:http://internal.amazon.com/...` -> `validationException` (the stream's spelling)."""
    name = (raw or "").split(":", 1)[0].strip()
    return name[:1].lower() + name[1:]


def status_error(
    provider: str, status: int, body: bytes | str, error_type: str | None, *, raw_request: str | None = None
) -> ProviderError:
    """A non-2xx answer (or a stream's exception message) as a ProviderError; Bedrock answers 403 to a request it
    cannot authenticate (a bad signature, an unknown key, an expired token): kind "auth"."""
    exc = error_from_status(provider, status, body, raw_request=raw_request)
    name = exception_name(error_type)
    data = json_object(body)
    message = data.get("message") or data.get("Message") if data is not None else None
    if name in _AUTH_EXCEPTIONS or (status == 403 and isinstance(message, str) and "signature" in message.lower()):
        exc.kind = "auth"
        exc.retryable = False
    elif name == "serviceQuotaExceededException":  # a 400 for a quota (tokens a day...): "resubmit later", AWS says
        exc.kind = "rate_limited"
        exc.retryable = True
    if name:
        exc.message = f"{exc.message} ({name})"
        exc.args = (exc.message,)
    return exc

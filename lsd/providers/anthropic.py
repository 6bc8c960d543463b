"""The `anthropic` provider type: Anthropic's Messages API (`POST {api_base}messages`), streaming or not.

Options:
  model_name          required; the model as Anthropic knows it
  api_base            default "https://api.anthropic.com/v1/"
  api_key_location    default "env::ANTHROPIC_API_KEY"; "dynamic::NAME" or "none" (no x-api-key header)
  max_tokens          default 4096, sent when a request sets none (Anthropic requires max_tokens)
  cost                optional inline table { input_per_million, output_per_million } (USD per million tokens)

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
JSON (streamed as Text deltas) and the finish reason "tool_call" becomes "stop". Such a request's own
tool_choice is overridden (and a request tool named `respond` would clash). "on" (and "tool"/"strict"
without a schema) appends an instruction to answer with JSON only to the system prompt (quoting the schema
when there is one).

Usage: input_tokens counts every prompt token, cache reads and writes included (Anthropic reports those
separately); cost prices them all at input_per_million.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import InvalidRequest, ProviderError
from lsd.providers.base import CallContext, KeyLocation, Provider, error_from_status, key_fingerprint, redact_headers
from lsd.providers.sse import sse_events
from lsd.providers.transport import HttpResponse
from lsd.types import (
    ContentBlock,
    File,
    FinishReason,
    Json,
    Message,
    OutputBlock,
    ProviderRequest,
    ProviderResponse,
    RawText,
    StreamChunk,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    ToolSpec,
    Unknown,
    Usage,
)

T = TypeVar("T")

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_API_BASE = "https://api.anthropic.com/v1/"
DEFAULT_KEY_LOCATION = "env::ANTHROPIC_API_KEY"
DEFAULT_MAX_TOKENS = 4096
JSON_TOOL_NAME = "respond"
JSON_INSTRUCTION = "Respond with one valid JSON value only: no prose and no code fences."

_STOP_REASONS: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop_sequence",
    "max_tokens": "length",
    "tool_use": "tool_call",
    "refusal": "content_filter",
}

# Anthropic's error types (in error bodies and mid-stream `error` events) and the HTTP status each means.
ERROR_STATUSES: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def uses_json_tool(request: ProviderRequest) -> bool:
    """Whether the request's JSON mode is served by the forced `respond` tool."""
    return request.params.json_mode in ("tool", "strict") and request.output_schema is not None


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
    system = _system(request)
    if system:
        body["system"] = system
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop_sequences:
        body["stop_sequences"] = list(params.stop_sequences)
    tools, tool_choice = _tools(request)
    if tools:
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    if stream:
        body["stream"] = True
    return body


def build_messages(messages: Sequence[Message], *, provider_name: str | None = None) -> list[dict[str, Json]]:
    """Anthropic's alternating messages: every block placed by its role, consecutive same-role runs merged."""
    turns: list[tuple[str, list[dict[str, Json]]]] = []
    for message in messages:
        for block in message.content:
            placed = _block(block, message.role, provider_name)
            if placed is None:
                continue
            role, part = placed
            if turns and turns[-1][0] == role:
                turns[-1][1].append(part)
            else:
                turns.append((role, [part]))
    out: list[dict[str, Json]] = []
    for role, parts in turns:
        if role == "user":
            parts.sort(key=lambda part: part.get("type") != "tool_result")  # stable: tool results first
        out.append({"role": role, "content": parts})
    return out


def _block(block: ContentBlock, role: str, provider_name: str | None) -> tuple[str, dict[str, Json]] | None:
    if isinstance(block, Text | RawText):
        text = block.text if isinstance(block, Text) else block.value
        return (role, {"type": "text", "text": text}) if text else None
    if isinstance(block, ToolCall):
        part: dict[str, Json] = {"type": "tool_use", "id": block.id, "name": block.name}
        part["input"] = _arguments(block)
        return "assistant", part
    if isinstance(block, ToolResult):
        return "user", {"type": "tool_result", "tool_use_id": block.id, "content": block.result}
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


def _arguments(call: ToolCall) -> dict[str, Json]:
    try:
        value = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not JSON", field="messages") from exc
    if not isinstance(value, dict):
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not a JSON object", field="messages")
    return value


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


def _system(request: ProviderRequest) -> str | None:
    mode = request.params.json_mode
    if mode not in ("on", "tool", "strict") or uses_json_tool(request):
        return request.system
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
    if stop_reason is None:
        return None
    if json_tool and stop_reason == "tool_use":
        return "stop"
    return _STOP_REASONS.get(stop_reason, "unknown") if isinstance(stop_reason, str) else "unknown"


def parse_usage(usage: object, previous: Usage | None = None) -> Usage:
    """Anthropic's usage object; fields it lacks keep their `previous` value (streams report in two steps)."""
    before = previous or Usage()
    if not isinstance(usage, dict):
        return before
    parts = [usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    counted = [p for p in parts if isinstance(p, int)]
    output = usage.get("output_tokens")
    return Usage(
        sum(counted) if counted else before.input_tokens,
        output if isinstance(output, int) else before.output_tokens,
    )


def parse_response(
    body: bytes | str, *, json_tool: bool = False
) -> tuple[tuple[OutputBlock, ...], Usage, FinishReason | None]:
    """A Messages API response's content blocks, usage and finish reason; ValueError when malformed."""
    data = orjson.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ValueError("expected a message object with a `content` list")
    blocks = tuple(_output_block(block, json_tool) for block in data["content"])
    return blocks, parse_usage(data.get("usage")), finish_reason(data.get("stop_reason"), json_tool=json_tool)


def _output_block(block: object, json_tool: bool) -> OutputBlock:
    if not isinstance(block, dict):
        raise ValueError(f"content block is not an object: {block!r}")
    kind = block.get("type")
    if kind == "text":
        return Text(_str(block, "text"))
    if kind == "tool_use":
        arguments = orjson.dumps(block.get("input") or {}).decode()
        if json_tool and block.get("name") == JSON_TOOL_NAME:
            return Text(arguments)
        return ToolCall(id=_str(block, "id"), name=_str(block, "name"), arguments=arguments)
    if kind == "thinking":
        signature = block.get("signature")
        return Thought(text=_str(block, "thinking"), signature=signature if isinstance(signature, str) else None)
    if kind == "redacted_thinking":
        return Thought(text=None, signature=_str(block, "data"))
    return Unknown(data=block)


def _str(obj: Mapping[str, Json], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"expected a string at {key!r}, got {value!r}")
    return value


class StreamState:
    """Turns a Messages API event stream into StreamChunk deltas, one event at a time; `done` after message_stop.

    Raises ProviderError for an `error` event (status taken from its error type) and kind "malformed" for an
    event that is not the JSON Anthropic documents.
    """

    def __init__(self, provider: str, *, json_tool: bool = False, raw_request: str | None = None) -> None:
        self.provider = provider
        self.json_tool = json_tool
        self.raw_request = raw_request
        self.done = False
        self.usage = Usage()
        self._tool_ids: dict[int, str | None] = {}  # open tool_use blocks by index; None: the JSON answer

    def parse_event(self, event: str | None, data: str) -> StreamChunk | None:
        """The chunk for one SSE event (None when it carries nothing a caller sees)."""
        try:
            payload = orjson.loads(data)
            if not isinstance(payload, dict):
                raise ValueError("event data is not an object")
            name = event or payload.get("type")
            if name == "error":
                raise self._error(payload, data)
            return self._chunk(name, payload, data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ProviderError(
                f"malformed stream event {event!r}: {exc}",
                provider=self.provider,
                kind="malformed",
                raw_request=self.raw_request,
                raw_response=data,
            ) from exc

    def _chunk(self, name: object, payload: dict[str, Json], data: str) -> StreamChunk | None:
        content: tuple[OutputBlock, ...] = ()
        if name == "message_start":
            self.usage = parse_usage(payload["message"].get("usage"), self.usage)
        elif name == "content_block_start":
            content = self._start(int(payload["index"]), payload["content_block"])
        elif name == "content_block_delta":
            content = self._delta(int(payload["index"]), payload["delta"])
        elif name == "content_block_stop":
            self._tool_ids.pop(int(payload["index"]), None)
        elif name == "message_delta":
            self.usage = parse_usage(payload.get("usage"), self.usage)
            reason = finish_reason(payload["delta"].get("stop_reason"), json_tool=self.json_tool)
            return StreamChunk(usage=self.usage, finish_reason=reason, raw=data)
        elif name == "message_stop":
            self.done = True
        # ping and event types Anthropic may add later carry nothing
        return StreamChunk(content=content, raw=data) if content else None

    def _start(self, index: int, block: dict[str, Json]) -> tuple[OutputBlock, ...]:
        kind = block.get("type")
        if kind == "text":
            return (Text(_str(block, "text")),) if block.get("text") else ()
        if kind == "thinking":
            return (Thought(_str(block, "thinking")),) if block.get("thinking") else ()
        if kind == "redacted_thinking":
            return (Thought(None, signature=_str(block, "data")),)
        if kind != "tool_use":
            return ()
        arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
        if self.json_tool and block.get("name") == JSON_TOOL_NAME:
            self._tool_ids[index] = None
            return (Text(arguments),) if arguments else ()
        self._tool_ids[index] = _str(block, "id")
        return (ToolCall(id=_str(block, "id"), name=_str(block, "name"), arguments=arguments),)

    def _delta(self, index: int, delta: dict[str, Json]) -> tuple[OutputBlock, ...]:
        kind = delta.get("type")
        if kind == "text_delta":
            return (Text(_str(delta, "text")),) if delta["text"] else ()
        if kind == "thinking_delta":
            return (Thought(_str(delta, "thinking")),) if delta["thinking"] else ()
        if kind == "signature_delta":
            return (Thought(None, signature=_str(delta, "signature")),)
        if kind != "input_json_delta":
            return ()  # citations and delta types Anthropic may add later
        fragment = _str(delta, "partial_json")
        if index not in self._tool_ids:
            raise ValueError(f"input_json_delta for content block {index}, which is not an open tool_use")
        tool_id = self._tool_ids[index]
        if not fragment:
            return ()
        return (Text(fragment),) if tool_id is None else (ToolCall(id=tool_id, name="", arguments=fragment),)

    def _error(self, payload: dict[str, Json], data: str) -> ProviderError:
        error = payload.get("error")
        status = ERROR_STATUSES.get(str(error.get("type")), 500) if isinstance(error, dict) else 500
        return error_from_status(self.provider, status, data, raw_request=self.raw_request)


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per million tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, usage: Usage) -> float:
        input_cost = (usage.input_tokens or 0) * self.input_per_million
        return (input_cost + (usage.output_tokens or 0) * self.output_per_million) / 1e6


@dataclass(frozen=True, slots=True)
class _Call:
    body: bytes
    headers: dict[str, str]
    key: str | None
    json_tool: bool

    @property
    def raw_request(self) -> str:
        return self.body.decode()


@asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator on exit, so an abandoned stream releases its connection now, not at GC."""
    try:
        yield iterator
    finally:
        if isinstance(iterator, AsyncGenerator):
            await iterator.aclose()


class AnthropicProvider(Provider):
    type_name = "anthropic"

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str,
        key: KeyLocation,
        max_tokens: int,
        pricing: Pricing | None,
    ) -> None:
        super().__init__(config)
        self._model_name = model_name
        self.url = api_base.rstrip("/") + "/messages"
        self.key = key
        self.max_tokens = max_tokens
        self.pricing = pricing

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> AnthropicProvider:
        model_name = options.str("model_name", required=True)
        api_base = options.str("api_base", DEFAULT_API_BASE)
        key = KeyLocation.parse(options, "api_key_location", DEFAULT_KEY_LOCATION)
        max_tokens = options.int("max_tokens", DEFAULT_MAX_TOKENS, minimum=1)
        pricing = _pricing(options) if options.has("cost") else None
        return cls(
            config,
            model_name=model_name if isinstance(model_name, str) else "",
            api_base=api_base if isinstance(api_base, str) else DEFAULT_API_BASE,
            key=key,
            max_tokens=max_tokens,
            pricing=pricing,
        )

    @property
    def model_name(self) -> str:
        return self._model_name

    def cost_of(self, usage: Usage) -> float | None:
        """The call's cost in USD when `cost` is configured (StreamChunk has no cost field: callers of
        `stream` price the final usage with this)."""
        return self.pricing.cost(usage) if self.pricing is not None else None

    def _prepare(self, request: ProviderRequest, ctx: CallContext, *, stream: bool) -> _Call:
        key = self.key.resolve(ctx.credentials, self.name)
        body = build_body(request, self._model_name, stream, max_tokens=self.max_tokens, provider_name=self.name)
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if stream:
            headers["accept"] = "text/event-stream"
        if key:
            headers["x-api-key"] = key
        return _Call(orjson.dumps(body), headers, key, uses_json_tool(request))

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        call = self._prepare(request, ctx, stream=False)
        try:
            response = await ctx.transport.post(
                self.url, call.body, call.headers, provider=self.name, timeout_s=ctx.timeout_s
            )
        except ProviderError as exc:
            exc.raw_request = exc.raw_request or call.raw_request
            raise
        if response.status >= 300:
            raise error_from_status(self.name, response.status, response.body, raw_request=call.raw_request)
        text = response.body.decode("utf-8", "replace")
        try:
            content, usage, reason = parse_response(response.body, json_tool=call.json_tool)
        except ValueError as exc:
            raise ProviderError(
                f"provider {self.name!r} sent a malformed response: {exc}",
                provider=self.name,
                kind="malformed",
                raw_request=call.raw_request,
                raw_response=text,
            ) from exc
        return ProviderResponse(
            content=content,
            usage=usage,
            finish_reason=reason,
            raw_request=call.raw_request,
            raw_response=text,
            cost=self.cost_of(usage),
            request_headers=redact_headers(call.headers),
            api_key_sha256=key_fingerprint(call.key),
        )

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        """Yield each delta as its event arrives; raise ProviderError(kind="stream_interrupted") after the
        deltas that did arrive when the stream ends (or the connection drops) before message_stop."""
        call = self._prepare(request, ctx, stream=True)
        state = StreamState(self.name, json_tool=call.json_tool, raw_request=call.raw_request)
        started = False
        try:
            async with (
                _closing(self._lines(call, ctx)) as lines,
                _closing(sse_events(lines)) as events,
            ):
                async for event in events:
                    started = True
                    chunk = state.parse_event(event.event, event.data)
                    if chunk is not None:
                        yield chunk
        except ProviderError as exc:
            exc.raw_request = exc.raw_request or call.raw_request
            if started and exc.kind == "connection":
                raise self._interrupted(call, str(exc)) from exc
            raise
        if not state.done:
            raise self._interrupted(call, "the stream ended before message_stop")

    async def _lines(self, call: _Call, ctx: CallContext) -> AsyncGenerator[bytes, None]:
        ttft_ms = self.config.timeouts.streaming_ttft_ms
        source = ctx.transport.stream_lines(
            self.url,
            call.body,
            call.headers,
            provider=self.name,
            timeout_s=ctx.timeout_s,
            ttft_timeout_s=ttft_ms / 1000 if ttft_ms else None,
        )
        async with _closing(source) as items:
            async for item in items:
                if isinstance(item, HttpResponse):
                    raise error_from_status(self.name, item.status, item.body, raw_request=call.raw_request)
                yield item

    def _interrupted(self, call: _Call, why: str) -> ProviderError:
        return ProviderError(
            f"provider {self.name!r} stream interrupted: {why}",
            provider=self.name,
            kind="stream_interrupted",
            raw_request=call.raw_request,
        )


def _pricing(options: Table) -> Pricing | None:
    table = options.table("cost")
    values: list[float] = []
    for key in ("input_per_million", "output_per_million"):
        if not table.has(key):
            table.error(key, "missing required key")
        value = table.float(key, None, minimum=0.0)
        if isinstance(value, float):
            values.append(value)
    table.finish()
    return Pricing(values[0], values[1]) if len(values) == 2 else None

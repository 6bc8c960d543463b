"""Anthropic's Messages API answers, stream events and errors, built from the engine's typed results (the request
side: lsd.api.anthropic_request).

A message's `id` is `msg_` and the inference id's 32 hex digits. Usage follows Anthropic: `input_tokens` leaves out
the cached tokens, which `cache_read_input_tokens` and `cache_creation_input_tokens` count (null when the provider
did not say). Thoughts become `thinking` blocks with their signature (`""` for a provider that signs none) or, with
a signature and no text, `redacted_thinking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from lsd.api.anthropic_request import MessagesRequest
from lsd.api.inbound import tool_input
from lsd.api.provider_answer import PASSED_ON_STATUSES, ProviderAnswer
from lsd.errors import InternalError, LsdError, ProviderError
from lsd.inference.result import InferenceResult, ResultBlock, ToolCallOutput
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.types import StreamChunk, Text, Thought, ToolCall, Unknown, Usage

STOP_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "stop": "end_turn",
        "stop_sequence": "stop_sequence",
        "length": "max_tokens",
        "tool_call": "tool_use",
        "content_filter": "refusal",
        "unknown": "end_turn",
    }
)
_ERROR_TYPES: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout_error",  # every attempt timed out: the providers' fault, not the client's request
        413: "request_too_large",
        429: "rate_limit_error",
        431: "invalid_request_error",
        529: "overloaded_error",
    }
)

Event = tuple[str, dict[str, Any]]


def message_id(result: InferenceResult | InferenceStream) -> str:
    return f"msg_{result.inference_id.hex}"


def usage_json(usage: Usage) -> dict[str, Any]:
    read, written = usage.cache_read_input_tokens, usage.cache_write_input_tokens
    uncached = (usage.input_tokens or 0) - (read or 0) - (written or 0)
    return {
        "input_tokens": max(uncached, 0),
        "output_tokens": usage.output_tokens or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def message_json(call: MessagesRequest, result: InferenceResult) -> dict[str, Any]:
    if result.output is not None:
        content = [{"type": "text", "text": result.output.raw or ""}]
    else:
        content = [part for block in result.content if (part := block_json(block)) is not None]
    return {
        "id": message_id(result),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason(result.finish_reason),
        "stop_sequence": None,
        "usage": usage_json(result.usage),
    }


def block_json(block: ResultBlock) -> dict[str, Any] | None:
    """One result block as an Anthropic content block (None for one Anthropic has no shape for)."""
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolCallOutput):
        return {"type": "tool_use", "id": block.id, "name": block.raw_name, "input": tool_input(block)}
    if isinstance(block, Thought):
        if block.text is None:
            return {"type": "redacted_thinking", "data": block.signature} if block.signature else None
        return {"type": "thinking", "thinking": block.text, "signature": block.signature or ""}
    if isinstance(block, Unknown) and isinstance(block.data, dict) and isinstance(block.data.get("type"), str):
        return dict(block.data)  # a block the provider sent that LSD does not model (server_tool_use, ...)
    return None


class StreamWriter:
    """Turns one stream's events into Anthropic's SSE events: `message_start` and a `ping`, content blocks opened,
    fed and closed as the deltas change kind (`text_delta`, `thinking_delta`, `signature_delta`,
    `input_json_delta`), then `message_delta` (stop reason, usage) and `message_stop`. An error is an `error` event
    that ends the stream, as at Anthropic: no `message_delta` or `message_stop` after it, which would make a cut
    answer read as a finished one (`end_turn`)."""

    def __init__(self, call: MessagesRequest, stream: InferenceStream) -> None:
        self.call = call
        self.stream = stream
        self.index = -1  # the last block opened
        self.open: str | None = None  # the kind of the block open at `index`
        self.signed = False  # the open thinking block has had its signature
        self.tool_index: dict[str, int] = {}
        # Tool calls that began while another was open (parallel calls, whose argument deltas may interleave):
        # sent whole once that one is done, as a block must end before the next starts. id -> (name, arguments).
        self.held: dict[str, tuple[str, list[str]]] = {}
        self.deferred: list[object] = []  # text and thoughts that came after a tool call: sent at the end
        self.failed = False

    def start(self) -> list[Event]:
        # The input and cache counts an Anthropic-bodied provider gave in its own message_start (StreamChunk.counted,
        # on the first chunk): a client shows the context's size from the start, as with Anthropic itself.
        opened = getattr(getattr(self.stream, "routed", None), "value", None)
        first = getattr(opened, "first", None)
        counted = first.counted if isinstance(first, StreamChunk) else None
        usage = usage_json(counted) if counted is not None else {"input_tokens": 0, "output_tokens": 0}
        if counted is not None:
            usage["output_tokens"] = counted.output_tokens or 1
        message: dict[str, Any] = {
            "id": message_id(self.stream),
            "type": "message",
            "role": "assistant",
            "model": self.call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def events(self, event: StreamEvent) -> list[Event]:
        if self.failed:
            return []
        if event.error is not None:
            # What arrived goes out first, then the error ends the stream, the last block left open as Anthropic
            # leaves it (a client that completes blocks on content_block_stop must not take a cut one as whole).
            self.failed = True
            return [*self._release_held(), *self._release_deferred(), ("error", error_object(event.error))]
        out: list[Event] = []
        for block in event.content:
            if isinstance(block, ToolCall):
                out += self._tool_call(block)
            elif self.tool_index or self.held:
                # After a tool call began, its argument fragments may still come (an OpenAI-bodied provider sends
                # them by index, in any order): nothing else opens a block until the end.
                self.deferred.append(block)
            else:
                out += self._block(block)
        if event.usage is not None:
            out += self._release_held()
            out += self._release_deferred()
            out += self._close()
            delta = {"stop_reason": stop_reason(event.finish_reason), "stop_sequence": None}
            out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage_json(event.usage)}))
            out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _block(self, block: object) -> list[Event]:
        """A text or thought delta's events."""
        if isinstance(block, Text):
            if not block.text:
                return []
            return [
                *self._open("text", {"type": "text", "text": ""}),
                self._delta({"type": "text_delta", "text": block.text}),
            ]
        if isinstance(block, Thought):
            return self._thought(block)
        return []

    def _release_deferred(self) -> list[Event]:
        out: list[Event] = []
        deferred, self.deferred = self.deferred, []
        for block in deferred:
            out += self._block(block)
        return out

    def _thought(self, block: Thought) -> list[Event]:
        """A thought delta (lsd.inference.streaming's convention): `text` None is a block of its own (a redacted
        thought, as the non-streamed answer shows it); otherwise thinking text for the open thinking block (a new
        one after a signature), and its signature ends it."""
        out: list[Event] = []
        if block.text is None:
            if block.signature:
                out += self._open("redacted_thinking", {"type": "redacted_thinking", "data": block.signature}, True)
                out += self._close()
            return out
        if block.text:
            if self.open != "thinking" or self.signed:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, force=True)
            out.append(self._delta({"type": "thinking_delta", "thinking": block.text}))
        if block.signature:
            if self.open != "thinking" or self.signed:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, force=True)
            self.signed = True
            out.append(self._delta({"type": "signature_delta", "signature": block.signature}))
        return out

    def _tool_call(self, block: ToolCall) -> list[Event]:
        out: list[Event] = []
        held = self.held.get(block.id)
        if held is not None:
            held[1].append(block.arguments)
            return out
        index = self.tool_index.get(block.id)
        if index is None:
            if self.open == "tool_use" or self.held:  # another call is open: this one waits its turn, whole
                self.held[block.id] = (block.name, [block.arguments])
                return out
            out += self._start_tool(block.id, block.name)
            index = self.index
        if block.arguments:
            delta = {"type": "input_json_delta", "partial_json": block.arguments}
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        return out

    def _start_tool(self, call_id: str, name: str) -> list[Event]:
        """Open a tool call's block (closing the one open) and note its index."""
        out = self._open("tool_use", {"type": "tool_use", "id": call_id, "name": name, "input": {}}, force=True)
        self.tool_index[call_id] = self.index
        return out

    def _release_held(self) -> list[Event]:
        """The held tool calls, each a whole block, after the open one: at the end (or before an error)."""
        out: list[Event] = []
        held, self.held = self.held, {}
        for call_id, (name, parts) in held.items():
            out += self._start_tool(call_id, name)
            if any(parts):
                out.append(self._delta({"type": "input_json_delta", "partial_json": "".join(parts)}))
        return out

    def _open(self, kind: str, start: dict[str, Any], force: bool = False) -> list[Event]:
        """Open a block of `kind` unless one is open already (`force`: always a new one)."""
        if self.open == kind and not force:
            return []
        out = self._close()
        self.index += 1
        self.open, self.signed = kind, False
        out.append(
            ("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": start})
        )
        return out

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}


def sse_bytes(events: list[Event]) -> bytes:
    return b"".join(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n" for name, data in events)


# The error kind of each provider answer passed on (lsd.api.provider_answer.PASSED_ON_STATUSES), as Anthropic names it.
PASSED_ON: Mapping[int, str] = MappingProxyType(
    {400: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
)
assert set(PASSED_ON) == PASSED_ON_STATUSES


def error_type(exc: LsdError) -> str:
    if isinstance(exc, ProviderError) and exc.status in PASSED_ON:  # a stream's error event
        return PASSED_ON[exc.status]  # type: ignore[index]
    return _ERROR_TYPES.get(exc.http_status, "api_error" if exc.http_status >= 500 else "invalid_request_error")


def error_object(exc: LsdError) -> dict[str, Any]:
    """Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`; the message names the field (a
    provider's error passed on keeps the provider's own message, as Anthropic would have written it)."""
    message = exc.message
    if isinstance(exc, ProviderError) and exc.status in PASSED_ON and exc.provider_message:
        message = exc.provider_message
    if isinstance(exc, ProviderAnswer) and exc.context_overflow and not message.startswith("prompt is too long"):
        message = f"prompt is too long: {message}"  # Claude clients compact on these words (another vendor's overflow)
    if exc.field and not message.startswith(exc.field):
        message = f"{exc.field}: {message}"
    error: dict[str, Any] = {"type": error_type(exc), "message": message}
    if isinstance(exc, InternalError):
        error["error_id"] = exc.error_id
    return {"type": "error", "error": error}


def anthropic_error_body(exc: LsdError) -> bytes:
    return orjson.dumps(error_object(exc))

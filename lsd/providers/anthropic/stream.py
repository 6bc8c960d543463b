"""Anthropic's streamed Messages API: SSE events in, StreamChunk deltas out (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import orjson

from lsd.errors import ProviderError
from lsd.providers.anthropic.wire import JSON_TOOL_NAME, finish_reason, parse_usage, str_field
from lsd.providers.base import error_from_status
from lsd.providers.sse import SseEvent
from lsd.types import Json, OutputBlock, StreamChunk, Text, Thought, ToolCall, Usage

# Anthropic's error types (in error bodies and mid-stream `error` events) and the HTTP status each means.
ERROR_STATUSES: Mapping[str, int] = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "overloaded_error": 529,
    }
)


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
        self._uncounted = False  # message_start's counts are not on a chunk yet
        self.payloads: list[str] = []
        self._tool_ids: dict[int, str | None] = {}  # open tool_use blocks by index; None: the JSON answer
        self._called = False  # a tool other than the JSON answer's was called

    def raw_response(self) -> str:
        return "\n".join(self.payloads)

    def feed_event(self, event: SseEvent) -> StreamChunk | None:
        return self.parse_event(event.event, event.data)

    def missing_end(self) -> str | None:
        return None if self.done else "message_stop"

    def finish(self) -> None:
        """Nothing: the last chunk (usage and finish reason) is message_delta's, fed out as it came."""
        return None

    def parse_event(self, event: str | None, data: str) -> StreamChunk | None:
        """The chunk for one SSE event (None when it carries nothing a caller sees)."""
        self.payloads.append(data)
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
            self._uncounted = True
        elif name == "content_block_start":
            content = self._start(int(payload["index"]), payload["content_block"])
        elif name == "content_block_delta":
            content = self._delta(int(payload["index"]), payload["delta"])
        elif name == "content_block_stop":
            self._tool_ids.pop(int(payload["index"]), None)
        elif name == "message_delta":
            self.usage = parse_usage(payload.get("usage"), self.usage)
            reason = finish_reason(payload["delta"].get("stop_reason"), json_tool=self.json_tool and not self._called)
            return StreamChunk(usage=self.usage, finish_reason=reason, raw=data)
        elif name == "message_stop":
            self.done = True
        # ping and event types Anthropic may add later carry nothing
        if not content:
            return None
        if self._uncounted:  # the counts of message_start ride on the first content chunk (StreamChunk.counted)
            self._uncounted = False
            return StreamChunk(content=content, raw=data, counted=self.usage)
        return StreamChunk(content=content, raw=data)

    def _start(self, index: int, block: dict[str, Json]) -> tuple[OutputBlock, ...]:
        kind = block.get("type")
        if kind == "text":
            return (Text(str_field(block, "text")),) if block.get("text") else ()
        if kind == "thinking":
            return (Thought(str_field(block, "thinking")),) if block.get("thinking") else ()
        if kind == "redacted_thinking":
            return (Thought(None, signature=str_field(block, "data")),)
        if kind != "tool_use":
            return ()
        arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
        if self.json_tool and block.get("name") == JSON_TOOL_NAME:
            self._tool_ids[index] = None
            return (Text(arguments),) if arguments else ()
        self._tool_ids[index] = str_field(block, "id")
        self._called = True
        return (ToolCall(id=str_field(block, "id"), name=str_field(block, "name"), arguments=arguments),)

    def _delta(self, index: int, delta: dict[str, Json]) -> tuple[OutputBlock, ...]:
        kind = delta.get("type")
        if kind == "text_delta":
            return (Text(str_field(delta, "text")),) if delta["text"] else ()
        if kind == "thinking_delta":
            return (Thought(str_field(delta, "thinking")),) if delta["thinking"] else ()
        if kind == "signature_delta":  # "" text: the signature of the thinking block being streamed
            return (Thought("", signature=str_field(delta, "signature")),)
        if kind != "input_json_delta":
            return ()  # citations and delta types Anthropic may add later
        fragment = str_field(delta, "partial_json")
        if index not in self._tool_ids:
            raise ValueError(f"input_json_delta for content block {index}, which is not an open tool_use")
        tool_id = self._tool_ids[index]
        if not fragment:
            return ()
        return (Text(fragment),) if tool_id is None else (ToolCall(id=tool_id, name="", arguments=fragment),)

    def _error(self, payload: dict[str, Json], data: str) -> ProviderError:
        error = payload.get("error")
        status = ERROR_STATUSES.get(str(error.get("type")), 500) if isinstance(error, dict) else 500
        exc = error_from_status(self.provider, status, data, raw_request=self.raw_request)
        if self.usage != Usage():  # what message_start counted: the cut stream is priced from it
            exc.reported_usage = self.usage
        return exc

"""Streamed generateContent: SSE data payloads in, StreamChunk deltas out (pure; no I/O)."""

from __future__ import annotations

from lsd.errors import ProviderError
from lsd.providers.base import error_from_status, json_object, malformed
from lsd.providers.gemini.wire import Parts, blocked_error, first_candidate, parse_usage
from lsd.providers.sse import SseEvent
from lsd.types import FinishReason, StreamChunk, Usage


class StreamState:
    """Turns the SSE data payloads of one streamGenerateContent call into StreamChunk deltas.

    `feed` returns a chunk for each payload with content (raw = that payload) and None for the others, whose
    payloads ride on the chunk `finish` builds with the last usageMetadata and the finish reason. Gemini sends
    each function call whole, so each ToolCall chunk carries its id, name and complete arguments.
    """

    def __init__(self, *, json_tool: bool = False, provider: str = "", raw_request: str | None = None) -> None:
        self.provider = provider
        self.raw_request = raw_request
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self.payloads: list[str] = []
        self._held: list[str] = []
        self._parts = Parts(json_tool=json_tool)

    def raw_response(self) -> str:
        return "\n".join(self.payloads)

    def attach(self, exc: ProviderError) -> ProviderError:
        """`exc` with this stream's provider and what crossed the wire so far."""
        exc.provider, exc.raw_request, exc.raw_response = self.provider, self.raw_request, self.raw_response()
        return exc

    def feed_event(self, event: SseEvent) -> StreamChunk | None:
        return self.feed(event.data)

    def missing_end(self) -> str | None:
        return None if self.finish_reason is not None else "a finishReason"

    def feed(self, data: str) -> StreamChunk | None:
        self.payloads.append(data)
        event = json_object(data)
        if event is None:
            raise self.attach(malformed("a stream event is not a JSON object"))
        error = event.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and code >= 400 else 500
            raise error_from_status(self.provider, status, data, raw_request=self.raw_request)
        try:
            candidate = first_candidate(event)
            if candidate is None and (blocked := blocked_error(event)) is not None:
                raise blocked
            blocks = self._parts.blocks(candidate) if candidate is not None else []
        except ProviderError as exc:
            raise self.attach(exc) from None
        if "usageMetadata" in event:
            self.usage = parse_usage(event["usageMetadata"])
        if candidate is not None and candidate.get("finishReason") is not None:
            self.finish_reason = self._parts.finish_reason(candidate["finishReason"])
        if not blocks:
            self._held.append(data)
            return None
        return StreamChunk(content=tuple(blocks), raw=data)

    def finish(self) -> StreamChunk:
        """The last chunk: usage and finish reason (call only once `finish_reason` is set)."""
        reason = self.finish_reason
        if reason == "stop" and self._parts.calls:
            reason = "tool_call"  # the call may come in an event before the one with the finish reason
        return StreamChunk(usage=self.usage, finish_reason=reason, raw="\n".join(self._held))

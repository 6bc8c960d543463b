"""ConverseStream: Bedrock's event-stream messages in, StreamChunk deltas out.

`EventStreamDecoder` turns the response's bytes (`application/vnd.amazon.eventstream`: a prelude with the total
and header lengths and its CRC32, the headers, the JSON payload, the message CRC32) into SseEvents with botocore's
parser: an event message becomes SseEvent(<:event-type>, <payload>), an exception message
SseEvent("exception:<:exception-type>", <payload>), so the HTTP shell's stream loop (scrubbing, the last chunk,
an interrupted stream) serves this framing too. `StreamState` is pure: it maps the events of one stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import orjson

# Without the `aws` extra the provider refuses its config (credentials.AWS_EXTRA_MISSING).
with contextlib.suppress(ImportError):
    from botocore import eventstream

from lsd.errors import ProviderError
from lsd.providers.anthropic.wire import JSON_TOOL_NAME
from lsd.providers.aws_bedrock.wire import EXCEPTION_STATUSES, finish_reason, parse_usage, status_error
from lsd.providers.base import malformed
from lsd.providers.sse import SseEvent
from lsd.types import FinishReason, Json, OutputBlock, StreamChunk, Text, Thought, ToolCall, Usage

EXCEPTION_PREFIX = "exception:"


class EventStreamDecoder:
    """Bytes as they arrive in, whole messages out as SseEvents; raises ProviderError(kind="malformed") for a
    frame whose lengths or checksums are wrong."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._buffer = eventstream.EventStreamBuffer()

    def feed(self, data: bytes) -> Iterator[SseEvent]:
        self._buffer.add_data(data)
        try:
            for message in self._buffer:
                headers = message.headers
                payload = message.payload.decode("utf-8", "replace")
                if headers.get(":message-type") == "exception":
                    yield SseEvent(f"{EXCEPTION_PREFIX}{headers.get(':exception-type', '')}", payload)
                elif headers.get(":message-type") == "error":
                    yield SseEvent(f"{EXCEPTION_PREFIX}{headers.get(':error-code', '')}", payload)
                else:
                    yield SseEvent(str(headers.get(":event-type", "")), payload)
        except eventstream.ParserError as exc:  # a bad length, a checksum that does not match
            raise malformed(f"an event-stream frame is broken: {exc}", provider=self.provider) from None

    def close(self) -> tuple[SseEvent, ...]:
        """Nothing: a message is complete when its frame is (a stream cut inside one ends without its end event)."""
        return ()

    @property
    def pending_bytes(self) -> int:
        """0: the frame parser bounds a pending frame itself (its prelude's lengths are checked as it arrives)."""
        return 0


class StreamState:
    """Turns the events of one ConverseStream call into StreamChunk deltas. The stream ends with messageStop
    (the stop reason) and then metadata (the usage); `finish` builds the last chunk from both."""

    def __init__(self, provider: str, *, json_tool: bool = False, raw_request: str | None = None) -> None:
        self.provider = provider
        self.json_tool = json_tool
        self.raw_request = raw_request
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self.stopped = False
        self.payloads: list[str] = []
        self._held: list[str] = []
        self._tool_ids: dict[int, str | None] = {}  # open toolUse blocks by index; None: the JSON answer
        self._called = False  # a tool other than the JSON answer's was called

    def raw_response(self) -> str:
        return "\n".join(self.payloads)

    def missing_end(self) -> str | None:
        return None if self.stopped else "messageStop"

    def finish(self) -> StreamChunk:
        return StreamChunk(usage=self.usage, finish_reason=self.finish_reason, raw="\n".join(self._held))

    def feed_event(self, event: SseEvent) -> StreamChunk | None:
        self.payloads.append(event.data)
        name = event.event or ""
        if name.startswith(EXCEPTION_PREFIX):
            raise self._exception(name.removeprefix(EXCEPTION_PREFIX), event.data)
        try:
            payload = orjson.loads(event.data)
            if not isinstance(payload, dict):
                raise ValueError("event payload is not an object")
            content = self._content(name, payload)
        except (ValueError, TypeError, KeyError) as exc:
            raise ProviderError(
                f"malformed stream event {name!r}: {exc}",
                provider=self.provider,
                kind="malformed",
                raw_request=self.raw_request,
                raw_response=event.data,
            ) from exc
        if not content:
            self._held.append(event.data)
            return None
        return StreamChunk(content=content, raw=event.data)

    def _content(self, name: str, payload: dict[str, Json]) -> tuple[OutputBlock, ...]:
        if name == "contentBlockStart":
            start = payload["start"]
            use = start.get("toolUse") if isinstance(start, dict) else None
            if not isinstance(use, dict):
                return ()
            index, tool_id, tool_name = int(payload["contentBlockIndex"]), str(use["toolUseId"]), str(use["name"])
            if self.json_tool and tool_name == JSON_TOOL_NAME:
                self._tool_ids[index] = None
                return ()
            self._tool_ids[index] = tool_id
            self._called = True
            return (ToolCall(id=tool_id, name=tool_name, arguments=""),)
        if name == "contentBlockDelta":
            return self._delta(int(payload["contentBlockIndex"]), payload["delta"])
        if name == "contentBlockStop":
            self._tool_ids.pop(int(payload["contentBlockIndex"]), None)
        elif name == "messageStop":
            self.stopped = True
            self.finish_reason = finish_reason(payload.get("stopReason"), json_tool=self.json_tool and not self._called)
        elif name == "metadata":
            self.usage = parse_usage(payload.get("usage"))
        # messageStart and event types Bedrock may add later carry nothing
        return ()

    def _delta(self, index: int, delta: Json) -> tuple[OutputBlock, ...]:
        if not isinstance(delta, dict):
            raise ValueError("delta is not an object")
        if isinstance(delta.get("text"), str):
            return (Text(delta["text"]),) if delta["text"] else ()
        use = delta.get("toolUse")
        if isinstance(use, dict):
            if index not in self._tool_ids:
                raise ValueError(f"toolUse delta for content block {index}, which is not an open toolUse")
            fragment, tool_id = str(use.get("input") or ""), self._tool_ids[index]
            if not fragment:
                return ()
            return (Text(fragment),) if tool_id is None else (ToolCall(id=tool_id, name="", arguments=fragment),)
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            if isinstance(reasoning.get("text"), str):
                return (Thought(reasoning["text"]),) if reasoning["text"] else ()
            if isinstance(reasoning.get("signature"), str):  # the signature of the reasoning being streamed
                return (Thought("", signature=reasoning["signature"]),)
            if isinstance(reasoning.get("redactedContent"), str):  # a redacted block of its own
                return (Thought(None, signature=reasoning["redactedContent"]),)
        return ()  # delta kinds Bedrock may add later

    def _exception(self, name: str, data: str) -> ProviderError:
        status = EXCEPTION_STATUSES.get(name[:1].lower() + name[1:], 500)
        return status_error(self.provider, status, data, name, raw_request=self.raw_request)

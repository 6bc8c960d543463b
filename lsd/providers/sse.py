"""Server-sent events: turn the bytes of a streaming response into event payloads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from lsd.immutable import immutable


@immutable
class SseEvent:
    event: str | None
    data: str


class EventDecoder(Protocol):
    """What HttpProvider.stream needs of a stream's framing (HttpProvider.decoder): SseParser below, or Bedrock's
    EventStreamDecoder."""

    def feed(self, data: bytes) -> Iterable[SseEvent]:
        """The events completed by `data` (the body's bytes as they arrive, split anywhere)."""

    def close(self) -> Iterable[SseEvent]:
        """The events the body's end completes."""

    @property
    def pending_bytes(self) -> int:
        """The bytes of an incomplete event held back (a stream whose pending event passes MAX_LINE is cut off)."""


class SseParser:
    """An incremental SSE parser: `feed` it the response body's bytes as they arrive (split anywhere) and it
    returns the events completed so far; `close` returns the last one when the body ends without a blank line.
    Multi-line `data:` fields are joined with \\n; comments and fields other than `data` and `event` are skipped.

    One pass over each received block, with no generator per line: a token streamed by a provider costs one
    `feed` call on the way through the gateway."""

    def __init__(self) -> None:
        self._pending = b""
        self._event: str | None = None
        self._data: list[str] = []

    @property
    def pending_bytes(self) -> int:
        """The length of the line still incomplete (a provider that never ends its line is cut off by the caller)."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[SseEvent]:
        if (
            data.startswith(b"data: ")
            and data.find(b"\n") == len(data) - 2
            and data.endswith(b"\n\n")
            and 13 not in data  # no \r
            and not self._pending
            and not self._data
            and self._event is None
        ):
            # A streamed token's block: one `data:` line and its blank line, nothing before it. One event, no
            # split into lines (half the parse of the general way below).
            return [SseEvent(None, data[6:-2].decode("utf-8"))]
        lines = (self._pending + data if self._pending else data).split(b"\n")
        self._pending = lines.pop()
        events: list[SseEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[SseEvent]:
        events: list[SseEvent] = []
        if self._pending:
            self._line(self._pending, events)
            self._pending = b""
        if self._data:
            events.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return events

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        line = line.rstrip(b"\r\n")
        if not line:
            if self._data:
                events.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        elif line.startswith(b"data:"):
            value = line[6:] if line[5:6] == b" " else line[5:]
            self._data.append(value.decode("utf-8"))
        elif line.startswith(b"event:"):
            value = line[7:] if line[6:7] == b" " else line[6:]
            self._event = value.decode("utf-8")

"""Server-sent events: turn the lines of a streaming response into event payloads."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from lsd.immutable import immutable


@immutable
class SseEvent:
    event: str | None
    data: str


async def sse_events(lines: AsyncIterator[bytes]) -> AsyncGenerator[SseEvent, None]:
    """Yield one SseEvent per blank-line-terminated event; multi-line `data:` fields are joined with \\n."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SseEvent(event, "\n".join(data))

"""Server-sent events for streamed inferences: `data:` lines, `data: [DONE]`, and as few writes as the stream allows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Send

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Final(bytes):
    """The last piece of an event stream: it goes out as the response body's last message."""


class EventStreamResponse(StreamingResponse):
    """A text/event-stream response (starlette's, so a client that goes away cancels the stream) whose `Final`
    piece ends the body in the same message: one write and one chunk frame less per stream."""

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            final = type(chunk) is Final
            await send({"type": "http.response.body", "body": chunk, "more_body": not final})
            if final:
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def event_stream(events: AsyncIterator[tuple[dict[str, Any], bool]]) -> AsyncIterator[bytes]:
    """`data:` lines for `events` ((JSON object, trailing) pairs), then `data: [DONE]` as the Final piece. A
    trailing event (usage and finish reason, no new content) is held back and sent with [DONE]: the stream's last
    three messages become one. Content is never held."""
    held = b""
    async for data, trailing in events:
        line = b"data: " + orjson.dumps(data) + b"\n\n"
        if trailing:
            held += line
        else:
            yield held + line if held else line
            held = b""
    yield Final(held + b"data: [DONE]\n\n")

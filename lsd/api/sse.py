"""Server-sent events for streamed inferences: `data:` lines, `data: [DONE]`, and as few writes as the stream allows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# What starlette's init_headers makes of SSE_HEADERS and the media type, made once instead of per response.
_RAW_HEADERS = (
    *((name.encode("latin-1"), value.encode("latin-1")) for name, value in SSE_HEADERS.items()),
    (b"content-type", b"text/event-stream; charset=utf-8"),
)
DONE = b"data: [DONE]\n\n"

E = TypeVar("E")


class Final(bytes):
    """The last piece of an event stream: it goes out as the response body's last message."""


class _ClientGone(Exception):
    """The client closed the connection: the stream is cut (raised by the listener to end its task group)."""


class EventStreamResponse(StreamingResponse):
    """A text/event-stream response whose `Final` piece ends the body in the same message: one write and one chunk
    frame less per stream. A client that goes away cancels the stream, as starlette's: here one asyncio task
    listens for the disconnect (starlette's anyio task group and cancel scope cost ~100 us a stream)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[Any]) -> None:
        # StreamingResponse's attributes, set directly: its __init__ (an ABC isinstance check, the headers encoded
        # and searched) cost ~25 us a stream on a busy loop.
        self.body_iterator = content
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_RAW_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = scope.get("asgi", {}).get("spec_version", "2.0")
        if scope["type"] != "http" or tuple(map(int, spec.split("."))) >= (2, 4):
            await super().__call__(scope, receive, send)  # the server tells of a disconnect itself
            return
        try:
            async with asyncio.TaskGroup() as group:
                listener = group.create_task(_client_gone(receive))
                await self.stream_response(send)
                listener.cancel()
        except BaseExceptionGroup as errors:
            # The listener's _ClientGone cancelled the stream: the response is over. Anything else is raised
            # alone, as starlette's collapsing task group does.
            others = [e for e in errors.exceptions if not isinstance(e, _ClientGone)]
            if others:
                raise others[0] from None
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            final = type(chunk) is Final
            await send({"type": "http.response.body", "body": chunk, "more_body": not final})
            if final:
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class JsonEventStream(EventStreamResponse):
    """The event stream of `events`, written straight from them (no generator between the events and the
    socket): `encode` gives each event's line (`data: <JSON>\\n\\n`, made in one piece by the encoder) and whether
    it only trails the content (None: nothing to send).
    A trailing event (usage and finish reason, no new content) is held back and sent with `data: [DONE]`: the
    stream's last three messages become one. Content is never held."""

    def __init__(self, events: AsyncIterator[E], encode: Callable[[E], tuple[bytes, bool] | None]) -> None:
        super().__init__(events)
        self.encode: Callable[[Any], tuple[bytes, bool] | None] = encode

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        encode, held = self.encode, b""
        async for event in self.body_iterator:
            encoded = encode(event)
            if encoded is None:
                continue
            line, trailing = encoded
            if trailing:
                held += line
            else:
                await send({"type": "http.response.body", "body": held + line if held else line, "more_body": True})
                held = b""
        await send({"type": "http.response.body", "body": held + DONE, "more_body": False})


def json_pair(item: tuple[dict[str, Any], bool]) -> tuple[bytes, bool]:
    """The `encode` of a stream of (JSON object, trailing) pairs."""
    return b"data: " + orjson.dumps(item[0]) + b"\n\n", item[1]


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    raise _ClientGone

"""The event-stream response: content goes out as it comes, the trailing usage chunk leaves with [DONE]."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from lsd.api.sse import EventStreamResponse, event_stream


async def events(items: list[tuple[dict[str, Any], bool]]) -> AsyncIterator[tuple[dict[str, Any], bool]]:
    for item in items:
        yield item


async def messages(items: list[tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await EventStreamResponse(event_stream(events(items))).stream_response(send)
    return sent


def line(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def test_content_is_sent_at_once_and_the_trailer_ends_the_body_with_done() -> None:
    a, b, usage = {"content": "a"}, {"content": "b"}, {"usage": {"input_tokens": 1}}
    sent = await messages([(a, False), (b, False), (usage, True)])
    assert sent[0]["type"] == "http.response.start"
    assert dict(sent[0]["headers"])[b"content-type"].startswith(b"text/event-stream")
    bodies = [(m["body"], m["more_body"]) for m in sent[1:]]
    assert bodies == [(line(a), True), (line(b), True), (line(usage) + b"data: [DONE]\n\n", False)]


async def test_a_trailer_followed_by_content_is_not_held_back_further() -> None:
    usage, late = {"usage": {}}, {"content": "late"}
    sent = await messages([(usage, True), (late, False)])
    bodies = [(m["body"], m["more_body"]) for m in sent[1:]]
    assert bodies == [(line(usage) + line(late), True), (b"data: [DONE]\n\n", False)]


async def test_an_empty_stream_still_ends_with_done() -> None:
    sent = await messages([])
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [(b"data: [DONE]\n\n", False)]

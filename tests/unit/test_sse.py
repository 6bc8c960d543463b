"""The event-stream response: content goes out as it comes, the trailing usage chunk leaves with [DONE], a client
that goes away cuts it; each /inference chunk is the bytes orjson makes of its JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID

import orjson
import pytest

from lsd.api.sse import JsonEventStream, json_pair
from lsd.api.tensorzero_wire import ChunkEncoder, chunk_json
from lsd.errors import ProviderError
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.types import Text, Thought, ToolCall, Usage


async def events(items: list[tuple[dict[str, Any], bool]]) -> AsyncIterator[tuple[dict[str, Any], bool]]:
    for item in items:
        yield item


async def messages(items: list[tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await JsonEventStream(events(items), json_pair).stream_response(send)
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


async def test_a_client_that_goes_away_cuts_the_stream() -> None:
    """The disconnect listener cancels the stream where it waits, and the response ends without an error."""
    cut = asyncio.Event()
    sent: list[Any] = []

    async def forever() -> AsyncIterator[tuple[dict[str, Any], bool]]:
        yield {"content": "a"}, False
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cut.set()
            raise

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.1"}}
    await asyncio.wait_for(JsonEventStream(forever(), json_pair)(scope, receive, send), 5)
    assert cut.is_set()
    assert [m.get("body") for m in sent[1:]] == [line({"content": "a"})]


async def test_a_stream_that_fails_raises_its_own_error() -> None:
    async def failing() -> AsyncIterator[tuple[dict[str, Any], bool]]:
        yield {"content": "a"}, False
        raise ValueError("boom")

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.1"}}
    with pytest.raises(ValueError, match="boom"):
        await JsonEventStream(failing(), json_pair)(scope, receive, send)


def stream_of(function_type: str, *, raw_chunks: bool = False) -> InferenceStream:
    return cast(
        InferenceStream,
        SimpleNamespace(
            inference_id=UUID(int=1),
            episode_id=UUID(int=2),
            variant_name="v",
            function_type=function_type,
            raw_chunks=raw_chunks,
        ),
    )


EVENTS = [
    StreamEvent(content=(Text('t"é\n'),)),
    StreamEvent(content=(Text("a"), Text("b"))),
    StreamEvent(content=(ToolCall("c1", "get", '{"x":'),)),
    StreamEvent(content=(Thought("hmm", "sig"), Text("x"))),
    StreamEvent(usage=Usage(3, 4), finish_reason="stop", cost=0.5),
    StreamEvent(error=ProviderError("bad", provider="p")),
]


@pytest.mark.parametrize("function_type", ["chat", "json"])
@pytest.mark.parametrize("event", EVENTS)
def test_chunk_encoder_writes_the_sse_line_of_chunk_json(function_type: str, event: StreamEvent) -> None:
    stream = stream_of(function_type)
    for with_error_json in (False, True):
        encoded = ChunkEncoder(stream, with_error_json=with_error_json)(event)
        assert encoded == (line(chunk_json(stream, event, with_error_json=with_error_json)), event.trailing)
    # include_raw_response: each content chunk also carries the provider's raw chunk
    raw_stream = stream_of(function_type, raw_chunks=True)
    raw_event = replace(event, raw_chunk='{"raw": 1}') if event.content else event
    assert ChunkEncoder(raw_stream)(raw_event) == (line(chunk_json(raw_stream, raw_event)), event.trailing)

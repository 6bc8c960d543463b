"""The providers' SSE parser: events come out whole however the body's bytes are split."""

from __future__ import annotations

import pytest

from lsd.providers.sse import SseEvent, SseParser

BODY = (
    b": a comment\r\n"
    b"event: message_start\r\n"
    b'data: {"a": 1}\r\n'
    b"\r\n"
    b"data:no-space\n"
    b"data: second line\n"
    b"id: 7\n"
    b"\n"
    b"data: caf\xc3\xa9\n\n"
    b"data: [DONE]"
)
EXPECTED = [
    SseEvent("message_start", '{"a": 1}'),
    SseEvent(None, "no-space\nsecond line"),
    SseEvent(None, "café"),
    SseEvent(None, "[DONE]"),  # the body ended without its blank line: close() gives the last event
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(BODY)])
def test_events_whole_whatever_the_split(size: int) -> None:
    parser = SseParser()
    events: list[SseEvent] = []
    for i in range(0, len(BODY), size):
        events += parser.feed(BODY[i : i + size])
    events += parser.close()
    assert events == EXPECTED


def test_pending_bytes_count_the_unfinished_line() -> None:
    parser = SseParser()
    assert parser.feed(b"data: {") == []
    assert parser.pending_bytes == len(b"data: {")
    assert parser.feed(b"}\n\n") == [SseEvent(None, "{}")]
    assert parser.pending_bytes == 0


def test_an_event_per_block_keeps_what_came_before_it() -> None:
    """A block holding one whole `data:` event (a streamed token) after a block that began an event."""
    parser = SseParser()
    assert parser.feed(b"data: a\n\n") == [SseEvent(None, "a")]
    assert parser.feed(b"event: e\n") == []
    assert parser.feed(b"data: b\n\n") == [SseEvent("e", "b")]
    assert parser.feed(b"data: c\n") == []
    assert parser.feed(b"data: d\n\n") == [SseEvent(None, "c\nd")]
    assert parser.feed(b"data: {") == []
    assert parser.feed(b"data: e\n\n") == [SseEvent(None, "{data: e")]
    assert parser.feed(b"data: f\r\n\r\n") == [SseEvent(None, "f")]

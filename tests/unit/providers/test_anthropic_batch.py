"""Message Batches as pure functions: the create body, processing status, the results JSONL."""

from __future__ import annotations

import json

import pytest

from lsd.providers.anthropic.batch import batch_body, batch_state, parse_result_lines
from lsd.types import Text, Usage


def test_body() -> None:
    body, sent = batch_body([("a", {"model": "m", "max_tokens": 5}), ("b", {"model": "m"})])
    assert body == {
        "requests": [
            {"custom_id": "a", "params": {"model": "m", "max_tokens": 5}},
            {"custom_id": "b", "params": {"model": "m"}},
        ]
    }
    assert json.loads(sent["a"]) == {"model": "m", "max_tokens": 5}


def counts(**kw: int) -> dict[str, object]:
    base = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    return {"processing_status": "ended", "request_counts": {**base, **kw}}


@pytest.mark.parametrize(
    ("batch", "status", "errors"),
    [
        ({"processing_status": "in_progress"}, "pending", ()),
        ({"processing_status": "canceling"}, "pending", ()),
        (counts(succeeded=2), "completed", ()),
        (counts(succeeded=1, errored=1, expired=1), "completed", ("1 request(s) errored", "1 request(s) expired")),
        (counts(expired=2), "failed", ("2 request(s) expired",)),
        (counts(canceled=1, expired=1), "failed", ("1 request(s) canceled", "1 request(s) expired")),
        (counts(errored=2), "completed", ("2 request(s) errored",)),
    ],
)
def test_state(batch: dict[str, object], status: str, errors: tuple[str, ...]) -> None:
    assert batch_state(batch)[0] == status and batch_state(batch)[2] == errors


def test_unknown_state() -> None:
    with pytest.raises(ValueError, match="processing_status"):
        batch_state({"processing_status": "odd"})


def test_results() -> None:
    message = {
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 4, "output_tokens": 1},
    }
    tool = {
        "content": [{"type": "tool_use", "id": "t", "name": "respond", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {},
    }
    lines = [
        {"custom_id": "a", "result": {"type": "succeeded", "message": message}},
        {
            "custom_id": "b",
            "result": {
                "type": "errored",
                "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
            },
        },
        {"custom_id": "c", "result": {"type": "expired"}},
        {"custom_id": "d", "result": {"type": "canceled"}},
        {"custom_id": "e", "result": {"type": "succeeded", "message": {"content": "not a list"}}},
        {"custom_id": "f", "result": {"type": "succeeded", "message": tool}},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\nnot json\n"
    a, b, c, d, e, f = parse_result_lines(text, frozenset({"f"}))
    assert (a.content, a.usage, a.finish_reason, a.error) == ((Text("hi"),), Usage(4, 1), "stop", None)
    assert b.error == "invalid_request_error: bad"
    assert (c.error, c.kind) == ("the request was expired", "expired")
    assert (d.error, d.kind) == ("the request was canceled", "canceled")
    assert e.error is not None and e.kind == "malformed"
    assert f.content == (Text('{"a":1}'),) and f.finish_reason == "stop"

"""The Batch API wire format as pure functions: JSONL lines, the multipart upload, statuses, result files."""

from __future__ import annotations

import json

import pytest

from lsd.providers.openai.batch import (
    azure_api,
    batch_lines,
    batch_state,
    multipart_body,
    openai_api,
    parse_result_lines,
)
from lsd.types import Text, ToolCall, Usage


def test_lines_and_sent_bodies() -> None:
    jsonl, sent = batch_lines(
        [("a", {"model": "m", "messages": []}), ("b", {"model": "m", "n": 1})], "/v1/chat/completions"
    )
    lines = [json.loads(line) for line in jsonl.decode().splitlines()]
    assert lines[0] == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": []},
    }
    assert [line["custom_id"] for line in lines] == ["a", "b"]
    assert json.loads(sent["b"]) == {"model": "m", "n": 1}
    assert jsonl.endswith(b"\n")


def test_multipart_body() -> None:
    body, content_type = multipart_body(b'{"x":1}\n', "in.jsonl", "BOUNDARY")
    assert content_type == "multipart/form-data; boundary=BOUNDARY"
    text = body.decode()
    assert 'name="purpose"\r\n\r\nbatch\r\n' in text
    assert 'name="file"; filename="in.jsonl"' in text and '{"x":1}\n\r\n--BOUNDARY--\r\n' in text


def test_urls() -> None:
    api = openai_api("http://h/v1/")
    assert (api.files_url, api.batches_url, api.batch_url("b1"), api.file_content_url("f1")) == (
        "http://h/v1/files",
        "http://h/v1/batches",
        "http://h/v1/batches/b1",
        "http://h/v1/files/f1/content",
    )
    azure = azure_api("https://r.openai.azure.com/", "2024-10-21")
    assert azure.batch_url("b") == "https://r.openai.azure.com/openai/batches/b?api-version=2024-10-21"
    assert azure.endpoint == "/chat/completions"


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("validating", "pending"),
        ("in_progress", "pending"),
        ("finalizing", "pending"),
        ("cancelling", "pending"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("expired", "failed"),
        ("cancelled", "failed"),
    ],
)
def test_status_mapping(word: str, status: str) -> None:
    assert batch_state({"status": word})[:2] == (status, word)


def test_failed_batch_errors_and_unknown_status() -> None:
    errors = {"data": [{"code": "invalid_json", "message": "bad line", "line": 3}]}
    assert batch_state({"status": "failed", "errors": errors})[2] == ("invalid_json: bad line (line 3)",)
    assert batch_state({"status": "expired"})[2] == ("the batch is expired",)
    with pytest.raises(ValueError, match="unknown batch status"):
        batch_state({"status": "weird"})
    with pytest.raises(ValueError, match="no status"):
        batch_state({})


def _line(custom_id: str, status: int, body: object, error: object = None) -> str:
    return json.dumps(
        {"id": "r", "custom_id": custom_id, "response": {"status_code": status, "body": body}, "error": error}
    )


def test_result_lines() -> None:
    ok = {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    tool = {
        "choices": [
            {
                "message": {"tool_calls": [{"id": "c", "function": {"name": "respond", "arguments": '{"a":1}'}}]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    text = "\n".join(
        [
            _line("a", 200, ok),
            _line("b", 400, {"error": {"message": "too long", "code": "context_length_exceeded"}}),
            json.dumps({"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "expired"}}),
            _line("d", 200, {"no": "choices"}),
            _line("e", 200, tool),
            _line("f", 200, tool),
            "",
            "not json",
            json.dumps({"no_custom_id": True}),
        ]
    )
    a, b, c, d, e, f = parse_result_lines(text, frozenset({"e"}))
    assert (a.custom_id, a.content, a.usage, a.finish_reason, a.error) == (
        "a",
        (Text("hi"),),
        Usage(3, 1),
        "stop",
        None,
    )
    assert (b.error, b.status) == ("context_length_exceeded: too long", 400)
    assert c.error == "batch_expired: expired"
    assert d.error is not None and "no choices" in d.error
    assert e.content == (Text('{"a":1}'),) and e.finish_reason == "stop"  # json_mode "tool"
    assert f.content == (ToolCall("c", "respond", '{"a":1}'),)

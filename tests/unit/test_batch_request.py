"""Parsing `POST /batch_inference` bodies: aligned lists, per-input parsing, errors named by the batch's paths."""

from __future__ import annotations

from typing import Any

import pytest

from lsd.errors import InvalidRequest
from lsd.inference.batch_request import batch_path, parse_batch_request
from lsd.types import Text

MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}


def error(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_batch_request(body)
    return info.value


def test_aligned_fields_become_one_request_each() -> None:
    episode = "0190f0a8-1111-7000-8000-000000000000"
    batch = parse_batch_request(
        {
            "function_name": "f",
            "variant_name": "v",
            "inputs": [MESSAGE, MESSAGE],
            "episode_ids": [None, episode],
            "tags": [{"a": "1"}, None],
            "params": {"chat_completion": {"temperature": [None, 0.5], "max_tokens": [10, None]}},
            "tool_choice": ["none", None],
            "credentials": {"k": "v"},
        }
    )
    first, second = batch.requests
    assert (batch.function_name, batch.variant_name, batch.credentials, batch.dryrun) == ("f", "v", {"k": "v"}, False)
    assert first.input.messages[0].content == (Text("hi"),)
    assert (first.episode_id, str(second.episode_id)) == (None, episode)
    assert (dict(first.tags), dict(second.tags)) == ({"a": "1"}, {})
    assert (first.params.temperature, first.params.max_tokens) == (None, 10)
    assert (second.params.temperature, second.params.max_tokens) == (0.5, None)
    assert (first.tool_choice, second.tool_choice) == ("none", None)


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"inputs": [MESSAGE]}, "function_name", "missing"),
        ({"function_name": "f", "inputs": []}, "inputs", "must not be empty"),
        ({"function_name": "f", "inputs": {}}, "inputs", "missing required field"),
        ({"function_name": "f", "inputs": [MESSAGE], "stream": True}, "stream", "unknown field"),
        ({"function_name": "f", "inputs": [MESSAGE], "tags": [None, None]}, "tags", "expected 1 entries"),
        ({"function_name": "f", "inputs": [MESSAGE], "episode_ids": "x"}, "episode_ids", "one entry"),
        ({"function_name": "f", "inputs": [MESSAGE], "params": {"x": {}}}, "params", "chat_completion"),
        ({"function_name": "f", "inputs": [MESSAGE, 3]}, "inputs[1]", "expected an object"),
        ({"function_name": "f", "inputs": [MESSAGE], "episode_ids": ["nope"]}, "episode_ids[0]", "invalid UUID"),
        ({"function_name": "f", "inputs": [MESSAGE], "tags": [{"a": 1}]}, "tags[0].a", "expected a string"),
        ({"function_name": "f", "inputs": [MESSAGE], "output_schemas": [3]}, "output_schemas[0]", "JSON Schema"),
        (
            {"function_name": "f", "inputs": [MESSAGE], "params": {"chat_completion": {"seed": ["x"]}}},
            "params.chat_completion.seed[0]",
            "an integer",
        ),
        ({"function_name": "f", "inputs": [MESSAGE], "allowed_tools": [[1]]}, "allowed_tools[0][0]", "a string"),
        ({"function_name": "f", "inputs": [MESSAGE], "credentials": {"k": 1}}, "credentials", "strings"),
        ({"function_name": "f", "inputs": [MESSAGE], "dryrun": "yes"}, "dryrun", "boolean"),
    ],
)
def test_errors_name_the_batch_path(body: dict[str, Any], field: str, text: str) -> None:
    exc = error(body)
    assert exc.field == field and exc.message.startswith(f"{field}: ") and text in exc.message


def test_batch_path() -> None:
    assert batch_path("input.messages[0].content[1].arguments.x", 4) == "inputs[4].messages[0].content[1].arguments.x"
    assert batch_path("input.system", 0) == "inputs[0].system"
    assert batch_path("params.chat_completion.stop_sequences[2]", 1) == "params.chat_completion.stop_sequences[1][2]"
    assert batch_path("tool_choice", 2) == "tool_choice[2]"
    assert batch_path("function_name", 2) == "function_name"

"""Chat Completions tool messages: text parts are the tool's result; images and files among them (Qwen Code's
read_file answers an image so) follow the result, and reach each provider type in its own shape."""

from __future__ import annotations

from typing import Any

import pytest

from lsd.api.openai_messages import parse_messages
from lsd.errors import InvalidRequest
from lsd.providers.anthropic.wire import build_messages as anthropic_messages
from lsd.providers.openai.wire import build_messages as openai_messages
from lsd.types import File, Message, ProviderRequest, Text, ToolCall, ToolResult

PNG = "iVBORw0KGgo="
CALLS = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a.png"}'}},
        {"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "b.txt"}'}},
    ],
}
IMAGE_RESULT = {
    "role": "tool",
    "tool_call_id": "c1",
    "content": [
        {"type": "text", "text": "Read image a.png"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ],
}
TEXT_RESULT = {"role": "tool", "tool_call_id": "c2", "content": "hello"}


def test_an_image_in_a_tool_message_follows_its_result_in_the_tool_turn() -> None:
    parsed = parse_messages([{"role": "user", "content": "look"}, CALLS, IMAGE_RESULT, TEXT_RESULT])
    assert parsed.messages[2] == Message(
        "user",
        (
            ToolResult("c1", "read_file", "Read image a.png"),
            File(mime_type="image/png", data=PNG),
            ToolResult("c2", "read_file", "hello"),
        ),
    )
    request = ProviderRequest(system=None, messages=parsed.messages)
    # OpenAI-style providers: every tool message right after the calls, then the image in a user message.
    sent = openai_messages(request)
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert sent[2]["content"] == "Read image a.png" and sent[3]["content"] == "hello"
    assert sent[4]["content"][0]["image_url"]["url"].endswith(PNG)
    # Anthropic: the tool results first, the image in the same user turn.
    turn = anthropic_messages(parsed.messages)[2]
    assert [b["type"] for b in turn["content"]] == ["tool_result", "tool_result", "image"]


def test_tool_messages_after_a_user_message_start_their_own_turn() -> None:
    parsed = parse_messages([{"role": "user", "content": "look"}, CALLS, TEXT_RESULT, {"role": "user", "content": "x"}])
    assert [m.role for m in parsed.messages] == ["user", "assistant", "user", "user"]
    assert parsed.messages[3].content == (Text("x"),)
    assert isinstance(parsed.messages[1].content[0], ToolCall)


@pytest.mark.parametrize(
    ("part", "field"),
    [({"type": "input_audio", "input_audio": {}}, "messages[2].content[1]"), ("text", "messages[2].content[1]")],
)
def test_other_parts_in_a_tool_message_are_400s_naming_them(part: Any, field: str) -> None:
    message = {**IMAGE_RESULT, "content": [IMAGE_RESULT["content"][0], part]}  # type: ignore[index]
    with pytest.raises(InvalidRequest) as raised:
        parse_messages([{"role": "user", "content": "look"}, CALLS, message])
    assert raised.value.field == field

"""Chat Completions tool messages: text parts are the tool's result; images and files among them (Qwen Code's
read_file answers an image so) follow the result, and reach each provider type in its own shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from lsd.api.openai_messages import parse_messages
from lsd.api.openai_request import parse_chat_request
from lsd.api.openai_wire import ChunkWriter
from lsd.errors import InvalidRequest
from lsd.inference.streaming import StreamEvent
from lsd.providers.anthropic.wire import build_messages as anthropic_messages
from lsd.providers.openai.wire import build_messages as openai_messages
from lsd.types import File, Message, ProviderRequest, Text, Thought, ToolCall, ToolResult

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


def test_streamed_thoughts_go_back_where_they_were_and_a_lone_signature_apart() -> None:
    """Gemini 3 signs the function call after its thought: the streamed entries keep the signature a block of its
    own, at its place, so that the Gemini wire puts it on the call again."""
    call = parse_chat_request(
        {"model": "tensorzero::model_name::m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    writer = ChunkWriter(
        call,
        SimpleNamespace(
            inference_id=UUID(int=1), episode_id=UUID(int=2), model_name="m", variant_name="m", function_type="chat"
        ),
    )  # type: ignore[arg-type]
    events = [
        StreamEvent(content=(Thought("let "),)),
        StreamEvent(content=(Thought("me look"),)),
        StreamEvent(content=(Thought(None, "gemini-sig"), ToolCall("call_1", "ls", "{}"))),
    ]
    entries = [
        e for ev in events for e in (writer.chunk(ev) or {})["choices"][0]["delta"].get("tensorzero_extra_content", [])
    ]
    assert [(e["id"], e["insert_index"]) for e in entries] == [("0", 0), ("0", 0), ("1", 1)]
    merged: dict[str, dict[str, Any]] = {}  # as a client puts a streamed message back together: entries by id
    for entry in entries:
        whole = merged.setdefault(entry["id"], {k: v for k, v in entry.items() if k != "text"})
        whole["text"] = (whole.get("text") or "") + (entry.get("text") or "") if "text" in entry else whole.get("text")
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}],
        "tensorzero_extra_content": list(merged.values()),
    }
    parsed = parse_messages([{"role": "user", "content": "hi"}, message]).messages[1].content
    assert [type(b).__name__ for b in parsed] == ["Thought", "Thought", "ToolCall"]
    assert parsed[0] == Thought("let me look") and parsed[1] == Thought(None, "gemini-sig")

"""The Responses API's request parsing (every refusal a 400 naming its field) and the answers built from typed
results: the response object and the stream's events."""

from __future__ import annotations

from typing import Any

import pytest

from lsd.api.responses_items import open_thought
from lsd.api.responses_request import (
    STORE_TAG,
    parse_response_id,
    parse_responses_request,
    response_id,
    with_history,
)
from lsd.api.responses_wire import (
    message_item,
    output_items,
    reasoning_item,
    response_json,
    usage_json,
)
from lsd.errors import InvalidRequest, ProviderError
from lsd.inference.result import ToolCallOutput
from lsd.inference.streaming import StreamEvent
from lsd.types import File, Message, Text, Thought, ToolCall, ToolResult, Usage
from tests.support.responses import ID, MODEL, events_of, parse


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "gpt-4o"}, "model"),
        ({"input": 3}, "input"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
        ({"tools": [{"type": "function", "name": "f"}, {"type": "file_search"}]}, "tools[1].type"),
        (
            {"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "c"}]}]},
            "tools[0].tools[0].type",
        ),
        (
            {
                "tools": [
                    {"type": "function", "name": "n__f"},
                    {"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "f"}]},
                ]
            },
            "tools",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_audio"}]}]},
            "input[0].output[0].type",
        ),
        ({"tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"metadata": {"team": 3}}, "metadata.team"),
        ({"metadata": {"lsd::x": "y"}}, "metadata.lsd::x"),
        ({"store": "no"}, "store"),
        ({"previous_response_id": "resp_nothex"}, "previous_response_id"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"instructions": ["x"]}, "instructions"),
        ({"lsd::variant_name": 3}, "lsd::variant_name"),
        ({"tensorzero::credentials": {"k": 1}}, "lsd::credentials"),
    ],
)
def test_refusals_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_responses_request({"model": MODEL, "input": "hi", **body})
    assert info.value.field == field and info.value.http_status == 400


def test_input_items_become_messages() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    summary = [{"type": "summary_text", "text": "think"}]
    call = parse(
        instructions="be brief",
        input=[
            {"role": "developer", "content": "use metric units"},
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}, image]},
            {"type": "reasoning", "id": "rs_1", "summary": summary, "encrypted_content": "sig"},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "message", "role": "user", "content": "thanks"},
        ],
    )
    request = call.request
    assert request.input.system == "be brief\nuse metric units"
    assert request.input.messages == (
        Message("user", (Text("weather?"), File(mime_type="image/png", data="AAAA"))),
        Message("assistant", (Thought("think", "sig"), ToolCall("call_1", "weather", '{"city": "Oslo"}'))),
        Message("user", (ToolResult("call_1", "weather", "sunny"), Text("thanks"))),
    )


def test_fields_reach_the_engine_request() -> None:
    call = parse(
        model="lsd::function_name::chat",
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        tool_choice={"type": "function", "name": "f"},
        text={"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
        temperature=0.5,
        max_output_tokens=100,
        metadata={"team": "search"},
        store=False,
        stream=True,
        **{"lsd::tags": {"team": "override", "user": "u1"}, "lsd::variant_name": "a"},
    )
    r = call.request
    assert (r.function_name, r.model_name, r.variant_name, r.stream) == ("chat", None, "a", True)
    assert r.params.temperature == 0.5 and r.params.max_tokens == 100 and r.params.json_mode == "strict"
    assert r.output_schema == {"type": "object"}
    assert r.additional_tools[0].name == "f" and r.additional_tools[0].strict
    assert r.tool_choice == {"specific": "f"}
    assert r.tags == {"team": "override", "user": "u1", STORE_TAG: "false"}
    assert call.store is False and call.max_output_tokens == 100


def test_response_ids() -> None:
    assert response_id(ID) == "resp_01930000000070008000000000000001"
    assert parse_response_id(response_id(ID), "p") == ID
    assert parse_response_id(str(ID), "p") == ID


def test_history_puts_the_stored_exchange_first_without_its_instructions() -> None:
    call = parse(instructions="new rules", input="and then?")
    stored_input = {"system": "old rules", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    stored_output = [
        {"type": "text", "text": "hello"},
        {"type": "tool_call", "id": "c1", "name": None, "arguments": None, "raw_name": "f", "raw_arguments": "{"},
        {"type": "unknown", "data": {}},
    ]
    continued = with_history(call, stored_input, stored_output, "chat").request.input
    assert continued.system == "new rules"
    assert continued.messages == (
        Message("user", (Text("hi"),)),
        Message("assistant", (Text("hello"), ToolCall("c1", "f", "{"))),
        Message("user", (Text("and then?"),)),
    )
    answered = parse(input=[{"type": "function_call_output", "call_id": "c1", "output": "42"}])
    tool_result = with_history(answered, stored_input, stored_output, "chat").request.input.messages[-1]
    assert tool_result == Message("user", (ToolResult("c1", "f", "42"),))  # named after the stored call
    json_history = with_history(call, stored_input, {"raw": '{"a": 1}', "parsed": {"a": 1}}, "json").request.input
    assert json_history.messages[1] == Message("assistant", (Text('{"a": 1}'),))


def test_output_items_keep_the_answer_order() -> None:
    content = (
        Thought("hmm", "sig"),
        Text("a"),
        Text("b"),
        ToolCallOutput("call_9", "weather", '{"x": 1}', "weather", {"x": 1}),
    )
    items = output_items(ID, content, None)
    assert [i["type"] for i in items] == ["reasoning", "message", "function_call"]
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    # the text sealed with the signature: a client that keeps only encrypted_content sends back the whole thought
    assert open_thought(items[0]["encrypted_content"]) == ("hmm", "sig")
    kept = parse(input=[{"type": "reasoning", "summary": [], "encrypted_content": items[0]["encrypted_content"]}])
    assert kept.request.input.messages[0].content == (Thought("hmm", "sig"),)
    redacted = output_items(ID, (Thought(None, "opaque"),), None)[0]
    assert redacted["encrypted_content"] == "opaque" and open_thought("opaque") == (None, "opaque")
    # an unsigned thought (DeepSeek's) is sealed too: opencode with store: false keeps only encrypted_content
    unsigned = output_items(ID, (Thought("pondering", None),), None)[0]
    assert open_thought(unsigned["encrypted_content"]) == ("pondering", None)
    back = parse(input=[{"type": "reasoning", "summary": [], "encrypted_content": unsigned["encrypted_content"]}])
    assert back.request.input.messages[0].content == (Thought("pondering", None),)
    assert items[1]["content"][0]["text"] == "ab" and items[1]["id"] == f"msg_{ID.hex}_1"
    assert (items[2]["call_id"], items[2]["name"], items[2]["arguments"]) == ("call_9", "weather", '{"x": 1}')
    assert output_items(ID, (), '{"a": 1}')[0]["content"][0]["text"] == '{"a": 1}'


def test_output_items_sent_back_as_input_are_the_assistant_turn() -> None:
    """The SDK's manual loop: `input = [*input, *response.output, function_call_output]`."""
    content = (Thought("hmm", "sig"), Text("let me look"), ToolCallOutput("call_9", "weather", "{}", "weather", {}))
    items = [
        {"role": "user", "content": "weather?"},
        *output_items(ID, content, None),
        {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
    ]
    messages = parse(input=items).request.input.messages
    assert messages == (
        Message("user", (Text("weather?"),)),
        Message("assistant", (Thought("hmm", "sig"), Text("let me look"), ToolCall("call_9", "weather", "{}"))),
        Message("user", (ToolResult("call_9", "weather", "sunny"),)),
    )


def test_a_cut_answer_is_incomplete() -> None:
    call = parse(max_output_tokens=5)
    body = response_json(
        call, ID, "gpt", created_at=1, output=[], usage=usage_json(Usage(3, 5), 0.1), finish_reason="length"
    )
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["total_tokens"] == 8 and body["usage"]["input_tokens_details"] == {"cached_tokens": 0}
    assert body["model"] == "lsd::model_name::gpt" and body["max_output_tokens"] == 5
    reasoning, message = reasoning_item("rs_0", "hmm", None), message_item("msg_1", "cut sho")
    cut = response_json(call, ID, "gpt", created_at=1, output=[reasoning, message], finish_reason="length")
    assert [item.get("status") for item in cut["output"]] == [None, "incomplete"]  # the item it was cut in


def test_cache_reads_and_writes_are_in_the_usage_details() -> None:
    usage = usage_json(Usage(100, 5, cache_read_input_tokens=80, cache_write_input_tokens=10), None)
    assert usage["input_tokens"] == 100 and usage["total_tokens"] == 105
    assert usage["input_tokens_details"] == {"cached_tokens": 80, "cache_write_tokens": 10}


def test_stream_events_are_numbered_and_close_each_item() -> None:
    events = events_of(
        parse(),
        [
            StreamEvent(content=(Text("Hel"),)),
            StreamEvent(content=(Text("lo"),)),
            StreamEvent(content=(ToolCall("call_1", "f", '{"a"'),)),
            StreamEvent(content=(ToolCall("call_1", "", ": 1}"),)),
            StreamEvent(usage=Usage(2, 3), finish_reason="tool_call", cost=0.5),
        ],
    )
    kinds = [kind for kind, _ in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[6][1]["text"] == "Hello"
    assert events[12][1]["arguments"] == '{"a": 1}' and events[12][1]["name"] == "f"
    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == 3
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "call_1"


def test_a_broken_stream_fails_but_an_error_it_goes_on_after_does_not() -> None:
    broken = ProviderError("cut", provider="p", kind="stream_interrupted")
    events = events_of(
        parse(), [StreamEvent(content=(Text("a"),)), StreamEvent(error=broken), StreamEvent(usage=Usage(1, 1))]
    )
    # the item the stream broke in is never done: clients (Codex) act on a done item as complete
    assert [kind for kind, _ in events][-3:] == ["response.output_text.delta", "error", "response.failed"]
    assert events[-1][1]["response"]["error"]["message"] == "cut"
    assert events[-1][1]["response"]["output"][0]["status"] == "incomplete"
    assert any(kind == "error" for kind, _ in events)
    went_on = events_of(
        parse(), [StreamEvent(error=broken), StreamEvent(content=(Text("a"),)), StreamEvent(usage=Usage(1, 1))]
    )
    assert went_on[-1][0] == "response.completed"


def test_a_tool_call_cut_mid_arguments_is_never_done_and_one_cut_by_a_limit_is_done_incomplete() -> None:
    broken = ProviderError("cut", provider="p", kind="stream_interrupted")
    events = events_of(
        parse(),
        [StreamEvent(content=(ToolCall("call_1", "shell", '{"cmd":'),)), StreamEvent(error=broken),
         StreamEvent(usage=Usage(1, 1))],
    )  # fmt: skip
    kinds = [kind for kind, _ in events]
    assert "response.function_call_arguments.done" not in kinds and "response.output_item.done" not in kinds
    assert kinds[-1] == "response.failed"
    limited = events_of(
        parse(),
        [StreamEvent(content=(ToolCall("call_1", "shell", '{"cmd": "ls"'),)),
         StreamEvent(usage=Usage(1, 1), finish_reason="length")],
    )  # fmt: skip
    done = [data for kind, data in limited if kind == "response.output_item.done"]
    assert [d["item"]["status"] for d in done] == ["incomplete"]
    assert limited[-1][0] == "response.incomplete"
    assert limited[-1][1]["response"]["output"][0]["status"] == "incomplete"


def test_a_signature_alone_is_a_reasoning_item_of_its_own() -> None:
    """Gemini 3 signs the function call after its thought: the signature goes back apart from the thought, so that
    the Gemini wire puts it on the call again (a call sent back without it is refused)."""
    events = events_of(
        parse(),
        [
            StreamEvent(content=(Thought("let me look"),)),
            StreamEvent(content=(Thought(None, "gemini-sig"), ToolCall("call_1", "f", "{}"))),
            StreamEvent(usage=Usage(2, 3), finish_reason="tool_call"),
        ],
    )
    output = events[-1][1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "reasoning", "function_call"]
    back = parse(input=[{"role": "user", "content": "hi"}, *output]).request.input.messages[-1].content
    assert back[:2] == (Thought("let me look", None), Thought(None, "gemini-sig"))

"""The Responses API's request parsing (every refusal a 400 naming its field) and the answers built from typed
results: the response object and the stream's events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from lsd.api.responses_request import (
    DROPPED_TOOLS_TAG,
    STORE_TAG,
    parse_response_id,
    parse_responses_request,
    response_id,
    with_history,
)
from lsd.api.responses_wire import (
    ResponseEvents,
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

ID = UUID("01930000-0000-7000-8000-000000000001")
MODEL = "lsd::model_name::gpt"


def parse(**body: Any) -> Any:
    return parse_responses_request({"model": MODEL, "input": "hi", **body})


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
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "hmm"}] and items[0]["encrypted_content"] == "sig"
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


def events_of(call: Any, stream_events: list[StreamEvent]) -> list[tuple[str, dict[str, Any]]]:
    stream = SimpleNamespace(inference_id=ID, variant_name="gpt")
    writer = ResponseEvents(call, stream)  # type: ignore[arg-type]
    out = writer.start()
    for event in stream_events:
        out.extend(writer.events(event))
    return out


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


def test_a_namespace_is_served_flat_and_its_calls_answer_with_it_and_web_search_is_left_out() -> None:
    """Codex's default tools: functions, a `namespace` of functions, and web search (it used to be a 400)."""
    tool = {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}
    call = parse(
        tools=[
            {"type": "function", "name": "shell"},
            {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [tool]},
            {"type": "web_search", "external_web_access": True},
        ]
    )
    # the provider sees the namespace in the name (two namespaces, or one and the request's functions, may share a
    # name: Codex's MCP servers do); the answer names the function and its namespace apart
    assert [spec.name for spec in call.request.additional_tools] == ["shell", "multi_agent_v1__spawn_agent"]
    assert call.request.additional_tools[1].description == "(multi_agent_v1: agents)"
    assert call.request.tags[DROPPED_TOOLS_TAG] == "web_search"
    assert len(call.tools) == 3  # echoed as sent
    answer = [
        ToolCallOutput("c1", "multi_agent_v1__spawn_agent", "{}", "multi_agent_v1__spawn_agent", {}),
        ToolCallOutput("c2", "shell", "{}", "shell", {}),
    ]
    items = output_items(ID, answer, None, call)
    assert (items[0]["name"], items[0]["namespace"]) == ("spawn_agent", "multi_agent_v1")
    assert "namespace" not in items[1]
    events = events_of(
        call,
        [StreamEvent(content=(ToolCall("c1", "multi_agent_v1__spawn_agent", "{}"),)), StreamEvent(usage=Usage(1, 1))],
    )
    done = [data["item"] for kind, data in events if kind == "response.output_item.done"]
    assert done[0]["namespace"] == "multi_agent_v1"


def test_a_function_call_output_with_an_image_is_the_tool_result_then_the_image() -> None:
    """Codex's view_image answers with an image part (it was a 400, and the session's every later request too)."""
    output = [
        {"type": "input_text", "text": "the picture:"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
    ]
    call = parse(
        input=[
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": output},
        ]
    )
    user = call.request.input.messages[-1]
    assert user.role == "user"
    assert user.content[0] == ToolResult("c1", "view_image", "the picture:")
    assert isinstance(user.content[1], File) and user.content[1].mime_type == "image/png"


def test_tool_search_and_web_search_history_are_left_out_and_a_required_choice_of_nothing_is_a_400() -> None:
    call = parse(
        tools=[{"type": "function", "name": "f"}, {"type": "tool_search", "execution": "server"}],
        input=[
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
            {"role": "user", "content": "hi"},
        ],
    )
    assert call.request.tags[DROPPED_TOOLS_TAG] == "tool_search"
    assert [m.role for m in call.request.input.messages] == ["user"]
    with pytest.raises(InvalidRequest) as refused:
        parse(tools=[{"type": "web_search"}], tool_choice="required")
    assert refused.value.field == "tool_choice"


APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"},
}


def test_a_custom_tool_is_a_function_of_one_string_and_its_calls_are_custom_tool_calls() -> None:
    """Codex offers apply_patch as a freeform tool with every model it knows (it was a 400)."""
    call = parse(
        tools=[APPLY_PATCH],
        input=[
            {"role": "user", "content": "fix it"},
            {"type": "custom_tool_call", "call_id": "c0", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c0", "output": "Done!"},
        ],
    )
    [spec] = call.request.additional_tools
    assert spec.name == "apply_patch" and spec.parameters["required"] == ["input"]
    assert "lark grammar:\nstart: patch" in spec.description
    assistant, user = call.request.input.messages[1:]
    assert assistant.content == (ToolCall("c0", "apply_patch", '{"input":"*** Begin Patch"}'),)
    assert user.content == (ToolResult("c0", "apply_patch", "Done!"),)
    answer = [ToolCallOutput("c1", "apply_patch", '{"input":"patch text"}', "apply_patch", {"input": "patch text"})]
    [item] = output_items(ID, answer, None, call)
    assert item["type"] == "custom_tool_call" and item["input"] == "patch text" and item["call_id"] == "c1"
    assert item["id"].startswith("ctc_")
    events = events_of(
        call,
        [StreamEvent(content=(ToolCall("c1", "apply_patch", '{"input": "pa'),)),
         StreamEvent(content=(ToolCall("c1", "", 'tch text"}'),)), StreamEvent(usage=Usage(1, 1))],
    )  # fmt: skip
    kinds = [kind for kind, _ in events]
    assert "response.function_call_arguments.delta" not in kinds
    done = dict(events)["response.custom_tool_call_input.done"]
    assert done["input"] == "patch text"
    assert dict(events)["response.output_item.done"]["item"]["type"] == "custom_tool_call"


def test_the_prompt_cache_key_is_a_tag() -> None:
    """Codex sends its session id as prompt_cache_key and no previous_response_id: the tag finds a session."""
    call = parse(prompt_cache_key="019a0000-0000-7000-8000-000000000abc")
    assert call.request.tags["lsd::prompt_cache_key"] == "019a0000-0000-7000-8000-000000000abc"
    with pytest.raises(InvalidRequest) as refused:
        parse(prompt_cache_key=7)
    assert refused.value.field == "prompt_cache_key"


SEARCH = {
    "type": "tool_search",
    "execution": "client",
    "description": "Find deferred tools.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}},
}
FOUND = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}],
}


def test_a_client_run_tool_search_is_served_and_what_it_found_is_offered() -> None:
    """Codex's catalogued models keep their multi-agent and MCP tools behind a tool search Codex runs itself."""
    call = parse(tools=[SEARCH])
    [spec] = call.request.additional_tools
    assert spec.name == "tool_search" and spec.description == "Find deferred tools."
    answer = [ToolCallOutput("s1", "tool_search", '{"query": "agents", "limit": 2}', "tool_search", {})]
    [item] = output_items(ID, answer, None, call)
    assert item == {
        "type": "tool_search_call",
        "id": item["id"],
        "call_id": "s1",
        "execution": "client",
        "arguments": {"query": "agents", "limit": 2},
        "status": "completed",
    }
    events = events_of(
        call,
        [StreamEvent(content=(ToolCall("s1", "tool_search", '{"query": "agents"}'),)), StreamEvent(usage=Usage(1, 1))],
    )
    kinds = [kind for kind, _ in events]
    assert "response.function_call_arguments.delta" not in kinds and "response.reasoning_text.done" not in kinds
    assert dict(events)["response.output_item.done"]["item"]["arguments"] == {"query": "agents"}
    later = parse(
        tools=[SEARCH],
        input=[
            {"role": "user", "content": "spawn a helper"},
            {"type": "tool_search_call", "call_id": "s1", "execution": "client", "arguments": {"query": "agents"}},
            {"type": "tool_search_output", "call_id": "s1", "status": "completed", "execution": "client",
             "tools": [FOUND, {"type": "computer_use_preview"}]},
        ],
    )  # fmt: skip
    assert [spec.name for spec in later.request.additional_tools] == ["tool_search", "multi_agent_v1__spawn_agent"]
    assert later.tool_namespaces == {"multi_agent_v1__spawn_agent": ("multi_agent_v1", "spawn_agent")}
    assert len(later.tools) == 1  # the echo is the request's own tools
    searched, found = later.request.input.messages[1:]
    assert searched.content == (ToolCall("s1", "tool_search", '{"query":"agents"}'),)
    assert found.content[0] == ToolResult("s1", "tool_search", "Found tools, now offered: multi_agent_v1__spawn_agent")


def test_namespaced_names_never_take_over_another_tool() -> None:
    """An MCP server's `exec_command` (found by a tool search) and Codex's own `exec_command` stay two tools; a call
    sent back with its namespace reaches the provider by the name it was offered (codex4 review)."""
    mcp = {"type": "namespace", "name": "mcp__box", "tools": [{"type": "function", "name": "exec_command"}]}
    call = parse(
        tools=[{"type": "function", "name": "exec_command"}, SEARCH],
        input=[
            {"role": "user", "content": "run ls"},
            {"type": "tool_search_call", "call_id": "s1", "execution": "client", "arguments": {"query": "exec"}},
            {"type": "tool_search_output", "call_id": "s1", "status": "completed", "execution": "client",
             "tools": [mcp]},
            {"type": "function_call", "call_id": "c1", "name": "exec_command", "namespace": "mcp__box",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
        ],
    )  # fmt: skip
    names = [spec.name for spec in call.request.additional_tools]
    assert names == ["exec_command", "tool_search", "mcp__box__exec_command"]
    own = [ToolCallOutput("c2", "exec_command", "{}", "exec_command", {})]
    assert "namespace" not in output_items(ID, own, None, call)[0]  # Codex's shell stays Codex's shell
    assert call.request.input.messages[3].content == (ToolCall("c1", "mcp__box__exec_command", "{}"),)
    assert call.request.input.messages[4].content == (ToolResult("c1", "mcp__box__exec_command", "done"),)


def test_a_long_qualified_name_keeps_to_the_function_name_limit() -> None:
    namespace = "mcp__" + "a_very_long_server_name" * 3
    call = parse(tools=[{"type": "namespace", "name": namespace, "tools": [{"type": "function", "name": "lookup"}]}])
    [spec] = call.request.additional_tools
    assert len(spec.name) == 64 and spec.name.startswith("mcp__a_very_long")
    answer = [ToolCallOutput("c1", spec.name, "{}", spec.name, {})]
    item = output_items(ID, answer, None, call)[0]
    assert (item["name"], item["namespace"]) == ("lookup", namespace)

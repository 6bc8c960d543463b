"""The Responses API's tools as Codex and other agents send them: namespaces, custom (freeform) tools, a client-run
tool search, web search left out; and what those turn into in answers and stream events."""

from __future__ import annotations

import pytest

from lsd.api.responses_tools import DROPPED_TOOLS_TAG
from lsd.api.responses_wire import output_items
from lsd.errors import InvalidRequest
from lsd.inference.result import ToolCallOutput
from lsd.inference.streaming import StreamEvent
from lsd.types import File, ToolCall, ToolResult, Usage
from tests.support.responses import ID, events_of, parse


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


def test_tool_choice_may_name_a_namespaced_function() -> None:
    tools = [{"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]}]
    for choice in ({"type": "function", "name": "spawn_agent"}, {"type": "function", "name": "spawn_agent",
                                                                   "namespace": "multi_agent_v1"}):  # fmt: skip
        call = parse(tools=tools, tool_choice=choice)
        assert call.request.tool_choice == {"specific": "multi_agent_v1__spawn_agent"}

"""The `anthropic` provider: request/response mapping without sockets, then end to end against FakeAnthropic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import InvalidRequest, LsdError, ProviderError
from lsd.providers.anthropic import (
    AnthropicProvider,
    StreamState,
    build_body,
    finish_reason,
    parse_response,
    parse_usage,
)
from lsd.providers.anthropic.wire import JSON_TOOL_INSTRUCTION
from lsd.providers.aws_bedrock.wire import build_body as bedrock_body
from lsd.providers.base import CallContext
from lsd.providers.transport import Transport
from lsd.types import (
    File,
    InferenceParams,
    Message,
    ProviderRequest,
    StreamChunk,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    ToolSpec,
    Unknown,
    Usage,
)
from tests.fakes.anthropic_server import SIGNATURE, FakeAnthropic

KEY_PATH = "models.m.providers.p"
WEATHER = ToolSpec(
    name="weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}},
)
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def build(options: Mapping[str, Any]) -> tuple[AnthropicProvider, list[str]]:
    sink = ErrorSink()
    config = ProviderConfig(name="p", type="anthropic", options=options, key_path=KEY_PATH, base_dir=Path("."))
    table = Table(options, KEY_PATH, sink, Path("."))
    provider = AnthropicProvider.from_config(config, table)
    table.finish()
    return provider, sink.errors


def make_provider(api_base: str, **options: Any) -> AnthropicProvider:
    provider, errors = build({"model_name": "claude-test", "api_base": api_base, "api_key_location": "none", **options})
    assert errors == []
    return provider


def user(*blocks: Any) -> Message:
    return Message("user", tuple(Text(b) if isinstance(b, str) else b for b in blocks))


def assistant(*blocks: Any) -> Message:
    return Message("assistant", tuple(Text(b) if isinstance(b, str) else b for b in blocks))


def ask(text: str, **fields: Any) -> ProviderRequest:
    return ProviderRequest(system=fields.pop("system", None), messages=(user(text),), **fields)


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic(delay_s=30.0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def transport() -> AsyncIterator[Transport]:
    t = Transport()
    await t.open()
    yield t
    await t.close()


async def collect(stream: AsyncIterator[StreamChunk]) -> tuple[list[StreamChunk], LsdError | None]:
    chunks: list[StreamChunk] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except LsdError as exc:
        return chunks, exc
    return chunks, None


def texts(chunks: list[StreamChunk]) -> list[str]:
    return [b.text for c in chunks for b in c.content if isinstance(b, Text)]


# ------------------------------------------------------------------------------------ config (no sockets)


def test_config_defaults_and_errors() -> None:
    provider, errors = build({"model_name": "claude-x"})
    assert errors == []
    assert provider.url == "https://api.anthropic.com/v1/messages"
    assert (provider.key_location.kind, provider.key_location.name) == ("env", "ANTHROPIC_API_KEY")
    assert provider.max_tokens == 4096 and provider.pricing is None and provider.model_name == "claude-x"

    _, errors = build({"api_key_location": "ANTHROPIC_API_KEY", "max_tokens": 0, "cost": {"input_per_million": 1}})
    assert f"{KEY_PATH}.model_name: missing required key" in errors
    assert any(e.startswith(f"{KEY_PATH}.api_key_location: expected 'env::VAR'") for e in errors)
    assert f"{KEY_PATH}.max_tokens: must be >= 1, got 0" in errors
    assert f"{KEY_PATH}.cost.output_per_million: missing required key" in errors

    _, errors = build({"model_name": "m", "cost": {"input_per_million": 1, "output_per_million": 2, "cached": 1}})
    assert errors == [f"{KEY_PATH}.cost.cached: unknown key"]


# ------------------------------------------------------------------------------------ requests (no sockets)


def test_body_maps_system_and_parameters() -> None:
    params = InferenceParams(
        temperature=0.5, top_p=0.9, seed=7, presence_penalty=1.0, frequency_penalty=1.0, stop_sequences=("END",)
    )
    body = build_body(ask("hi", system="Be brief.", params=params), "claude-x", stream=True)
    assert body == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "system": "Be brief.",
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": True,
    }
    body = build_body(ask("hi", params=InferenceParams(max_tokens=12)), "claude-x", stream=False, max_tokens=99)
    assert body["max_tokens"] == 12 and "stream" not in body and "system" not in body
    assert build_body(ask("hi"), "claude-x", stream=False, max_tokens=99)["max_tokens"] == 99


def test_messages_are_placed_by_role_and_merged() -> None:
    call = ToolCall(id="toolu_1", name="weather", arguments='{"query": "Paris"}')
    request = ProviderRequest(
        system=None,
        messages=(
            user("first"),
            user("second", Text("")),
            assistant(Thought("hmm", signature="sig"), Thought("unsigned"), "Let me look.", call),
            user("thanks", ToolResult(id="toolu_1", name="weather", result="sunny")),
            assistant(Thought(None, signature="opaque")),
        ),
    )
    assert build_body(request, "m", stream=False)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"query": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "thanks"},
            ],
        },
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "opaque"}]},
    ]


def test_tool_results_in_an_assistant_message_still_go_to_the_user() -> None:
    call = ToolCall(id="t1", name="weather", arguments="")
    request = ProviderRequest(system=None, messages=(user("go"), assistant(call, ToolResult("t1", "weather", "ok"))))
    assert build_body(request, "m", stream=False)["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    ]


def test_a_failed_tool_result_keeps_is_error() -> None:
    """Claude Code marks a failed tool's result is_error: without it the model reads the failure as a success."""
    call = ToolCall(id="t1", name="bash", arguments="{}")
    failed = ToolResult("t1", "bash", "command not found", is_error=True)
    request = ProviderRequest(system=None, messages=(user("go"), assistant(call), user(failed)))
    assert build_body(request, "m", stream=False)["messages"][2]["content"] == [  # type: ignore[index]
        {"type": "tool_result", "tool_use_id": "t1", "content": "command not found", "is_error": True}
    ]
    bedrock = bedrock_body(request)["messages"][2]["content"]  # type: ignore[index]
    assert bedrock == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "command not found"}], "status": "error"}}
    ]


def test_files_and_unknown_blocks() -> None:
    request = ProviderRequest(
        system=None,
        messages=(
            user(
                File("image/png", data="iVBOR"),
                File(None, url="https://example.com/cat.jpg"),
                File("application/pdf", url="https://example.com/a.pdf"),
                File(None, url="data:image/gif;base64,R0lG"),
                Unknown({"type": "text", "text": "raw"}, provider_name="p"),
                Unknown({"type": "text", "text": "someone else's"}, provider_name="other"),
            ),
        ),
    )
    assert build_body(request, "m", stream=False, provider_name="p")["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
        {"type": "text", "text": "raw"},
    ]


@pytest.mark.parametrize(
    "block",
    [
        File("audio/wav", data="AAAA"),
        File(None, data="AAAA"),
        File("image/png"),
        ToolCall(id="t", name="f", arguments="{not json"),
        ToolCall(id="t", name="f", arguments="[1]"),
        Template("greeting", {}),
    ],
)
def test_content_anthropic_cannot_take_is_an_invalid_request(block: Any) -> None:
    with pytest.raises(InvalidRequest):
        build_body(ProviderRequest(system=None, messages=(user(block),)), "m", stream=False)


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"specific": "weather"}, None, {"type": "tool", "name": "weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tools_and_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    body = build_body(ask("hi", tools=(WEATHER,), tool_choice=choice, parallel_tool_calls=parallel), "m", False)
    assert body["tools"] == [
        {"name": "weather", "description": "Weather for a city", "input_schema": dict(WEATHER.parameters)}
    ]
    assert body.get("tool_choice") == expected


def test_no_tools_sends_no_tool_choice_and_bad_choices_are_rejected() -> None:
    body = build_body(ask("hi", tool_choice="required"), "m", stream=False)
    assert "tools" not in body and "tool_choice" not in body
    with pytest.raises(InvalidRequest):
        build_body(ask("hi", tools=(WEATHER,), tool_choice="sometimes"), "m", stream=False)


@pytest.mark.parametrize("mode", ["tool", "strict"])
def test_json_tool_mode_forces_a_respond_tool(mode: Any) -> None:
    request = ask("hi", system="S", params=InferenceParams(json_mode=mode), output_schema=SCHEMA)
    body = build_body(request, "m", stream=False)
    assert body["system"] == "S"
    assert body["tools"][-1] == {"name": "respond", "description": "Respond with the answer.", "input_schema": SCHEMA}
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ({"specific": "weather"}, {"type": "tool", "name": "weather"}),
        ("none", {"type": "tool", "name": "respond"}),  # no other tool may be called: the answer is forced
    ],
)
def test_json_tool_beside_the_requests_own_tools_is_offered_under_its_choice(choice: Any, expected: Any) -> None:
    """An agent with tools and a structured output (OpenAI's Agents SDK): the model may call the tools first, as
    OpenAI's response_format allows; forcing `respond` made every answer a made-up structured output."""
    request = ask(
        "hi",
        system="S",
        tools=(WEATHER,),
        tool_choice=choice,
        params=InferenceParams(json_mode="strict"),
        output_schema=SCHEMA,
    )
    for body in (build_body(request, "m", stream=False), anthropic_shaped(bedrock_body(request))):
        assert [t["name"] for t in body["tools"]] == ["weather", "respond"]
        assert body.get("tool_choice") in (expected, {"type": "auto"} if expected is None else expected)
        if choice == "none":
            assert body["system"] == "S"
        else:
            assert body["system"].startswith(f"S\n\n{JSON_TOOL_INSTRUCTION} The JSON must match this JSON Schema:")


def anthropic_shaped(converse: dict[str, Any]) -> dict[str, Any]:
    """A Converse body's tools, choice and system text in Anthropic's shape, to assert both wires at once."""
    config = converse["toolConfig"]
    choice = config.get("toolChoice")
    mapped = None
    if choice is not None:
        (kind, value), *_ = choice.items()
        mapped = {"type": kind, **({"name": value["name"]} if kind == "tool" else {})}
    return {
        "tools": [t["toolSpec"] for t in config["tools"]],
        "tool_choice": mapped,
        "system": converse["system"][0]["text"],
    }


def test_a_json_answer_with_another_tool_called_finishes_as_a_tool_call() -> None:
    body: dict[str, Any] = {
        "content": [{"type": "tool_use", "id": "t", "name": "weather", "input": {"query": "Oslo"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    content, _, reason = parse_response(orjson.dumps(body), json_tool=True)
    assert content == (ToolCall(id="t", name="weather", arguments='{"query":"Oslo"}'),) and reason == "tool_call"
    state = StreamState("p", json_tool=True)
    tool = {"type": "tool_use", "id": "t", "name": "weather", "input": {}}
    chunks = feed(
        state,
        [
            ("content_block_start", {"index": 0, "content_block": tool}),
            ("content_block_stop", {"index": 0}),
            ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        ],
    )
    assert chunks[-1].finish_reason == "tool_call"
    answered = StreamState("p", json_tool=True)
    respond = {"type": "tool_use", "id": "r", "name": "respond", "input": {}}
    chunks = feed(
        answered,
        [
            ("content_block_start", {"index": 0, "content_block": respond}),
            ("content_block_stop", {"index": 0}),
            ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        ],
    )
    assert chunks[-1].finish_reason == "stop"


def test_json_on_mode_instructs_in_the_system_prompt() -> None:
    body = build_body(ask("hi", system="S", params=InferenceParams(json_mode="on")), "m", stream=False)
    assert body["system"].startswith("S\n\nRespond with one valid JSON value only")
    assert "tools" not in body
    with_schema = ask("hi", params=InferenceParams(json_mode="strict"), output_schema=None)
    assert build_body(with_schema, "m", stream=False)["system"].startswith("Respond with one valid JSON")
    schema_in_prompt = build_body(ask("hi", params=InferenceParams(json_mode="on"), output_schema=SCHEMA), "m", False)
    assert '"required":["answer"]' in schema_in_prompt["system"]
    assert "system" not in build_body(ask("hi", params=InferenceParams(json_mode="off")), "m", stream=False)


# ----------------------------------------------------------------------------------- responses (no sockets)


def test_parse_response_maps_every_block_and_usage() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"query": "Paris"}},
            {"type": "server_tool_use", "id": "srv_1"},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
            "output_tokens": 7,
        },
    }
    content, usage, reason = parse_response(orjson.dumps(body))
    assert content == (
        Thought("Hmm.", signature="sig"),
        Thought(None, signature="opaque"),
        Text("Looking."),
        ToolCall(id="toolu_1", name="weather", arguments='{"query":"Paris"}'),
        Unknown({"type": "server_tool_use", "id": "srv_1"}),
    )
    assert usage == Usage(115, 7, cache_read_input_tokens=100, cache_write_input_tokens=5)
    assert reason == "tool_call"


def test_parse_response_json_tool_answer_becomes_text() -> None:
    body: dict[str, Any] = {
        "content": [{"type": "tool_use", "id": "t", "name": "respond", "input": {"answer": "x"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    assert parse_response(orjson.dumps(body), json_tool=True) == ((Text('{"answer":"x"}'),), Usage(1, 2), "stop")


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop_sequence"),
        ("max_tokens", "length"),
        ("tool_use", "tool_call"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "unknown"),
        (None, None),
    ],
)
def test_finish_reasons(stop_reason: str | None, expected: str | None) -> None:
    assert finish_reason(stop_reason) == expected


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"content": "text"}', b'{"content": [{"type": "text"}]}', b'{"content": [3]}']
)
def test_parse_response_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_response(body)


def feed(state: StreamState, events: list[tuple[str, dict[str, Any]]]) -> list[StreamChunk]:
    chunks = [state.parse_event(name, orjson.dumps({"type": name, **data}).decode()) for name, data in events]
    return [c for c in chunks if c is not None]


def test_stream_state_turns_events_into_deltas() -> None:
    state = StreamState("p")
    start = {"message": {"id": "m", "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}}
    tool = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    chunks = feed(
        state,
        [
            ("message_start", start),
            ("ping", {}),
            ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm"}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            ("content_block_stop", {"index": 0}),
            ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
            ("content_block_stop", {"index": 1}),
            ("content_block_start", {"index": 2, "content_block": tool}),
            ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"q":'}}),
            ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            ("content_block_stop", {"index": 2}),
            ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
        ],
    )
    assert [c.content for c in chunks[:-1]] == [
        (Thought("Hm"),),
        (Thought("", signature="sig"),),  # the signature of the thought being streamed
        (Text("Hi"),),
        (ToolCall("toolu_1", "weather", ""),),
        (ToolCall("toolu_1", "", '{"q":'),),
        (ToolCall("toolu_1", "", "1}"),),
    ]
    assert chunks[-1].usage == Usage(9, 30) and chunks[-1].finish_reason == "tool_call"
    assert orjson.loads(chunks[2].raw)["delta"]["text"] == "Hi"
    assert not state.done
    assert state.parse_event("message_stop", '{"type":"message_stop"}') is None
    assert state.done


def test_stream_state_error_event_and_malformed_events() -> None:
    with pytest.raises(ProviderError) as caught:
        StreamState("p").parse_event("error", '{"type":"error","error":{"type":"overloaded_error","message":"x"}}')
    assert (caught.value.status, caught.value.retryable, caught.value.kind) == (529, True, "server_error")
    with pytest.raises(ProviderError) as caught:
        StreamState("p").parse_event("error", '{"type":"error","error":{"type":"invalid_request_error"}}')
    assert (caught.value.status, caught.value.retryable) == (400, False)
    for name, data in [
        ("message_start", "{oops"),
        ("message_start", "[]"),
        ("content_block_delta", '{"index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}}'),
        ("content_block_start", '{"index": 0}'),
    ]:
        with pytest.raises(ProviderError) as caught:
            StreamState("p").parse_event(name, data)
        assert caught.value.kind == "malformed"


# ---------------------------------------------------------------------------- end to end against the fake


async def test_text_answer(fake: FakeAnthropic, transport: Transport) -> None:
    provider = make_provider(fake.base_url)
    request = ask("hello there", system="Be kind.", params=InferenceParams(temperature=0.1, seed=3))
    response = await provider.infer(request, CallContext(transport))
    assert response.content == (Text("echo: hello there"),)
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=4, output_tokens=3)
    assert response.cost is None
    sent = fake.last
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-version"] == "2023-06-01" and "x-api-key" not in sent.headers
    assert sent.json == orjson.loads(response.raw_request)
    assert sent.json["system"] == "Be kind." and "seed" not in sent.json
    assert orjson.loads(response.raw_response)["type"] == "message"
    assert response.request_headers["anthropic-version"] == "2023-06-01"
    assert response.api_key_sha256 is None


async def test_tool_call_out_and_result_back_in(fake: FakeAnthropic, transport: Transport) -> None:
    provider = make_provider(fake.base_url, model_name="tool")
    ctx = CallContext(transport)
    first = ask("Paris", tools=(WEATHER,), parallel_tool_calls=False)
    response = await provider.infer(first, ctx)
    assert response.finish_reason == "tool_call"
    (call,) = response.content
    assert isinstance(call, ToolCall) and call.name == "weather" and call.id.startswith("toolu_")
    assert orjson.loads(call.arguments) == {"query": "Paris", "n": 2}
    assert fake.last.json["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}

    follow_up = ProviderRequest(
        system=None,
        messages=(
            *first.messages,
            assistant(*response.content),
            user(ToolResult(id=call.id, name="weather", result="sunny")),
            user("and tomorrow?"),  # merged into the tool result's user turn
        ),
        tools=(WEATHER,),
    )
    answer = await provider.infer(follow_up, ctx)
    assert answer.content == (Text("result: sunny"),)
    assert [m["role"] for m in fake.last.json["messages"]] == ["user", "assistant", "user"]


async def test_thinking_answer(fake: FakeAnthropic, transport: Transport) -> None:
    response = await make_provider(fake.base_url).infer(ask("thinking about it"), CallContext(transport))
    assert response.content == (
        Thought("The user said thinking about it.", signature=SIGNATURE),
        Text("echo: thinking about it"),
    )


async def test_json_modes(fake: FakeAnthropic, transport: Transport) -> None:
    provider = make_provider(fake.base_url)
    ctx = CallContext(transport)
    request = ask("forty two", params=InferenceParams(json_mode="strict"), output_schema=SCHEMA)
    response = await provider.infer(request, ctx)
    assert response.content == (Text('{"answer":"forty two"}'),)
    assert response.finish_reason == "stop"
    assert fake.last.json["tool_choice"] == {"type": "tool", "name": "respond"}

    on = await make_provider(fake.base_url, model_name="json").infer(
        ask("seven", params=InferenceParams(json_mode="on")), ctx
    )
    assert on.content == (Text('{"answer":"seven"}'),)
    assert "JSON" in fake.last.json["system"]


@pytest.mark.parametrize(("behaviour", "expected"), [("length", "length"), ("refusal", "content_filter")])
async def test_finish_reasons_end_to_end(
    fake: FakeAnthropic, transport: Transport, behaviour: str, expected: str
) -> None:
    response = await make_provider(fake.base_url).infer(ask(behaviour), CallContext(transport))
    assert response.finish_reason == expected


async def test_cost(fake: FakeAnthropic, transport: Transport) -> None:
    provider = make_provider(fake.base_url, cost={"input_per_million": 3, "output_per_million": 15})
    response = await provider.infer(ask("one two three"), CallContext(transport))
    assert response.usage == Usage(3, 4)
    assert response.cost == pytest.approx(3 * 3 / 1e6 + 4 * 15 / 1e6)
    assert provider.pricing.cost_of(Usage(1_000_000, None)) == pytest.approx(3.0)


# --------------------------------------------------------------------------------------------- streaming


async def test_stream_is_incremental(fake: FakeAnthropic, transport: Transport) -> None:
    stream = make_provider(fake.base_url).stream(ask("one two three four five"), CallContext(transport))
    first = await anext(stream)
    assert first.content == (Text("echo: "),)
    rest, error = await collect(stream)
    assert error is None and "".join(texts([first, *rest])) == "echo: one two three four five"


async def test_stream_thinking(fake: FakeAnthropic, transport: Transport) -> None:
    chunks, error = await collect(make_provider(fake.base_url).stream(ask("thinking hard"), CallContext(transport)))
    assert error is None
    thoughts = [b for c in chunks for b in c.content if isinstance(b, Thought)]
    assert "".join(t.text or "" for t in thoughts) == "The user said thinking hard."
    assert [t.signature for t in thoughts if t.signature] == [SIGNATURE]
    assert "".join(texts(chunks)) == "echo: thinking hard"


async def test_stream_error_event_after_first_chunks(fake: FakeAnthropic, transport: Transport) -> None:
    chunks, error = await collect(make_provider(fake.base_url).stream(ask("stream-error now"), CallContext(transport)))
    assert texts(chunks) == ["echo: "]
    assert isinstance(error, ProviderError)
    assert (error.status, error.retryable, error.kind) == (529, True, "server_error")
    assert "overloaded_error" in (error.raw_response or "")


async def test_stream_ending_without_message_stop_is_interrupted(fake: FakeAnthropic, transport: Transport) -> None:
    chunks, error = await collect(make_provider(fake.base_url).stream(ask("truncated"), CallContext(transport)))
    assert texts(chunks) == ["echo: "]
    assert isinstance(error, ProviderError) and error.kind == "stream_interrupted"
    assert error.retryable and error.raw_request
    assert error.raw_response and "content_block_delta" in error.raw_response  # the events received
    # What message_start had counted is kept for the inference's row, not replaced by an estimate.
    assert error.reported_usage is not None and error.reported_usage.input_tokens


def test_a_usage_object_without_cache_counts_keeps_the_earlier_ones_in_the_input() -> None:
    start = parse_usage({"input_tokens": 10, "cache_read_input_tokens": 30, "output_tokens": 1})
    assert start == Usage(40, 1, cache_read_input_tokens=30)
    assert parse_usage({"output_tokens": 7}, start) == Usage(40, 7, cache_read_input_tokens=30)
    nulls = {"input_tokens": 10, "cache_read_input_tokens": None, "cache_creation_input_tokens": None}
    assert parse_usage({**nulls, "output_tokens": 9}, start) == Usage(40, 9, cache_read_input_tokens=30)


async def test_abandoned_stream_can_be_closed(fake: FakeAnthropic, transport: Transport) -> None:
    stream = make_provider(fake.base_url).stream(ask("a b c d e f g"), CallContext(transport))
    assert (await anext(stream)).content
    await stream.aclose()  # type: ignore[attr-defined]
    response = await make_provider(fake.base_url).infer(ask("still fine"), CallContext(transport))
    assert response.content == (Text("echo: still fine"),)


# -------------------------------------------------------------------------------------------- embeddings


async def test_no_embeddings(fake: FakeAnthropic, transport: Transport) -> None:
    assert not AnthropicProvider.supports_embeddings
    with pytest.raises(ProviderError) as caught:
        await make_provider(fake.base_url).embed(["x"], CallContext(transport))
    assert caught.value.kind == "unsupported"

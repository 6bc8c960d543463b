"""The `openai` and `azure` providers: the wire mapping without sockets, then end to end against FakeOpenAI."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import InvalidRequest, ProviderError
from lsd.providers.azure import AzureProvider
from lsd.providers.base import CallContext, Provider
from lsd.providers.openai import OpenAIProvider, StreamState, build_body, parse_response
from lsd.providers.transport import Transport
from lsd.types import (
    File,
    InferenceParams,
    Message,
    ProviderRequest,
    RawText,
    StreamChunk,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-0123456789abcdef"
WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"text": {}}})
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def user(*blocks: Any) -> Message:
    return Message("user", tuple(Text(b) if isinstance(b, str) else b for b in blocks))


def ask(text: str, **kwargs: Any) -> ProviderRequest:
    return ProviderRequest(system=kwargs.pop("system", None), messages=(user(text),), **kwargs)


def build(cls: type[Provider], options: Mapping[str, Any]) -> tuple[Provider, list[str]]:
    config = ProviderConfig(
        name="p", type=cls.type_name, options=options, key_path="models.m.providers.p", base_dir=Path(".")
    )
    sink = ErrorSink()
    table = Table(options, config.key_path, sink, Path("."))
    provider = cls.from_config(config, table)
    table.finish()
    return provider, sink.errors


def make(cls: type[Provider], options: Mapping[str, Any]) -> Any:
    provider, errors = build(cls, options)
    assert errors == []
    return provider


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY, delay_s=5.0) as server:
        yield server


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture
def ctx(transport: Transport, monkeypatch: pytest.MonkeyPatch) -> CallContext:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    return CallContext(transport=transport, timeout_s=10.0)


def openai(fake: FakeOpenAI, model: str = "gpt-test", **options: Any) -> Any:
    return make(OpenAIProvider, {"model_name": model, "api_base": fake.api_base, **options})


async def collect(stream: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[StreamChunk]) -> str:
    return "".join(b.text for c in chunks for b in c.content if isinstance(b, Text))


# ---- config ------------------------------------------------------------------------------------------------


def test_defaults_point_at_openai() -> None:
    provider = make(OpenAIProvider, {"model_name": "gpt-4o-mini"})
    assert provider.model_name == "gpt-4o-mini"
    assert provider.chat_url == "https://api.openai.com/v1/chat/completions"
    assert provider.embeddings_url == "https://api.openai.com/v1/embeddings"
    assert (provider.key_location.kind, provider.key_location.name) == ("env", "OPENAI_API_KEY")
    assert provider.max_tokens_field == "max_completion_tokens"
    assert provider.pricing is None
    # OpenAI's prompt-cache routing hint goes to OpenAI's own API only: another server may refuse an unknown field
    assert "prompt_cache_key" in provider.controls
    other = make(OpenAIProvider, {"model_name": "m", "api_base": "http://localhost:11434/v1/"})
    assert "prompt_cache_key" not in other.controls and "service_tier" in other.controls
    request = ProviderRequest(
        system=None, messages=(Message("user", (Text("hi"),)),), params=InferenceParams(prompt_cache_key="ses_1")
    )
    assert build_body(request, "m", False, controls=provider.controls)["prompt_cache_key"] == "ses_1"
    assert "prompt_cache_key" not in build_body(request, "m", False, controls=other.controls)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "models.m.providers.p.model_name: missing required key"),
        ({"model_name": "m", "api_base": "localhost:8000"}, "models.m.providers.p.api_base: expected an http"),
        ({"model_name": "m", "api_key_location": "OPENAI_KEY"}, "models.m.providers.p.api_key_location: expected"),
        ({"model_name": "m", "cost": 3}, "models.m.providers.p.cost: expected a table"),
        ({"model_name": "m", "cost": {"input_per_million": 1.0}}, "cost.output_per_million: missing required key"),
        ({"model_name": "m", "cost": {"input_per_million": 1, "output_per_million": 2, "x": 1}}, "cost.x: unknown"),
        ({"model_name": "m", "cost": {"input_per_million": -1, "output_per_million": 2}}, "must be >= 0"),
        ({"model_name": "m", "modle": "x"}, "models.m.providers.p.modle: unknown key"),
    ],
)
def test_config_errors_name_the_key(options: dict[str, Any], message: str) -> None:
    _, errors = build(OpenAIProvider, options)
    assert any(message in error for error in errors), errors


def test_azure_config() -> None:
    provider = make(AzureProvider, {"deployment_id": "gpt4o", "endpoint": "https://x.openai.azure.com/"})
    assert (
        provider.chat_url
        == "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
    )
    assert (provider.key_header, provider.key_prefix) == ("api-key", "")
    assert provider.key_location.name == "AZURE_OPENAI_API_KEY"
    assert provider.supports_embeddings  # the deployment's embeddings operation
    assert (
        provider.embeddings_url
        == "https://x.openai.azure.com/openai/deployments/gpt4o/embeddings?api-version=2024-10-21"
    )
    # o-series and GPT-5 deployments refuse max_tokens; api-versions before 2024-09-01 know only max_tokens
    assert provider.max_tokens_field == "max_completion_tokens"
    for version, field in [
        ("2024-06-01", "max_tokens"),
        ("2024-08-01-preview", "max_tokens"),
        ("2024-09-01-preview", "max_completion_tokens"),
        ("2025-04-01-preview", "max_completion_tokens"),
        ("preview", "max_completion_tokens"),
    ]:
        options = {"deployment_id": "o3", "endpoint": "https://x.openai.azure.com/", "api_version": version}
        assert make(AzureProvider, options).max_tokens_field == field, version
    _, errors = build(AzureProvider, {})
    assert sorted(errors) == [
        "models.m.providers.p.deployment_id: missing required key",
        "models.m.providers.p.endpoint: missing required key",
    ]


# ---- request mapping (no sockets) --------------------------------------------------------------------------


def test_text_request_body() -> None:
    request = ask("hi", system="be brief", params=InferenceParams(temperature=0.5))
    assert build_body(request, "m", False) == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "temperature": 0.5,
    }


def test_params_and_token_limit_field() -> None:
    params = InferenceParams(
        temperature=0.1,
        max_tokens=7,
        top_p=0.9,
        seed=3,
        presence_penalty=0.2,
        frequency_penalty=0.3,
        stop_sequences=("END",),
        json_mode="off",
    )
    body = build_body(ask("x", params=params), "m", False, max_tokens_field="max_completion_tokens")
    expected = {
        "temperature": 0.1,
        "max_completion_tokens": 7,
        "top_p": 0.9,
        "seed": 3,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.3,
        "stop": ["END"],
    }
    assert {k: body[k] for k in expected} == expected
    assert "max_tokens" not in body and "response_format" not in body
    assert build_body(ask("x", params=params), "m", False)["max_tokens"] == 7


def test_multimodal_user_content() -> None:
    message = user(
        "look",
        File("image/png", url="https://img/x.png", detail="low"),
        File("image/jpeg", data="QUJD"),
        File("application/pdf", data="UERG", filename="a.pdf"),
        RawText("raw"),
        Thought("hidden"),
    )
    body = build_body(ProviderRequest(system=None, messages=(message,)), "m", False)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://img/x.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,UERG"}},
                {"type": "text", "text": "raw"},
            ],
        }
    ]


def test_tool_calls_and_results_in_history() -> None:
    messages = (
        user("weather?"),
        Message("assistant", (Thought("let me see"), Text("checking"), ToolCall("call_1", "get_weather", '{"c":1}'))),
        Message("user", (ToolResult("call_1", "get_weather", "sunny"), Text("thanks"))),
        Message("assistant", (ToolCall("call_2", "get_weather", "{}"),)),
    )
    body = build_body(ProviderRequest(system=None, messages=messages), "m", False)
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"c":1}'}}
    assert body["messages"] == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "checking", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "thanks"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
    ]


def test_unrendered_template_is_refused() -> None:
    request = ProviderRequest(system=None, messages=(user(Template("greeting", {})),))
    with pytest.raises(InvalidRequest):
        build_body(request, "m", False)


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"specific": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tools_and_tool_choice(choice: Any, sent: Any) -> None:
    strict = ToolSpec("lookup", "Look up", {"type": "object"}, strict=True)
    body = build_body(ask("x", tools=(WEATHER, strict), tool_choice=choice, parallel_tool_calls=False), "m", False)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        },
        {
            "type": "function",
            "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object"}, "strict": True},
        },
    ]
    assert body["tool_choice"] == sent
    assert body["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_not_sent_and_bad_choice_is_refused() -> None:
    assert "tool_choice" not in build_body(ask("x", tool_choice="auto", parallel_tool_calls=True), "m", False)
    with pytest.raises(InvalidRequest):
        build_body(ask("x", tools=(WEATHER,), tool_choice="sometimes"), "m", False)


@pytest.mark.parametrize(
    ("mode", "schema", "response_format"),
    [
        (None, SCHEMA, None),
        ("off", SCHEMA, None),
        ("on", SCHEMA, {"type": "json_object"}),
        ("strict", None, {"type": "json_object"}),
        (
            "strict",
            SCHEMA,
            {"type": "json_schema", "json_schema": {"name": "response", "strict": True, "schema": SCHEMA}},
        ),
    ],
)
def test_json_modes(mode: Any, schema: Any, response_format: Any) -> None:
    body = build_body(ask("x", params=InferenceParams(json_mode=mode), output_schema=schema), "m", False)
    assert body.get("response_format") == response_format
    assert "tools" not in body


def test_a_document_by_url_is_refused_rather_than_sent_as_an_image() -> None:
    pdf = File(url="https://example.com/doc.pdf", mime_type="application/pdf")
    request = ProviderRequest(system=None, messages=(Message("user", (pdf,)),))
    with pytest.raises(InvalidRequest, match="application/pdf file given by URL"):
        build_body(request, "m", False)
    image = File(url="https://example.com/cat.png", mime_type="image/png")
    body = build_body(ProviderRequest(system=None, messages=(Message("user", (image,)),)), "m", False)
    assert body["messages"][0]["content"][0]["type"] == "image_url"


def test_json_object_mode_makes_sure_a_message_says_json() -> None:
    """OpenAI answers 400 to `json_object` unless a message contains "json": the instruction is added when none does."""
    on = InferenceParams(json_mode="on")
    body = build_body(ask("hello", params=on), "m", False)
    assert body["messages"][0]["role"] == "system" and "JSON" in body["messages"][0]["content"]
    body = build_body(ProviderRequest(system="Be brief.", messages=ask("hello").messages, params=on), "m", False)
    assert body["messages"][0]["content"].startswith("Be brief.\n\n") and "JSON" in body["messages"][0]["content"]
    said = build_body(ask("Answer in json please", params=on), "m", False)
    assert [m["role"] for m in said["messages"]] == ["user"]  # already said: the prompt is left as it is


def test_a_refusal_is_its_text_with_finish_reason_content_filter() -> None:
    body = {"choices": [{"message": {"content": None, "refusal": "I can't help."}, "finish_reason": "stop"}]}
    content, _, reason = parse_response(body)
    assert content == (Text("I can't help."),) and reason == "content_filter"
    state = StreamState()
    for event in (
        {"choices": [{"index": 0, "delta": {"role": "assistant", "refusal": "I can't"}}]},
        {"choices": [{"index": 0, "delta": {"refusal": " help."}, "finish_reason": "stop"}]},
    ):
        state.feed(orjson.dumps(event).decode())
    assert state.finish().finish_reason == "content_filter"


def test_json_mode_tool_forces_the_respond_tool() -> None:
    request = ask("x", params=InferenceParams(json_mode="tool"), output_schema=SCHEMA, tools=(WEATHER,))
    body = build_body(request, "m", False)
    assert [t["function"]["name"] for t in body["tools"]] == ["respond"]
    assert body["tools"][0]["function"]["parameters"] == SCHEMA
    assert body["tool_choice"] == {"type": "function", "function": {"name": "respond"}}
    assert "response_format" not in body


def test_stream_body_asks_for_usage() -> None:
    body = build_body(ask("x"), "m", True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


# ---- response mapping (no sockets) -------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: Any = "stop", usage: Any = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 3, "completion_tokens": 5},
    }


def test_parse_text_and_usage() -> None:
    content, usage, finish = parse_response(completion({"role": "assistant", "content": "hello"}))
    assert content == (Text("hello"),)
    assert usage == Usage(3, 5)
    assert finish == "stop"


def test_parse_tool_calls() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": {"y": 2}}},
    ]
    content, _, finish = parse_response(
        completion({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")
    )
    assert content == (ToolCall("call_a", "f", '{"x":1}'), ToolCall("call_b", "g", '{"y":2}'))
    assert finish == "tool_call"


def test_parse_json_tool_answer_becomes_text() -> None:
    calls = [{"id": "call_a", "type": "function", "function": {"name": "respond", "arguments": '{"answer":"4"}'}}]
    body = completion({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")
    content, _, finish = parse_response(body, json_tool=True)
    assert content == (Text('{"answer":"4"}'),)
    assert finish == "stop"


@pytest.mark.parametrize(
    ("sent", "finish"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_call"),
        ("function_call", "tool_call"),
        ("content_filter", "content_filter"),
        ("something_new", "unknown"),
        (None, None),
    ],
)
def test_parse_finish_reasons(sent: Any, finish: Any) -> None:
    assert parse_response(completion({"role": "assistant", "content": "x"}, sent))[2] == finish


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"choices": []},
        {"choices": [{"index": 0}]},
        completion({"content": 5}),
        completion({"tool_calls": [{"function": {}}]}),
    ],
)
def test_parse_malformed(body: Any) -> None:
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    assert (info.value.kind, info.value.retryable) == ("malformed", True)


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return orjson.dumps(
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": None,
        }
    ).decode()


def test_stream_state_text_and_final_chunk() -> None:
    state = StreamState()
    usage_event = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}).decode()
    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        usage_event,
    ]
    chunks = [c for c in map(state.feed, events) if c is not None]
    assert [c.content for c in chunks] == [(Text("Hel"),), (Text("lo"),)]
    assert [c.raw for c in chunks] == events[1:3]
    assert state.feed("[DONE]") is None and state.done
    final = state.finish()
    assert (final.usage, final.finish_reason, final.content) == (Usage(2, 3), "stop", ())
    assert final.raw.split("\n") == [events[0], events[3], usage_event]


@pytest.mark.parametrize(
    ("event", "content", "finish", "usage"),
    [
        ({"choices": [{"index": 0, "delta": {"content": "a"}}]}, (Text("a"),), None, None),
        ({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]}, (Text("a"),), "stop", None),
        (
            {
                "choices": [{"index": 0, "delta": {"content": "a"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2},
            },
            (Text("a"),),
            None,
            Usage(1, 2),
        ),
        ({"choices": [{"index": 1, "delta": {"content": "a"}}]}, None, None, None),
        ({"choices": [{"index": 0, "delta": {"content": ""}}]}, None, None, None),
        ({"choices": [{"index": 0, "delta": {"content": 5}}]}, None, None, None),
        ({"choices": [{"delta": {"content": "no index"}}]}, (Text("no index"),), None, None),
        ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "a"}}]}, (Text("a"),), None, None),
        ({"choices": [{"index": 0, "delta": {"content": "a", "refusal": "r"}}]}, (Text("a"), Text("r")), None, None),
        (
            {"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": None, "error": None},
            (Text("a"),),
            None,
            None,
        ),
        (
            {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "b"}}]},
            (Text("a"),),
            None,
            None,
        ),
        ({"choices": [{"index": 0, "delta": {"content": "a", "tool_calls": None}}]}, (Text("a"),), None, None),
    ],
)
def test_stream_state_token_events(event: dict[str, Any], content: Any, finish: Any, usage: Any) -> None:
    """A token's event and its near variants: the text, and whatever else the event holds (finish reason, usage)."""
    state = StreamState()
    data = orjson.dumps(event).decode()
    got = state.feed(data)
    assert (got.content if got is not None else None) == content
    assert got is None or got.raw == data
    assert (state.finish_reason, state.usage) == (finish, usage)


def test_stream_state_reads_groqs_usage_in_x_groq() -> None:
    state = StreamState()
    assert state.feed(orjson.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}}]}).decode()) is not None
    last = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "x_groq": {"id": "req_1", "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}},
    }
    assert state.feed(orjson.dumps(last).decode()) is None
    assert state.usage is not None and (state.usage.input_tokens, state.usage.output_tokens) == (12, 3)
    assert state.finish_reason == "stop"


def test_stream_state_tool_call_deltas_carry_their_id() -> None:
    state = StreamState()
    events = [
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{"}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({}, "tool_calls"),
    ]
    blocks = [b for c in map(state.feed, events) if c is not None for b in c.content]
    assert blocks == [
        ToolCall("call_a", "f", ""),
        ToolCall("call_b", "g", "{"),
        ToolCall("call_a", "", '{"a"'),
        ToolCall("call_b", "", "}"),
        ToolCall("call_a", "", ":1}"),
    ]
    state.feed("[DONE]")
    assert state.finish().finish_reason == "tool_call"
    assert state.finish().usage == Usage()


def test_stream_state_errors() -> None:
    with pytest.raises(ProviderError) as info:
        StreamState(provider="p").feed("{oops")
    assert (info.value.kind, info.value.provider, info.value.raw_response) == ("malformed", "p", "{oops")
    # An error event does not end the stream: it is a chunk carrying the error, and later events are read on.
    state = StreamState(provider="p")
    error = state.feed('{"error": {"message": "overloaded"}}')
    assert error is not None and error.error is not None and "overloaded" in error.error and not error.content
    assert error.raw == '{"error": {"message": "overloaded"}}'
    later = state.feed('{"choices": [{"index": 0, "delta": {"content": "more"}}]}')
    assert later is not None and later.content == (Text("more"),)


# ---- end to end against the fake server --------------------------------------------------------------------


def assert_no_key(value: Any) -> None:
    assert KEY not in repr(value)


async def test_text_answer(fake: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake)
    request = ask("hello there", system="sys", params=InferenceParams(max_tokens=20))
    response = await provider.infer(request, ctx)
    assert response.content == (Text("echo: hello there"),)
    assert response.usage == Usage(3, 3)
    assert response.finish_reason == "stop"
    assert response.cost is None
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert orjson.loads(response.raw_request) == sent.body
    assert sent.body["max_tokens"] == 20  # not api.openai.com: the portable name
    assert orjson.loads(response.raw_response)["object"] == "chat.completion"
    assert response.request_headers["Authorization"] == "[REDACTED]"
    assert response.api_key_sha256 == hashlib.sha256(KEY.encode()).hexdigest()
    assert_no_key(response)


async def test_tool_call_out_and_results_in(fake: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake, "tool")
    response = await provider.infer(ask("Paris", tools=(WEATHER,), tool_choice="auto"), ctx)
    assert response.content == (ToolCall("call_fake_0", "get_weather", '{"text":"Paris"}'),)
    assert response.finish_reason == "tool_call"
    call = response.content[0]
    assert isinstance(call, ToolCall)
    history = (
        user("Paris"),
        Message("assistant", (call,)),
        Message("user", (ToolResult(call.id, call.name, "sunny"),)),
    )
    await openai(fake).infer(ProviderRequest(system=None, messages=history, tools=(WEATHER,)), ctx)
    messages = fake.requests[-1].body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_fake_0"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_fake_0", "content": "sunny"}


@pytest.mark.parametrize(("reason", "finish"), [("length", "length"), ("content_filter", "content_filter")])
async def test_finish_reasons(fake: FakeOpenAI, ctx: CallContext, reason: str, finish: str) -> None:
    response = await openai(fake, f"finish-{reason}").infer(ask("x"), ctx)
    assert response.finish_reason == finish


async def test_cost_from_config(fake: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake, cost={"input_per_million": 2.0, "output_per_million": 10})
    response = await provider.infer(ask("one two three"), ctx)
    assert response.usage == Usage(3, 4)
    assert response.cost == pytest.approx((3 * 2.0 + 4 * 10) / 1e6)


def test_stream_state_keeps_a_reported_cost() -> None:
    state = StreamState()
    state.feed(chunk({"content": "Hi"}, "stop"))
    state.feed(
        orjson.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cost": 0.5}}).decode()
    )
    assert state.finish().cost == 0.5


async def test_stream_yields_chunks_as_they_arrive(fake: FakeOpenAI, ctx: CallContext) -> None:
    stream = openai(fake, "hold").stream(ask("first second"), ctx)
    first = await asyncio.wait_for(anext(stream), 10)  # the server holds the rest until released
    assert first.content == (Text("echo:"),)
    fake.release.set()
    rest = await collect(stream)
    assert text_of([first, *rest]) == "echo: first second"


async def test_stream_tool_calls(fake: FakeOpenAI, ctx: CallContext) -> None:
    chunks = await collect(openai(fake, "tools").stream(ask("Oslo", tools=(WEATHER,)), ctx))
    calls = [b for c in chunks for b in c.content if isinstance(b, ToolCall)]
    assert len(calls) > 4  # each call arrives in several argument fragments
    assert {c.id for c in calls} == {"call_fake_0", "call_fake_1"}
    for call_id in ("call_fake_0", "call_fake_1"):
        mine = [c for c in calls if c.id == call_id]
        assert [c.name for c in mine] == ["get_weather"] + [""] * (len(mine) - 1)
        assert "".join(c.arguments for c in mine) == '{"text":"Oslo"}'
    assert chunks[-1].finish_reason == "tool_call"


async def test_a_completion_without_choices_is_malformed(fake: FakeOpenAI, ctx: CallContext) -> None:
    with pytest.raises(ProviderError) as info:
        await openai(fake, "nochoices").infer(ask("x"), ctx)
    assert (info.value.kind, info.value.retryable, info.value.provider) == ("malformed", True, "p")
    assert info.value.raw_request is not None and info.value.raw_response


async def test_connection_closed_without_answer(fake: FakeOpenAI, ctx: CallContext) -> None:
    with pytest.raises(ProviderError) as info:
        await openai(fake, "broken").infer(ask("x"), ctx)
    assert info.value.kind == "connection"


async def test_no_key_sends_no_authorization(transport: Transport) -> None:
    async with FakeOpenAI() as server:
        provider = openai(server, api_key_location="none")
        response = await provider.infer(ask("x"), CallContext(transport=transport))
        assert "Authorization" not in server.requests[-1].headers
        assert "Authorization" not in response.request_headers
        assert response.api_key_sha256 is None


async def test_azure(fake: FakeOpenAI, ctx: CallContext) -> None:
    provider = make(AzureProvider, {"deployment_id": "dep", "endpoint": fake.url, "api_version": "2024-06-01"})
    response = await provider.infer(ask("hi", params=InferenceParams(max_tokens=5)), ctx)
    assert response.content == (Text("echo: hi"),)
    sent = fake.requests[-1]
    assert (sent.path, sent.query) == ("/openai/deployments/dep/chat/completions", {"api-version": "2024-06-01"})
    assert "max_completion_tokens" not in sent.body
    assert sent.headers["api-key"] == KEY and "Authorization" not in sent.headers
    assert sent.body["max_tokens"] == 5
    assert response.request_headers["api-key"] == "[REDACTED]"
    assert_no_key(response)
    chunks = await collect(provider.stream(ask("hi there"), ctx))
    assert text_of(chunks) == "echo: hi there"
    embedded = await provider.embed(["x"], ctx)
    assert len(embedded.embeddings) == 1
    assert fake.requests[-1].path == "/openai/deployments/dep/embeddings"
    assert_no_key(embedded)


async def test_embeddings(fake: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake, "text-embedding-3-small", cost={"input_per_million": 0.02, "output_per_million": 0})
    assert provider.supports_embeddings
    response = await provider.embed(["one", "two words"], ctx, dimensions=4)
    assert len(response.embeddings) == 2 and all(len(v) == 4 for v in response.embeddings)
    assert response.embeddings[0] != response.embeddings[1]
    assert response.usage == Usage(3, None)
    assert response.cost == pytest.approx(3 * 0.02 / 1e6)
    sent = fake.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": ["one", "two words"],
        "encoding_format": "float",
        "dimensions": 4,
    }
    assert response.request_headers["Authorization"] == "[REDACTED]"
    assert_no_key(response)
    with pytest.raises(ProviderError) as info:
        await openai(fake, "error-500").embed(["x"], ctx)
    assert (info.value.kind, info.value.retryable) == ("server_error", True)


def test_stream_state_tool_calls_without_index_or_reusing_one_stay_apart() -> None:
    """Servers that give no `index` (or index 0 to every call, with a new id each) stream two calls as two."""
    for index in ({}, {"index": 0}):
        state = StreamState()
        events = [
            chunk({"tool_calls": [{**index, "id": "call_a", "function": {"name": "f", "arguments": '{"x":'}}]}),
            chunk({"tool_calls": [{**index, "function": {"arguments": "1}"}}]}),
            chunk({"tool_calls": [{**index, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}),
            chunk({"tool_calls": [{**index, "id": "call_b", "function": {"arguments": ""}}]}),  # repeats its id
        ]
        blocks = [b for c in map(state.feed, events) if c is not None for b in c.content]
        assert blocks == [ToolCall("call_a", "f", '{"x":'), ToolCall("call_a", "", "1}"), ToolCall("call_b", "g", "{}")]


def test_reasoning_in_a_reasoning_field_is_a_thought() -> None:
    """OpenRouter, Groq (reasoning_format "parsed") and newer vLLM say `reasoning`, not `reasoning_content`."""
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "reasoning": "step", "content": "42"},
                         "finish_reason": "model_length"}]}  # fmt: skip
    content, _, finish = parse_response(body)
    assert content == (Thought("step"), Text("42")) and finish == "length"  # Mistral's model_length
    state = StreamState()
    got = state.feed(chunk({"reasoning": "hmm"}))
    assert got is not None and got.content == (Thought("hmm"),)


def test_a_stream_with_its_finish_reason_is_whole_without_done() -> None:
    """Some servers close a finished stream without `data: [DONE]`: only one cut before its finish reason is cut."""
    state = StreamState()
    state.feed(chunk({"content": "hi"}))
    assert state.missing_end() == "[DONE]"
    state.feed(chunk({}, "stop"))
    assert state.missing_end() is None

"""The google_ai_studio_gemini provider: wire mapping as pure functions, then end to end against a fake Gemini."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import InvalidRequest, ProviderError
from lsd.providers.base import REDACTED, CallContext, key_fingerprint
from lsd.providers.gemini import (
    GeminiProvider,
    StreamState,
    build_body,
    parse_embeddings,
    parse_response,
    status_error,
    wire,
)
from lsd.providers.transport import HttpResponse, Transport
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
from tests.fakes.gemini_server import FakeGemini

KEY = "AIza-test-key-0123456789"
KEY_PATH = "models.m.providers.p"
WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
)
TIME = ToolSpec("get_time", "The time.", {"type": "object", "properties": {}})
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def user(*blocks: Any) -> Message:
    return Message("user", tuple(Text(b) if isinstance(b, str) else b for b in blocks))


def assistant(*blocks: Any) -> Message:
    return Message("assistant", tuple(Text(b) if isinstance(b, str) else b for b in blocks))


def ask(text: str, **kwargs: Any) -> ProviderRequest:
    return ProviderRequest(system=kwargs.pop("system", None), messages=(user(text),), **kwargs)


def options_table(options: Mapping[str, Any]) -> tuple[ProviderConfig, Table, ErrorSink]:
    sink = ErrorSink()
    config = ProviderConfig(
        name="p", type="google_ai_studio_gemini", options=options, key_path=KEY_PATH, base_dir=Path(".")
    )
    return config, Table(options, KEY_PATH, sink, Path(".")), sink


def make_provider(**options: Any) -> GeminiProvider:
    config, table, sink = options_table(options)
    provider = GeminiProvider.from_config(config, table)
    table.finish()
    assert sink.errors == []
    return provider


async def collect(stream: AsyncIterator[StreamChunk]) -> tuple[list[StreamChunk], ProviderError | None]:
    """Every chunk of a stream, and the ProviderError that ended it (None when it finished)."""
    chunks: list[StreamChunk] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except ProviderError as exc:
        return chunks, exc
    return chunks, None


def text_of(chunks: list[StreamChunk]) -> str:
    return "".join(b.text for c in chunks for b in c.content if isinstance(b, Text))


# ---- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def call_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemini's calls get `call_<random>_<n>` ids: here the random part is `t`."""
    monkeypatch.setattr(wire.secrets, "token_hex", lambda _n: "t")


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GOOGLE_AI_STUDIO_API_KEY", KEY)
    return KEY


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    server = FakeGemini(expected_key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture
def ctx(transport: Transport) -> CallContext:
    return CallContext(transport=transport, timeout_s=10)


def provider_for(fake: FakeGemini, model: str = "gemini-2.5-flash", **options: Any) -> GeminiProvider:
    return make_provider(model_name=model, api_base=fake.base_url, **options)


# ---- config --------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    provider = make_provider(model_name="gemini-2.5-flash")
    assert provider.type_name == "google_ai_studio_gemini"
    assert provider.model_name == "gemini-2.5-flash"
    assert provider.url("generateContent") == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert (provider.key_location.kind, provider.key_location.name) == ("env", "GOOGLE_AI_STUDIO_API_KEY")
    assert provider.pricing is None
    assert provider.supports_embeddings


def test_tuned_model_names_keep_their_resource() -> None:
    provider = make_provider(model_name="tunedModels/my-model", api_base="http://localhost:9/v1beta")
    assert provider.url("generateContent") == "http://localhost:9/v1beta/tunedModels/my-model:generateContent"


def test_option_errors_name_the_key() -> None:
    config, table, sink = options_table(
        {"api_base": "ftp://x", "api_key_location": "vault::k", "cost": {"input_per_million": "1"}, "modle": 1}
    )
    GeminiProvider.from_config(config, table)
    table.finish()
    assert f"{KEY_PATH}.model_name: missing required key" in sink.errors
    assert f"{KEY_PATH}.api_base: expected an http:// or https:// URL, got 'ftp://x'" in sink.errors
    assert any(e.startswith(f"{KEY_PATH}.api_key_location: expected 'env::VAR'") for e in sink.errors)
    assert f"{KEY_PATH}.cost.input_per_million: expected a number, got str" in sink.errors
    assert f"{KEY_PATH}.cost.output_per_million: missing required key" in sink.errors
    assert any(e.startswith(f"{KEY_PATH}.modle: unknown key") for e in sink.errors)


# ---- request mapping -----------------------------------------------------------------------------------------


def test_a_file_by_url_gets_the_mime_type_of_its_path_when_the_block_has_none() -> None:
    blocks = (File(None, url="https://example.com/a/cat.JPG?x=1"), File(None, url="https://example.com/blob"))
    body = build_body(ProviderRequest(system=None, messages=(user(*blocks),)), False)
    assert body["contents"][0]["parts"] == [
        {"fileData": {"fileUri": "https://example.com/a/cat.JPG?x=1", "mimeType": "image/jpeg"}},
        {"fileData": {"fileUri": "https://example.com/blob"}},  # nothing to go by: Gemini decides
    ]


def test_build_body_maps_messages_and_parameters() -> None:
    request = ProviderRequest(
        system="Be brief.",
        messages=(
            user("Hi", File("image/png", url="gs://bucket/cat.png"), File("image/jpeg", data="AAAA")),
            assistant("Let me check.", ToolCall("call_0", "get_weather", '{"city": "Paris"}')),
            user(ToolResult("call_0", "get_weather", "sunny"), "Thanks"),
        ),
        params=InferenceParams(
            temperature=0.5,
            max_tokens=100,
            top_p=0.9,
            seed=7,
            presence_penalty=0.1,
            frequency_penalty=0.2,
            stop_sequences=("END",),
        ),
    )
    assert build_body(request, False) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Hi"},
                    {"fileData": {"fileUri": "gs://bucket/cat.png", "mimeType": "image/png"}},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "generationConfig": {
            "temperature": 0.5,
            "maxOutputTokens": 100,
            "topP": 0.9,
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "stopSequences": ["END"],
        },
    }
    assert build_body(request, True) == build_body(request, False)  # Gemini streams by URL, not by body


def test_build_body_leaves_out_what_is_not_set() -> None:
    assert build_body(ask("Hi"), False) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_tool_results_in_an_assistant_message_go_as_a_user_content() -> None:
    body = build_body(ProviderRequest(None, (assistant("x", ToolResult("c", "f", "r")),)), False)
    assert [c["role"] for c in body["contents"]] == ["model", "user"]
    assert body["contents"][1]["parts"] == [{"functionResponse": {"name": "f", "response": {"result": "r"}}}]


def test_thoughts_and_their_signatures_go_back_to_gemini() -> None:
    message = assistant(
        Thought("Pondering.", signature="s0"),
        Thought(None, signature="s1"),
        ToolCall("call_0", "get_time", ""),
    )
    body = build_body(ProviderRequest(None, (user("q"), message, user(Thought("ignored")))), False)
    assert body["contents"][1]["parts"] == [
        {"text": "Pondering.", "thought": True, "thoughtSignature": "s0"},
        {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "s1"},
    ]
    assert len(body["contents"]) == 2  # a user message left with no parts is not sent


def test_unknown_blocks_pass_through_only_to_their_provider() -> None:
    message = user(Unknown({"text": "mine"}, provider_name="p"), Unknown({"text": "theirs"}, provider_name="q"))
    body = build_body(ProviderRequest(None, (message,)), False, provider_name="p")
    assert body["contents"][0]["parts"] == [{"text": "mine"}]


@pytest.mark.parametrize(
    ("block", "field"),
    [
        (Template("greeting", {}), "messages"),
        (File("image/png"), "messages"),
        (ToolCall("c", "f", "{not json"), "messages"),
    ],
)
def test_blocks_gemini_cannot_take_are_invalid_requests(block: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_body(ProviderRequest(None, (assistant(block),)), False)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"specific": "get_time"}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
)
def test_tools_and_tool_choice(choice: Any, config: dict[str, Any] | None) -> None:
    body = build_body(ask("Hi", tools=(WEATHER, TIME), tool_choice=choice), False)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER.parameters,
                },
                {"name": "get_time", "description": "The time.", "parametersJsonSchema": TIME.parameters},
            ]
        }
    ]
    assert body.get("toolConfig") == (None if config is None else {"functionCallingConfig": config})


def test_invalid_tool_choice_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        build_body(ask("Hi", tools=(WEATHER,), tool_choice="sometimes"), False)
    assert info.value.field == "tool_choice"


def test_no_tools_no_tool_config() -> None:
    assert "toolConfig" not in build_body(ask("Hi", tool_choice="required"), False)


@pytest.mark.parametrize(
    ("mode", "schema", "config"),
    [
        ("off", SCHEMA, None),
        ("on", SCHEMA, {"responseMimeType": "application/json"}),
        ("strict", None, {"responseMimeType": "application/json"}),
        ("strict", SCHEMA, {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}),
    ],
)
def test_json_modes(mode: Any, schema: Any, config: Any) -> None:
    body = build_body(ask("Hi", params=InferenceParams(json_mode=mode), output_schema=schema), False)
    assert body.get("generationConfig") == config
    assert "tools" not in body


def test_json_mode_tool_forces_the_respond_function() -> None:
    body = build_body(ask("Hi", params=InferenceParams(json_mode="tool"), output_schema=SCHEMA, tools=(TIME,)), False)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "respond",
                    "description": "Respond to the user with these arguments.",
                    "parametersJsonSchema": SCHEMA,
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["respond"]}}
    assert "generationConfig" not in body


# ---- response mapping ----------------------------------------------------------------------------------------


def candidate_body(parts: list[dict[str, Any]], finish: str | None = "STOP", **usage: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage}


def test_parse_response_maps_parts() -> None:
    body = candidate_body(
        [
            {"text": "Thinking about it.", "thought": True},
            {"text": "Here you go.", "thoughtSignature": "sig"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
            {"functionCall": {"name": "get_time"}},
            {"executableCode": {"language": "PYTHON", "code": "1"}},
        ],
        promptTokenCount=10,
        candidatesTokenCount=5,
        thoughtsTokenCount=3,
    )
    content, usage, reason = parse_response(body)
    assert content == (
        Thought("Thinking about it."),
        Thought(None, "sig"),
        Text("Here you go."),
        ToolCall("call_t_0", "get_weather", '{"city":"Oslo"}'),
        ToolCall("call_t_1", "get_time", "{}"),
        Unknown({"executableCode": {"language": "PYTHON", "code": "1"}}),
    )
    assert usage == Usage(10, 8, reasoning_tokens=3)  # thinking tokens are billed as output, and told apart
    assert reason == "tool_call"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "unknown"),
        ("OTHER", "unknown"),
        (None, None),
    ],
)
def test_finish_reasons(raw: str | None, reason: str | None) -> None:
    assert parse_response(candidate_body([{"text": "x"}], raw))[2] == reason


def test_json_tool_answer_becomes_text() -> None:
    body = candidate_body([{"functionCall": {"name": "respond", "args": {"answer": "42"}}}])
    content, _, reason = parse_response(body, json_tool=True)
    assert content == (Text('{"answer":"42"}'),)
    assert reason == "stop"
    assert parse_response(body)[0] == (ToolCall("call_t_0", "respond", '{"answer":"42"}'),)


def test_blocked_prompt_is_a_content_filter_error() -> None:
    with pytest.raises(ProviderError) as info:
        parse_response({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {}})
    assert (info.value.kind, info.value.retryable) == ("content_filter", False)
    assert "PROHIBITED_CONTENT" in info.value.message


def test_a_candidate_without_content_is_empty() -> None:
    content, usage, reason = parse_response({"candidates": [{"finishReason": "SAFETY"}]})
    assert (content, usage, reason) == ((), Usage(), "content_filter")


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"candidates": "x"},
        {"candidates": [{"content": {"parts": "x"}}]},
        {"candidates": [{"content": {"parts": ["x"]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
    ],
)
def test_malformed_responses(body: Any) -> None:
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    assert info.value.kind == "malformed"


def test_parse_embeddings() -> None:
    assert parse_embeddings({"embeddings": [{"values": [1, 0.5]}]}, 1) == ((1.0, 0.5),)
    bad: tuple[Any, ...] = ({"embeddings": []}, {"embeddings": [{"values": ["x"]}]}, None)
    for body in bad:
        with pytest.raises(ProviderError):
            parse_embeddings(body, 1)


def test_stream_state_turns_events_into_deltas() -> None:
    state = StreamState()
    events = [
        candidate_body([{"text": "Hmm", "thought": True}], None, promptTokenCount=4),
        candidate_body([{"text": "Hel"}], None, promptTokenCount=4, candidatesTokenCount=1),
        candidate_body([{"functionCall": {"name": "get_time", "args": {}}}], None),
        candidate_body([{"text": ""}], "STOP", promptTokenCount=4, candidatesTokenCount=3),
    ]
    chunks = [state.feed(orjson.dumps(e).decode()) for e in events]
    assert chunks[0] == StreamChunk((Thought("Hmm"),), raw=orjson.dumps(events[0]).decode())
    assert chunks[1] is not None and chunks[1].content == (Text("Hel"),)
    assert chunks[2] is not None and chunks[2].content == (ToolCall("call_t_0", "get_time", "{}"),)
    assert chunks[3] is None  # nothing new: its payload rides on the last chunk
    last = state.finish()
    assert (last.usage, last.finish_reason, last.raw) == (Usage(4, 3), "tool_call", orjson.dumps(events[3]).decode())


def test_stream_state_errors() -> None:
    with pytest.raises(ProviderError) as info:
        StreamState(provider="p").feed("{oops")
    assert (info.value.kind, info.value.provider, info.value.raw_response) == ("malformed", "p", "{oops")
    with pytest.raises(ProviderError) as info:
        StreamState().feed('{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}')
    assert (info.value.status, info.value.retryable) == (503, True)
    with pytest.raises(ProviderError) as info:
        StreamState().feed('{"promptFeedback": {"blockReason": "SAFETY"}}')
    assert (info.value.kind, info.value.retryable) == ("content_filter", False)


def test_a_bad_key_is_an_auth_error() -> None:
    body = orjson.dumps(
        {"error": {"code": 400, "message": "API key not valid.", "details": [{"reason": "API_KEY_INVALID"}]}}
    )
    exc = status_error("p", HttpResponse(400, body, {}), "{}")
    assert (exc.kind, exc.retryable, exc.status) == ("auth", False, 400)
    assert status_error("p", HttpResponse(400, b"not json", {}), "{}").kind == "bad_request"


# ---- end to end against the fake -----------------------------------------------------------------------------


async def test_infer_text(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake)
    response = await provider.infer(ask("hello there", system="Be kind."), ctx)
    assert response.content == (Text("echo: hello there"),)
    assert response.usage == Usage(input_tokens=4, output_tokens=3)
    assert response.finish_reason == "stop"
    assert response.cost is None
    [received] = fake.requests
    assert received.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert received.query == {}  # the key never goes in the URL
    assert received.headers["x-goog-api-key"] == KEY
    assert received.json == orjson.loads(response.raw_request)
    assert orjson.loads(response.raw_response)["candidates"][0]["content"]["parts"] == [{"text": "echo: hello there"}]


async def test_function_calls_out_and_back_in(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake, "function")
    request = ask("weather in Paris", tools=(WEATHER, TIME), tool_choice="auto")
    first = await provider.infer(request, ctx)
    assert first.content == (
        ToolCall("call_t_0", "get_weather", '{"query":"weather in Paris"}'),
        ToolCall("call_t_1", "get_time", '{"query":"weather in Paris"}'),
    )
    assert first.finish_reason == "tool_call"
    followup = ProviderRequest(
        None,
        (
            request.messages[0],
            Message("assistant", first.content),
            user(ToolResult("call_t_0", "get_weather", "sunny"), ToolResult("call_t_1", "get_time", "noon")),
        ),
        tools=request.tools,
    )
    second = await provider.infer(followup, ctx)
    assert second.content == (Text("results: get_weather=sunny, get_time=noon"),)
    assert fake.requests[1].json["contents"][1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"query": "weather in Paris"}}},
            {"functionCall": {"name": "get_time", "args": {"query": "weather in Paris"}}},
        ],
    }


async def test_specific_tool_choice_reaches_gemini(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake)
    response = await provider.infer(ask("now?", tools=(WEATHER, TIME), tool_choice={"specific": "get_time"}), ctx)
    assert response.content == (ToolCall("call_t_0", "get_time", '{"query":"now?"}'),)


async def test_json_mode_on(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake)
    response = await provider.infer(ask("forty two", params=InferenceParams(json_mode="on")), ctx)
    [answer] = response.content
    assert isinstance(answer, Text) and orjson.loads(answer.text) == {"answer": "forty two"}
    assert fake.requests[0].json["generationConfig"] == {"responseMimeType": "application/json"}


async def test_thoughts_and_usage(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake, "thought")
    response = await provider.infer(ask("why"), ctx)
    assert response.content == (Thought("Let me think."), Thought(None, "sig-1"), Text("echo: why"))
    assert response.usage == Usage(input_tokens=1, output_tokens=2 + 3, reasoning_tokens=3)


async def test_cost_from_the_cost_option(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake, cost={"input_per_million": 1.25, "output_per_million": 10.0})
    response = await provider.infer(ask("a b c d"), ctx)
    assert response.usage == Usage(4, 5)
    assert response.cost == pytest.approx((4 * 1.25 + 5 * 10.0) / 1e6)


@pytest.mark.parametrize(
    ("model", "reason", "content"), [("length", "length", (Text("echo"),)), ("safety", "content_filter", ())]
)
async def test_finish_reasons_end_to_end(
    fake: FakeGemini, ctx: CallContext, model: str, reason: str, content: Any
) -> None:
    provider = provider_for(fake, model)
    response = await provider.infer(ask("hi"), ctx)
    assert (response.content, response.finish_reason) == (content, reason)
    chunks, error = await collect(provider.stream(ask("hi"), ctx))
    assert error is None
    assert chunks[-1].finish_reason == reason


async def test_stream_is_incremental(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake)
    fake.release = release = asyncio.Event()
    stream = provider.stream(ask("one two three"), ctx)
    first = await anext(stream)  # arrives while the server still holds the rest back
    assert first.content == (Text("echo:"),)
    assert first.raw and orjson.loads(first.raw)["candidates"][0]["content"]["parts"] == [{"text": "echo:"}]
    release.set()
    rest, error = await collect(stream)
    assert error is None
    assert text_of([first, *rest]) == "echo: one two three"
    last = rest[-1]
    assert (last.content, last.usage, last.finish_reason) == ((), Usage(3, 4), "stop")
    assert fake.requests[0].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake.requests[0].query == {"alt": "sse"}


async def test_stream_function_calls_and_thoughts(fake: FakeGemini, ctx: CallContext) -> None:
    chunks, error = await collect(provider_for(fake, "function").stream(ask("x", tools=(TIME,)), ctx))
    assert error is None
    assert chunks[0].content == (ToolCall("call_t_0", "get_time", '{"query":"x"}'),)
    assert chunks[-1].finish_reason == "tool_call"
    chunks, error = await collect(provider_for(fake, "thought").stream(ask("x"), ctx))
    assert error is None
    assert [c.content for c in chunks[:2]] == [(Thought("Let me think."),), (Thought(None, "sig-1"), Text("echo: x"))]
    assert chunks[-1].usage == Usage(1, 5, reasoning_tokens=3)


async def test_stream_ending_without_a_finish_reason_is_interrupted(fake: FakeGemini, ctx: CallContext) -> None:
    chunks, error = await collect(provider_for(fake, "cutoff").stream(ask("hi there"), ctx))
    assert text_of(chunks) == "echo: hi"
    assert all(c.finish_reason is None for c in chunks)
    assert error is not None
    assert (error.kind, error.retryable, error.provider) == ("stream_interrupted", True, "p")
    assert error.raw_request is not None and error.raw_response


async def test_error_event_mid_stream(fake: FakeGemini, ctx: CallContext) -> None:
    chunks, error = await collect(provider_for(fake, "stream-error").stream(ask("hi"), ctx))
    assert text_of(chunks) == "echo:"
    assert error is not None and (error.kind, error.status, error.retryable) == ("server_error", 500, True)


async def test_blocked_prompt(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake)
    with pytest.raises(ProviderError) as info:
        await provider.infer(ask("blocked please"), ctx)
    chunks, error = await collect(provider.stream(ask("blocked please"), ctx))
    assert chunks == []
    for exc in (info.value, error):
        assert exc is not None
        assert (exc.kind, exc.retryable, exc.provider) == ("content_filter", False, "p")
        assert exc.raw_response and "blockReason" in exc.raw_response


async def test_a_truncated_body_is_malformed(fake: FakeGemini, ctx: CallContext) -> None:
    with pytest.raises(ProviderError) as info:
        await provider_for(fake, "cutoff").infer(ask("hi"), ctx)
    assert (info.value.kind, info.value.provider) == ("malformed", "p")
    assert info.value.raw_response


@pytest.mark.parametrize(("key_error", "status"), [("invalid", 400), ("denied", 403)])
async def test_a_wrong_key_is_refused_as_auth(
    fake: FakeGemini, transport: Transport, key_error: Any, status: int
) -> None:
    fake.key_error = key_error
    provider = provider_for(fake, api_key_location="dynamic::gemini")
    ctx = CallContext(transport=transport, credentials={"gemini": "wrong"})
    with pytest.raises(ProviderError) as info:
        await provider.infer(ask("hi"), ctx)
    assert (info.value.status, info.value.kind, info.value.retryable) == (status, "auth", False)
    assert "wrong" not in (info.value.raw_request or "")


async def test_embeddings(fake: FakeGemini, ctx: CallContext) -> None:
    provider = provider_for(fake, "gemini-embedding-001")
    response = await provider.embed(["hello", "world"], ctx, dimensions=3)
    assert len(response.embeddings) == 2 and all(len(v) == 3 for v in response.embeddings)
    assert response.embeddings[0] != response.embeddings[1]
    assert response.usage == Usage()
    assert response.request_headers["x-goog-api-key"] == REDACTED
    assert response.api_key_sha256 == key_fingerprint(KEY)
    [received] = fake.requests
    assert received.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert received.json == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "hello"}]},
                "outputDimensionality": 3,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "world"}]},
                "outputDimensionality": 3,
            },
        ]
    }
    assert received.json == orjson.loads(response.raw_request)
    default = await provider.embed(["hello"], ctx)
    assert len(default.embeddings[0]) == 4 and "outputDimensionality" not in fake.requests[1].json["requests"][0]


async def test_embedding_errors(fake: FakeGemini, ctx: CallContext) -> None:
    with pytest.raises(ProviderError) as info:
        await provider_for(fake, "error-429").embed(["hi"], ctx)
    assert (info.value.kind, info.value.retryable) == ("rate_limited", True)

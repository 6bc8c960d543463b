"""The Gemini route without a socket: the generateContent parser (both key spellings, every refusal naming its
field), Gemini's schema subset as JSON Schema, function responses paired with their calls, thought signatures out
and back, the answer and stream builders, the error shape, and the key headers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import orjson
import pytest

from lsd.api.auth import authenticate
from lsd.api.gemini_embed import parse_embed_request
from lsd.api.gemini_request import check_model_name, parse_generate_request
from lsd.api.gemini_signatures import unwrapped, wrapped
from lsd.api.gemini_tools import json_schema
from lsd.api.gemini_wire import Parts, StreamWriter, error_object, response_json, usage_json
from lsd.api.provider_answer import ProviderAnswer
from lsd.config.loader import parse
from lsd.config.model import Config
from lsd.errors import ConfigError, InvalidRequest, NotFound, RateLimited, UnknownModel
from lsd.inference.result import InferenceResult, ToolCallOutput
from lsd.inference.streaming import StreamEvent
from lsd.providers.gemini.wire import build_contents, parse_response, status_error
from lsd.providers.transport import HttpResponse
from lsd.types import File, Message, Text, Thought, ToolCall, ToolResult, Unknown, Usage
from tests.support.auth import RecordingAuth

CONFIG = """
[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-sonnet-4-5"

[models.flash]
routing = ["google"]
[models.flash.providers.google]
type = "google_ai_studio_gemini"
model_name = "gemini-2.5-flash"

[functions.assistant]
type = "chat"
[functions.assistant.variants.claude]
type = "chat_completion"
model = "claude"

[inbound.gemini.models]
"gemini-2.5-pro" = "claude"
"gemini-2.5-flash-lite" = "lsd::function_name::assistant"
"""
INFERENCE_ID = UUID("01890000-0000-7000-8000-000000000001")


@pytest.fixture(scope="module")
def config() -> Config:
    return parse(CONFIG, base_dir=Path("."))


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def refused(config: Config, body: dict[str, Any], model: str = "gemini-2.5-pro") -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_generate_request(body, model, config, stream=False)
    return str(info.value.field)


def test_snake_case_and_camel_case_read_the_same(config: Config) -> None:
    camel = {
        "contents": [user({"inlineData": {"mimeType": "image/png", "data": "AAAA"}}, {"text": "hi"})],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        "generationConfig": {"maxOutputTokens": 9, "stopSequences": ["x"], "thinkingConfig": {"thinkingBudget": 99}},
    }
    snake = {
        "contents": [user({"inline_data": {"mime_type": "image/png", "data": "AAAA"}}, {"text": "hi"})],
        "system_instruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        "generation_config": {
            "max_output_tokens": 9,
            "stop_sequences": ["x"],
            "thinking_config": {"thinking_budget": 99},
        },
    }
    a = parse_generate_request(camel, "gemini-2.5-pro", config, stream=False)
    b = parse_generate_request(snake, "gemini-2.5-pro", config, stream=False)
    assert a.request == b.request
    assert a.request.input.system == "Be brief.\n\nBe kind."
    assert a.request.input.messages[0].content == (File(mime_type="image/png", data="AAAA"), Text("hi"))
    params = a.request.params
    assert (params.max_tokens, params.stop_sequences, params.thinking_budget_tokens) == (9, ("x",), 99)
    assert a.request.tags["lsd::model_alias"] == "gemini-2.5-pro" and a.request.model_name == "claude"
    assert a.gemini_fields == {"/generationConfig/thinkingConfig": {"thinkingBudget": 99}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [user({"text": "a", "inlineData": {"mimeType": "x", "data": "y"}})]}, "contents[0].parts[0]"),
        ({"contents": [user({"functionCall": {"name": "f"}})]}, "contents[0].parts[0].functionCall"),
        ({"contents": [user({"inlineData": {"data": "AAAA"}})]}, "contents[0].parts[0].inlineData.mimeType"),
        (
            {"contents": [user({"text": "a"})], "generationConfig": {"candidateCount": 2}},
            "generationConfig.candidateCount",
        ),
        ({"contents": [user({"text": "a"})], "generationConfig": {"topQ": 2}}, "generationConfig.topQ"),
        (
            {"contents": [user({"text": "a"})], "generationConfig": {"thinkingConfig": {"thinkingLevel": "max"}}},
            "generationConfig.thinkingConfig.thinkingLevel",
        ),
        ({"contents": [user({"text": "a"})], "toolConfig": {"functionCallingConfig": {"mode": "x"}}}, None),
        ({"contents": [user({"text": "a"})], "nonsense": 1}, "nonsense"),
    ],
)
def test_refusals_name_the_field(config: Config, body: dict[str, Any], field: str | None) -> None:
    assert refused(config, body) == (field or "toolConfig.functionCallingConfig.mode")


def test_an_unknown_model_is_a_404_naming_model(config: Config) -> None:
    with pytest.raises(UnknownModel) as info:
        parse_generate_request({"contents": [user({"text": "a"})]}, "gemini-nope", config, stream=False)
    assert info.value.field == "model"


def test_geminis_schema_subset_becomes_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
        },
        "required": ["name"],
        "propertyOrdering": ["name", "tags"],
    }
    assert json_schema(schema) == {
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        },
        "required": ["name"],
    }


def test_schemas_and_inline_data_are_normalised(config: Config) -> None:
    """Gemini CLI's router sends upper-case types in responseJsonSchema; the SDKs send bytes in base64url."""
    body = {
        "contents": [user({"inlineData": {"mimeType": "image/png", "data": "-_8"}})],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "OBJECT", "properties": {"score": {"type": "INTEGER"}}},
        },
    }
    parsed = parse_generate_request(body, "gemini-2.5-pro", config, stream=False).request
    assert parsed.output_schema == {"type": "object", "properties": {"score": {"type": "integer"}}}
    assert parsed.params.json_mode == "strict" and parsed.input.messages[0].content == (
        File(mime_type="image/png", data="+/8="),
    )
    bad = {"contents": [user({"inlineData": {"mimeType": "image/png", "data": "!!not base64$$"}})]}
    assert refused(config, bad) == "contents[0].parts[0].inlineData.data"
    ordered = json_schema({"type": "OBJECT", "properties": {"b": {}, "a": {}}, "propertyOrdering": ["a", "b"]})
    assert list(ordered["properties"]) == ["a", "b"]


def test_model_names_no_client_would_send(config: Config) -> None:
    with pytest.raises(InvalidRequest):
        check_model_name("gemini-2.5-pro\x00")
    with pytest.raises(NotFound):
        check_model_name("gemini-2.5-pro:generateContent")
    assert check_model_name("lsd::model_name::openai::gpt-5") == "lsd::model_name::openai::gpt-5"


def test_function_responses_pair_with_their_calls(config: Config) -> None:
    contents = [
        user({"text": "weather twice"}),
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                {"functionCall": {"id": "given", "name": "clock", "args": {}}},
            ],
        },
        user(
            {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}},
            {"functionResponse": {"id": "given", "name": "clock", "response": {"error": "no clock"}}},
            {"functionResponse": {"name": "weather", "response": {"temp": 21, "unit": "C"}}},
        ),
    ]
    parsed = parse_generate_request({"contents": contents}, "gemini-2.5-pro", config, stream=False).request
    calls = parsed.input.messages[1].content
    assert [c.id for c in calls if isinstance(c, ToolCall)] == ["call_1_0", "call_1_1", "given"]
    assert parsed.input.messages[2].content == (
        ToolResult("call_1_0", "weather", "sunny"),
        ToolResult("given", "clock", "no clock", is_error=True),
        ToolResult("call_1_1", "weather", '{"temp":21,"unit":"C"}'),
    )


def test_tool_config_and_googles_own_tools(config: Config) -> None:
    def choice(calling: dict[str, Any]) -> Any:
        body = {"contents": [user({"text": "a"})], "toolConfig": {"functionCallingConfig": calling}}
        return parse_generate_request(body, "gemini-2.5-pro", config, stream=False).request.tool_choice

    assert choice({"mode": "ANY", "allowedFunctionNames": ["f"]}) == {"specific": "f"}
    assert choice({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}) == "required"
    assert (choice({"mode": "NONE"}), choice({"mode": "AUTO"}), choice({"mode": "VALIDATED"})) == (
        "none",
        "auto",
        "auto",
    )
    search = {"contents": [user({"text": "a"})], "tools": [{"googleSearch": {}}]}
    call = parse_generate_request(search, "flash", config, stream=False)
    assert call.google_tool == "tools[0].googleSearch" and call.gemini_fields["/tools"] == [{"googleSearch": {}}]
    assert refused(config, search, "gemini-2.5-flash-lite") == "tools[0].googleSearch"  # a function: no Gemini tools


def test_another_vendors_thoughts_ride_on_the_next_part_and_come_back_whole(config: Config) -> None:
    claude = Thought("let me think", "c2lnbmF0dXJl", provider_type="anthropic")
    redacted = Thought(None, "cmVkYWN0ZWQ=", provider_type="anthropic")
    parts = Parts().blocks((claude, redacted, Text("the answer")))
    assert parts[0] == {"text": "let me think", "thought": True}
    signature = parts[1]["thoughtSignature"]
    assert parts[1]["text"] == "the answer" and unwrapped(signature) == [claude, redacted]
    # The SDKs send bytes back in base64url; Gemini CLI drops the thought part.
    history = {"contents": [user({"text": "q"}), {"role": "model", "parts": [parts[1]]}, user({"text": "again"})]}
    messages = parse_generate_request(history, "gemini-2.5-pro", config, stream=False).request.input.messages
    assert messages[1].content == (claude, redacted, Text("the answer"))
    assert unwrapped("not-ours") is None and unwrapped(wrapped([])) == []


def test_geminis_own_signatures_go_out_and_back_unchanged(config: Config) -> None:
    parts = Parts().blocks(
        (
            Thought("pondering", "g-sig-1", provider_type="google_ai_studio_gemini"),
            Thought(None, "g-sig-2", provider_type="google_ai_studio_gemini"),
            ToolCallOutput("call_0", "weather", '{"city": "Oslo"}', "weather", {"city": "Oslo"}),
        )
    )
    assert parts == [
        {"text": "pondering", "thought": True, "thoughtSignature": "g-sig-1"},
        {"functionCall": {"id": "call_0", "name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "g-sig-2"},
    ]
    history = {"contents": [user({"text": "q"}), {"role": "model", "parts": parts}]}
    messages = parse_generate_request(history, "flash", config, stream=False).request.input.messages
    gemini = "google_ai_studio_gemini"  # a signature a Gemini client sends back goes to Gemini's providers alone
    assert messages[1].content == (
        Thought("pondering", "g-sig-1", provider_type=gemini),
        Thought(None, "g-sig-2", provider_type=gemini),
        ToolCall("call_0", "weather", '{"city":"Oslo"}'),
    )
    unsigned = {"contents": [user({"text": "q"}), {"role": "model", "parts": [{"text": "x", "thought": True}]}]}
    kept = parse_generate_request(unsigned, "flash", config, stream=False).request.input.messages
    assert len(kept) == 1  # a thought part without a signature is dropped, and with it an empty turn
    assert refused(config, {"contents": [{"role": "model", "parts": [{"text": "x", "thought": True}]}]}) == "contents"
    assert Parts().blocks((Thought(None, "g-sig-3"),)) == [{"text": "", "thoughtSignature": "g-sig-3"}]


def result(*blocks: Any, usage: Usage, finish: str = "tool_call") -> InferenceResult:
    return InferenceResult(
        inference_id=INFERENCE_ID,
        episode_id=INFERENCE_ID,
        function_name="tensorzero::default",
        function_type="chat",
        variant_name="claude",
        model_name="claude",
        provider_name="anthropic",
        content=blocks,
        output=None,
        usage=usage,
        cost=None,
        finish_reason=finish,
    )


def test_the_answer(config: Config) -> None:
    call = parse_generate_request({"contents": [user({"text": "a"})]}, "gemini-2.5-pro", config, stream=False)
    tool = ToolCallOutput("toolu_1", "weather", "not json", None, None)
    answer = response_json(call, result(Text("hi"), tool, usage=Usage(10, 5, cache_read_input_tokens=4)))
    assert answer == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "hi"}, {"functionCall": {"id": "toolu_1", "name": "weather", "args": {}}}],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "totalTokenCount": 15,
            "cachedContentTokenCount": 4,
        },
        "modelVersion": "gemini-2.5-pro",
        "responseId": INFERENCE_ID.hex,
    }
    assert usage_json(Usage(10, 50, reasoning_tokens=30))["thoughtsTokenCount"] == 30


def test_a_stream_gathers_function_calls_and_ends_on_an_error(config: Config) -> None:
    call = parse_generate_request({"contents": [user({"text": "a"})]}, "gemini-2.5-pro", config, stream=True)
    stream = SimpleNamespace(inference_id=INFERENCE_ID, provider=SimpleNamespace(type_name="openai"))
    writer = StreamWriter(call, stream)  # type: ignore[arg-type]
    first = writer.chunk(StreamEvent(content=(Text("he"),)))
    assert first is not None and first["candidates"][0]["content"]["parts"] == [{"text": "he"}]
    assert writer.chunk(StreamEvent(content=(ToolCall("c1", "weather", '{"ci'),))) is None
    assert writer.chunk(StreamEvent(content=(ToolCall("c1", "", 'ty": "Oslo"}'),))) is None
    last = writer.chunk(StreamEvent(usage=Usage(3, 4), finish_reason="tool_call"))
    assert last is not None
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "c1", "name": "weather", "args": {"city": "Oslo"}}}
    ]
    assert last["candidates"][0]["finishReason"] == "STOP" and last["usageMetadata"]["totalTokenCount"] == 7
    failing = StreamWriter(call, stream)  # type: ignore[arg-type]
    cut = failing.chunk(StreamEvent(error=InvalidRequest.at("x", "bad")))
    assert cut == {"error": {"code": 400, "message": "x: bad", "status": "INVALID_ARGUMENT"}}
    assert failing.chunk(StreamEvent(content=(Text("more"),))) is None


def test_error_shape() -> None:
    assert error_object(UnknownModel("m", field="model")) == {
        "error": {"code": 404, "message": "model: Unknown model: m", "status": "NOT_FOUND"}
    }
    limited = error_object(RateLimited("too many", rule="r", retry_after_s=7))["error"]
    assert limited["status"] == "RESOURCE_EXHAUSTED"  # Gemini CLI waits by RetryInfo, not by Retry-After
    assert limited["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]


def test_a_gemini_provider_gets_structured_function_responses_back() -> None:
    messages = (
        Message("user", (Text("q"),)),
        Message("assistant", (ToolCall("a", "f", "{}"), ToolCall("b", "g", "{}"), ToolCall("c", "h", "{}"))),
        Message(
            "user",
            (
                ToolResult("a", "f", '{"result": {"forecast": "sunny"}}'),
                ToolResult("b", "g", "no such city", is_error=True),
                ToolResult("c", "h", "plain text"),
            ),
        ),
    )
    parts = build_contents(messages)[2]["parts"]
    assert [p["functionResponse"]["response"] for p in parts] == [
        {"result": {"forecast": "sunny"}},
        {"error": "no such city"},
        {"result": "plain text"},
    ]


@pytest.mark.parametrize(
    ("path", "headers", "query", "sent"),
    [
        ("/gemini/v1beta/models/m:generateContent", {"x-goog-api-key": "sk-lsd-g"}, b"", "Bearer sk-lsd-g"),
        ("/gemini/v1beta/models/m:generateContent", {}, b"alt=sse&key=sk-lsd-q", "Bearer sk-lsd-q"),
        ("/gemini/v1beta/models/m:generateContent", {"authorization": "Bearer sk-lsd-b"}, b"key=x", "Bearer sk-lsd-b"),
        ("/inference", {}, b"key=sk-lsd-q", None),  # the query parameter is Google's, for its routes only
    ],
)
async def test_the_key_headers(path: str, headers: dict[str, str], query: bytes, sent: str | None) -> None:
    auth = RecordingAuth()
    scope: dict[str, Any] = {
        "path": path,
        "query_string": query,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    await authenticate(auth, scope)  # type: ignore[arg-type]
    assert auth.seen == [sent]


def test_a_gemini_providers_error_details_go_out_as_google_gave_them() -> None:
    """A daily quota's QuotaFailure makes Gemini CLI stop instead of retrying for minutes; its RetryInfo is kept."""
    body = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "PerDay"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"},
            ],
        }
    }
    answer = ProviderAnswer(429, "You exceeded your current quota.", 40.0, orjson.dumps(body).decode())
    error = error_object(answer)["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["details"] == body["error"]["details"]


def test_google_searchs_sources_stay_on_the_candidate() -> None:
    grounding = {"groundingChunks": [{"web": {"uri": "https://example.com/lsd", "title": "example.com"}}]}
    body = {
        "candidates": [
            {
                "content": {"parts": [{"text": "LSD is a gateway."}]},
                "finishReason": "STOP",
                "groundingMetadata": grounding,
            }
        ]
    }
    blocks, _, _ = parse_response(body, provider_name="google")
    assert blocks[-1] == Unknown({"groundingMetadata": grounding}, provider_name="google")
    history = (Message("user", (Text("q"),)), Message("assistant", blocks))
    assert build_contents(history, "google")[1]["parts"] == [{"text": "LSD is a gateway."}]  # never sent back
    config = parse(CONFIG, base_dir=Path("."))
    call = parse_generate_request({"contents": [user({"text": "q"})]}, "flash", config, stream=False)
    candidate = response_json(call, result(*blocks, usage=Usage(1, 1)))["candidates"][0]
    assert candidate["groundingMetadata"] == grounding
    assert candidate["content"]["parts"] == [{"text": "LSD is a gateway."}]


def test_odd_embedding_bodies_and_page_tokens_are_400s_naming_the_field() -> None:
    def field(body: Any, batch: bool = True) -> str | None:
        with pytest.raises(InvalidRequest) as info:
            parse_embed_request(body, "embed", batch)
        return info.value.field

    text = {"content": {"parts": [{"text": "x"}]}}
    assert field({"requests": [{**text, "model": 5}]}) == "requests[0].model"
    assert field({"requests": [{**text, "colour": "red"}]}) == "requests[0].colour"
    assert field({**text, "colour": "red"}, batch=False) == "colour"
    assert parse_embed_request({**text, "taskType": "RETRIEVAL_QUERY"}, "embed", False) == (("x",), None)
    config = parse(CONFIG, base_dir=Path("."))
    bad = {"contents": [user({"inlineData": {"mimeType": "image/png", "data": "é"}})]}
    assert refused(config, bad) == "contents[0].parts[0].inlineData.data"


def test_the_star_entry_takes_chat_names_only() -> None:
    embedder = '\n[embedding_models.emb]\nrouting = ["o"]\n[embedding_models.emb.providers.o]\ntype = "openai"\n'
    embedder += 'model_name = "text-embedding-3-small"\n'
    with pytest.raises(ConfigError) as info:
        parse(CONFIG + '"*" = "lsd::embedding_model_name::emb"\n' + embedder, base_dir=Path("."))
    assert info.value.errors == [
        "inbound.gemini.models.*: the `*` entry takes chat names only: map each embedding name on its own"
    ]


def test_an_unknown_name_is_repeated_at_most_256_characters(config: Config) -> None:
    with pytest.raises(UnknownModel) as info:
        parse_generate_request({"contents": [user({"text": "a"})]}, "lsd::model_name::" + "m" * 5000, config, False)
    assert len(info.value.message) < 300 and info.value.message.endswith("…")


def test_geminis_calls_get_ids_unique_across_turns_and_its_retry_delay_is_read() -> None:
    """Claude Code drops a call whose id it has seen before: every Gemini answer's `call_0` looped it without end."""
    body = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "ls", "args": {}}}]}}]}
    first, second = (parse_response(body)[0][0] for _ in range(2))
    assert isinstance(first, ToolCall) and isinstance(second, ToolCall) and first.id != second.id
    given = {"candidates": [{"content": {"parts": [{"functionCall": {"id": "g-1", "name": "ls", "args": {}}}]}}]}
    assert parse_response(given)[0] == (ToolCall("g-1", "ls", "{}"),)  # Gemini's own id, kept
    quota = {
        "error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]}
    }
    response = HttpResponse(429, orjson.dumps(quota), {})
    assert status_error("google", response, "").retry_after_s == 38.0  # Google's wait, in its body

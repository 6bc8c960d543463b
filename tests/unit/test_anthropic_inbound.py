"""POST /anthropic/v1/messages without a socket: the request parser (every refusal names its field), model
resolution, the Anthropic-only fields narrowed to Anthropic-bodied providers, the answer and stream builders, the
error shape, the x-api-key header, and the cache-token usage each wire reports."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import orjson
import pytest

from lsd.api.anthropic_extras import provider_extras
from lsd.api.anthropic_request import MessagesRequest, parse_messages_request, resolve_model
from lsd.api.anthropic_wire import StreamWriter, error_object, message_json, sse_bytes, usage_json
from lsd.api.auth import authenticate
from lsd.api.openai_model import ModelRef, parse_model
from lsd.api.openai_wire import usage_json as openai_usage_json
from lsd.api.tensorzero_wire import usage_json as tensorzero_usage_json
from lsd.config.inbound import InboundTarget
from lsd.config.loader import parse
from lsd.config.model import Config
from lsd.errors import (
    AllAttemptsFailed,
    AttemptFailure,
    ConfigError,
    InvalidRequest,
    LsdError,
    ProviderError,
    RateLimited,
    Unauthorized,
    UnknownFunction,
    UnknownModel,
)
from lsd.inference.result import InferenceResult, JsonOutput, ToolCallOutput
from lsd.inference.streaming import StreamEvent
from lsd.providers.gemini.wire import parse_usage as gemini_usage
from lsd.providers.openai.wire import parse_usage as openai_usage
from lsd.types import BodyPatch, File, HeaderPatch, Text, Thought, ToolCall, ToolResult, Usage
from tests.support.auth import RecordingAuth

CONFIG = """
[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-sonnet-4-5"

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"

[functions.assistant]
type = "chat"
[functions.assistant.variants.claude]
type = "chat_completion"
model = "claude"

[inbound.anthropic.models]
"claude-sonnet-4-5" = "claude"
"claude-haiku-4-5" = "lsd::function_name::assistant"
"""
INFERENCE_ID = UUID("01890000-0000-7000-8000-000000000001")


@pytest.fixture(scope="module")
def config() -> Config:
    return parse(CONFIG, base_dir=Path("."))


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **fields}


# ---- model resolution --------------------------------------------------------------------------------------


def test_a_star_entry_takes_every_other_plain_name_on_both_apis() -> None:
    """`"*"` in `[inbound.*] models`: every plain name with no entry of its own (a client's side model, such as
    aider's `gpt-4o-mini`) goes there, tagged as the name it came by; configured models, shorthands and LSD's own
    names keep their meaning."""
    star = parse(
        CONFIG + '"*" = "gpt"\n[inbound.openai.models]\n"gpt-5.5" = "claude"\n"*" = "gpt"\n', base_dir=Path(".")
    )
    assert resolve_model("claude-3-haiku", star) == InboundTarget("model_name", "gpt")
    assert resolve_model("claude-sonnet-4-5", star) == InboundTarget("model_name", "claude")  # its own entry
    assert resolve_model("claude", star) == InboundTarget("model_name", "claude")  # a configured model
    assert resolve_model("anthropic::claude-opus-4", star) == InboundTarget("model_name", "anthropic::claude-opus-4")
    assert parse_messages_request(body(model="claude-3-haiku"), star).request.tags == {
        "lsd::model_alias": "claude-3-haiku"
    }
    aliases = star.inbound.openai.models
    assert parse_model("gpt-4o-mini", aliases=aliases) == ModelRef("lsd::", "model_name", "gpt", alias="gpt-4o-mini")
    assert parse_model("gpt-5.5", aliases=aliases).name == "claude"
    assert parse_model("lsd::model_name::claude", aliases=aliases) == ModelRef("lsd::", "model_name", "claude")
    with pytest.raises(InvalidRequest):  # TensorZero's prefixes stay TensorZero's
        parse_model("tensorzero::nonsense", aliases=aliases)
    with pytest.raises(InvalidRequest):  # a shorthand is not a plain name for `*` to take
        parse_model("openai::gpt-4o", aliases=aliases)
    with pytest.raises(InvalidRequest):  # a name too long to echo and tag on every row: not taken by `*`
        parse_model("g" * 257, aliases=aliases)
    with pytest.raises(UnknownModel):
        resolve_model("c" * 257, star)
    with pytest.raises(UnknownModel):  # the entry's own key is no model's name
        resolve_model("*", star)
    with pytest.raises(InvalidRequest):
        parse_model("*", aliases=aliases)


@pytest.mark.parametrize(
    ("model", "target"),
    [
        ("claude-sonnet-4-5", InboundTarget("model_name", "claude")),  # mapped in [inbound.anthropic]
        ("claude-haiku-4-5", InboundTarget("function_name", "assistant")),
        ("gpt", InboundTarget("model_name", "gpt")),  # a configured model's own name
        ("lsd::function_name::assistant", InboundTarget("function_name", "assistant")),
        ("tensorzero::model_name::claude", InboundTarget("model_name", "claude")),
        ("anthropic::claude-opus-4", InboundTarget("model_name", "anthropic::claude-opus-4")),  # a shorthand
    ],
)
def test_model_resolution(config: Config, model: str, target: InboundTarget) -> None:
    assert resolve_model(model, config) == target


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("claude-nope", UnknownModel),
        ("lsd::model_name::nope", UnknownModel),
        ("lsd::function_name::nope", UnknownFunction),
        ("lsd::function_name::", InvalidRequest),
        ("", InvalidRequest),
        (7, InvalidRequest),
    ],
)
def test_unknown_or_malformed_models_name_the_model_field(config: Config, model: Any, error: type[LsdError]) -> None:
    with pytest.raises(error) as info:
        resolve_model(model, config)
    assert info.value.field == "model"
    assert error_object(info.value)["error"]["message"].startswith("model:")


def test_inbound_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            CONFIG.replace('"claude-sonnet-4-5" = "claude"', '"claude-x" = "nope"\n"y" = "lsd::function_name::g"')
            + '"z" = 3\n"w" = "lsd::model_name::"\n[inbound.openai.models]\ngpt-5 = "nope"\n'
            + '"lsd::model_name::claude" = "claude"\n[inbound.gemini.models]\n"gemini-2.5-pro" = "nope"\n'
            + "[inbound.mistral]\n",
            base_dir=Path("."),
        )
    assert sorted(info.value.errors) == [
        "inbound.anthropic.models.claude-x: unknown model 'nope': define [models.nope] or use a shorthand",
        "inbound.anthropic.models.w: expected `lsd::function_name::F`, `lsd::model_name::M` or a model name, "
        "got 'lsd::model_name::'",
        "inbound.anthropic.models.y: unknown function 'g': define [functions.g]",
        "inbound.anthropic.models.z: expected a string, got int",
        "inbound.gemini.models.gemini-2.5-pro: unknown model 'nope': define [models.nope] or use a shorthand",
        "inbound.mistral: unknown key",
        "inbound.openai.models.gpt-5: unknown model 'nope': define [models.nope] or use a shorthand",
        "inbound.openai.models.lsd::model_name::claude: a client's model name cannot start with lsd:: or "
        "tensorzero:: (those are LSD's names)",
    ]


# ---- request parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "system", "content": [{"type": "image"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].source.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]},
            "messages[0].content[0].source.media_type",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "w", "input": 1}]}
                ]
            },
            "messages[0].content[0].input",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}]}]},
            "messages[0].content[0].signature",
        ),
        ({"system": [{"type": "image"}]}, "system[0]"),
        ({"system": 5}, "system"),
        ({"tools": [{"name": "w"}]}, "tools[0].input_schema"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        (
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": "yes"}},
            "tool_choice.disable_parallel_tool_use",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking"),
        ({"top_k": -1}, "top_k"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"metadata": {"user_id": 3}}, "metadata.user_id"),
        ({"stream": "yes"}, "stream"),
        ({"frobnicate": "c"}, "frobnicate"),
        ({"lsd::tags": {"a": 1}}, "lsd::tags"),
        ({"lsd::episode_id": "nope"}, "lsd::episode_id"),
        ({"tensorzero::dryrun": "yes"}, "tensorzero::dryrun"),
    ],
)
def test_a_refused_request_names_its_field(config: Config, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(body(**fields), config)
    assert info.value.field == field, info.value.message
    shape = error_object(info.value)
    assert shape["type"] == "error" and shape["error"]["type"] == "invalid_request_error"
    assert shape["error"]["message"].startswith(f"{field}:")


def test_a_failed_tool_result_keeps_is_error(config: Config) -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "x", "is_error": True}],
        },
    ]
    call = parse_messages_request(body(model="claude-haiku-4-5", messages=messages), config)
    assert call.request.input.messages[2].content == (ToolResult("toolu_2", "weather", "x", is_error=True),)
    messages[2]["content"][0]["is_error"] = "yes"  # type: ignore[index]
    with pytest.raises(InvalidRequest, match="is_error"):
        parse_messages_request(body(model="claude-haiku-4-5", messages=messages), config)


def test_anthropics_own_fields_go_on_to_anthropic_bodied_providers(config: Config) -> None:
    """Claude Code sends context_management and output_config (effort, a structured-output format) with its
    requests: they went to a 400; now they travel, as thinking does, to the providers whose body is Anthropic's."""
    fields = {
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        # LiteLLM's response_format on anthropic/... models: the structured-outputs beta's field
        "output_format": {"type": "json_schema", "schema": {"type": "object"}},
    }
    call = parse_messages_request(body(model="claude-haiku-4-5", **fields), config)
    assert call.anthropic_fields == {
        "/context_management": fields["context_management"],
        "/output_config": fields["output_config"],
        "/output_format": fields["output_format"],
    }


def test_a_full_request_becomes_the_engines_request(config: Config) -> None:
    call = parse_messages_request(
        body(
            model="claude-haiku-4-5",
            system=[
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be kind."},
            ],
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            stream=True,
            metadata={"user_id": "u-1"},
            thinking={"type": "enabled", "budget_tokens": 2048},
            tools=[{"name": "weather", "description": "W", "input_schema": {"type": "object"}}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
                        {"type": "text", "text": "weather?"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [
                                {"type": "text", "text": "sunny"},
                                {"type": "text", "text": "12C"},
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/png", "data": "BBBB"},
                                },
                            ],
                        }
                    ],
                },
            ],
            **{"lsd::tags": {"team": "search"}, "lsd::variant_name": "claude"},
        ),
        config,
    )
    request = call.request
    assert (request.function_name, request.model_name, request.variant_name) == ("assistant", None, "claude")
    assert request.stream and request.input.system == "Be brief.\n\nBe kind."
    assert request.params.max_tokens == 64 and request.params.temperature == 0.5 and request.params.top_p == 0.9
    assert request.params.stop_sequences == ("END",)
    # the alias the client named (claude-haiku-4-5, mapped by [inbound.anthropic] models): who sent what
    assert request.tags == {"team": "search", "user_id": "u-1", "lsd::model_alias": "claude-haiku-4-5"}
    assert request.tool_choice == "required" and request.parallel_tool_calls is False
    assert [t.name for t in request.additional_tools] == ["weather"]
    user, assistant, results = request.input.messages
    assert user.content == (
        File(mime_type="image/png", data="AAAA"),
        File(mime_type=None, url="https://example.com/a.png"),
        File(mime_type="application/pdf", url="https://example.com/a.pdf"),
        Text("weather?"),
    )
    assert assistant.content == (
        Thought("Let me look.", "sig"),
        Thought(None, "opaque"),
        ToolCall("toolu_1", "weather", '{"city":"Oslo"}'),
    )
    assert results.content == (ToolResult("toolu_1", "weather", "sunny\n12C"), File(mime_type="image/png", data="BBBB"))
    # A function's system and tools are its own (templates, config tools): the client's cache marks stay behind.
    assert call.anthropic_fields == {
        "/thinking": {"type": "enabled", "budget_tokens": 2048},
        "/top_k": 40,
        "/metadata": {"user_id": "u-1"},  # Anthropic's abuse detection reads it: passed on
    }
    assert call.model == "claude-haiku-4-5" and call.target == InboundTarget("function_name", "assistant")


def test_a_models_cache_marks_on_system_and_tools_go_to_anthropic_bodied_providers(config: Config) -> None:
    mark = {"type": "ephemeral"}
    tools = [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(3)]
    tools[2]["cache_control"] = mark
    tools[1]["eager_input_streaming"] = True  # the AI SDK's (opencode's) fine-grained tool input streaming
    call = parse_messages_request(
        body(system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": mark}], tools=tools),
        config,
    )
    assert call.anthropic_fields == {
        "/system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": mark}],
        "/tools/2/cache_control": mark,
        "/tools/1/eager_input_streaming": True,
    }
    assert parse_messages_request(body(system=[{"type": "text", "text": "a"}]), config).anthropic_fields == {}
    # A mark on the last message lands on the last block of the last message Anthropic is sent (tool results first).
    conversation = [
        {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": mark}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "t0", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and", "cache_control": mark},
                {"type": "tool_result", "tool_use_id": "t", "content": "r"},
            ],
        },
    ]
    marked = parse_messages_request(body(messages=conversation), config).anthropic_fields
    assert marked == {"/messages/2/content/1/cache_control": mark}
    assert parse_messages_request(body(messages=conversation[:2]), config).anthropic_fields == {}  # not the last


def test_a_model_request_drops_a_variant_name(config: Config) -> None:
    call = parse_messages_request(body(**{"lsd::variant_name": "v"}), config)
    assert (call.request.model_name, call.request.variant_name) == ("claude", None)


def test_anthropic_only_fields_reach_anthropic_bodied_providers_only(config: Config) -> None:
    call = parse_messages_request(body(thinking={"type": "enabled", "budget_tokens": 1024}, top_k=5), config)
    routes = [
        ("claude", "anthropic", "anthropic"),
        ("gpt", "openai", "openai"),
        ("v", "vertex", "gcp_vertex_anthropic"),
    ]
    bodies, headers = provider_extras(call, routes, "interleaved-thinking-2025-05-14")
    assert bodies == (
        BodyPatch(
            "/thinking", {"type": "enabled", "budget_tokens": 1024}, model_name="claude", provider_name="anthropic"
        ),
        BodyPatch("/top_k", 5, model_name="claude", provider_name="anthropic"),
        BodyPatch("/thinking", {"type": "enabled", "budget_tokens": 1024}, model_name="v", provider_name="vertex"),
        BodyPatch("/top_k", 5, model_name="v", provider_name="vertex"),
    )
    assert headers == (
        HeaderPatch(
            "anthropic-beta", "interleaved-thinking-2025-05-14", model_name="claude", provider_name="anthropic"
        ),
        HeaderPatch("anthropic-beta", "interleaved-thinking-2025-05-14", model_name="v", provider_name="vertex"),
    )
    assert provider_extras(parse_messages_request(body(), config), routes, None) == ((), ())


def test_a_models_structured_output_is_asked_of_chat_completions_providers_too(config: Config) -> None:
    """`output_config.format` (pydantic-ai's NativeOutput, LangChain's default) and the beta's `output_format`
    (LiteLLM) go to Anthropic-bodied providers as they are, and to a Chat Completions provider (a fallback, or a
    claude-* name mapped to one) as its `response_format`: it was asked for nothing and answered prose."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    wanted = {"type": "json_schema", "json_schema": {"name": "response", "strict": False, "schema": schema}}
    routes = [
        ("claude", "anthropic", "anthropic"),
        ("claude", "backup", "openai"),
        ("claude", "g", "google_ai_studio_gemini"),
        ("claude", "b", "aws_bedrock"),
    ]
    for fields in (
        {"output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}}},
        {"output_format": {"type": "json_schema", "schema": schema}},
    ):
        bodies, _ = provider_extras(parse_messages_request(body(**fields), config), routes, None)
        assert [b for b in bodies if b.provider_name == "backup"] == [
            BodyPatch("/response_format", wanted, model_name="claude", provider_name="backup")
        ]
        assert all(b.pointer != "/response_format" for b in bodies if b.provider_name != "backup")
        assert [(b.pointer, b.value) for b in bodies if b.provider_name == "g"] == [
            ("/generationConfig/responseMimeType", "application/json"),
            ("/generationConfig/responseJsonSchema", schema),  # Gemini's JSON schema, as its own wire sends it
        ]
        converse = {"type": "json_schema", "structure": {"jsonSchema": {"schema": orjson.dumps(schema).decode(),
                                                                        "name": "response"}}}  # fmt: skip
        assert [(b.pointer, b.value) for b in bodies if b.provider_name == "b"] == [
            ("/outputConfig/textFormat", converse)  # Bedrock's structured output, the schema as a JSON string
        ]
    # a function's own output is its config's: nothing added
    function = parse_messages_request(
        body(model="claude-haiku-4-5", output_format={"type": "json_schema", "schema": schema}), config
    )
    assert function.response_format is None


# ---- answers -----------------------------------------------------------------------------------------------


def result(**fields: Any) -> InferenceResult:
    values: dict[str, Any] = {
        "inference_id": INFERENCE_ID,
        "episode_id": INFERENCE_ID,
        "function_name": "tensorzero::default",
        "function_type": "chat",
        "variant_name": "claude",
        "model_name": "claude",
        "provider_name": "anthropic",
        "content": (),
        "output": None,
        "usage": Usage(10, 5),
        "cost": None,
        "finish_reason": "stop",
    }
    return InferenceResult(**{**values, **fields})


def call(config: Config) -> MessagesRequest:
    return parse_messages_request(body(), config)


def test_message_json_maps_blocks_stop_reasons_and_cache_usage(config: Config) -> None:
    answer = message_json(
        call(config),
        result(
            content=(
                Thought("Hmm.", "sig"),
                Thought(None, "opaque"),
                Thought("unsigned", None),
                Text("Looking."),
                ToolCallOutput("toolu_1", "weather", '{"city":"Oslo"}', "weather", {"city": "Oslo"}),
                ToolCallOutput("toolu_2", "nope", "not json", None, None),
            ),
            usage=Usage(1200, 30, cache_read_input_tokens=1000, cache_write_input_tokens=150),
            finish_reason="tool_call",
        ),
    )
    assert answer["id"] == f"msg_{INFERENCE_ID.hex}" and answer["model"] == "claude-sonnet-4-5"
    assert answer["content"] == [
        {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "unsigned", "signature": ""},
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "toolu_2", "name": "nope", "input": {}},
    ]
    assert answer["stop_reason"] == "tool_use" and answer["stop_sequence"] is None
    assert answer["usage"] == {
        "input_tokens": 50,
        "output_tokens": 30,
        "cache_creation_input_tokens": 150,
        "cache_read_input_tokens": 1000,
    }
    for reason, expected in [
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("stop_sequence", "stop_sequence"),
        (None, "end_turn"),
    ]:
        assert message_json(call(config), result(finish_reason=reason))["stop_reason"] == expected
    json_answer = message_json(call(config), result(function_type="json", output=JsonOutput('{"a":1}', {"a": 1})))
    assert json_answer["content"] == [{"type": "text", "text": '{"a":1}'}]
    assert usage_json(Usage(None, None)) == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
    }


def test_stream_writer_opens_feeds_and_closes_blocks(config: Config) -> None:
    stream: Any = SimpleNamespace(inference_id=INFERENCE_ID)
    writer = StreamWriter(call(config), stream)
    events = writer.start()
    for event in [
        StreamEvent(content=(Thought("Let me "),)),
        StreamEvent(content=(Thought("think."),)),
        StreamEvent(content=(Thought("", "sig"),)),  # the open thought's signature
        StreamEvent(content=(Thought(None, "redacted"),)),
        StreamEvent(content=(Text("Hi"),)),
        StreamEvent(content=(Text(" there"), ToolCall("t1", "weather", '{"ci'))),
        StreamEvent(content=(ToolCall("t1", "", 'ty":"Oslo"}'), ToolCall("t2", "time", ""))),
        StreamEvent(usage=Usage(20, 7, cache_read_input_tokens=5), finish_reason="tool_call"),
    ]:
        events += writer.events(event)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        *("content_block_start", "content_block_delta", "content_block_delta", "content_block_delta"),
        *("content_block_stop", "content_block_start", "content_block_stop"),  # the redacted thought
        *("content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"),
        *("content_block_start", "content_block_delta", "content_block_delta"),
        *("content_block_stop", "content_block_start"),  # t2 opens, with no arguments yet
        *("content_block_stop", "message_delta", "message_stop"),
    ]
    data = [payload for _, payload in events]
    assert data[0]["message"]["id"] == f"msg_{INFERENCE_ID.hex}" and data[0]["message"]["content"] == []
    assert data[2] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert data[5]["delta"] == {"type": "signature_delta", "signature": "sig"}
    assert data[7]["content_block"] == {"type": "redacted_thinking", "data": "redacted"} and data[7]["index"] == 1
    assert data[11]["delta"] == {"type": "text_delta", "text": " there"} and data[11]["index"] == 2
    assert data[13]["content_block"] == {"type": "tool_use", "id": "t1", "name": "weather", "input": {}}
    assert [d["delta"]["partial_json"] for d in data[14:16]] == ['{"ci', 'ty":"Oslo"}']
    assert data[17]["content_block"]["id"] == "t2"
    assert data[19] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 15,
            "output_tokens": 7,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": 5,
        },
    }
    encoded = sse_bytes(events[:1])
    assert encoded.startswith(b"event: message_start\ndata: {") and encoded.endswith(b"}\n\n")
    assert orjson.loads(encoded.split(b"data: ", 1)[1]) == data[0]


def test_interleaved_parallel_tool_calls_never_feed_a_closed_block(config: Config) -> None:
    """OpenAI-bodied providers address each tool call's argument fragments by index, and may interleave them; an
    Anthropic stream's blocks run start, deltas, stop one after another. The first call streams; the others are
    held and sent whole when it is done (before a text block, or at the end)."""
    writer = StreamWriter(call(config), SimpleNamespace(inference_id=INFERENCE_ID))  # type: ignore[arg-type]
    events = writer.start()
    for event in [
        StreamEvent(content=(ToolCall("A", "bash", '{"comm'),)),
        StreamEvent(content=(ToolCall("B", "read", '{"pa'),)),
        StreamEvent(content=(ToolCall("A", "", 'and": "ls"}'),)),
        StreamEvent(content=(ToolCall("B", "", 'th": "x"}'),)),
        StreamEvent(content=(ToolCall("C", "noop", ""),)),
        StreamEvent(usage=Usage(20, 7), finish_reason="tool_call"),
    ]:
        events += writer.events(event)
    blocks: dict[int, dict[str, Any]] = {}
    closed: set[int] = set()
    for name, data in events:
        if name == "content_block_start":
            assert not blocks or max(blocks) in closed, "a block opened before the previous one stopped"
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif name == "content_block_delta":
            assert data["index"] not in closed, f"a delta for block {data['index']} after its content_block_stop"
            blocks[data["index"]]["json"] += data["delta"]["partial_json"]
        elif name == "content_block_stop":
            closed.add(data["index"])
    assert [(b["id"], b["name"], b["json"]) for b in blocks.values()] == [
        ("A", "bash", '{"command": "ls"}'),
        ("B", "read", '{"path": "x"}'),
        ("C", "noop", ""),
    ]
    assert closed == set(blocks) and [name for name, _ in events][-2:] == ["message_delta", "message_stop"]
    # Text after tool calls waits for the end: a call's fragments may still come after it (reproduced by the diff
    # review: A and B fragments, text, then more of both).
    texts = StreamWriter(call(config), SimpleNamespace(inference_id=INFERENCE_ID))  # type: ignore[arg-type]
    out = texts.events(StreamEvent(content=(ToolCall("A", "a", '{"x'), ToolCall("B", "b", '{"y'))))
    out += texts.events(StreamEvent(content=(Text("done"),)))
    out += texts.events(StreamEvent(content=(ToolCall("A", "", '": 1}'), ToolCall("B", "", '": 2}'))))
    out += texts.events(StreamEvent(usage=Usage(1, 1), finish_reason="tool_call"))
    starts = [d["content_block"].get("id", d["content_block"]["type"]) for n, d in out if n == "content_block_start"]
    assert starts == ["A", "B", "text"]
    stopped: set[int] = set()
    for name, data in out:
        if name == "content_block_stop":
            stopped.add(data["index"])
        elif name == "content_block_delta":
            assert data["index"] not in stopped
    error_case = StreamWriter(call(config), SimpleNamespace(inference_id=INFERENCE_ID))  # type: ignore[arg-type]
    out = error_case.events(StreamEvent(content=(ToolCall("A", "a", "{}"), Text("after"))))
    out += error_case.events(StreamEvent(error=AllAttemptsFailed([])))
    names = [n for n, _ in out]
    assert names[-1] == "error" and names[-2] != "content_block_stop"  # the cut block stays open, as at Anthropic
    assert any(n == "content_block_delta" and d["delta"].get("text") == "after" for n, d in out)


def test_an_error_ends_the_anthropic_stream(config: Config) -> None:
    """As at Anthropic, the error event is the stream's last: no message_delta (end_turn) makes a cut answer look
    finished."""
    writer = StreamWriter(call(config), SimpleNamespace(inference_id=INFERENCE_ID))  # type: ignore[arg-type]
    events = writer.start()
    for event in (
        StreamEvent(content=(Text("Hi"),)),
        StreamEvent(error=AllAttemptsFailed([])),
        StreamEvent(usage=Usage(20, 7), finish_reason="stop"),
    ):
        events += writer.events(event)
    names = [name for name, _ in events]
    assert names[-1] == "error" and "message_delta" not in names and "message_stop" not in names
    assert events[-1][1]["error"]["type"] == "api_error"
    overloaded = ProviderError("provider 'p' answered HTTP 529: ...", provider="p", status=529)
    assert error_object(overloaded)["error"]["type"] == "overloaded_error"  # a stream's error event keeps its kind


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (InvalidRequest.at("messages", "bad"), "invalid_request_error", 400),
        (Unauthorized("no key"), "authentication_error", 401),
        (UnknownModel("m", field="model"), "not_found_error", 404),
        (RateLimited("slow down", rule="r", retry_after_s=1), "rate_limit_error", 429),
        (AllAttemptsFailed([]), "api_error", 502),
    ],
)
def test_errors_in_anthropics_shape(error: LsdError, kind: str, status: int) -> None:
    assert error.http_status == status
    assert error_object(error)["error"]["type"] == kind


# ---- auth and usage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "sent"),
    [
        ({"x-api-key": "sk-lsd-a"}, "Bearer sk-lsd-a"),
        ({"authorization": "Bearer sk-lsd-b", "x-api-key": "sk-lsd-a"}, "Bearer sk-lsd-b"),
        ({"x-api-key": "sk-lsd-a", "authorization": "Bearer sk-lsd-b"}, "Bearer sk-lsd-b"),
        ({}, None),
    ],
)
async def test_the_key_comes_from_x_api_key_without_an_authorization_header(
    headers: dict[str, str], sent: str | None
) -> None:
    auth = RecordingAuth()
    scope: dict[str, Any] = {"headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    await authenticate(auth, scope)  # type: ignore[arg-type]
    assert auth.seen == [sent] and scope["lsd.api_key_public_id"] == "pub123456789"


def test_providers_report_cache_tokens_and_the_wires_answer_them() -> None:
    assert openai_usage(
        {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 64}}
    ) == (Usage(100, 5, cache_read_input_tokens=64))
    assert openai_usage({"prompt_tokens": 100, "completion_tokens": 5}) == Usage(100, 5)
    assert gemini_usage({"promptTokenCount": 100, "candidatesTokenCount": 5, "cachedContentTokenCount": 80}) == (
        Usage(100, 5, cache_read_input_tokens=80)
    )
    cached = Usage(100, 5, cache_read_input_tokens=64, cache_write_input_tokens=10)
    assert tensorzero_usage_json(cached, 0.5) == {
        "input_tokens": 100,
        "output_tokens": 5,
        "provider_cache_read_input_tokens": 64,
        "provider_cache_write_input_tokens": 10,
        "cost": 0.5,
    }
    assert tensorzero_usage_json(Usage(1, 2), None) == {"input_tokens": 1, "output_tokens": 2, "cost": None}
    assert openai_usage_json(cached, None)["prompt_tokens_details"] == {"cached_tokens": 64}
    assert openai_usage_json(cached, None)["tensorzero_provider_cache_write_input_tokens"] == 10
    assert "prompt_tokens_details" not in openai_usage_json(Usage(1, 2), None)
    assert Usage(1, 2, 3, None) + Usage(1, None, 1, 4) == Usage(2, 2, 4, 4)


def test_a_mid_conversation_system_message_is_a_system_reminder(config: Config) -> None:
    """Claude Code's default model sends one (beta mid-conversation-system); it was a 400 that ended the session."""
    messages = [
        {"role": "user", "content": "list the files"},
        {"role": "system", "content": [{"type": "text", "text": "Available agent types: Explore"}]},
    ]
    call = parse_messages_request(body(model="claude-haiku-4-5", messages=messages), config)
    second = call.request.input.messages[1]
    assert second.role == "user"
    assert second.content == (Text("<system-reminder>\nAvailable agent types: Explore\n</system-reminder>"),)


def test_a_timeout_of_every_attempt_is_a_timeout_error_not_the_clients_fault() -> None:
    failures = [AttemptFailure("v", "claude", "anthropic", "timeout", "timed out")]
    assert error_object(AllAttemptsFailed(failures))["error"]["type"] == "timeout_error"

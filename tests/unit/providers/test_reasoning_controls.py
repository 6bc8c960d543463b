"""TensorZero's reasoning and serving params (`reasoning_effort`, `service_tier`, `thinking_budget_tokens`,
`verbosity`): parsed from variants, requests, the OpenAI routes and dynamic variants, and sent by each provider type
under its own name where it has one (docs/configuration.md, "Reasoning and serving params")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsd.api.openai_request import parse_chat_request
from lsd.api.responses_request import parse_responses_request
from lsd.config import load
from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import InvalidRequest
from lsd.inference.dynamic_variant import parse_dynamic_variant
from lsd.inference.request import parse_params
from lsd.providers.anthropic.wire import build_body as anthropic_body
from lsd.providers.aws_bedrock.wire import build_body as bedrock_body
from lsd.providers.gemini.wire import build_body as gemini_body
from lsd.providers.registry import PROVIDER_TYPES
from lsd.types import File, InferenceParams, Message, ProviderRequest, Text, Thought, ToolCall, ToolResult

ALL = InferenceParams(reasoning_effort="high", service_tier="flex", thinking_budget_tokens=2048, verbosity="low")


def ask(params: InferenceParams) -> ProviderRequest:
    return ProviderRequest(system=None, messages=(Message("user", (Text("hi"),)),), params=params)


def body_of(type_name: str, params: InferenceParams, **options: Any) -> dict[str, Any]:
    config = ProviderConfig(name="p", type=type_name, options=options, key_path="models.m.providers.p", base_dir=Path())
    sink = ErrorSink()
    provider = PROVIDER_TYPES[type_name].from_config(config, Table(options, config.key_path, sink, Path()))
    assert sink.errors == []
    return provider.build_body(ask(params), stream=False)  # type: ignore[attr-defined,no-any-return]


def test_openai_and_azure_send_effort_tier_and_verbosity() -> None:
    for type_name, options in (
        ("openai", {"model_name": "o3"}),
        ("azure", {"deployment_id": "d", "endpoint": "https://x.openai.azure.com"}),
    ):
        body = body_of(type_name, ALL, **options)
        assert (body["reasoning_effort"], body["service_tier"], body["verbosity"]) == ("high", "flex", "low")
        assert "thinking_budget_tokens" not in body and "thinking" not in body
    assert "reasoning_effort" not in body_of("openai", InferenceParams(), model_name="o3")


def test_openai_compatible_types_send_the_effort_only_where_the_vendor_takes_it() -> None:
    groq = body_of("groq", ALL, model_name="m")
    assert groq["reasoning_effort"] == "high" and "service_tier" not in groq and "verbosity" not in groq
    mistral = body_of("mistral", ALL, model_name="m")  # Mistral refuses fields it does not know (422)
    assert not {"reasoning_effort", "service_tier", "verbosity"} & set(mistral)


def test_thinking_budgets_become_each_vendors_thinking_setting() -> None:
    assert anthropic_body(ask(ALL), "claude", False)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking" not in anthropic_body(ask(InferenceParams()), "claude", False)
    assert gemini_body(ask(ALL))["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048}
    assert bedrock_body(ask(ALL), model_id="anthropic.claude-sonnet-4-5")["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert "additionalModelRequestFields" not in bedrock_body(ask(ALL), model_id="amazon.nova-pro-v1:0")
    hot = InferenceParams(thinking_budget_tokens=8000, temperature=0.7, top_p=0.9, json_mode="strict")
    request = ProviderRequest(
        system=None, messages=(Message("user", (Text("hi"),)),), params=hot, output_schema={"type": "object"}
    )
    converse = bedrock_body(request, model_id="anthropic.claude-sonnet-4-5")
    assert converse["inferenceConfig"] == {"maxTokens": 8000 + 4096}  # no temperature or topP while thinking
    assert converse["toolConfig"]["toolChoice"] == {"auto": {}} and "`respond` tool" in converse["system"][0]["text"]


def test_anthropic_thinking_keeps_to_anthropics_rules() -> None:
    """A budget at or above the default max_tokens raises the limit above it; temperature and top_p (refused while
    thinking) are not sent; a forced tool (a JSON function's `respond`, `required`) is offered instead, as Anthropic
    refuses forcing one while thinking."""
    params = InferenceParams(thinking_budget_tokens=8000, temperature=0.7, top_p=0.9, json_mode="strict")
    request = ProviderRequest(
        system="Be exact.",
        messages=(Message("user", (Text("hi"),)),),
        params=params,
        output_schema={"type": "object"},
    )
    body = anthropic_body(request, "claude", False)
    assert body["max_tokens"] == 8000 + 4096 and "temperature" not in body and "top_p" not in body
    assert body["tool_choice"] == {"type": "auto"} and body["tools"][-1]["name"] == "respond"
    assert "`respond` tool" in body["system"]
    explicit = InferenceParams(thinking_budget_tokens=2048, max_tokens=3000)
    assert anthropic_body(ask(explicit), "claude", False)["max_tokens"] == 3000  # above the budget: as set
    short = InferenceParams(thinking_budget_tokens=2048, max_tokens=1024)  # a client's limit for its answer
    assert anthropic_body(ask(short), "claude", False)["max_tokens"] == 2048 + 1024
    plain = anthropic_body(
        ProviderRequest(
            system=None,
            messages=request.messages,
            params=InferenceParams(json_mode="strict"),
            output_schema={"type": "object"},
        ),
        "claude",
        False,
    )
    assert plain["tool_choice"] == {"type": "tool", "name": "respond"}  # without thinking: forced, as before


def test_a_tool_turn_without_its_signed_thought_is_answered_without_thinking() -> None:
    """Claude refuses a final assistant tool-use turn that does not start with its signed thinking while thinking
    is on; a Chat Completions client (the AI SDK, opencode) cannot send the signature back. That turn is asked
    without thinking (Anthropic and Bedrock alike) instead of refused; a turn with its signed thought keeps it."""
    call = ToolCall("toolu_1", "look", "{}")
    result = Message("user", (ToolResult("toolu_1", "look", "ok"),))

    def loop(*assistant: Any) -> ProviderRequest:
        turns = (Message("user", (Text("hi"),)), Message("assistant", assistant), result)
        return ProviderRequest(system=None, messages=turns, params=ALL)

    for unsigned in (loop(call), loop(Thought("only its text"), call)):
        assert "thinking" not in anthropic_body(unsigned, "claude", False)
        assert "additionalModelRequestFields" not in bedrock_body(unsigned, model_id="anthropic.claude-sonnet-4-5")
    signed = loop(Thought("thought", "c2ln"), call)
    assert anthropic_body(signed, "claude", False)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "additionalModelRequestFields" in bedrock_body(signed, model_id="anthropic.claude-sonnet-4-5")
    # A turn's later tool calls need no thought of their own (Codex's loop): the turn started with its thinking.
    second = ToolCall("toolu_2", "look", "{}")
    later = ProviderRequest(
        system=None,
        messages=(
            *signed.messages,
            Message("assistant", (second,)),
            # a tool's image rides with its result (Codex's view_image): still the same turn
            Message("user", (ToolResult("toolu_2", "look", "ok"), File(mime_type="image/png", data="aGk="))),
            Message("assistant", (ToolCall("toolu_4", "look", "{}"),)),
            Message("user", (ToolResult("toolu_4", "look", "ok"),)),
        ),
        params=ALL,
    )
    assert "thinking" in anthropic_body(later, "claude", False)
    # A new turn (the user's own words) that calls a tool without its thought: off again for that turn.
    new_turn = ProviderRequest(
        system=None,
        messages=(
            *later.messages,
            Message("user", (Text("and now?"),)),
            Message("assistant", (ToolCall("toolu_3", "look", "{}"),)),
            Message("user", (ToolResult("toolu_3", "look", "ok"),)),
        ),
        params=ALL,
    )
    assert "thinking" not in anthropic_body(new_turn, "claude", False)
    text_turn = ProviderRequest(
        system=None,
        messages=(
            Message("user", (Text("hi"),)),
            Message("assistant", (Text("hello"),)),
            Message("user", (Text("?"),)),
        ),
        params=ALL,
    )
    assert "thinking" in anthropic_body(text_turn, "claude", False)  # no tool call: nothing to refuse


def test_requests_and_dynamic_variants_take_them_typed() -> None:
    params = parse_params({"chat_completion": {"reasoning_effort": "low", "thinking_budget_tokens": 10}}, "params")
    assert (params.reasoning_effort, params.thinking_budget_tokens) == ("low", 10)
    with pytest.raises(InvalidRequest, match=r"params\.chat_completion\.reasoning_effort"):
        parse_params({"chat_completion": {"reasoning_effort": 3}}, "params")
    with pytest.raises(InvalidRequest, match=r"thinking_budget_tokens: must be >= 1"):
        parse_params({"chat_completion": {"thinking_budget_tokens": 0}}, "params")
    variant = parse_dynamic_variant(
        {"type": "chat_completion", "model": "dummy::echo", "reasoning_effort": "minimal", "verbosity": "high"}
    )
    assert (variant.params.reasoning_effort, variant.params.verbosity) == ("minimal", "high")


def test_the_openai_routes_read_them_where_openai_puts_them() -> None:
    chat = parse_chat_request(
        {"model": "lsd::model_name::m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"}
    )
    assert chat.request.params.reasoning_effort == "low"
    call = parse_responses_request(
        {
            "model": "lsd::model_name::m",
            "input": "hi",
            "reasoning": {"effort": "high", "summary": "auto"},
            "service_tier": "priority",
            "text": {"verbosity": "low"},
        }
    )
    params = call.request.params
    assert (params.reasoning_effort, params.service_tier, params.verbosity) == ("high", "priority", "low")
    with pytest.raises(InvalidRequest, match=r"reasoning\.effort"):
        parse_responses_request({"model": "lsd::model_name::m", "input": "hi", "reasoning": {"effort": 1}})


def test_a_variants_keys_are_its_params(tmp_path: Path) -> None:
    (tmp_path / "lsd.toml").write_text(
        """
[functions.f]
type = "chat"
[functions.f.variants.v]
type = "chat_completion"
model = "dummy::echo"
reasoning_effort = "medium"
service_tier = "flex"
thinking_budget_tokens = 1024
verbosity = "low"
"""
    )
    params = load(tmp_path / "lsd.toml").functions["f"].variants["v"].params
    assert params == InferenceParams(
        reasoning_effort="medium", service_tier="flex", thinking_budget_tokens=1024, verbosity="low"
    )

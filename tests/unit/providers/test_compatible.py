"""TensorZero's OpenAI-compatible provider types (one table over the Chat Completions provider), and the types
TensorZero names that LSD refuses by name. The wire itself is covered by the conformance suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lsd.config.loader import parse
from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink
from lsd.errors import ConfigError, ProviderError
from lsd.inference.models import ModelTable
from lsd.providers import http
from lsd.providers.base import CallContext, KeyLocation
from lsd.providers.openai.compatible import COMPATIBLE_TYPES, CompatibleProvider
from lsd.providers.registry import PROVIDER_TYPES, build_provider
from lsd.providers.transport import Transport
from lsd.types import InferenceParams, Message, ProviderRequest, Text, Thought, ToolCall, ToolResult
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripted_server import Server

# What TensorZero's docs and code say of each type: default api_base (None: required), default key location.
TENSORZERO_DEFAULTS = {
    "deepseek": ("https://api.deepseek.com/v1/", "env::DEEPSEEK_API_KEY"),
    "fireworks": ("https://api.fireworks.ai/inference/v1/", "env::FIREWORKS_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1/", "env::GROQ_API_KEY"),
    "hyperbolic": ("https://api.hyperbolic.xyz/v1/", "env::HYPERBOLIC_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1/", "env::MISTRAL_API_KEY"),
    "nvidia_nim": ("https://integrate.api.nvidia.com/v1/", "env::NVIDIA_API_KEY"),
    "ollama": ("http://localhost:11434/", "none"),  # TensorZero's root URL; LSD calls its /v1/ endpoint
    "openrouter": ("https://openrouter.ai/api/v1/", "env::OPENROUTER_API_KEY"),
    "sglang": (None, "none"),
    "tgi": (None, "none"),
    "together": ("https://api.together.xyz/v1/", "env::TOGETHER_API_KEY"),
    "vllm": ("http://localhost:8000/v1/", "env::VLLM_API_KEY"),
    "xai": ("https://api.x.ai/v1/", "env::XAI_API_KEY"),
}


def build(type_name: str, options: Mapping[str, Any]) -> tuple[Any, list[str]]:
    config = ProviderConfig(
        name="p", type=type_name, options=options, key_path="models.m.providers.p", base_dir=Path(".")
    )
    sink = ErrorSink()
    return build_provider(config, sink), sink.errors


def ask(text: str) -> ProviderRequest:
    return ProviderRequest(system=None, messages=(Message("user", (Text(text),)),))


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


def test_every_type_tensorzero_names_is_registered() -> None:
    assert {spec.name for spec in COMPATIBLE_TYPES} == set(TENSORZERO_DEFAULTS)
    for name in TENSORZERO_DEFAULTS:
        assert issubclass(PROVIDER_TYPES[name], CompatibleProvider) and PROVIDER_TYPES[name].type_name == name


@pytest.mark.parametrize("type_name", sorted(TENSORZERO_DEFAULTS))
def test_defaults(type_name: str) -> None:
    api_base, key = TENSORZERO_DEFAULTS[type_name]
    options: dict[str, Any] = {"model_name": "some-model"}
    if api_base is None:
        _, errors = build(type_name, options)
        assert errors == ["models.m.providers.p.api_base: missing required key"]
        options["api_base"] = api_base = "http://localhost:30000/v1/"
    provider, errors = build(type_name, options)
    assert errors == []
    openai_path = "v1/" if type_name == "ollama" else ""  # Ollama's OpenAI endpoint, under its root
    assert provider.chat_url == f"{api_base}{openai_path}chat/completions"
    assert provider.model_name == "some-model"
    kind, _, name = key.partition("::")
    assert (provider.key_location.kind, provider.key_location.name) == (kind, name)
    assert provider.max_tokens_field == "max_tokens"
    assert not provider.supports_batch
    assert provider.supports_embeddings == (type_name in ("openrouter", "vllm", "ollama"))  # OpenAI's /embeddings
    assert provider.embeddings_url == (f"{api_base}{openai_path}embeddings" if provider.supports_embeddings else None)


def test_model_name_is_required_except_for_tgi() -> None:
    _, errors = build("groq", {})
    assert errors == ["models.m.providers.p.model_name: missing required key"]
    provider, errors = build("tgi", {"api_base": "http://tgi:8080/v1/"})
    assert errors == [] and provider.model_name == "tgi"  # TGI serves the one model it was started with


def test_type_errors_name_the_key_path() -> None:
    _, errors = build("deepseek", {"model_name": "m", "api_base": "api.deepseek.com", "temperature": 1})
    assert errors == [
        "models.m.providers.p.api_base: expected an http:// or https:// URL, got 'api.deepseek.com'",
        "models.m.providers.p.temperature: unknown key",
    ]
    _, errors = build("together", {"model_name": "m", "parse_think_blocks": True})
    assert errors == [
        "models.m.providers.p.parse_think_blocks: parsing <think> blocks into thoughts is not implemented in LSD "
        "yet: leave it unset or false"
    ]
    assert build("fireworks", {"model_name": "m", "parse_think_blocks": False})[1] == []
    assert build("groq", {"model_name": "m", "prompt_mode": "reasoning"})[1] == [
        "models.m.providers.p.prompt_mode: unknown key"
    ]
    # a user and password in the URL would be dropped unsaid (and the TOML kept in config_snapshots): refused,
    # without quoting them
    _, errors = build("vllm", {"model_name": "m", "api_base": "http://me:sk-SECRET@gpu:8000/v1/"})
    assert errors == [
        "models.m.providers.p.api_base: a user or password in the URL is not sent: give the key with api_key_location"
    ]


@pytest.mark.parametrize("type_name", ["aws_sagemaker"])
def test_types_lsd_does_not_implement_are_refused_by_name(type_name: str) -> None:
    provider, errors = build(type_name, {"model_id": "x", "region": "us-east-1"})
    assert provider is None
    assert errors == [f"models.m.providers.p.type: provider type '{type_name}' is not implemented in LSD yet"]
    _, errors = build("bedrock", {})
    assert errors[0].startswith("models.m.providers.p.type: unknown provider type 'bedrock' (known: anthropic,")


async def test_type_options_are_sent_in_the_body(transport: Transport) -> None:
    async with FakeOpenAI() as fake:
        ctx = CallContext(transport=transport)
        for type_name, option, value in (
            ("groq", "reasoning_format", "parsed"),
            ("mistral", "prompt_mode", "reasoning"),
        ):
            options = {"model_name": "m", "api_base": fake.api_base, "api_key_location": "none", option: value}
            provider, errors = build(type_name, options)
            assert errors == []
            await provider.infer(ask("hi"), ctx)
            assert fake.requests[-1].body[option] == value
            assert [c async for c in provider.stream(ask("hi"), ctx)]
            assert fake.requests[-1].body[option] == value and fake.requests[-1].body["stream"] is True


async def test_a_server_without_a_key(transport: Transport, monkeypatch: pytest.MonkeyPatch) -> None:
    """vllm's default key variable may be unset (a server started without --api-key): no Authorization is sent.
    Named explicitly, an unset variable fails the attempt as for any type; sglang and tgi default to no key."""
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    async with FakeOpenAI() as fake:
        ctx = CallContext(transport=transport)
        for type_name in ("vllm", "sglang", "tgi"):
            provider, errors = build(type_name, {"model_name": "m", "api_base": fake.api_base})
            assert errors == []
            response = await provider.infer(ask("hi"), ctx)
            assert response.api_key_sha256 is None
            assert "Authorization" not in fake.requests[-1].headers
        monkeypatch.setenv("VLLM_API_KEY", "sk-vllm-0123456789")
        provider, _ = build("vllm", {"model_name": "m", "api_base": fake.api_base})
        await provider.infer(ask("hi"), ctx)
        assert fake.requests[-1].headers["Authorization"] == "Bearer sk-vllm-0123456789"
        monkeypatch.delenv("VLLM_API_KEY")
        explicit, _ = build(
            "vllm", {"model_name": "m", "api_base": fake.api_base, "api_key_location": "env::VLLM_API_KEY"}
        )
        assert explicit.key_location == KeyLocation("env", "VLLM_API_KEY")
        with pytest.raises(ProviderError) as caught:
            await explicit.infer(ask("hi"), ctx)
        assert caught.value.kind == "auth" and "VLLM_API_KEY" in caught.value.message
        monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
        deepseek, _ = build("deepseek", {"model_name": "m", "api_base": fake.api_base})
        with pytest.raises(ProviderError, match="DEEPSEEK_API_KEY is not set"):
            await deepseek.infer(ask("hi"), ctx)


async def test_a_streamed_line_past_the_limit_cuts_the_stream(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that never ends its SSE line is cut off once the line passes MAX_LINE (16 MiB; 64 bytes here),
    after the events that did arrive, as a broken stream."""
    monkeypatch.setattr(http, "MAX_LINE", 64)
    token = b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
    endless = b"data: " + b"x" * 100

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> None:
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (token, endless))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(body)
        await writer.drain()
        await asyncio.sleep(5)  # the line never ends

    async with Server(handler) as server:
        provider, _ = build(
            "vllm", {"model_name": "m", "api_base": server.url.split("chat/")[0], "api_key_location": "none"}
        )
        texts: list[str] = []
        with pytest.raises(ProviderError) as caught:
            async for chunk in provider.stream(ask("hi"), CallContext(transport=transport)):
                texts.extend(block.text for block in chunk.content if isinstance(block, Text))
    assert texts == ["a"]
    assert caught.value.kind == "stream_interrupted"
    assert "longer than 64 bytes" in caught.value.message


def test_a_tensorzero_config_loads_through_the_real_loader() -> None:
    """From TOML to built models: the compatible, Bedrock and Vertex types build, and a bad cost entry stops the
    start with one line naming its key path and index."""
    text = """
[models.claude]
routing = ["bedrock", "vertex"]
[models.claude.providers.bedrock]
type = "aws_bedrock"
model_id = "anthropic.claude-haiku-4-5-v1:0"
region = "us-east-1"
[models.claude.providers.vertex]
type = "gcp_vertex_anthropic"
model_id = "claude-haiku-4-5@20251001"
location = "us-east5"
project_id = "p"
[models.ds]
routing = ["d", "g"]
[models.ds.providers.d]
type = "deepseek"
model_name = "deepseek-chat"
cost = [
  { pointer = "/usage/prompt_tokens", cost_per_million = 0.27, required = true },
  { pointer = "usage", cost_per_unit = 1 },
]
[models.ds.providers.g]
type = "groq"
model_name = "qwen/qwen3-32b"
reasoning_format = "parsed"
"""
    with pytest.raises(ConfigError) as caught:
        ModelTable.from_config(parse(text, base_dir=Path(".")))
    assert str(caught.value).split("; ") == [
        "models.ds.providers.d.cost[1].pointer: expected a JSON pointer such as '/usage/prompt_tokens', got 'usage'",
    ]
    fixed = text.split("[models.ds]")[1].replace('pointer = "usage"', 'pointer = "/usage/cost"')
    models = ModelTable.from_config(parse("[models.ds]" + fixed, base_dir=Path(".")))
    assert [p.type_name for p in models.get("ds").providers] == ["deepseek", "groq"]


def test_mistral_gets_random_seed_and_no_stream_options() -> None:
    """Mistral refuses unknown body fields (422): its seed is `random_seed`, and `stream_options` is not sent (it
    puts the usage on the last chunk unasked)."""
    provider, errors = build("mistral", {"model_name": "mistral-small-latest", "api_key_location": "none"})
    assert errors == []
    request = ProviderRequest(system=None, messages=(Message("user", (Text("hi"),)),),
                              params=InferenceParams(seed=42))  # fmt: skip
    body = provider.build_body(request, True)
    assert body["random_seed"] == 42 and "seed" not in body and "stream_options" not in body and body["stream"]
    other, _ = build("groq", {"model_name": "m", "api_key_location": "none"})
    assert other.build_body(request, True)["seed"] == 42 and "stream_options" in other.build_body(request, True)


def test_xai_counts_its_reasoning_tokens_as_output() -> None:
    """xAI leaves reasoning tokens out of completion_tokens (only total_tokens has them) and bills them as output."""
    from lsd.providers.openai.wire import parse_usage

    usage = {"prompt_tokens": 13, "completion_tokens": 1, "total_tokens": 400,
             "completion_tokens_details": {"reasoning_tokens": 386}}  # fmt: skip
    xai, _ = build("xai", {"model_name": "grok-3-mini", "api_key_location": "none"})
    groq, _ = build("groq", {"model_name": "m", "api_key_location": "none"})
    assert (xai.reasoning_apart, groq.reasoning_apart) == (True, False)
    assert parse_usage(usage, reasoning_apart=True).output_tokens == 387
    assert parse_usage(usage).output_tokens == 1  # OpenAI, DeepSeek: reasoning is inside completion_tokens


def test_ollama_calls_the_openai_endpoint_under_its_root() -> None:
    for base in ("http://gpu:11434", "http://gpu:11434/", "http://gpu:11434/v1/"):
        provider, errors = build("ollama", {"model_name": "llama3.2", "api_base": base})
        assert errors == [] and provider.chat_url == "http://gpu:11434/v1/chat/completions"
    default, _ = build("ollama", {"model_name": "llama3.2"})
    assert default.chat_url == "http://localhost:11434/v1/chat/completions"


def test_tensorzero_keys_lsd_refuses_say_why() -> None:
    """TensorZero keys LSD does not implement are refused with the reason, not as unknown keys."""
    _, errors = build("openai", {"model_name": "m", "include_encrypted_reasoning": True, "provider_tools": []})
    assert all('only means something with api_type = "responses"' in e for e in errors) and len(errors) == 2
    _, errors = build("azure", {"deployment_id": "d", "endpoint": "dynamic::AZURE_BASE", "api_key_location": "none"})
    assert any("a dynamic endpoint" in e for e in errors)


def test_deepseek_gets_its_reasoning_back_and_openai_does_not() -> None:
    """DeepSeek requires an assistant message's reasoning back as `reasoning_content` in a tool loop while thinking
    (vLLM and SGLang chat templates read it too); OpenAI's Chat Completions takes none, nor does any vendor take
    another's signed thinking."""
    answered = Message(
        "assistant",
        (Thought("first I look"), Thought("signed", "c2ln"), ToolCall("call_1", "look", "{}")),
    )
    request = ProviderRequest(
        system=None,
        messages=(Message("user", (Text("hi"),)), answered, Message("user", (ToolResult("call_1", "look", "ok"),))),
    )
    for type_name in ("deepseek", "vllm", "sglang"):
        provider, errors = build(type_name, {"model_name": "m", "api_key_location": "none", "api_base": "http://x/"})
        assert errors == []
        [assistant] = [m for m in provider.build_body(request, False)["messages"] if m["role"] == "assistant"]
        assert assistant["reasoning_content"] == "first I look" and assistant["tool_calls"][0]["id"] == "call_1"
    for type_name in ("openai", "groq", "mistral"):
        provider, _ = build(type_name, {"model_name": "m", "api_key_location": "none", "api_base": "http://x/"})
        [assistant] = [m for m in provider.build_body(request, False)["messages"] if m["role"] == "assistant"]
        assert "reasoning_content" not in assistant

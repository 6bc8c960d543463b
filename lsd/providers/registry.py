"""The provider registry: provider type name -> class. Adding a provider adds one line here."""

from __future__ import annotations

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.providers.anthropic import AnthropicProvider
from lsd.providers.aws_bedrock import BedrockProvider
from lsd.providers.azure import AzureProvider
from lsd.providers.base import Provider
from lsd.providers.dummy import DummyProvider
from lsd.providers.gcp_vertex import VertexAnthropicProvider, VertexGeminiProvider
from lsd.providers.gemini import GeminiProvider
from lsd.providers.openai import OpenAIProvider
from lsd.providers.openai.compatible import OPENAI_COMPATIBLE

PROVIDER_TYPES: dict[str, type[Provider]] = {
    AnthropicProvider.type_name: AnthropicProvider,
    BedrockProvider.type_name: BedrockProvider,
    AzureProvider.type_name: AzureProvider,
    DummyProvider.type_name: DummyProvider,
    VertexAnthropicProvider.type_name: VertexAnthropicProvider,
    VertexGeminiProvider.type_name: VertexGeminiProvider,
    GeminiProvider.type_name: GeminiProvider,
    OpenAIProvider.type_name: OpenAIProvider,
    **{cls.type_name: cls for cls in OPENAI_COMPATIBLE},  # deepseek, groq, vllm, ... (one table)
}
# Types TensorZero names that LSD does not implement yet: refused by name, not as unknown types.
NOT_IMPLEMENTED = frozenset({"aws_sagemaker"})


def build_provider(config: ProviderConfig, sink: ErrorSink) -> Provider | None:
    """Build a provider from its config entry, adding any problems to `sink` (None when invalid)."""
    cls = PROVIDER_TYPES.get(config.type)
    if cls is None:
        if config.type in NOT_IMPLEMENTED:
            sink.add(f"{config.key_path}.type", f"provider type {config.type!r} is not implemented in LSD yet")
        elif config.type:
            known = ", ".join(sorted(PROVIDER_TYPES))
            sink.add(f"{config.key_path}.type", f"unknown provider type {config.type!r} (known: {known})")
        return None
    before = len(sink.errors)
    options = Table(config.options, config.key_path, sink, config.base_dir)
    provider = cls.from_config(config, options)
    options.finish()
    return provider if len(sink.errors) == before else None

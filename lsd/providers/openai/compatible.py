"""TensorZero's OpenAI-compatible provider types (`deepseek`, `groq`, `vllm`, ...): the `openai` type's Chat
Completions wire at each vendor's URL, declared in one table rather than a module per vendor.

A row names the type, its default `api_base` (None: the type has none and `api_base` is required), its default
`api_key_location` (TensorZero's), whether a key is required (a type that may run without one sends none when
its default variable is unset), a default model name (TGI serves the one model it was started with) and the
type's own string options, sent as body fields of the same name (groq's `reasoning_format`, mistral's
`prompt_mode`). The types whose servers also answer OpenAI's /embeddings at that base (openrouter, as in
TensorZero; vllm and ollama) may be `[embedding_models]` providers.

Options of every row (besides type and timeouts): model_name, api_base, api_key_location, cost, batch_cost,
proxy, and the row's own options. `api_base` is accepted by every row (TensorZero accepts it only for sglang,
tgi and vllm), so a vendor can be reached through a gateway or a test double.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.immutable import immutable
from lsd.providers.base import KeyLocation
from lsd.providers.cost import Cost, parse_batch_cost, parse_cost
from lsd.providers.http import check_url
from lsd.providers.openai.provider import ChatCompletionsProvider, max_tokens_field
from lsd.providers.proxies import ProxyChoice, proxy_option
from lsd.types import ProviderRequest


@immutable
class CompatibleType:
    """One OpenAI-compatible provider type, as TensorZero defines it."""

    name: str
    api_base: str | None  # None: no default, `api_base` is required
    api_key_location: str
    key_required: bool = True
    model_name: str | None = None  # a default, making `model_name` optional
    body_options: tuple[str, ...] = ()  # string options sent as body fields of the same name
    # Boolean options TensorZero has that LSD accepts only as false (what LSD does), naming what true would do.
    unsupported_flags: tuple[tuple[str, str], ...] = ()
    # Where the vendor departs from OpenAI's body: fields it names otherwise, and fields it refuses (422).
    renamed: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    # Reasoning tokens counted outside `completion_tokens` (billed as output): added to the output count.
    reasoning_apart: bool = False
    # A path the OpenAI-compatible endpoint lives under, added to an `api_base` that does not end with it (Ollama:
    # TensorZero's `api_base` is the server's root, whose native API it speaks; LSD speaks its /v1/ endpoint).
    openai_path: str = ""
    # Serves OpenAI's /embeddings at the same base: the type may be an `[embedding_models]` provider.
    embeddings: bool = False
    # Takes OpenAI's `reasoning_effort` (the params' reasoning_effort is sent; service_tier and verbosity never are).
    reasoning_effort: bool = False
    # Takes the reasoning it answered back as an assistant message's `reasoning_content` (DeepSeek requires it in a
    # tool loop while thinking; vLLM and SGLang chat templates read it).
    reasoning_input: bool = False


_THINK_BLOCKS = (("parse_think_blocks", "parsing <think> blocks into thoughts"),)

COMPATIBLE_TYPES: tuple[CompatibleType, ...] = (
    CompatibleType("deepseek", "https://api.deepseek.com/v1/", "env::DEEPSEEK_API_KEY", reasoning_input=True),
    CompatibleType(
        "fireworks",
        "https://api.fireworks.ai/inference/v1/",
        "env::FIREWORKS_API_KEY",
        unsupported_flags=_THINK_BLOCKS,
        reasoning_effort=True,
    ),
    CompatibleType(
        "groq",
        "https://api.groq.com/openai/v1/",
        "env::GROQ_API_KEY",
        body_options=("reasoning_format",),
        reasoning_effort=True,
    ),
    CompatibleType("hyperbolic", "https://api.hyperbolic.xyz/v1/", "env::HYPERBOLIC_API_KEY"),
    # Mistral validates bodies strictly: `stream_options` is a 422 (it sends the usage on the last chunk anyway),
    # and its seed is `random_seed`, as TensorZero's MistralRequest sends it.
    CompatibleType(
        "mistral",
        "https://api.mistral.ai/v1/",
        "env::MISTRAL_API_KEY",
        body_options=("prompt_mode",),
        renamed=(("seed", "random_seed"),),
        dropped=("stream_options",),
    ),
    CompatibleType("nvidia_nim", "https://integrate.api.nvidia.com/v1/", "env::NVIDIA_API_KEY"),
    CompatibleType(
        "ollama",
        "http://localhost:11434/",
        "none",
        key_required=False,
        openai_path="v1/",
        embeddings=True,
        reasoning_effort=True,
    ),
    CompatibleType(
        "openrouter", "https://openrouter.ai/api/v1/", "env::OPENROUTER_API_KEY", embeddings=True, reasoning_effort=True
    ),
    CompatibleType("sglang", None, "none", key_required=False, reasoning_effort=True, reasoning_input=True),
    CompatibleType("tgi", None, "none", key_required=False, model_name="tgi"),
    CompatibleType(
        "together",
        "https://api.together.xyz/v1/",
        "env::TOGETHER_API_KEY",
        unsupported_flags=_THINK_BLOCKS,
        reasoning_effort=True,
    ),
    CompatibleType(
        "vllm",
        "http://localhost:8000/v1/",
        "env::VLLM_API_KEY",
        key_required=False,
        embeddings=True,
        reasoning_effort=True,
        reasoning_input=True,
    ),
    # xAI bills reasoning tokens as output but leaves them out of completion_tokens (only total_tokens has them).
    CompatibleType("xai", "https://api.x.ai/v1/", "env::XAI_API_KEY", reasoning_apart=True, reasoning_effort=True),
)


class CompatibleProvider(ChatCompletionsProvider):
    """A provider of one OpenAI-compatible type; `spec` is its row (see `provider_class`)."""

    spec: ClassVar[CompatibleType]
    credential_headers: ClassVar[frozenset[str]] = frozenset({"Authorization"})

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str,
        key_location: KeyLocation,
        body_fields: Mapping[str, str] | None = None,
        pricing: Cost | None = None,
        batch_pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        super().__init__(
            config,
            model_name=model_name,
            chat_url=f"{api_base.rstrip('/')}/chat/completions",
            embeddings_url=f"{api_base.rstrip('/')}/embeddings" if self.spec.embeddings else None,
            key_location=key_location,
            max_tokens_field=max_tokens_field(api_base),
            pricing=pricing,
            batch_pricing=batch_pricing,
            proxy=proxy,
        )
        self.body_fields = dict(body_fields or {})
        self.reasoning_apart = self.spec.reasoning_apart

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> CompatibleProvider:
        spec = cls.spec
        model_name = options.str("model_name", spec.model_name, required=spec.model_name is None)
        raw_base = options.str("api_base", spec.api_base, required=spec.api_base is None)
        api_base = check_url(options, "api_base", raw_base)
        if spec.openai_path and api_base and not api_base.rstrip("/").endswith("/" + spec.openai_path.rstrip("/")):
            api_base = api_base.rstrip("/") + "/" + spec.openai_path
        key_location = KeyLocation.parse(options, "api_key_location", spec.api_key_location)
        if not spec.key_required and not options.has("api_key_location"):
            key_location = KeyLocation(key_location.kind, key_location.name, optional=True)
        body_fields = {name: options.str(name) for name in spec.body_options}
        for flag, what in spec.unsupported_flags:
            if options.bool(flag, False):
                options.error(flag, f"{what} is not implemented in LSD yet: leave it unset or false")
        pricing = parse_cost(options)
        return cls(
            config,
            model_name=model_name or "",
            api_base=api_base,
            key_location=key_location,
            body_fields={name: value for name, value in body_fields.items() if isinstance(value, str)},
            pricing=pricing,
            batch_pricing=parse_batch_cost(options, pricing),
            proxy=proxy_option(options),
        )

    def build_body(self, request: ProviderRequest, stream: bool) -> dict[str, Any]:
        body = {**super().build_body(request, stream), **self.body_fields}
        for name, vendors in self.spec.renamed:
            if name in body:
                body[vendors] = body.pop(name)
        for name in self.spec.dropped:
            body.pop(name, None)
        return body


def provider_class(spec: CompatibleType) -> type[CompatibleProvider]:
    """The provider class of one row: CompatibleProvider with the row's `type_name` and `spec`."""
    name = "".join(part.capitalize() for part in spec.name.split("_")) + "Provider"
    attributes = {
        "type_name": spec.name,
        "spec": spec,
        "supports_embeddings": spec.embeddings,
        "controls": ("reasoning_effort",) if spec.reasoning_effort else (),
        "reasoning_input": spec.reasoning_input,
        "__module__": __name__,
    }
    return type(name, (CompatibleProvider,), attributes)


OPENAI_COMPATIBLE: tuple[type[CompatibleProvider], ...] = tuple(provider_class(spec) for spec in COMPATIBLE_TYPES)
# The provider types whose request body is OpenAI's Chat Completions body (its `response_format` and all).
CHAT_COMPLETIONS_TYPES = frozenset({"openai", "azure", *(spec.name for spec in COMPATIBLE_TYPES)})

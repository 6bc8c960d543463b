"""The `openai` provider (and the Chat Completions shell `azure` shares): config, URLs, the token-limit key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import ProviderError
from lsd.providers.base import BatchPoll, BatchSubmission, CallContext, KeyLocation
from lsd.providers.calls import Call
from lsd.providers.cost import Cost, parse_batch_cost, parse_cost
from lsd.providers.http import HttpProvider, check_url
from lsd.providers.openai import batch
from lsd.providers.openai.stream import StreamState
from lsd.providers.openai.wire import build_body, parse_embeddings, parse_response, reported_cost
from lsd.providers.proxies import ProxyChoice, proxy_option
from lsd.types import CONTROL_PARAMS, EmbeddingResponse, ProviderRequest, ProviderResponse

DEFAULT_API_BASE = "https://api.openai.com/v1/"


def max_tokens_field(api_base: str) -> str:
    """The body key for the output token limit (see the package docstring)."""
    return "max_completion_tokens" if urlsplit(api_base).hostname == "api.openai.com" else "max_tokens"


class ChatCompletionsProvider(HttpProvider):
    """The I/O shell around the pure functions of `wire` and `stream`, shared by the `openai` and `azure`
    types; they differ only in URL, credential header and token-limit key, all fixed by `from_config`."""

    # The reasoning and serving params the vendor takes, sent under their own names (OpenAI's and Azure's: all).
    controls: ClassVar[tuple[str, ...]] = CONTROL_PARAMS
    # Takes an assistant message's reasoning back as `reasoning_content` (DeepSeek, vLLM, SGLang; not OpenAI).
    reasoning_input: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        chat_url: str,
        key_location: KeyLocation,
        key_header: str = "Authorization",
        key_prefix: str = "Bearer ",
        max_tokens_field: str = "max_tokens",
        pricing: Cost | None = None,
        batch_pricing: Cost | None = None,
        batch_api: batch.BatchApi | None = None,
        proxy: ProxyChoice = None,
        embeddings_url: str | None = None,
    ) -> None:
        super().__init__(
            config,
            model_name=model_name,
            key_location=key_location,
            key_header=key_header,
            key_prefix=key_prefix,
            pricing=pricing,
            batch_pricing=batch_pricing,
            proxy=proxy,
        )
        self.chat_url = chat_url
        self.embeddings_url = embeddings_url  # the types whose class sets supports_embeddings give one
        self.max_tokens_field = max_tokens_field
        self.batch_api = batch_api
        self.reasoning_apart = False  # the vendor counts reasoning tokens outside completion_tokens (wire.parse_usage)

    def build_body(self, request: ProviderRequest, stream: bool) -> dict[str, Any]:
        return build_body(
            request,
            self._model_name,
            stream,
            max_tokens_field=self.max_tokens_field,
            provider_name=self.name,
            controls=self.controls,
            reasoning_input=self.reasoning_input,
        )

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        exchange = await self.post_json(self.chat_url, self.build_body(request, stream=False), ctx)
        try:
            content, usage, reason = parse_response(
                exchange.data, json_tool=request.params.json_mode == "tool", reasoning_apart=self.reasoning_apart
            )
        except ProviderError as exc:
            raise self.attach(exc, exchange) from None
        return self.response(exchange, content, usage, reason, reported_cost(exchange.data.get("usage")))

    async def start_batch(self, items: Sequence[tuple[str, ProviderRequest]], ctx: CallContext) -> BatchSubmission:
        if self.batch_api is None:
            raise self.unsupported("batch inference")
        bodies = [(custom_id, self.build_body(request, stream=False)) for custom_id, request in items]
        return await batch.start(self, self.batch_api, bodies, items, ctx)

    async def poll_batch(self, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext) -> BatchPoll:
        if self.batch_api is None:
            raise self.unsupported("batch inference")
        return await batch.poll(self, self.batch_api, provider_batch_id, data, ctx)

    def stream_call(self, request: ProviderRequest, ctx: CallContext) -> tuple[Call, StreamState]:
        call = self.prepare(self.chat_url, self.build_body(request, stream=True), ctx, stream=True)
        json_tool = request.params.json_mode == "tool"
        state = StreamState(
            json_tool=json_tool, provider=self.name, raw_request=call.raw_request, reasoning_apart=self.reasoning_apart
        )
        return call, state

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        return await self._embed(list(inputs), ctx, dimensions)

    async def embed_tokens(
        self, inputs: Sequence[tuple[int, ...]], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        return await self._embed([list(tokens) for tokens in inputs], ctx, dimensions)

    async def _embed(self, inputs: list[Any], ctx: CallContext, dimensions: int | None) -> EmbeddingResponse:
        if self.embeddings_url is None:
            raise self.unsupported("embeddings")
        body: dict[str, Any] = {"model": self._model_name, "input": inputs, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        exchange = await self.post_json(self.embeddings_url, body, ctx)
        try:
            embeddings, usage = parse_embeddings(exchange.data, len(inputs))
        except ProviderError as exc:
            raise self.attach(exc, exchange) from None
        return self.embedding_response(exchange, embeddings, usage, reported_cost(exchange.data.get("usage")))


# OpenAI's own API also takes its prompt-cache routing hint (other servers behind the `openai` type may refuse an
# unknown field; Azure and the compatible types take CONTROL_PARAMS or fewer)
OPENAI_CONTROLS = (*CONTROL_PARAMS, "prompt_cache_key")


class OpenAIProvider(ChatCompletionsProvider):
    type_name: ClassVar[str] = "openai"
    credential_headers: ClassVar[frozenset[str]] = frozenset({"Authorization"})
    supports_embeddings: ClassVar[bool] = True
    embeds_tokens: ClassVar[bool] = True
    supports_batch: ClassVar[bool] = True

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str = DEFAULT_API_BASE,
        key_location: KeyLocation,
        pricing: Cost | None = None,
        batch_pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        base = api_base.rstrip("/")
        super().__init__(
            config,
            model_name=model_name,
            chat_url=f"{base}/chat/completions",
            key_location=key_location,
            max_tokens_field=max_tokens_field(api_base),
            pricing=pricing,
            batch_pricing=batch_pricing,
            batch_api=batch.openai_api(api_base),
            proxy=proxy,
            embeddings_url=f"{base}/embeddings",
        )
        if urlsplit(api_base).hostname == "api.openai.com":
            self.controls = OPENAI_CONTROLS  # type: ignore[misc]

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> OpenAIProvider:
        model_name = options.str("model_name", required=True)
        api_base = check_url(options, "api_base", options.str("api_base", DEFAULT_API_BASE)) or DEFAULT_API_BASE
        if options.choice("api_type", ("chat_completions", "responses"), "chat_completions") == "responses":
            options.error(
                "api_type",
                'LSD calls OpenAI through Chat Completions only: set api_type = "chat_completions" or leave it '
                "out (OpenAI's Responses API is served to clients at /openai/v1/responses, not called upstream)",
            )
        for key in ("include_encrypted_reasoning", "provider_tools"):  # TensorZero's, for its Responses API calls
            if options.has(key):
                options.raw(key)
                options.error(key, 'only means something with api_type = "responses", which LSD does not call')
        pricing = parse_cost(options)
        return cls(
            config,
            api_base=api_base,
            model_name=model_name or "",
            key_location=KeyLocation.parse(options, "api_key_location", "env::OPENAI_API_KEY"),
            pricing=pricing,
            batch_pricing=parse_batch_cost(options, pricing),
            proxy=proxy_option(options),
        )

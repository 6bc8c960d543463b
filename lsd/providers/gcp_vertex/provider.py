"""The `gcp_vertex_gemini` and `gcp_vertex_anthropic` providers: Gemini's and Anthropic's wire formats at Vertex
AI's URLs, with a Google access token (lsd.providers.gcp_vertex.credentials) as a Bearer credential."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar, cast
from urllib.parse import quote

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.providers.anthropic.provider import AnthropicProvider
from lsd.providers.anthropic.stream import StreamState as AnthropicStreamState
from lsd.providers.anthropic.wire import DEFAULT_MAX_TOKENS, uses_json_tool
from lsd.providers.base import BatchPoll, BatchSubmission, CallContext, KeyLocation, has_file_urls
from lsd.providers.calls import Call
from lsd.providers.cost import Cost, parse_cost
from lsd.providers.gcp_vertex.credentials import GCP_EXTRA_MISSING, CredentialLocation, GcpTokens
from lsd.providers.gemini.provider import GeminiProvider
from lsd.providers.http import HttpProvider, check_url
from lsd.providers.proxies import ProxyChoice, proxy_option
from lsd.types import EmbeddingResponse, Json, ProviderRequest, ProviderResponse, StreamChunk

AUTHORIZATION = "Authorization"
ANTHROPIC_VERTEX_VERSION = "vertex-2023-10-16"  # sent in the body, which names no model (the URL does)


def default_api_base(location: str) -> str:
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    return f"https://{host}/v1/"


class VertexTarget:
    """The resource a provider calls: `{api_base}projects/P/locations/L/publishers/X/models/M` (or
    `.../endpoints/E` for a fine-tuned model or a custom endpoint), and the token source."""

    def __init__(self, resource_url: str, model: str, tokens: GcpTokens, publisher_url: str | None = None) -> None:
        self.resource_url = resource_url
        self.model = model
        self.tokens = tokens
        self.publisher_url = publisher_url  # `.../publishers/X/models` (None for an endpoint_id)

    @staticmethod
    def parse(config: ProviderConfig, options: Table, publisher: str, proxy: ProxyChoice) -> VertexTarget:
        model_id, endpoint_id = options.str("model_id"), options.str("endpoint_id")
        location = options.str("location", required=True) or ""
        project_id = options.str("project_id", required=True) or ""
        api_base = check_url(options, "api_base", options.str("api_base")) or default_api_base(location)
        credentials = CredentialLocation.parse(options)
        if (model_id is None) == (endpoint_id is None):
            options.error("model_id", "set exactly one of `model_id` and `endpoint_id`")
        if GCP_EXTRA_MISSING:
            options.error("type", f"{config.type} needs google-auth: pip install 'lsd[gcp]'")
        parent = f"{api_base.rstrip('/')}/projects/{quote(project_id, safe='')}/locations/{quote(location, safe='')}"
        tokens = GcpTokens(config.name, credentials, proxy=proxy)
        if endpoint_id is not None:
            return VertexTarget(f"{parent}/endpoints/{quote(endpoint_id, safe='')}", endpoint_id, tokens)
        models = f"{parent}/publishers/{publisher}/models"
        return VertexTarget(f"{models}/{quote(model_id or '', safe='@')}", model_id or "", tokens, models)


class VertexGeminiProvider(GeminiProvider):
    """Options: model_id | endpoint_id, location, project_id, credential_location, api_base, cost, proxy."""

    type_name: ClassVar[str] = "gcp_vertex_gemini"
    credential_headers: ClassVar[frozenset[str]] = frozenset({AUTHORIZATION})
    supports_embeddings: ClassVar[bool] = False

    def __init__(
        self, config: ProviderConfig, *, target: VertexTarget, pricing: Cost | None = None, proxy: ProxyChoice = None
    ) -> None:
        super().__init__(
            config, model_name=target.model, key_location=KeyLocation("none"), pricing=pricing, proxy=proxy
        )
        self.key_header, self.key_prefix = AUTHORIZATION, "Bearer "
        self.target = target
        self._token: str | None = None  # the last fresh token: every call fetches (or reuses) one first

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> VertexGeminiProvider:
        proxy = proxy_option(options)
        target = VertexTarget.parse(config, options, "google", proxy)
        return cls(config, target=target, pricing=parse_cost(options), proxy=proxy)

    def url(self, method: str) -> str:
        return f"{self.target.resource_url}:{method}"

    def headers(self, key: str | None, *, stream: bool = False) -> dict[str, str]:
        return _with_quota_project(super().headers(key, stream=stream), self.target.tokens)

    def resolve_key(self, ctx: CallContext) -> str | None:
        return self._token

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        self._token = await self.target.tokens.token(ctx.transport, ctx.timeout_s)
        return await super().infer(request, ctx)

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        self._token = await self.target.tokens.token(ctx.transport, ctx.timeout_s)
        async with aclosing(_generator(super().stream(request, ctx))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        raise self.unsupported("embeddings")


class VertexAnthropicProvider(AnthropicProvider):
    """Options: model_id | endpoint_id, location, project_id, credential_location, api_base, max_tokens, cost,
    proxy."""

    type_name: ClassVar[str] = "gcp_vertex_anthropic"
    credential_headers: ClassVar[frozenset[str]] = frozenset({AUTHORIZATION})
    supports_batch: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        *,
        target: VertexTarget,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        super().__init__(
            config,
            model_name=target.model,
            api_base=target.resource_url,
            key_location=KeyLocation("none"),
            max_tokens=max_tokens,
            pricing=pricing,
            proxy=proxy,
        )
        self.key_header, self.key_prefix = AUTHORIZATION, "Bearer "
        self.target = target
        self.url = f"{target.resource_url}:rawPredict"
        self.stream_url = f"{target.resource_url}:streamRawPredict"
        self._token: str | None = None

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> VertexAnthropicProvider:
        proxy = proxy_option(options)
        target = VertexTarget.parse(config, options, "anthropic", proxy)
        max_tokens = options.int("max_tokens", DEFAULT_MAX_TOKENS, minimum=1)
        return cls(config, target=target, max_tokens=max_tokens, pricing=parse_cost(options), proxy=proxy)

    def headers(self, key: str | None, *, stream: bool = False) -> dict[str, str]:
        headers = HttpProvider.headers(self, key)  # no anthropic-version header: the body carries Vertex's
        if stream:
            headers["accept"] = "text/event-stream"
        return _with_quota_project(headers, self.target.tokens)

    def resolve_key(self, ctx: CallContext) -> str | None:
        return self._token

    def _body(self, request: ProviderRequest, stream: bool) -> dict[str, Json]:
        if has_file_urls(request):  # Vertex answers 400 "URL sources are not supported": said before the call
            raise self.unsupported("files by URL (Claude on Vertex AI takes them as inline data)")
        body = super()._body(request, stream)
        del body["model"]
        return {"anthropic_version": ANTHROPIC_VERTEX_VERSION, **body}

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        self._token = await self.target.tokens.token(ctx.transport, ctx.timeout_s)
        return await super().infer(request, ctx)

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        self._token = await self.target.tokens.token(ctx.transport, ctx.timeout_s)
        async with aclosing(_generator(super().stream(request, ctx))) as chunks:
            async for chunk in chunks:
                yield chunk

    def stream_call(self, request: ProviderRequest, ctx: CallContext) -> tuple[Call, AnthropicStreamState]:
        ttft_ms = self.config.timeouts.streaming_ttft_ms
        body = self._body(request, stream=True)
        call = self.prepare(self.stream_url, body, ctx, stream=True, ttft_timeout_s=ttft_ms / 1000 if ttft_ms else None)
        return call, AnthropicStreamState(self.name, json_tool=uses_json_tool(request), raw_request=call.raw_request)

    async def count_tokens(self, body: Mapping[str, Json], ctx: CallContext) -> dict[str, Json]:
        """Vertex's token counter for Anthropic models: `POST .../publishers/anthropic/models/count-tokens:rawPredict`,
        the body naming the model; the answer as sent, `{"input_tokens": N}`."""
        if self.target.publisher_url is None:
            raise self.unsupported("count_tokens with an endpoint_id")
        self._token = await self.target.tokens.token(ctx.transport, ctx.timeout_s)
        sent = {**body, "anthropic_version": ANTHROPIC_VERTEX_VERSION, "model": self._model_name}
        exchange = await self.post_json(f"{self.target.publisher_url}/count-tokens:rawPredict", sent, ctx)
        return exchange.data

    async def start_batch(self, items: Sequence[tuple[str, ProviderRequest]], ctx: CallContext) -> BatchSubmission:
        raise self.unsupported("batch inference")

    async def poll_batch(self, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext) -> BatchPoll:
        raise self.unsupported("batch inference")


def _generator(chunks: AsyncIterator[StreamChunk]) -> AsyncGenerator[StreamChunk, None]:
    """HttpProvider.stream's iterator, which is an async generator (closed with ours, it releases the connection)."""
    return cast(AsyncGenerator[StreamChunk, None], chunks)


def _with_quota_project(headers: dict[str, str], tokens: GcpTokens) -> dict[str, str]:
    """`headers` with the credentials' quota project, when they name one (GcpTokens.quota_project)."""
    project = tokens.quota_project
    if project is not None:
        headers["x-goog-user-project"] = project
    return headers

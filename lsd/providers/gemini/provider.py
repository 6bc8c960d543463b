"""The `google_ai_studio_gemini` provider: config, URLs and the HTTP calls around the pure `wire` and `stream`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import ProviderError
from lsd.providers.base import CallContext, KeyLocation
from lsd.providers.calls import Call
from lsd.providers.cost import Cost, parse_cost
from lsd.providers.gemini.stream import StreamState
from lsd.providers.gemini.wire import build_body, model_resource, parse_embeddings, parse_response, status_error
from lsd.providers.http import HttpProvider, check_url
from lsd.providers.proxies import ProxyChoice, proxy_option
from lsd.providers.transport import HttpResponse
from lsd.types import EmbeddingResponse, ProviderRequest, ProviderResponse, Usage

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com/v1beta/"
KEY_HEADER = "x-goog-api-key"


class GeminiProvider(HttpProvider):
    type_name: ClassVar[str] = "google_ai_studio_gemini"
    credential_headers: ClassVar[frozenset[str]] = frozenset({KEY_HEADER})
    supports_embeddings: ClassVar[bool] = True

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str = DEFAULT_API_BASE,
        key_location: KeyLocation,
        pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        super().__init__(
            config,
            model_name=model_name,
            key_location=key_location,
            key_header=KEY_HEADER,
            pricing=pricing,
            proxy=proxy,
        )
        self.api_base = api_base if api_base.endswith("/") else api_base + "/"

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> GeminiProvider:
        model_name = options.str("model_name", required=True)
        api_base = check_url(options, "api_base", options.str("api_base", DEFAULT_API_BASE)) or DEFAULT_API_BASE
        return cls(
            config,
            model_name=model_name or "",
            api_base=api_base,
            key_location=KeyLocation.parse(options, "api_key_location", "env::GOOGLE_AI_STUDIO_API_KEY"),
            pricing=parse_cost(options),
            proxy=proxy_option(options),
        )

    def url(self, method: str) -> str:
        return f"{self.api_base}{model_resource(self._model_name)}:{method}"

    def status_error(self, response: HttpResponse, raw_request: str) -> ProviderError:
        return status_error(self.name, response, raw_request)

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        body = build_body(request, stream=False, provider_name=self.name)
        exchange = await self.post_json(self.url("generateContent"), body, ctx)
        try:
            json_tool = request.params.json_mode == "tool"
            content, usage, reason = parse_response(exchange.data, json_tool=json_tool, provider_name=self.name)
        except ProviderError as exc:
            raise self.attach(exc, exchange) from None
        return self.response(exchange, content, usage, reason)

    def stream_call(self, request: ProviderRequest, ctx: CallContext) -> tuple[Call, StreamState]:
        body = build_body(request, stream=True, provider_name=self.name)
        call = self.prepare(self.url("streamGenerateContent") + "?alt=sse", body, ctx, stream=True)
        json_tool = request.params.json_mode == "tool"
        return call, StreamState(json_tool=json_tool, provider=self.name, raw_request=call.raw_request)

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        resource = model_resource(self._model_name)
        requests: list[dict[str, Any]] = []
        for text in inputs:
            item: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                item["outputDimensionality"] = dimensions
            requests.append(item)
        exchange = await self.post_json(self.url("batchEmbedContents"), {"requests": requests}, ctx)
        try:
            embeddings = parse_embeddings(exchange.data, len(inputs))
        except ProviderError as exc:
            raise self.attach(exc, exchange) from None
        return self.embedding_response(exchange, embeddings, Usage())

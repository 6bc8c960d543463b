"""The `anthropic` provider: config, headers and the HTTP calls around the pure `wire` and `stream` modules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.providers.anthropic import batch
from lsd.providers.anthropic.stream import StreamState
from lsd.providers.anthropic.wire import DEFAULT_MAX_TOKENS, build_body, parse_response, uses_json_tool
from lsd.providers.base import BatchPoll, BatchSubmission, CallContext, KeyLocation, malformed
from lsd.providers.calls import Call
from lsd.providers.cost import Cost, parse_batch_cost, parse_cost
from lsd.providers.http import HttpProvider
from lsd.providers.proxies import ProxyChoice, proxy_option
from lsd.types import Json, ProviderRequest, ProviderResponse

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_API_BASE = "https://api.anthropic.com/v1/"
DEFAULT_KEY_LOCATION = "env::ANTHROPIC_API_KEY"
KEY_HEADER = "x-api-key"


class AnthropicProvider(HttpProvider):
    type_name: ClassVar[str] = "anthropic"
    credential_headers: ClassVar[frozenset[str]] = frozenset({KEY_HEADER})
    supports_batch: ClassVar[bool] = True

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str,
        key_location: KeyLocation,
        max_tokens: int,
        pricing: Cost | None,
        batch_pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        super().__init__(
            config,
            model_name=model_name,
            key_location=key_location,
            key_header=KEY_HEADER,
            pricing=pricing,
            batch_pricing=batch_pricing,
            proxy=proxy,
        )
        self.url = api_base.rstrip("/") + "/messages"
        self.batches_url = self.url + "/batches"
        self.max_tokens = max_tokens

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> AnthropicProvider:
        model_name = options.str("model_name", required=True)
        api_base = options.str("api_base", DEFAULT_API_BASE)
        key_location = KeyLocation.parse(options, "api_key_location", DEFAULT_KEY_LOCATION)
        max_tokens = options.int("max_tokens", DEFAULT_MAX_TOKENS, minimum=1)
        pricing = parse_cost(options)
        return cls(
            config,
            model_name=model_name if isinstance(model_name, str) else "",
            api_base=api_base if isinstance(api_base, str) else DEFAULT_API_BASE,
            key_location=key_location,
            max_tokens=max_tokens,
            pricing=pricing,
            batch_pricing=parse_batch_cost(options, pricing),
            proxy=proxy_option(options),
        )

    def headers(self, key: str | None, *, stream: bool = False) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, **super().headers(key)}
        if stream:
            headers["accept"] = "text/event-stream"
        return headers

    def _body(self, request: ProviderRequest, stream: bool) -> dict[str, Json]:
        return build_body(request, self._model_name, stream, max_tokens=self.max_tokens, provider_name=self.name)

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        exchange = await self.post_json(self.url, self._body(request, stream=False), ctx)
        try:
            content, usage, reason = parse_response(exchange.data, json_tool=uses_json_tool(request))
        except ValueError as exc:
            raise self.attach(malformed(str(exc)), exchange) from exc
        return self.response(exchange, content, usage, reason)

    async def count_tokens(self, body: Mapping[str, Json], ctx: CallContext) -> dict[str, Json]:
        """Anthropic's `POST {api_base}messages/count_tokens` for a Messages body (its `model` replaced by this
        provider's): the answer as Anthropic sent it, `{"input_tokens": N}`. ProviderError when the call fails."""
        exchange = await self.post_json(self.url + "/count_tokens", {**body, "model": self._model_name}, ctx)
        return exchange.data

    async def start_batch(self, items: Sequence[tuple[str, ProviderRequest]], ctx: CallContext) -> BatchSubmission:
        bodies = [(custom_id, self._body(request, stream=False)) for custom_id, request in items]
        json_tool = [custom_id for custom_id, request in items if uses_json_tool(request)]
        return await batch.start(self, self.batches_url, bodies, json_tool, ctx)

    async def poll_batch(self, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext) -> BatchPoll:
        return await batch.poll(self, self.batches_url, provider_batch_id, data, ctx)

    def stream_call(self, request: ProviderRequest, ctx: CallContext) -> tuple[Call, StreamState]:
        ttft_ms = self.config.timeouts.streaming_ttft_ms
        body = self._body(request, stream=True)
        call = self.prepare(self.url, body, ctx, stream=True, ttft_timeout_s=ttft_ms / 1000 if ttft_ms else None)
        return call, StreamState(self.name, json_tool=uses_json_tool(request), raw_request=call.raw_request)

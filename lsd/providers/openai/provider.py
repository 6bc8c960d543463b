"""The `openai` provider (and the Chat Completions shell `azure` shares): config, HTTP calls, errors, cost."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import ProviderError
from lsd.providers.base import CallContext, KeyLocation, Provider, error_from_status, key_fingerprint, redact_headers
from lsd.providers.openai.stream import StreamState
from lsd.providers.openai.wire import build_body, malformed, parse_embeddings, parse_response, reported_cost
from lsd.providers.sse import sse_events
from lsd.providers.transport import HttpResponse
from lsd.types import EmbeddingResponse, ProviderRequest, ProviderResponse, StreamChunk, Usage

DEFAULT_API_BASE = "https://api.openai.com/v1/"


@dataclass(frozen=True, slots=True)
class Pricing:
    """The `cost` option: price per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    @staticmethod
    def parse(options: Table) -> Pricing | None:
        if not options.has("cost"):
            return None
        table = options.table("cost")
        if not isinstance(options.data["cost"], dict):
            return None  # options.table reported it
        prices = []
        for key in ("input_per_million", "output_per_million"):
            if not table.has(key):
                table.error(key, "missing required key")
            prices.append(table.float(key, 0.0, minimum=0.0))
        table.finish()
        return Pricing(prices[0], prices[1])

    def cost(self, usage: Usage) -> float | None:
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        spent = (usage.input_tokens or 0) * self.input_per_million
        return (spent + (usage.output_tokens or 0) * self.output_per_million) / 1e6


def check_url(options: Table, key: str, value: str | None) -> str:
    """`value` if it is an http(s) URL, else "" with the error reported on `key`."""
    if value is None:
        return ""
    if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
        options.error(key, f"expected an http:// or https:// URL, got {value!r}")
        return ""
    return value


def max_tokens_field(api_base: str) -> str:
    """The body key for the output token limit (see the module docstring)."""
    return "max_completion_tokens" if urlsplit(api_base).hostname == "api.openai.com" else "max_tokens"


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One successful JSON POST: what crossed the wire, redacted, plus the decoded answer."""

    raw_request: str
    raw_response: str
    request_headers: dict[str, str]
    api_key_sha256: str | None
    data: Any


class ChatCompletionsProvider(Provider):
    """The I/O shell around the pure functions above, shared by the `openai` and `azure` types; they differ
    only in URL, credential header and token-limit key, all fixed by `from_config`."""

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
        pricing: Pricing | None = None,
    ) -> None:
        super().__init__(config)
        self._model_name = model_name
        self.chat_url = chat_url
        self.key_location = key_location
        self.key_header = key_header
        self.key_prefix = key_prefix
        self.max_tokens_field = max_tokens_field
        self.pricing = pricing

    @property
    def model_name(self) -> str:
        return self._model_name

    def build_body(self, request: ProviderRequest, stream: bool) -> dict[str, Any]:
        return build_body(
            request, self._model_name, stream, max_tokens_field=self.max_tokens_field, provider_name=self.name
        )

    def headers(self, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers[self.key_header] = f"{self.key_prefix}{key}"
        return headers

    def cost(self, usage: Usage, reported: float | None) -> float | None:
        return self.pricing.cost(usage) if self.pricing is not None else reported

    async def post_json(self, url: str, body: Mapping[str, Any], ctx: CallContext) -> _Exchange:
        """POST `body`; raise ProviderError for a non-2xx status or an answer that is not a JSON object."""
        raw_request = orjson.dumps(body).decode()
        key = self.key_location.resolve(ctx.credentials, self.name)
        headers = self.headers(key)
        response = await ctx.transport.post(
            url, raw_request.encode(), headers, provider=self.name, timeout_s=ctx.timeout_s
        )
        raw_response = response.body.decode("utf-8", "replace")
        if not 200 <= response.status < 300:
            raise error_from_status(self.name, response.status, response.body, raw_request=raw_request)
        try:
            data = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise malformed(
                "the body is not a JSON object", provider=self.name, raw_request=raw_request, raw_response=raw_response
            )
        return _Exchange(raw_request, raw_response, redact_headers(headers), key_fingerprint(key), data)

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        exchange = await self.post_json(self.chat_url, self.build_body(request, stream=False), ctx)
        try:
            content, usage, reason = parse_response(exchange.data, json_tool=request.params.json_mode == "tool")
        except ProviderError as exc:
            raise self._malformed(exc, exchange) from exc
        return ProviderResponse(
            content=content,
            usage=usage,
            finish_reason=reason,
            raw_request=exchange.raw_request,
            raw_response=exchange.raw_response,
            cost=self.cost(usage, reported_cost(exchange.data.get("usage"))),
            request_headers=exchange.request_headers,
            api_key_sha256=exchange.api_key_sha256,
        )

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        """Yield deltas as they arrive, then one chunk with usage and finish reason. A stream that breaks
        or ends before `data: [DONE]` raises ProviderError(kind="stream_interrupted") after its deltas."""
        raw_request = orjson.dumps(self.build_body(request, stream=True)).decode()
        key = self.key_location.resolve(ctx.credentials, self.name)
        state = StreamState(json_tool=request.params.json_mode == "tool", provider=self.name, raw_request=raw_request)
        lines = ctx.transport.stream_lines(
            self.chat_url, raw_request.encode(), self.headers(key), provider=self.name, timeout_s=ctx.timeout_s
        )
        try:
            first = await anext(lines, None)
            if isinstance(first, HttpResponse):
                raise error_from_status(self.name, first.status, first.body, raw_request=raw_request)
            try:
                async for event in sse_events(_lines_from(first, lines)):
                    if state.done:
                        continue  # read to the end, so the connection goes back to the pool for reuse
                    chunk = state.feed(event.data)
                    if chunk is not None:
                        yield chunk
            except ProviderError as exc:
                if exc.kind != "connection":
                    raise
                raise self._interrupted(state, exc.message) from exc
        finally:
            # Release the connection now, also when our consumer stops early, rather than at GC time.
            if isinstance(lines, AsyncGenerator):
                await lines.aclose()
        if not state.done:
            raise self._interrupted(state, "the stream ended before [DONE]")
        yield state.finish()

    def _malformed(self, exc: ProviderError, exchange: _Exchange) -> ProviderError:
        """A parse error of the pure functions, completed with the provider and what crossed the wire."""
        return ProviderError(
            f"provider {self.name!r} sent a {exc.message}",
            provider=self.name,
            retryable=exc.retryable,
            kind=exc.kind,
            raw_request=exchange.raw_request,
            raw_response=exchange.raw_response,
        )

    def _interrupted(self, state: StreamState, reason: str) -> ProviderError:
        return ProviderError(
            f"stream from provider {self.name!r} was interrupted: {reason}",
            provider=self.name,
            retryable=True,
            kind="stream_interrupted",
            raw_request=state.raw_request,
            raw_response=state.raw_response(),
        )


async def _lines_from(first: bytes | None, rest: AsyncIterator[bytes | HttpResponse]) -> AsyncIterator[bytes]:
    """`first` then the rest of the lines (only the first item of stream_lines can be an HttpResponse)."""
    if first is None:
        return
    yield first
    async for line in rest:
        if isinstance(line, bytes):
            yield line


class OpenAIProvider(ChatCompletionsProvider):
    type_name: ClassVar[str] = "openai"
    supports_embeddings: ClassVar[bool] = True

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str = DEFAULT_API_BASE,
        key_location: KeyLocation,
        pricing: Pricing | None = None,
    ) -> None:
        base = api_base.rstrip("/")
        super().__init__(
            config,
            model_name=model_name,
            chat_url=f"{base}/chat/completions",
            key_location=key_location,
            max_tokens_field=max_tokens_field(api_base),
            pricing=pricing,
        )
        self.embeddings_url = f"{base}/embeddings"

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> OpenAIProvider:
        model_name = options.str("model_name", required=True)
        api_base = check_url(options, "api_base", options.str("api_base", DEFAULT_API_BASE)) or DEFAULT_API_BASE
        return cls(
            config,
            api_base=api_base,
            model_name=model_name or "",
            key_location=KeyLocation.parse(options, "api_key_location", "env::OPENAI_API_KEY"),
            pricing=Pricing.parse(options),
        )

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        body: dict[str, Any] = {"model": self._model_name, "input": list(inputs), "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        exchange = await self.post_json(self.embeddings_url, body, ctx)
        try:
            embeddings, usage = parse_embeddings(exchange.data, len(inputs))
        except ProviderError as exc:
            raise self._malformed(exc, exchange) from exc
        return EmbeddingResponse(
            embeddings=embeddings,
            usage=usage,
            raw_request=exchange.raw_request,
            raw_response=exchange.raw_response,
            cost=self.cost(usage, reported_cost(exchange.data.get("usage"))),
            request_headers=exchange.request_headers,
            api_key_sha256=exchange.api_key_sha256,
        )

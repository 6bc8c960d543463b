"""The `aws_bedrock` provider: config, SigV4-signed calls and the event stream around the pure `wire` and `stream`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, cast
from urllib.parse import quote

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import ProviderError
from lsd.providers.anthropic.wire import uses_json_tool
from lsd.providers.aws_bedrock.credentials import AWS_EXTRA_MISSING, AwsCredentials, AwsIdentity, sign
from lsd.providers.aws_bedrock.stream import EventStreamDecoder, StreamState
from lsd.providers.aws_bedrock.wire import build_body, parse_response, status_error
from lsd.providers.base import CallContext, KeyLocation, has_file_urls, malformed
from lsd.providers.calls import Call
from lsd.providers.cost import Cost, parse_cost
from lsd.providers.http import USER_AGENT, HttpProvider, check_url
from lsd.providers.patches import apply_body_patches, apply_header_patches
from lsd.providers.proxies import ProxyChoice, proxy_option
from lsd.providers.scrubber import Scrubber
from lsd.providers.transport import HttpResponse
from lsd.types import ProviderRequest, ProviderResponse, StreamChunk

AUTHORIZATION = "Authorization"
SECURITY_TOKEN = "X-Amz-Security-Token"
EVENT_STREAM = "application/vnd.amazon.eventstream"


class BedrockProvider(HttpProvider):
    type_name: ClassVar[str] = "aws_bedrock"
    credential_headers: ClassVar[frozenset[str]] = frozenset({AUTHORIZATION, SECURITY_TOKEN})

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_id: str,
        credentials: AwsCredentials,
        endpoint_url: str | None = None,
        pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        super().__init__(
            config,
            model_name=model_id,
            key_location=KeyLocation("none"),
            key_header=AUTHORIZATION,
            pricing=pricing,
            proxy=proxy,
        )
        self.credentials = credentials
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self._path = f"/model/{quote(model_id, safe='')}/"
        self._identity: AwsIdentity | None = None  # the last credentials `ready()` returned, fresh for minutes

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> BedrockProvider:
        model_id = options.str("model_id", required=True) or ""
        region = options.str("region")
        auto_detect = options.bool("allow_auto_detect_region", False)
        endpoint_url = check_url(options, "endpoint_url", options.str("endpoint_url")) or None
        if AWS_EXTRA_MISSING:
            options.error("type", "aws_bedrock needs botocore: pip install 'lsd[aws]'")
        if region is None and not auto_detect:
            options.error("region", "missing: set `region`, or `allow_auto_detect_region = true` to take the AWS one")
        credentials = AwsCredentials(config.name, region=region, auto_detect_region=bool(auto_detect))
        return cls(
            config,
            model_id=model_id,
            credentials=credentials,
            endpoint_url=endpoint_url,
            pricing=parse_cost(options),
            proxy=proxy_option(options),
        )

    def url(self, identity: AwsIdentity, operation: str) -> str:
        base = self.endpoint_url or f"https://bedrock-runtime.{identity.region}.amazonaws.com"
        return f"{base}{self._path}{operation}"

    async def ready(self) -> AwsIdentity:
        """Fresh credentials (a worker thread resolves or refreshes them when needed), kept for `prepare`."""
        self._identity = await self.credentials.current()
        return self._identity

    def prepare(
        self,
        url: str,
        body: Mapping[str, Any],
        ctx: CallContext,
        *,
        stream: bool = False,
        ttft_timeout_s: float | None = None,
    ) -> Call:
        """The signed call (after `ready()`): extra_body and extra_headers are applied before signing, so the
        signature covers them. The access key id is the call's `key` (fingerprinted in rows, scrubbed)."""
        identity = self._identity
        if identity is None:
            raise RuntimeError("BedrockProvider.prepare() before ready()")
        if ctx.extra_body:
            body = apply_body_patches(body, ctx.extra_body)
        encoded = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if stream:
            headers["Accept"] = EVENT_STREAM
        if ctx.extra_headers:
            headers = apply_header_patches(headers, ctx.extra_headers)
        if identity.bearer is not None:  # a Bedrock API key: the key is the credential, nothing is signed
            headers[AUTHORIZATION] = f"Bearer {identity.bearer}"
            return self.call(url, encoded, encoded, headers, identity.bearer, ttft_timeout_s)
        signed = sign(identity, url, encoded, headers)
        return self.call(url, encoded, encoded, signed, identity.access_key, ttft_timeout_s)

    def scrubber(self, key: str | None, headers: Mapping[str, str]) -> Scrubber:
        """The access key id, the session token and the signature; not the Authorization header's other words
        ("Credential=", "SignedHeaders="), which would redact ordinary words that begin like them."""
        authorization = headers.get(AUTHORIZATION, "")
        if authorization.startswith("Bearer "):  # a Bedrock API key, which is `key`
            return super().scrubber(key, headers)
        signature = authorization.rpartition("Signature=")[2]
        rest = {name: value for name, value in headers.items() if name != AUTHORIZATION}
        return super().scrubber(key, {**rest, "X-Amz-Signature": signature})

    def status_error(self, response: HttpResponse, raw_request: str) -> ProviderError:
        error_type = response.headers.get("x-amzn-errortype")
        return status_error(self.name, response.status, response.body, error_type, raw_request=raw_request)

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        identity = await self.ready()
        body = self._body(request)
        exchange = await self.post_json(self.url(identity, "converse"), body, ctx)
        try:
            content, usage, reason = parse_response(exchange.data, json_tool=uses_json_tool(request))
        except ValueError as exc:
            raise self.attach(malformed(str(exc)), exchange) from exc
        return self.response(exchange, content, usage, reason)

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        await self.ready()
        # HttpProvider.stream is an async generator: closed with this one, it releases the connection.
        inner = cast(AsyncGenerator[StreamChunk, None], super().stream(request, ctx))
        async with aclosing(inner) as chunks:
            async for chunk in chunks:
                yield chunk

    def stream_call(self, request: ProviderRequest, ctx: CallContext) -> tuple[Call, StreamState]:
        identity = self._identity
        if identity is None:
            raise RuntimeError("BedrockProvider.stream_call() before ready()")
        ttft_ms = self.config.timeouts.streaming_ttft_ms
        body = self._body(request)
        url = self.url(identity, "converse-stream")
        call = self.prepare(url, body, ctx, stream=True, ttft_timeout_s=ttft_ms / 1000 if ttft_ms else None)
        return call, StreamState(self.name, json_tool=uses_json_tool(request), raw_request=call.raw_request)

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        if has_file_urls(request):  # Bedrock takes files as inline data: this provider's failure, routing falls back
            raise self.unsupported("files by URL (Bedrock takes them as inline data)")
        return build_body(request, provider_name=self.name, model_id=self._model_name)

    def decoder(self) -> EventStreamDecoder:
        """ConverseStream's binary event-stream messages, each as an SseEvent (see `stream`)."""
        return EventStreamDecoder(self.name)

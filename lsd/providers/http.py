"""The shell the HTTP providers share: URL checks, JSON POSTs, GETs and SSE streams, priced by `cost`.

Every result and every error carries what crossed the wire (the body sent, the answer received, the headers
with their credentials redacted, the key's fingerprint), so the provider modules hold only their own wire
format. Nothing of it holds the call's secrets: each answer, error body and stream event is scrubbed
(lsd.providers.scrubber) as it comes in, before anything parses it, and so is every ProviderError raised here.
A stream whose connection breaks after its first event raises ProviderError(kind="stream_interrupted")
with the payloads received so far; one that ends without the provider's end marker raises the same.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing, suppress
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import ProviderError
from lsd.providers.base import (
    CallContext,
    KeyLocation,
    Provider,
    error_from_status,
    json_object,
    malformed,
    redact_url,
    retry_after_s,
)
from lsd.providers.calls import Call, Exchange, StreamParser
from lsd.providers.cost import Cost, PointerPricing
from lsd.providers.patches import apply_body_patches, apply_header_patches
from lsd.providers.proxies import ProxyChoice
from lsd.providers.scrubber import Scrubber
from lsd.providers.sse import EventDecoder, SseEvent, SseParser
from lsd.providers.transport import MAX_LINE, HttpResponse
from lsd.types import (
    EmbeddingResponse,
    FinishReason,
    OutputBlock,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Usage,
)

USER_AGENT = "lsd"  # sent to providers with every request


def check_url(options: Table, key: str, value: str | None) -> str:
    """`value` if it is an http(s) URL, else "" with the error reported on `key`."""
    if value is None:
        return ""
    parts = urlsplit(value) if value.startswith(("http://", "https://")) else None
    if parts is None or not parts.hostname:
        options.error(key, f"expected an http:// or https:// URL, got {value!r}")
        return ""
    if parts.username is not None or parts.password is not None:  # the message never quotes them
        options.error(key, "a user or password in the URL is not sent: give the key with api_key_location")
        return ""
    return value


class HttpProvider(Provider):
    """A provider that POSTs JSON and streams SSE; subclasses build bodies, parse answers and name their URLs.

    The chunk of a stream that carries the usage (its last) also carries the cost, the body sent, the
    redacted headers and the key's fingerprint: what `infer` reports in its ProviderResponse.
    """

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        key_location: KeyLocation,
        key_header: str,
        key_prefix: str = "",
        pricing: Cost | None = None,
        batch_pricing: Cost | None = None,
        proxy: ProxyChoice = None,
    ) -> None:
        super().__init__(config)
        self._model_name = model_name
        self.proxy = proxy  # the `proxy` option (lsd.providers.proxies.proxy_option): passed with every call
        self.key_location = key_location
        self.key_header = key_header
        self.key_prefix = key_prefix
        self.pricing = pricing
        self.batch_pricing = batch_pricing
        # The last call's key and headers and their Scrubber: a provider's calls mostly repeat them (an env key),
        # and building one costs more than comparing them.
        self._last_scrubber: tuple[tuple[object, ...], Scrubber] | None = None
        # The same for what a stream's last chunk reports of its call: the redacted headers and the key's hash.
        self._last_stored: tuple[tuple[object, ...], dict[str, str], str | None] | None = None

    @property
    def model_name(self) -> str:
        return self._model_name

    def call(
        self,
        url: str,
        body: bytes,
        raw_request: str | bytes,
        headers: dict[str, str],
        key: str | None,
        ttft_timeout_s: float | None = None,
    ) -> Call:
        """A Call whose stored parts hold no credential: `raw_request` (text, or a JSON body's UTF-8 bytes) loses
        the call's secrets (the key, which a provider or an `extra_body` may put in the body, and the values of
        credential headers) and credential-named URL query values (`?key=`, removed by the caller with
        `redact_url`). Its `scrubber` removes the same secrets from everything the provider answers."""
        credential_headers = self.credential_headers | {self.key_header}
        scrubber = self.scrubber(key, headers)
        raw = scrubber.text(raw_request) if isinstance(raw_request, str) else scrubber.body(raw_request)
        return Call(url, body, raw, headers, key, ttft_timeout_s, credential_headers, scrubber)

    def scrubber(self, key: str | None, headers: Mapping[str, str]) -> Scrubber:
        """The Scrubber of a call sending `headers` with `key` (the last one built, when they are the same)."""
        signature = (key, *headers.items())
        last = self._last_scrubber
        if last is not None and last[0] == signature:
            return last[1]
        scrubber = Scrubber.for_call(key, headers, self.credential_headers | {self.key_header})
        self._last_scrubber = (signature, scrubber)
        return scrubber

    def scrubbed(self, response: HttpResponse, scrubber: Scrubber) -> HttpResponse:
        """`response` with the call's secrets removed from its body (the provider may repeat the key)."""
        body = scrubber.body(response.body)
        return response if body is response.body else replace(response, body=body)

    def resolve_key(self, ctx: CallContext) -> str | None:
        """The key this call sends (its `api_key_location`); a provider whose credential is a token it fetches
        itself (gcp_vertex_*) overrides this."""
        return self.key_location.resolve(ctx.credentials, self.name)

    def headers(self, key: str | None, *, stream: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if key is not None:
            headers[self.key_header] = f"{self.key_prefix}{key}"
        return headers

    def status_error(self, response: HttpResponse, raw_request: str) -> ProviderError:
        """A non-2xx answer as a ProviderError (providers refine the kind from their error bodies)."""
        return error_from_status(self.name, response.status, response.body, raw_request=raw_request)

    def answered_error(self, response: HttpResponse, raw_request: str) -> ProviderError:
        """`status_error`, with the answer's Retry-After (passed on to clients where the route's API has one)."""
        error = self.status_error(response, raw_request)
        error.retry_after_s = retry_after_s(response.headers) or error.retry_after_s  # (Gemini's: in its body)
        return error

    def cost(
        self,
        usage: Usage,
        reported: float | None = None,
        answers: Sequence[Any] = (),
        *,
        streamed: bool = False,
    ) -> float | None:
        """Priced by the `cost` option when it is set, else what the provider reported (if anything).
        `answers` is the provider's answer as decoded JSON (a plain call's object, or each event of a stream),
        which the list form of `cost` reads its numbers from."""
        if self.pricing is None:
            return reported
        return self.pricing.price(usage, answers, streamed=streamed)

    def batch_cost(self, usage: Usage, answer: Any = None) -> float | None:
        """A batch result's cost at the provider's batch price (`batch_cost`, else `cost` at the discount);
        `answer` is the result's response object, as a plain call would have answered it."""
        if self.batch_pricing is None:
            return None
        return self.batch_pricing.price(usage, () if answer is None else (answer,))

    async def get_bytes(self, url: str, ctx: CallContext) -> bytes:
        """GET `url` with this provider's credentials; raise ProviderError for a failed call or a non-2xx status."""
        key = self.resolve_key(ctx)
        headers = self.headers(key)
        headers.pop("Content-Type", None)
        scrubber = self.scrubber(key, headers)
        try:
            response = await ctx.transport.get(
                url, headers, provider=self.name, timeout_s=ctx.timeout_s, proxy=self.proxy
            )
        except ProviderError as exc:
            raise scrubber.error(exc) from None
        response = self.scrubbed(response, scrubber)
        if not 200 <= response.status < 300:
            raise scrubber.error(self.answered_error(response, f"GET {redact_url(url)}"))
        return response.body

    async def get_json(self, url: str, ctx: CallContext) -> Exchange:
        """GET `url` and decode a JSON object (the Exchange's raw_request is "GET <url>")."""
        body = await self.get_bytes(url, ctx)
        data = json_object(body)
        raw = body.decode("utf-8", "replace")
        if data is None:
            raise malformed("the body is not a JSON object", provider=self.name, raw_response=raw)
        headers = self.headers(None)
        return Exchange(self.call(url, b"", f"GET {redact_url(url)}", headers, None), raw, data)

    async def post_bytes(self, url: str, body: bytes, content_type: str, ctx: CallContext) -> Exchange:
        """POST a ready-made body (a multipart upload) and decode the JSON object answered."""
        key = self.resolve_key(ctx)
        headers = {**self.headers(key), "Content-Type": content_type}
        raw_request = f"POST {redact_url(url)} ({len(body)} bytes, {content_type.split(';')[0]})"
        call = self.call(url, body, raw_request, headers, key)
        try:
            response = await ctx.transport.post(
                url, body, headers, provider=self.name, timeout_s=ctx.timeout_s, proxy=self.proxy
            )
        except ProviderError as exc:
            raise call.scrubber.error(exc) from None
        response = self.scrubbed(response, call.scrubber)
        if not 200 <= response.status < 300:
            raise call.scrubber.error(self.answered_error(response, call.raw_request))
        data = json_object(response.body)
        raw = response.body.decode("utf-8", "replace")
        if data is None:
            raise malformed("the body is not a JSON object", provider=self.name, raw_response=raw)
        return Exchange(call, raw, data)

    def prepare(
        self,
        url: str,
        body: Mapping[str, Any],
        ctx: CallContext,
        *,
        stream: bool = False,
        ttft_timeout_s: float | None = None,
    ) -> Call:
        """The call to send (resolving the key, which may raise before anything goes out)."""
        if ctx.extra_body:
            body = apply_body_patches(body, ctx.extra_body)
        encoded = orjson.dumps(body)
        key = self.resolve_key(ctx)
        headers = self.headers(key, stream=stream)
        if ctx.extra_headers:
            headers = apply_header_patches(headers, ctx.extra_headers)
        # The body's bytes are its raw request: a 100 KiB prompt is not decoded to be stored (lsd.inference.recording
        # refers to the prompt inside them and decodes the rest).
        return self.call(url, encoded, encoded, headers, key, ttft_timeout_s)

    async def post_json(self, url: str, body: Mapping[str, Any], ctx: CallContext) -> Exchange:
        """POST `body`; raise ProviderError for a failed call, a non-2xx status or an answer that is not a
        JSON object."""
        call = self.prepare(url, body, ctx)
        try:
            response = await ctx.transport.post(
                call.url, call.body, call.headers, provider=self.name, timeout_s=ctx.timeout_s, proxy=self.proxy
            )
        except ProviderError as exc:
            exc.raw_request = exc.raw_request or call.raw_request
            raise call.scrubber.error(exc) from None
        if not 200 <= response.status < 300:
            raise call.scrubber.error(self.answered_error(self.scrubbed(response, call.scrubber), call.raw_request))
        received = response.body.decode("utf-8", "replace")
        # The answer is decoded from the scrubbed text: its content (what the client gets and what is stored)
        # holds no secret either. Only a body that held one is decoded from text.
        raw_response = call.scrubber.text(received)
        data = json_object(response.body if raw_response is received else raw_response)
        if data is None:
            raise malformed(
                "the body is not a JSON object",
                provider=self.name,
                raw_request=call.raw_request,
                raw_response=raw_response,
            )
        return Exchange(call, raw_response, data)

    def attach(self, exc: ProviderError, exchange: Exchange) -> ProviderError:
        """`exc`, raised by a pure parse function, completed with this provider and what crossed the wire."""
        exc.provider, exc.raw_request, exc.raw_response = self.name, exchange.raw_request, exchange.raw_response
        return exchange.call.scrubber.error(exc)

    def response(
        self,
        exchange: Exchange,
        content: tuple[OutputBlock, ...],
        usage: Usage,
        finish_reason: FinishReason | None,
        reported_cost: float | None = None,
    ) -> ProviderResponse:
        headers, fingerprint = self._stored_call(exchange.call)  # as a stream's last chunk: once per key and headers
        return ProviderResponse(
            content=content,
            usage=usage,
            finish_reason=finish_reason,
            raw_request=exchange.call.raw,
            raw_response=exchange.raw_response,
            cost=self.cost(usage, reported_cost, (exchange.data,)),
            request_headers=headers,
            api_key_sha256=fingerprint,
        )

    def embedding_response(
        self,
        exchange: Exchange,
        embeddings: Sequence[tuple[float, ...]],
        usage: Usage,
        reported_cost: float | None = None,
    ) -> EmbeddingResponse:
        return EmbeddingResponse(
            embeddings=tuple(embeddings),
            usage=usage,
            raw_request=exchange.raw_request,
            raw_response=exchange.raw_response,
            cost=self.cost(usage, reported_cost, (exchange.data,)),
            request_headers=exchange.call.request_headers,
            api_key_sha256=exchange.call.api_key_sha256,
        )

    @abstractmethod
    def stream_call(self, request: ProviderRequest, ctx: CallContext) -> tuple[Call, StreamParser]:
        """The streaming call for `request` and the state that will parse its events (no I/O)."""

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        """Yield each delta as its event arrives, then the last chunk (usage, finish reason and what a
        ProviderResponse would report). A stream that breaks after its first event, or ends without its end
        marker, raises ProviderError(kind="stream_interrupted") after the deltas that did arrive."""
        call, parser = self.stream_call(request, ctx)
        started = False
        # The list form of `cost` reads the events themselves; only then are they decoded a second time.
        events_seen: list[Any] | None = [] if isinstance(self.pricing, PointerPricing) else None
        scrubber = call.scrubber if call.scrubber else None  # a call without secrets: no scrub call per event

        def chunk_of(event: SseEvent) -> StreamChunk | None:
            if scrubber is not None:
                event = _scrubbed_event(event, scrubber)
            chunk = parser.feed_event(event)
            if events_seen is not None:
                _keep_json(events_seen, event.data)
            if chunk is not None and chunk.usage is not None:
                return self._last(chunk, call, events_seen)
            return chunk

        decoder = self.decoder()
        source = ctx.transport.stream_bytes(
            call.url,
            call.body,
            call.headers,
            provider=self.name,
            timeout_s=ctx.timeout_s,
            ttft_timeout_s=call.ttft_timeout_s,
            proxy=self.proxy,
        )
        try:
            # The bytes are decoded here, not in a generator of their own: one layer less for every token.
            # Closing the source releases the connection now, also when our consumer stops early.
            async with aclosing(source):
                async for data in source:
                    if isinstance(data, HttpResponse):  # a non-2xx answer, which comes instead of any event
                        raise self.answered_error(self.scrubbed(data, call.scrubber), call.raw_request)
                    for event in decoder.feed(data):
                        started = True
                        chunk = chunk_of(event)
                        if chunk is not None:
                            yield chunk
                    if decoder.pending_bytes > MAX_LINE:
                        raise ProviderError(
                            f"connection error: a streamed line is longer than {MAX_LINE} bytes",
                            provider=self.name,
                            kind="connection",
                        )
            for event in decoder.close():
                started = True
                chunk = chunk_of(event)
                if chunk is not None:
                    yield chunk
        except ProviderError as exc:
            exc.raw_request = exc.raw_request or call.raw_request
            call.scrubber.error(exc)
            if started and exc.kind == "connection":
                raise self._interrupted(parser, call, exc.message) from exc
            raise
        missing = parser.missing_end()
        if missing is not None:
            raise self._interrupted(parser, call, f"the stream ended before {missing}")
        last = parser.finish()
        if last is not None:
            yield self._last(last, call, events_seen)

    def decoder(self) -> EventDecoder:
        """How the stream's body becomes events: server-sent events here; a provider with another framing
        (Bedrock's binary event stream) returns its own decoder, whose messages come out as SseEvents."""
        return SseParser()

    def _last(self, chunk: StreamChunk, call: Call, events: Sequence[Any] | None = None) -> StreamChunk:
        """The chunk with usage, completed as a ProviderResponse would be (its `cost`, if any, is reported;
        `events` are the stream's decoded events so far, for the list form of `cost`)."""
        headers, fingerprint = self._stored_call(call)
        return replace(
            chunk,
            cost=self.cost(chunk.usage or Usage(), chunk.cost, events or (), streamed=True),
            raw_request=call.raw_request,
            request_headers=headers,
            api_key_sha256=fingerprint,
        )

    def _stored_call(self, call: Call) -> tuple[dict[str, str], str | None]:
        """`call.request_headers` and `call.api_key_sha256`, computed once for the key and headers the calls
        repeat (comparing them takes a sixth of the time of redacting the headers and hashing the key)."""
        signature = (call.key, call.credential_headers, *call.headers.items())
        last = self._last_stored
        if last is None or last[0] != signature:
            last = self._last_stored = (signature, call.request_headers, call.api_key_sha256)
        return dict(last[1]), last[2]

    def _interrupted(self, parser: StreamParser, call: Call, reason: str) -> ProviderError:
        error = ProviderError(
            f"stream from provider {self.name!r} was interrupted: {reason}",
            provider=self.name,
            retryable=True,
            kind="stream_interrupted",
            raw_request=call.raw_request,
            raw_response=parser.raw_response(),
        )
        usage = getattr(parser, "usage", None)  # what the provider had counted (Anthropic's message_start)
        if isinstance(usage, Usage) and usage != Usage():
            error.reported_usage = usage
        return call.scrubber.error(error)


def _scrubbed_event(event: SseEvent, scrubber: Scrubber) -> SseEvent:
    """The event with the call's secrets removed from its data: the parser, the chunks' raw text, error events
    and the cost's decoded events all see the scrubbed payload."""
    if not scrubber:
        return event
    data = scrubber.text(event.data)
    return event if data is event.data else SseEvent(event.event, data)


def _keep_json(events: list[Any], data: str) -> None:
    """Add the event's data, decoded, when it is JSON (`[DONE]` and other markers are not)."""
    if data.startswith(("{", "[")):
        with suppress(orjson.JSONDecodeError):
            events.append(orjson.loads(data))

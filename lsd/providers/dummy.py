"""The built-in `dummy` provider: deterministic answers with no network, for demos, tests and benchmarks.

`model_name` selects the behaviour:
  echo   answers with the last user text ("echo: <text>"; the default answer when there is no text)
  json   answers with a JSON object {"answer": "<last user text>"}
  error  always fails (a retryable provider error)
  slow   answers like echo after `latency_ms` (default 1000 ms for slow); a call whose `timeout_s` comes first
         raises ProviderTimeout then, as an HTTP provider does
  flaky  fails every other call, starting with the first (exercises retries and fallbacks)
  tool   answers with a tool call to the first offered tool, arguments {}
anything else answers "Hello from LSD's dummy provider (<model_name>)".

Embeddings (an `[embedding_models]` provider, any `model_name`; `error` and `flaky` fail as above): each input's
vector is a unit vector of `dimensions` (the request's, else 16) numbers drawn from its text's SHA-256, so equal
texts embed equally. `cost` (either form, as for HTTP providers) prices the answers: the list form reads the
dummy's raw response (`/usage/input_tokens`, `/usage/output_tokens`). `api_key_location` is read as for HTTP
providers, its `env::` parts as `none` (the dummy sends nothing): a `dynamic::NAME` key missing from the request's
`credentials` is a 400 unless a fallback stands in, as for them.

Batches run in-process: `start_batch` answers every request at once and `poll_batch` reports the batch pending
until `batch_delay_ms` (default 1000) has passed since it started. The answers travel in the batch's stored
`data`, so any process can poll it. With `error` every request fails; with `flaky` every other one does.
`latency_ms` delays each poll's answer too.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import struct
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import InvalidRequest, ProviderError, ProviderTimeout
from lsd.ids import uuid7
from lsd.providers.base import BatchItemResult, BatchPoll, BatchSubmission, CallContext, KeyLocation, Provider
from lsd.providers.cost import Cost, parse_cost
from lsd.types import (
    EmbeddingResponse,
    OutputBlock,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Text,
    ToolCall,
    Usage,
)

DEFAULT_DIMENSIONS = 16
MAX_DIMENSIONS = 8192  # above any real model's; the vectors are made on the event loop


class DummyProvider(Provider):
    type_name = "dummy"
    credential_headers: ClassVar[frozenset[str]] = frozenset()  # it sends nothing anywhere
    supports_batch: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = True

    def __init__(
        self,
        config: ProviderConfig,
        model_name: str,
        latency_ms: int,
        batch_delay_ms: int = 1000,
        *,
        pricing: Cost | None = None,
        key_location: KeyLocation | None = None,
    ) -> None:
        super().__init__(config)
        self._model_name = model_name
        self.latency_ms = latency_ms
        self.batch_delay_ms = batch_delay_ms
        self.pricing = pricing
        self.key_location = key_location or KeyLocation("none")
        self._calls = itertools.count()

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> DummyProvider:
        model_name = options.str("model_name", "echo")
        latency = options.int("latency_ms", 1000 if model_name == "slow" else 0, minimum=0)
        batch_delay = options.int("batch_delay_ms", 1000, minimum=0)
        key_location = _without_env(KeyLocation.parse(options, "api_key_location", "none"))
        return cls(config, model_name, latency, batch_delay, pricing=parse_cost(options), key_location=key_location)

    @property
    def model_name(self) -> str:
        return self._model_name

    def _next_call(self) -> int:
        """This call's number; `error` fails every call and `flaky` every other one, the first included."""
        call = next(self._calls)
        if self._model_name == "error" or (self._model_name == "flaky" and call % 2 == 0):
            raise self.error(f"dummy provider {self._model_name!r} failed as configured", status=500)
        return call

    async def _begin(self, ctx: CallContext) -> None:
        """What a call does before answering: the key check, as HTTP providers make it, then the latency."""
        self.key_location.resolve(ctx.credentials, self.name)
        if self.latency_ms:
            await self._wait(self.latency_ms / 1000, ctx)

    def _answer(self, request: ProviderRequest) -> tuple[OutputBlock, ...]:
        call = self._next_call()
        behaviour = self._model_name
        last_text = _last_user_text(request)
        if behaviour in ("echo", "slow"):
            return (Text(f"echo: {last_text}" if last_text else "echo"),)
        if behaviour == "json":
            return (Text(orjson.dumps({"answer": last_text}).decode()),)
        if behaviour == "tool" and request.tools:
            return (ToolCall(id=f"call_{call}", name=request.tools[0].name, arguments="{}"),)
        return (Text(f"Hello from LSD's dummy provider ({behaviour})"),)

    def _raw_request(self, request: ProviderRequest) -> str:
        messages = [
            {"role": m.role, "content": [getattr(b, "text", b.type) for b in m.content]} for m in request.messages
        ]
        return orjson.dumps({"model": self._model_name, "system": request.system, "messages": messages}).decode()

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        await self._begin(ctx)
        return self._respond(request)

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        await self._begin(ctx)
        self._next_call()
        if dimensions is not None and dimensions > MAX_DIMENSIONS:
            raise InvalidRequest.at("dimensions", f"the dummy provider makes at most {MAX_DIMENSIONS} dimensions")
        vectors = tuple(_vector(text, dimensions or DEFAULT_DIMENSIONS) for text in inputs)
        usage = Usage(input_tokens=sum(max(len(text.split()), 1) for text in inputs), output_tokens=None)
        answer = {"usage": _usage_json(usage)}
        return EmbeddingResponse(
            embeddings=vectors,
            usage=usage,
            raw_request=orjson.dumps({"model": self._model_name, "input": list(inputs)}).decode(),
            raw_response=orjson.dumps(answer).decode(),
            cost=self._price(usage, answer),
        )

    def _price(self, usage: Usage, answer: Mapping[str, Any], *, streamed: bool = False) -> float | None:
        return None if self.pricing is None else self.pricing.price(usage, (answer,), streamed=streamed)

    async def _wait(self, seconds: float, ctx: CallContext) -> None:
        """Sleep `seconds`, or fail as an HTTP provider would when the call's timeout comes first."""
        if ctx.timeout_s is None or seconds <= ctx.timeout_s:
            await asyncio.sleep(seconds)
            return
        await asyncio.sleep(ctx.timeout_s)
        raise ProviderTimeout(
            f"dummy provider {self.name!r} timed out after {ctx.timeout_s} s", provider=self.name, kind="timeout"
        )

    def _respond(self, request: ProviderRequest) -> ProviderResponse:
        content = self._answer(request)
        usage = Usage(input_tokens=_count_tokens(request), output_tokens=sum(_block_tokens(b) for b in content))
        answer = {
            "content": [getattr(b, "text", None) or getattr(b, "name", "") for b in content],
            "usage": _usage_json(usage),
        }
        return ProviderResponse(
            content=content,
            usage=usage,
            finish_reason="tool_call" if isinstance(content[0], ToolCall) else "stop",
            raw_request=self._raw_request(request),
            raw_response=orjson.dumps(answer).decode(),
            cost=self._price(usage, answer),
        )

    async def start_batch(self, items: Sequence[tuple[str, ProviderRequest]], ctx: CallContext) -> BatchSubmission:
        answers: list[dict[str, Any]] = []
        sent = {}
        for custom_id, request in items:
            sent[custom_id] = self._raw_request(request)
            try:
                response = self._respond(request)
            except ProviderError as exc:
                answers.append({"custom_id": custom_id, "error": exc.message})
                continue
            block = response.content[0]
            answers.append(
                {
                    "custom_id": custom_id,
                    "text": block.text if isinstance(block, Text) else None,
                    "tool_call": [block.id, block.name, block.arguments] if isinstance(block, ToolCall) else None,
                    "usage": [response.usage.input_tokens, response.usage.output_tokens],
                    "finish_reason": response.finish_reason,
                }
            )
        ready_at_ms = int(time.time() * 1000) + self.batch_delay_ms
        batch_id = f"dummy-batch-{uuid7()}"
        return BatchSubmission(
            provider_batch_id=batch_id,
            provider_status="in_progress",
            raw_request=orjson.dumps({"model": self._model_name, "requests": len(items)}).decode(),
            raw_response=orjson.dumps({"id": batch_id, "status": "in_progress"}).decode(),
            data={"ready_at_ms": ready_at_ms, "answers": answers},
            item_requests=sent,
        )

    async def poll_batch(self, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext) -> BatchPoll:
        if self.latency_ms:  # a slow provider: polls overlap, and processes race to record the results
            await asyncio.sleep(self.latency_ms / 1000)
        if time.time() * 1000 < data.get("ready_at_ms", 0):
            raw = orjson.dumps({"id": provider_batch_id, "status": "in_progress"}).decode()
            return BatchPoll("pending", "in_progress", raw)
        results = tuple(self._batch_item(answer) for answer in data.get("answers", ()))
        raw = orjson.dumps({"id": provider_batch_id, "status": "completed"}).decode()
        return BatchPoll("completed", "completed", raw, results)

    def _batch_item(self, answer: Mapping[str, Any]) -> BatchItemResult:
        custom_id = answer["custom_id"]
        if answer.get("error") is not None:
            error = ProviderError(answer["error"], provider=self.name, retryable=False, kind="batch_item_failed")
            return BatchItemResult(custom_id, error=error)
        call = answer.get("tool_call")
        block: OutputBlock = ToolCall(*call) if call else Text(answer.get("text") or "")
        input_tokens, output_tokens = answer["usage"]
        response = ProviderResponse(
            content=(block,),
            usage=Usage(input_tokens, output_tokens),
            finish_reason=answer.get("finish_reason"),
            raw_request="",
            raw_response=orjson.dumps(answer).decode(),
        )
        return BatchItemResult(custom_id, response=response)

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        response = await self.infer(request, ctx)
        block = response.content[0]
        if isinstance(block, Text):
            words = block.text.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                yield StreamChunk(content=(Text(piece),), raw=piece)
                await asyncio.sleep(0)
        else:
            yield StreamChunk(content=(block,))
        last = {"usage": _usage_json(response.usage)}
        cost = self._price(response.usage, last, streamed=True)
        yield StreamChunk(
            usage=response.usage, finish_reason=response.finish_reason, raw=orjson.dumps(last).decode(), cost=cost
        )


def _without_env(location: KeyLocation) -> KeyLocation:
    """`location` with its `env::` parts as `none`: the dummy sends nothing anywhere, so an unset variable is no
    failure; a `dynamic::` credential stays required."""
    if location.kind == "env":
        return KeyLocation("none")
    if location.fallback is not None:
        return replace(location, fallback=_without_env(location.fallback))
    return location


def _vector(text: str, dimensions: int) -> tuple[float, ...]:
    """A unit vector of `dimensions` numbers in [-1, 1) drawn from SHA-256 blocks of `text`."""
    numbers: list[float] = []
    block = 0
    while len(numbers) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        numbers.extend(n / 2**31 for n in struct.unpack(">8i", digest))
        block += 1
    del numbers[dimensions:]
    norm = math.sqrt(sum(n * n for n in numbers)) or 1.0
    return tuple(n / norm for n in numbers)


def _usage_json(usage: Usage) -> dict[str, int | None]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


def _last_user_text(request: ProviderRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            texts = [b.text for b in message.content if isinstance(b, Text)]
            if texts:
                return " ".join(texts)
    return ""


def _count_tokens(request: ProviderRequest) -> int:
    words = len((request.system or "").split())
    for message in request.messages:
        for block in message.content:
            if isinstance(block, Text):
                words += len(block.text.split())
    return max(words, 1)


def _block_tokens(block: OutputBlock) -> int:
    return len(block.text.split()) if isinstance(block, Text) else 1

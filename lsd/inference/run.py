"""The inference engine: `Engine.infer`, `Engine.stream` and `Engine.embed` are what the API calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from uuid import UUID

import orjson

from lsd.config.model import Config, FunctionConfig, VariantConfig
from lsd.errors import AllAttemptsFailed, NotFound, ProviderError
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.cache import Cache
from lsd.inference.models import Model, ModelTable
from lsd.inference.recording import (
    Attempt,
    InferenceRow,
    attempt_records,
    block_to_json,
    inference_records,
    input_to_json,
    messages_to_json,
    params_to_json,
)
from lsd.inference.request import InferenceRequest
from lsd.inference.routing import call_model, summarise, tries
from lsd.inference.schemas import conforms
from lsd.inference.telemetry import InferenceTelemetry
from lsd.inference.templates import Templates
from lsd.inference.tools import ToolParams, resolve_tools, tool_call_json
from lsd.providers.base import REDACTED, CallContext, is_secret_header
from lsd.providers.transport import Transport
from lsd.ratelimit.limiter import RateLimiter, Reservation
from lsd.ratelimit.rules import LimitRequest
from lsd.records import Record
from lsd.store.database import Database
from lsd.store.recent import InferenceTarget, RecentInferences
from lsd.types import InferenceParams, OutputBlock, ProviderRequest, Text, ToolCall, Usage

DEFAULT_FUNCTION = "tensorzero::default"


class Recorder(Protocol):
    """Where rows go (the store's Writer): `record` honours async_writes; `submit` never waits. With `enabled`
    false (`[gateway.observability] enabled = false`) both drop what they get, so callers may skip building rows."""

    enabled: bool

    async def record(self, records: Sequence[Record]) -> None: ...

    def submit(self, records: Sequence[Record]) -> None: ...


@immutable
class JsonOutput:
    raw: str | None
    parsed: Any | None


@immutable
class InferenceResult:
    inference_id: UUID
    episode_id: UUID
    function_name: str
    variant_name: str
    content: list[dict[str, Any]]  # TensorZero output blocks (chat functions)
    output: JsonOutput | None  # json functions
    usage: Usage
    cost: float | None
    finish_reason: str | None
    model_name: str
    provider_name: str
    cached: bool = False
    original_response: str | None = None


@immutable
class Prepared:
    """Everything about one inference that does not depend on which variant runs."""

    request: InferenceRequest
    function: FunctionConfig
    inference_id: UUID
    episode_id: UUID
    started: float


@dataclass
class Engine:
    """Holds what inference needs for the life of the process; built in the app lifespan."""

    config: Config
    models: ModelTable
    transport: Transport
    recorder: Recorder
    database: Database | None = None
    templates: Templates | None = None
    embedding_models: ModelTable | None = None
    recent: RecentInferences | None = None
    limiter: RateLimiter | None = None
    telemetry: InferenceTelemetry | None = None
    _default_functions: dict[str, FunctionConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.templates is None:
            self.templates = Templates(self.config)

    # -- shared steps ----------------------------------------------------------------------------------------

    def resolve_function(self, request: InferenceRequest) -> FunctionConfig:
        if request.function_name is not None:
            function = self.config.functions.get(request.function_name)
            if function is None:
                raise NotFound(f"unknown function {request.function_name!r}", field="function_name")
            return function
        assert request.model_name is not None
        self.models.get(request.model_name)  # 404 for an unknown model before anything else
        if request.variant_name is not None:
            raise NotFound("variant_name: cannot be used with model_name", field="variant_name")
        function = self._default_functions.get(request.model_name)
        if function is None:
            variant = VariantConfig(
                name=request.model_name,
                type="chat_completion",
                model=request.model_name,
                weight=None,
                params=InferenceParams(),
            )
            function = FunctionConfig(name=DEFAULT_FUNCTION, type="chat", variants={variant.name: variant})
            self._default_functions[request.model_name] = function
        return function

    def prepare(self, request: InferenceRequest) -> Prepared:
        function = self.resolve_function(request)
        return Prepared(request, function, uuid7(), request.episode_id or uuid7(), time.perf_counter())

    def tool_params(self, p: Prepared) -> ToolParams | None:
        r = p.request
        return resolve_tools(
            self.config, p.function, r.allowed_tools, r.additional_tools, r.tool_choice, r.parallel_tool_calls
        )

    def provider_request(
        self, p: Prepared, variant: VariantConfig, tools: ToolParams | None, *, stream: bool
    ) -> ProviderRequest:
        assert self.templates is not None
        system, messages = self.templates.render(p.function, variant, p.request.input)
        return ProviderRequest(
            system=system,
            messages=messages,
            params=variant.params.merged(p.request.params),
            tools=tools.tools if tools else (),
            tool_choice=tools.tool_choice if tools else None,
            parallel_tool_calls=tools.parallel_tool_calls if tools else None,
            output_schema=p.request.output_schema or p.function.output_schema,
            stream=stream,
        )

    def plan(
        self, p: Prepared, tools: ToolParams | None, *, stream: bool
    ) -> Iterator[tuple[VariantConfig, Model, float, ProviderRequest]]:
        """routing.tries with each variant's provider request, rendered once whatever its retries: (variant,
        model, backoff seconds to wait first, request)."""
        rendered: dict[str, ProviderRequest] = {}
        for variant, model, backoff_s in tries(p.function, p.episode_id, p.request.variant_name, self.models):
            if variant.name not in rendered:
                rendered[variant.name] = self.provider_request(p, variant, tools, stream=stream)
            yield variant, model, backoff_s, rendered[variant.name]

    def row(
        self,
        p: Prepared,
        variant: VariantConfig,
        provider_request: ProviderRequest,
        tools: ToolParams | None,
        output: Any,
        usage: Usage,
        cost: float | None,
        finish_reason: str | None,
        *,
        ttft_ms: int | None = None,
        cached: bool = False,
        original_response: str | None = None,
    ) -> InferenceRow:
        r = p.request
        return InferenceRow(
            inference_id=p.inference_id,
            episode_id=p.episode_id,
            function_name=p.function.name,
            function_type=p.function.type,
            variant_name=variant.name,
            input=input_to_json(r.input),
            output=output,
            rendered_input={"system": provider_request.system, "messages": messages_to_json(provider_request.messages)},
            inference_params=params_to_json(provider_request.params),
            tool_params=tools.to_json() if tools else None,
            output_schema=provider_request.output_schema if p.function.type == "json" else None,
            tags=r.tags,
            processing_time_ms=int((time.perf_counter() - p.started) * 1000),
            ttft_ms=ttft_ms,
            usage=usage,
            cost=cost,
            finish_reason=finish_reason,
            cached=cached,
            config_hash=self.config.source_hash,
            api_key_public_id=r.api_key_public_id,
            extra_body=[_without_nulls(asdict(e)) for e in r.extra_body] or None,
            extra_headers=[_redacted(_without_nulls(asdict(e))) for e in r.extra_headers] or None,
            original_response=original_response,
        )

    def call_context(self, request: InferenceRequest) -> CallContext:
        return CallContext(
            transport=self.transport,
            credentials=request.credentials,
            extra_body=request.extra_body,
            extra_headers=request.extra_headers,
        )

    def remember(self, p: Prepared, variant_name: str) -> None:
        """Let feedback target this inference at once, before its rows are committed."""
        if self.recent is not None and not p.request.dryrun:
            self.recent.add(
                InferenceTarget(p.inference_id, p.function.name, p.function.type, variant_name, p.episode_id)
            )

    def output_of(self, p: Prepared, content: Sequence[OutputBlock], tools: ToolParams | None) -> Any:
        """The stored/returned output: chat blocks in TensorZero's shape, or json {raw, parsed}."""
        if p.function.type == "json":
            out = json_output(content, p.request.output_schema or p.function.output_schema)
            return {"raw": out.raw, "parsed": out.parsed}
        return [tool_call_json(b, tools) if isinstance(b, ToolCall) else block_to_json(b) for b in content]

    # -- rate limiting (before any provider call) ---------------------------------------------------------------

    async def admit(self, p: Prepared) -> Reservation | None:
        """Reserve this inference's share of every rate limit that applies, or raise RateLimited (429)."""
        if self.limiter is None or not self.limiter.active:
            return None
        r = p.request
        tokens = token_estimate(p) if self.limiter.needs_tokens else None
        return await self.limiter.acquire(LimitRequest(r.tags, r.api_key_public_id, tokens))

    # -- non-streaming ------------------------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        """Run one inference: pick variants, call providers with retries and fallbacks, record every attempt."""
        p = self.prepare(request)
        tools = self.tool_params(p)
        reservation = await self.admit(p)
        attempts: list[Attempt] = []
        ctx = self.call_context(request)
        cache = Cache(self.database, request.cache) if self.database and request.cache.enabled != "off" else None
        for variant, model, backoff_s, provider_request in self.plan(p, tools, stream=False):
            if backoff_s:
                await asyncio.sleep(backoff_s)
            try:
                response = await call_model(model, variant, provider_request, ctx, attempts, cache)
            except ProviderError:
                continue
            last = attempts[-1]
            settle(reservation, response.usage, response.cost)
            output = self.output_of(p, response.content, tools)
            if not request.dryrun:
                self.remember(p, variant.name)
            if not request.dryrun and self.recorder.enabled:  # no rows built for a gateway that records nothing
                row = self.row(
                    p,
                    variant,
                    provider_request,
                    tools,
                    output,
                    response.usage,
                    response.cost,
                    response.finish_reason,
                    cached=last.cached,
                    original_response=response.raw_response,
                )
                await self.recorder.record(
                    inference_records(row) + attempt_records(p.inference_id, p.function.type, p.function.name, attempts)
                )
            if self.telemetry is not None:  # telemetry: metrics and spans, once per inference
                self.telemetry.finished(
                    p, attempts, usage=response.usage, cost=response.cost, finish_reason=response.finish_reason,
                    request=provider_request, output=output,
                )  # fmt: skip
            return InferenceResult(
                inference_id=p.inference_id,
                episode_id=p.episode_id,
                function_name=p.function.name,
                variant_name=variant.name,
                content=output if p.function.type == "chat" else [],
                output=JsonOutput(output["raw"], output["parsed"]) if p.function.type == "json" else None,
                usage=response.usage,
                cost=response.cost,
                finish_reason=response.finish_reason,
                model_name=model.name,
                provider_name=last.provider_name,
                cached=last.cached,
                original_response=response.raw_response if request.include_original_response else None,
            )
        settle(reservation, Usage(0, 0), 0.0)
        if not request.dryrun:
            await self.recorder.record(attempt_records(p.inference_id, p.function.type, p.function.name, attempts))
        if self.telemetry is not None:  # telemetry
            self.telemetry.finished(p, attempts, error="all attempts failed")
        raise AllAttemptsFailed(summarise(attempts))


def settle(reservation: Reservation | None, usage: Usage, cost: float | None) -> None:
    """Correct a rate-limit reservation by what the call really used (an unknown figure keeps the estimate)."""
    if reservation is not None:
        known = usage.input_tokens is not None or usage.output_tokens is not None
        tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0) if known else None
        reservation.settle(tokens=tokens, cost=cost)


def token_estimate(p: Prepared) -> float | None:
    """Tokens reserved before the call: the prompt (about 4 bytes a token) plus max_tokens, from the request or
    else the largest of the function's variants (None when some variant has none)."""
    max_tokens = p.request.params.max_tokens
    if max_tokens is None:
        limits = [v.params.max_tokens for v in p.function.variants.values()]
        if not limits or any(m is None for m in limits):
            return None
        max_tokens = max(m for m in limits if m is not None)
    return len(orjson.dumps(input_to_json(p.request.input))) / 4 + max_tokens


def _without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def _redacted(header: dict[str, Any]) -> dict[str, Any]:
    """A stored extra_headers entry: a credential's value is replaced by [REDACTED]."""
    if "value" in header and is_secret_header(header["name"], header["value"]):
        return {**header, "value": REDACTED}
    return header


def json_output(content: Sequence[OutputBlock], schema: Mapping[str, Any] | None) -> JsonOutput:
    """`raw` is the model's text; `parsed` is its JSON value, or None when invalid or off-schema."""
    raw = "".join(b.text for b in content if isinstance(b, Text)) or None
    if raw is None:
        return JsonOutput(None, None)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return JsonOutput(raw, None)
    if schema and not conforms(parsed, schema):
        return JsonOutput(raw, None)
    return JsonOutput(raw, parsed)

"""The inference engine: `Engine.infer` and `start_stream` (lsd.inference.streaming) are what the API calls.

Every inference goes the same way: `prepare` (function, ids), `admit` (rate limits), `plan` (variants, models,
retries, the rendered request), `route` (lsd.inference.routing: the one fallback loop), then `Finisher.finish`
(lsd.inference.finish: limits settled, rows recorded, metrics and spans). Results are typed
(lsd.inference.result); the engine knows no wire format.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from uuid import UUID

import orjson

from lsd import ids
from lsd.config.model import Config, FunctionConfig, TimeoutsConfig, VariantConfig
from lsd.errors import AllAttemptsFailed, ConfigError, Forbidden, InvalidRequest, NotFound, UnknownFunction
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.cache import Cache, cache_key
from lsd.inference.dynamic_variant import with_dynamic_variant
from lsd.inference.embeddings import Embedder
from lsd.inference.episode_variants import sticky_variant
from lsd.inference.experiment import NAMESPACE_TAG, Allocations
from lsd.inference.finish import Done, Finisher, Recorder
from lsd.inference.models import Model, ModelTable
from lsd.inference.raw_entries import raw_responses, raw_usage, with_row_ids
from lsd.inference.recording import (
    Attempt,
    InferenceRow,
    inference_records,
    input_to_json,
    messages_to_json,
    output_to_json,
    params_to_json,
)
from lsd.inference.request import InferenceRequest
from lsd.inference.result import InferenceResult, JsonOutput, ResultBlock, typed_output
from lsd.inference.routing import ABANDONED, NON_STREAMING, route, tagged, tries
from lsd.inference.routing import backoff_s as retry_backoff_s
from lsd.inference.telemetry import InferenceTelemetry
from lsd.inference.templates import Templates
from lsd.inference.tools import ToolParams, resolve_tools
from lsd.inference.variant_types import dicl
from lsd.inference.variant_types.runs import VariantRuns, has_other_types
from lsd.inference.workflow_runs import apply_episode_run
from lsd.providers.base import REDACTED, CallContext, Provider, is_secret_header
from lsd.providers.transport import Transport
from lsd.ratelimit.limiter import RateLimiter, Reservation
from lsd.ratelimit.rules import LimitRequest
from lsd.records import Record
from lsd.store.database import Database
from lsd.store.recent import InferenceTarget, RecentInferences
from lsd.types import BodyPatch, HeaderPatch, InferenceParams, OutputBlock, ProviderRequest, ProviderResponse, Usage

__all__ = ["Engine", "InferenceResult", "Prepared", "Recorder"]

DEFAULT_FUNCTION = "tensorzero::default"


@immutable
class Prepared:
    """Everything about one inference that does not depend on which variant runs."""

    request: InferenceRequest
    function: FunctionConfig
    inference_id: UUID
    episode_id: UUID
    started: float
    templates: Templates | None = None  # a dynamic variant's, compiled for this request; else the engine's
    episode_variant: str | None = None  # adaptive experiments: the variant the episode ran before (sticky)

    def done(self, attempts: list[Attempt], reservation: Reservation | None, **outcome: Any) -> Done:
        """What the finishing step gets for this inference, with `outcome` (usage, rows, error...)."""
        r = self.request
        return Done(
            self.inference_id,
            self.function.type,
            self.function.name,
            self.started,
            attempts,
            dryrun=r.dryrun,
            episode_id=self.episode_id,
            reservation=reservation,
            cache_read=r.cache.read,
            tags=r.tags,
            **outcome,
        )


@immutable
class ChatStep:
    """One try in a chat inference's plan (lsd.inference.routing.Step): a variant's model, the backoff to wait
    first, and the provider request rendered for that variant."""

    variant: VariantConfig
    model: Model
    backoff_s: float
    request: ProviderRequest

    @property
    def variant_name(self) -> str:
        return self.variant.name

    @property
    def timeouts(self) -> TimeoutsConfig:
        return self.variant.timeouts

    @property
    def extra_body(self) -> tuple[BodyPatch, ...]:
        return self.variant.extra_body

    @property
    def extra_headers(self) -> tuple[HeaderPatch, ...]:
        return self.variant.extra_headers


@dataclass
class Engine:
    """Holds what inference needs for the life of the process; built in the app lifespan."""

    config: Config
    models: ModelTable
    transport: Transport
    recorder: Recorder
    database: Database | None = None
    templates: Templates | None = None
    recent: RecentInferences | None = None
    limiter: RateLimiter | None = None
    telemetry: InferenceTelemetry | None = None
    embedder: Embedder | None = None  # dicl variants embed their input with it (set by the runtime)
    allocations: Allocations = field(default_factory=Allocations)  # adaptive experiments' stored weights
    finisher: Finisher = field(init=False)
    _default_functions: dict[str, FunctionConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.templates is None:
            self.templates = Templates(self.config)
        self.finisher = Finisher(self.recorder, self.recent, self.telemetry)

    # -- shared steps ----------------------------------------------------------------------------------------

    def resolve_function(self, request: InferenceRequest) -> FunctionConfig:
        if request.function_name is not None:
            function = self.config.functions.get(request.function_name)
            if function is None:
                raise UnknownFunction(request.function_name)
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
        templates = None
        if request.dynamic_variant is not None:  # it replaces the function's variants for this request
            if not self.config.gateway.allow_dynamic_variants:
                raise Forbidden(
                    "internal_dynamic_variant_config: dynamic variants are off on this gateway (their templates and "
                    "model run in it): set gateway.allow_dynamic_variants = true to let callers send them",
                    field="internal_dynamic_variant_config",
                )
            function = with_dynamic_variant(function, request.dynamic_variant)
            templates = self.dynamic_templates(function)
        return Prepared(request, function, uuid7(), request.episode_id or uuid7(), time.perf_counter(), templates)

    async def begin(self, request: InferenceRequest) -> Prepared:
        """`prepare`, once the request's episode has applied its workflow evaluation run (if it is a run's), with
        the variant its episode ran before when the function's experiment is adaptive."""
        p = self.prepare(await apply_episode_run(self.database, request))
        r = p.request
        if r.variant_name is None and r.episode_id is not None:
            sticky = await sticky_variant(self.database, p.function, r.episode_id, r.tags.get(NAMESPACE_TAG))
            if sticky is not None:
                p = replace(p, episode_variant=sticky)
        return p

    def dynamic_templates(self, function: FunctionConfig) -> Templates:
        """The templates of `function` (with its dynamic variant) compiled; a bad one is the request's error."""
        try:
            return Templates(replace(self.config, functions={function.name: function}))
        except ConfigError as exc:
            raise InvalidRequest.at("internal_dynamic_variant_config", "; ".join(exc.errors)) from None

    def tool_params(self, p: Prepared) -> ToolParams | None:
        r = p.request
        return resolve_tools(
            self.config, p.function, r.allowed_tools, r.additional_tools, r.tool_choice, r.parallel_tool_calls
        )

    def provider_request(
        self, p: Prepared, variant: VariantConfig, tools: ToolParams | None, *, stream: bool
    ) -> ProviderRequest:
        templates = p.templates or self.templates
        assert templates is not None
        if variant.dicl is not None:  # no templates: the input as JSON (its examples are added when it runs)
            system, messages = dicl.prompt(variant.dicl, p.request.input)
        else:
            system, messages = templates.render(p.function, variant, p.request.input)
        return ProviderRequest(
            system=system,
            messages=messages,
            params=variant.params.merged(p.request.params),
            tools=tools.tools if tools else (),
            tool_choice=tools.tool_choice if tools else None,
            parallel_tool_calls=tools.parallel_tool_calls if tools else None,
            output_schema=p.request.output_schema or p.function.output_schema,
            stream=stream,
            schema_strict=p.request.output_schema_strict or p.request.output_schema is None,
        )

    def plan(self, p: Prepared, tools: ToolParams | None, *, stream: bool) -> Iterator[ChatStep]:
        """routing.tries as steps, each variant's provider request rendered once whatever its retries."""
        rendered: dict[str, ProviderRequest] = {}
        r = p.request
        allocation, namespace = self.allocations.get(p.function.name), r.tags.get(NAMESPACE_TAG)
        for variant, model, backoff_s in tries(
            p.function, p.episode_id, r.variant_name, self.models, allocation, namespace, p.episode_variant
        ):
            if variant.name not in rendered:
                rendered[variant.name] = self.provider_request(p, variant, tools, stream=stream)
            yield ChatStep(variant, model, backoff_s, rendered[variant.name])

    def variant_steps(self, p: Prepared, variant: VariantConfig, tools: ToolParams | None) -> Iterator[ChatStep]:
        """One variant's tries (its retries), not streamed: a best_of_n_sampling / mixture_of_n candidate."""
        model = self.models.get(variant.model)
        request = self.provider_request(p, variant, tools, stream=False)
        retries = variant.retries
        for retry in range(retries.num_retries + 1):
            yield ChatStep(variant, model, retry_backoff_s(retry, retries.max_delay_s) if retry else 0.0, request)

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
        stored_input, sent = input_to_json(r.input), provider_request.messages
        # Messages no template rewrote hold the input's own blocks: their JSON is the input's, shared, not rebuilt.
        rendered = stored_input["messages"] if sent == r.input.messages else messages_to_json(sent)
        return InferenceRow(
            inference_id=p.inference_id,
            episode_id=p.episode_id,
            function_name=p.function.name,
            function_type=p.function.type,
            variant_name=variant.name,
            input=stored_input,
            output=output,
            rendered_input={"system": provider_request.system, "messages": rendered},
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

    def target(self, p: Prepared, variant_name: str) -> InferenceTarget:
        """What feedback may target at once, before the rows are committed."""
        return InferenceTarget(p.inference_id, p.function.name, p.function.type, variant_name, p.episode_id)

    def output(
        self, p: Prepared, content: Sequence[OutputBlock], tools: ToolParams | None
    ) -> tuple[tuple[ResultBlock, ...], JsonOutput | None]:
        """A provider's answer as the result's typed (content, output)."""
        return typed_output(p.function.type, content, tools, p.request.output_schema or p.function.output_schema)

    # -- rate limiting (before any provider call) ---------------------------------------------------------------

    async def admit(self, p: Prepared) -> Reservation | None:
        """Reserve this inference's share of every rate limit that applies, or raise RateLimited (429)."""
        if self.limiter is None or not self.limiter.active:
            return None
        r = p.request
        tokens = token_estimate(p, self.limiter.config.default_max_tokens) if self.limiter.needs_tokens else None
        return await self.limiter.acquire(LimitRequest(r.tags, r.api_key_public_id, tokens))

    # -- non-streaming ------------------------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        """Run one inference: pick variants, call providers with retries and fallbacks, record every attempt."""
        p = await self.begin(request)
        tools = self.tool_params(p)
        reservation = await self.admit(p)
        attempts: list[Attempt] = []
        cache = Cache(self.database, request.cache) if self.database and request.cache.enabled != "off" else None
        ctx = self.call_context(request)
        runs = VariantRuns(self, p, tools, attempts, ctx) if has_other_types(p.function) else None

        async def call(
            step: ChatStep, provider: Provider, ctx: CallContext
        ) -> tuple[ProviderResponse, bytes | None, bool]:
            """The provider's answer (or the cache's), its cache key, and whether it came from the cache."""
            if runs is not None and step.variant.type != "chat_completion":
                return await runs.call(step, provider, ctx), None, False  # never cached: it is several calls
            key = cache_key(provider, step.request, ctx) if cache is not None else None
            if cache is not None and key is not None and cache.options.read:
                hit = await cache.get(key)
                if hit is not None:
                    return hit, key, True
            return await provider.infer(step.request, ctx), key, False

        try:
            routed = await route(
                self.plan(p, tools, stream=False), NON_STREAMING, call, ctx, attempts, runs.before if runs else None
            )
        except AllAttemptsFailed as exc:
            exc.inference = (ids.text(p.inference_id), p.function.name)  # the access log names it (its rows exist)
            await self.finisher.finish(p.done(attempts, reservation, error="all attempts failed"))
            raise
        except asyncio.CancelledError:
            # Cut by gateway.request_timeout_s (or the client going away): route recorded the abandoned call as a
            # timeout; finish without waiting (the request is being cancelled).
            self.finisher.finish_now(p.done(attempts, reservation, error=ABANDONED))
            raise
        step, (response, key, cached) = routed.step, routed.value
        response = tagged(response, routed.provider.type_name)  # its thoughts go back only to its provider type
        attempts.append(Attempt.succeeded(routed.names, routed.started_ms, routed.t0, response, cached=cached))
        sent = step.request
        if runs is not None and step.variant.type != "chat_completion":
            sent, response = runs.request(step), runs.answer(step.variant, response)
        if cache is not None and key is not None and not cached and cache.options.write:
            await cache.put(key, step.model.name, routed.provider.name, response)
        content, output = self.output(p, response.content, tools)

        def rows() -> list[Record]:
            return inference_records(
                self.row(
                    p, step.variant, sent, tools, output_to_json(content, output), response.usage,
                    response.cost, response.finish_reason, cached=cached, original_response=response.raw_response,
                )
            )  # fmt: skip

        if request.include_raw_usage or request.include_raw_response:
            with_row_ids(attempts)  # the answer names the rows
        await self.finisher.finish(
            p.done(
                attempts, reservation, usage=response.usage, cost=response.cost, finish_reason=response.finish_reason,
                rows=rows, target=self.target(p, step.variant.name), request=sent,
                output=lambda: output_to_json(content, output),
            )
        )  # fmt: skip
        return InferenceResult(
            inference_id=p.inference_id,
            episode_id=p.episode_id,
            function_name=p.function.name,
            function_type=p.function.type,
            variant_name=step.variant.name,
            model_name=step.model.name,
            provider_name=routed.provider.name,
            content=content,
            output=output,
            usage=response.usage,
            cost=response.cost,
            finish_reason=response.finish_reason,
            cached=cached,
            original_response=response.raw_response if request.include_original_response else None,
            attempts=tuple(attempts),
            raw_usage=raw_usage(attempts) if request.include_raw_usage else None,
            raw_response=raw_responses(attempts) if request.include_raw_response else None,
        )


def token_estimate(p: Prepared, default_max_tokens: int | None = None) -> float | None:
    """Tokens reserved before the call: the prompt (about 4 bytes a token) plus max_tokens, from the request, else
    the largest of the function's variants, else `default_max_tokens` ([rate_limiting]; None when none is set)."""
    max_tokens = p.request.params.max_tokens
    if max_tokens is None:
        limits = [v.params.max_tokens for v in p.function.variants.values()]
        if limits and all(m is not None for m in limits):
            max_tokens = max(m for m in limits if m is not None)
        elif default_max_tokens is None:
            return None
        else:
            max_tokens = default_max_tokens
    return len(orjson.dumps(input_to_json(p.request.input))) / 4 + max_tokens


def _without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def _redacted(header: dict[str, Any]) -> dict[str, Any]:
    """A stored extra_headers entry: a credential's value is replaced by [REDACTED]."""
    if "value" in header and is_secret_header(header["name"], header["value"]):
        return {**header, "value": REDACTED}
    return header

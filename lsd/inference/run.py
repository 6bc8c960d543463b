"""The inference engine: `Engine.infer` is the one entry point the API calls for `/inference`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import jsonschema
import orjson

from lsd.config.model import Config, FunctionConfig, VariantConfig
from lsd.errors import AllAttemptsFailed, InvalidRequest, NotFound, ProviderError
from lsd.ids import uuid7
from lsd.inference.models import ModelTable
from lsd.inference.request import InferenceRequest
from lsd.inference.routing import Attempt, backoff_s, call_model, order_variants, summarise
from lsd.providers.base import CallContext
from lsd.providers.transport import Transport
from lsd.records import (
    ChatInferenceDataRecord,
    ChatInferenceRecord,
    JsonInferenceDataRecord,
    JsonInferenceRecord,
    ModelInferenceDataRecord,
    ModelInferenceRecord,
    Record,
)
from lsd.types import InferenceParams, Input, OutputBlock, ProviderRequest, RawText, Text, Usage

DEFAULT_FUNCTION = "tensorzero::default"


class Recorder(Protocol):
    async def record(self, records: list[Record]) -> None: ...


@dataclass(frozen=True, slots=True)
class JsonOutput:
    raw: str | None
    parsed: Any | None


@dataclass(frozen=True, slots=True)
class InferenceResult:
    inference_id: UUID
    episode_id: UUID
    variant_name: str
    function_type: str
    content: tuple[OutputBlock, ...]
    output: JsonOutput | None
    usage: Usage
    cost: float | None
    finish_reason: str | None
    model_name: str
    provider_name: str
    original_response: str | None = None
    provider_latency_ms: int = 0


@dataclass
class Engine:
    """Holds what inference needs for the life of the process; built in the app lifespan."""

    config: Config
    models: ModelTable
    transport: Transport
    recorder: Recorder
    api_key_public_id: str | None = None
    _default_functions: dict[str, FunctionConfig] = field(default_factory=dict)

    def resolve_function(self, request: InferenceRequest) -> FunctionConfig:
        if request.function_name is not None:
            function = self.config.functions.get(request.function_name)
            if function is None:
                raise NotFound(f"unknown function {request.function_name!r}", field="function_name")
            return function
        assert request.model_name is not None
        self.models.get(request.model_name)  # 404 for an unknown model before anything else
        if request.variant_name is not None:
            raise InvalidRequest("variant_name: cannot be used with model_name", field="variant_name")
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

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        """Run one non-streaming inference: pick variants, call providers with retries and fallbacks, record."""
        function = self.resolve_function(request)
        inference_id = uuid7()
        episode_id = request.episode_id or uuid7()
        started = time.perf_counter()
        attempts: list[Attempt] = []
        ctx = CallContext(transport=self.transport, credentials=request.credentials)
        for variant in order_variants(function, episode_id, request.variant_name):
            model = self.models.get(variant.model)
            params = variant.params.merged(request.params)
            provider_request = build_provider_request(request.input, params, request.output_schema, function)
            for retry in range(variant.retries.num_retries + 1):
                if retry:
                    await asyncio.sleep(backoff_s(retry, variant.retries.max_delay_s))
                try:
                    provider, response = await call_model(model, variant.name, provider_request, ctx, attempts)
                except InvalidRequest:
                    raise
                except ProviderError:
                    continue
                result = InferenceResult(
                    inference_id=inference_id,
                    episode_id=episode_id,
                    variant_name=variant.name,
                    function_type=function.type,
                    content=response.content,
                    output=json_output(response.content, request.output_schema or function.output_schema)
                    if function.type == "json"
                    else None,
                    usage=response.usage,
                    cost=response.cost,
                    finish_reason=response.finish_reason,
                    model_name=model.name,
                    provider_name=provider.name,
                    original_response=response.raw_response if request.include_original_response else None,
                    provider_latency_ms=sum(a.latency_ms for a in attempts),
                )
                if not request.dryrun:
                    elapsed_ms = int((time.perf_counter() - started) * 1000)
                    await self.recorder.record(
                        self._records(request, function, params, provider_request, result, attempts, elapsed_ms)
                    )
                return result
        if not request.dryrun:
            await self.recorder.record(self._attempt_records(inference_id, function, attempts))
        raise AllAttemptsFailed(summarise(attempts))

    def _records(
        self,
        request: InferenceRequest,
        function: FunctionConfig,
        params: InferenceParams,
        provider_request: ProviderRequest,
        result: InferenceResult,
        attempts: list[Attempt],
        elapsed_ms: int,
    ) -> list[Record]:
        now = datetime.fromtimestamp((result.inference_id.int >> 80) / 1000, tz=UTC)
        input_json = input_to_json(request.input)
        params_json = params_to_json(params)
        rendered = {
            "system": provider_request.system,
            "messages": [
                {"role": m.role, "content": [block_to_json(b) for b in m.content]} for m in provider_request.messages
            ],
        }
        common: dict[str, Any] = {
            "id": result.inference_id,
            "created_at": now,
            "function_name": function.name,
            "variant_name": result.variant_name,
            "episode_id": result.episode_id,
            "input": input_json,
            "inference_params": params_json,
            "tags": dict(request.tags),
            "processing_time_ms": elapsed_ms,
            "ttft_ms": None,
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "cost": result.cost,
            "finish_reason": result.finish_reason,
            "cached": False,
            "config_hash": self.config.source_hash,
            "api_key_public_id": self.api_key_public_id,
        }
        data: dict[str, Any] = {
            "inference_id": result.inference_id,
            "created_at": now,
            "rendered_input": rendered,
            "extra_body": list(request.extra_body) or None,
            "extra_headers": list(request.extra_headers) or None,
            "original_response": attempts[-1].response.raw_response if attempts[-1].response else None,
        }
        records: list[Record]
        if result.output is not None:
            records = [
                JsonInferenceRecord(
                    output={"raw": result.output.raw, "parsed": result.output.parsed},
                    output_schema=request.output_schema or function.output_schema,
                    **common,
                ),
                JsonInferenceDataRecord(**data),
            ]
        else:
            records = [
                ChatInferenceRecord(output=[block_to_json(b) for b in result.content], tool_params=None, **common),
                ChatInferenceDataRecord(**data),
            ]
        records.extend(self._attempt_records(result.inference_id, function, attempts))
        return records

    def _attempt_records(self, inference_id: UUID, function: FunctionConfig, attempts: list[Attempt]) -> list[Record]:
        records: list[Record] = []
        for number, attempt in enumerate(attempts, start=1):
            model_inference_id = uuid7(attempt.started_ms)
            created = datetime.fromtimestamp(attempt.started_ms / 1000, tz=UTC)
            response, error = attempt.response, attempt.error
            records.append(
                ModelInferenceRecord(
                    id=model_inference_id,
                    created_at=created,
                    inference_id=inference_id,
                    inference_kind=function.type,
                    attempt=number,
                    function_name=function.name,
                    variant_name=attempt.variant_name,
                    model_name=attempt.model_name,
                    model_provider_name=attempt.provider.name,
                    provider_type=attempt.provider.type_name,
                    status="ok" if response else "error",
                    error_kind=error.kind if error else None,
                    error=error.message if error else None,
                    latency_ms=attempt.latency_ms,
                    ttft_ms=None,
                    input_tokens=response.usage.input_tokens if response else None,
                    output_tokens=response.usage.output_tokens if response else None,
                    cost=response.cost if response else None,
                    finish_reason=response.finish_reason if response else None,
                    cached=False,
                    streamed=False,
                )
            )
            records.append(
                ModelInferenceDataRecord(
                    model_inference_id=model_inference_id,
                    created_at=created,
                    inference_id=inference_id,
                    raw_request=response.raw_request if response else None,
                    raw_response=response.raw_response if response else None,
                    request_headers=None,
                    api_key_sha256=None,
                )
            )
        return records


def build_provider_request(
    input: Input, params: InferenceParams, output_schema: Mapping[str, Any] | None, function: FunctionConfig
) -> ProviderRequest:
    """The provider's view of the input: system as text, blocks as given (templates come with issue #3)."""
    system = (
        input.system if isinstance(input.system, str) or input.system is None else orjson.dumps(input.system).decode()
    )
    messages = tuple(
        type(m)(role=m.role, content=tuple(Text(b.value) if isinstance(b, RawText) else b for b in m.content))
        for m in input.messages
    )
    return ProviderRequest(
        system=system,
        messages=messages,
        params=params,
        output_schema=output_schema or function.output_schema,
    )


def json_output(content: tuple[OutputBlock, ...], schema: Mapping[str, Any] | None) -> JsonOutput:
    """`raw` is the model's text; `parsed` is its JSON value, or None when invalid or off-schema."""
    raw = "".join(b.text for b in content if isinstance(b, Text)) or None
    if raw is None:
        return JsonOutput(None, None)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return JsonOutput(raw, None)
    if schema:
        try:
            jsonschema.validate(parsed, schema)
        except jsonschema.ValidationError:
            return JsonOutput(raw, None)
    return JsonOutput(raw, parsed)


def block_to_json(block: Any) -> dict[str, Any]:
    """A content block as TensorZero's JSON (type first, None fields dropped)."""
    out: dict[str, Any] = {"type": block.type}
    for name in block.__dataclass_fields__:
        if name != "type":
            value = getattr(block, name)
            if value is not None:
                out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


def input_to_json(input: Input) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messages": [{"role": m.role, "content": [block_to_json(b) for b in m.content]} for m in input.messages]
    }
    if input.system is not None:
        out["system"] = input.system if isinstance(input.system, str) else dict(input.system)
    return out


def params_to_json(params: InferenceParams) -> dict[str, Any]:
    values = {k: getattr(params, k) for k in params.__dataclass_fields__ if getattr(params, k) is not None}
    return {"chat_completion": values}

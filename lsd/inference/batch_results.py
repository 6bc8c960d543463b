"""A finished provider batch as rows: each result becomes a chat/json inference plus its model inference.

The rows are those a live inference writes, built from what was stored at submission (input, rendered
messages, params, tool params, output schema, tags), so feedback, statistics and `list_inferences` treat batch
inferences like any other. Differences: `processing_time_ms` is null (the wait is the provider's queue, not
work), the model inference's `inference_kind` is `batch` with a null latency, and its cost is at the provider's
batch price. An input the provider failed (or left without a result) gets only an error model inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lsd.errors import ProviderError
from lsd.ids import uuid7
from lsd.inference.recording import InferenceRow, inference_records, money, output_to_json, storable
from lsd.inference.result import typed_output
from lsd.inference.tools import ToolParams
from lsd.providers.base import BatchPoll
from lsd.records import ModelInferenceDataRecord, ModelInferenceRecord, Record
from lsd.store.batch import BatchItemRow, BatchRow
from lsd.types import ProviderResponse, ToolSpec, Usage


def tool_params_from_json(value: Mapping[str, Any] | None) -> ToolParams | None:
    """ToolParams as stored by ToolParams.to_json (enough to check the tool calls of a result)."""
    if not value:
        return None
    tools = tuple(
        ToolSpec(t["name"], t.get("description") or "", t.get("parameters") or {}, bool(t.get("strict")))
        for t in value.get("tools_available") or ()
    )
    return ToolParams(tools, value.get("tool_choice") or "auto", value.get("parallel_tool_calls"))


def output_json(function_type: str, item: BatchItemRow, response: ProviderResponse) -> Any:
    """The stored output of a result: typed and checked as a live inference's is (lsd.inference.result)."""
    tools = tool_params_from_json(item.tool_params) if function_type == "chat" else None
    return output_to_json(*typed_output(function_type, response.content, tools, item.output_schema))


def result_records(
    row: BatchRow, items: Sequence[BatchItemRow], state: BatchPoll, config_hash: str | None
) -> tuple[list[Record], dict[UUID, str]]:
    """The rows for every result of `state`, and the error of each input without a usable result."""
    by_id = {r.custom_id: r for r in state.results}
    records: list[Record] = []
    errors: dict[UUID, str] = {}
    for item in items:
        result = by_id.get(str(item.inference_id))
        response = result.response if result is not None else None
        if response is None:
            error = result.error if result is not None and result.error is not None else None
            if error is None:
                error = ProviderError(
                    f"the provider batch ended ({state.provider_status}) without a result for this input",
                    provider=row.model_provider_name,
                    retryable=False,
                    kind="batch_item_missing",
                )
            errors[item.inference_id] = error.message
            records.extend(_model_records(row, item, None, error))
            continue
        inference = InferenceRow(
            inference_id=item.inference_id,
            episode_id=item.episode_id,
            function_name=item.function_name,
            function_type=row.function_type,
            variant_name=item.variant_name,
            input=item.input,
            output=output_json(row.function_type, item, response),
            rendered_input=item.rendered_input,
            inference_params=item.inference_params,
            tool_params=item.tool_params,
            output_schema=item.output_schema,
            tags=item.tags or {},
            processing_time_ms=None,
            ttft_ms=None,
            usage=response.usage,
            cost=response.cost,
            finish_reason=response.finish_reason,
            cached=False,
            config_hash=config_hash,
            api_key_public_id=None,
            extra_body=None,
            extra_headers=None,
            original_response=response.raw_response,
        )
        records.extend(inference_records(inference))
        records.extend(_model_records(row, item, response, None))
    return records, errors


def _model_records(
    row: BatchRow, item: BatchItemRow, response: ProviderResponse | None, error: ProviderError | None
) -> list[Record]:
    model_inference_id = uuid7()
    created = datetime.fromtimestamp((model_inference_id.int >> 80) / 1000, tz=UTC)
    usage = storable(response.usage) if response is not None else Usage()
    return [
        ModelInferenceRecord(
            id=model_inference_id,
            created_at=created,
            inference_id=item.inference_id,
            inference_kind="batch",
            attempt=1,
            function_name=item.function_name,
            variant_name=item.variant_name,
            model_name=row.model_name,
            model_provider_name=row.model_provider_name,
            provider_type=row.provider_type,
            status="error" if error else "ok",
            error_kind=error.kind if error else None,
            error=error.message if error else None,
            latency_ms=None,
            ttft_ms=None,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=money(response.cost) if response is not None else None,
            finish_reason=response.finish_reason if response is not None else None,
            cached=False,
            streamed=False,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_write_input_tokens=usage.cache_write_input_tokens,
        ),
        ModelInferenceDataRecord(
            model_inference_id=model_inference_id,
            created_at=created,
            inference_id=item.inference_id,
            raw_request=item.raw_request,
            raw_response=response.raw_response if response is not None else error.raw_response if error else None,
            request_headers=None,
            api_key_sha256=None,
        ),
    ]

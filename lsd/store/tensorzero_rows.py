"""TensorZero's PostgreSQL tables as `lsd import tensorzero` reads them, and how each row becomes LSD records.

The mapping per table is described in lsd.store.tensorzero_import's docstring and docs/migrating-from-tensorzero.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson

from lsd.ids import timestamp_of
from lsd.records import (
    BooleanMetricFeedbackRecord,
    ChatInferenceDataRecord,
    ChatInferenceRecord,
    CommentFeedbackRecord,
    DemonstrationFeedbackRecord,
    FloatMetricFeedbackRecord,
    JsonInferenceDataRecord,
    JsonInferenceRecord,
    ModelInferenceDataRecord,
    ModelInferenceRecord,
    Record,
)

API_KEY_TAG = "tensorzero::api_key_public_id"
UNKNOWN_PROVIDER_TYPE = "unknown"
MAX_ATTEMPT = 32767  # model_inferences.attempt is a smallint
# Finish reasons of TensorZero's early Postgres drafts, in LSD's words.
FINISH_REASONS = {"tool_calls": "tool_call", "other": "unknown"}

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SourceTable:
    """A source table: its columns wanted (aliased as written here), the ones without which it is not
    TensorZero's, and the `_data` table that holds its payload in the split layout."""

    table: str
    columns: tuple[str, ...]
    required: frozenset[str]
    data_table: str | None = None


# The columns without which a table is not TensorZero's chat_inferences / json_inferences.
INFERENCE_REQUIRED = frozenset({"id", "function_name", "variant_name", "episode_id", "input", "output"})
CHAT = SourceTable(
    "chat_inferences",
    (
        "id",
        "function_name",
        "variant_name",
        "episode_id",
        "input",
        "output",
        "inference_params",
        "tags",
        "processing_time_ms",
        "ttft_ms",
        "extra_body",
        "dynamic_tools",
        "dynamic_provider_tools",
        "allowed_tools",
        "tool_choice",
        "parallel_tool_calls",
        "error",
    ),
    INFERENCE_REQUIRED,
    "chat_inference_data",
)
JSON = SourceTable(
    "json_inferences",
    (
        "id",
        "function_name",
        "variant_name",
        "episode_id",
        "input",
        "output",
        "output_schema",
        "inference_params",
        "tags",
        "processing_time_ms",
        "ttft_ms",
        "extra_body",
        "error",
    ),
    INFERENCE_REQUIRED,
    "json_inference_data",
)
MODEL = SourceTable(
    "model_inferences",
    (
        "id",
        "inference_id",
        "model_name",
        "model_provider_name",
        "input_tokens",
        "output_tokens",
        "response_time_ms",
        "ttft_ms",
        "cached",
        "finish_reason",
        "cost",
        "error",
        "raw_request",
        "raw_response",
    ),
    frozenset({"id", "inference_id", "model_name", "model_provider_name"}),
    "model_inference_data",
)
BOOLEAN = SourceTable(
    "boolean_metric_feedback",
    ("id", "target_id", "metric_name", "value", "tags"),
    frozenset({"id", "target_id", "metric_name", "value"}),
)
FLOAT = SourceTable(
    "float_metric_feedback",
    ("id", "target_id", "metric_name", "value", "tags"),
    frozenset({"id", "target_id", "metric_name", "value"}),
)
COMMENT = SourceTable(
    "comment_feedback",
    ("id", "target_id", "target_type", "value", "tags"),
    frozenset({"id", "target_id", "target_type", "value"}),
)
DEMONSTRATION = SourceTable(
    "demonstration_feedback",
    ("id", "inference_id", "value", "tags"),
    frozenset({"id", "inference_id", "value"}),
)
SOURCES = (CHAT, JSON, MODEL, BOOLEAN, FLOAT, COMMENT, DEMONSTRATION)


@dataclass(frozen=True, slots=True)
class SourceUsage:
    """What an inference's model inferences say about it."""

    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None
    finish_reason: str | None
    cached: bool
    rendered_input: Any
    original_response: str | None


@dataclass(frozen=True, slots=True)
class SourceTarget:
    """The inference a model inference or a feedback row refers to, as the source has it."""

    kind: Literal["chat", "json"]
    function_name: str
    variant_name: str


def inference_records(source: SourceTable, row: Row, usage: SourceUsage | None) -> list[Record]:
    inference_id: uuid.UUID = row["id"]
    created_at = timestamp_of(inference_id)
    tags = json_value(row["tags"]) or {}
    extra_body = json_value(row["extra_body"])
    common: dict[str, Any] = {
        "id": inference_id,
        "created_at": created_at,
        "function_name": row["function_name"],
        "variant_name": row["variant_name"],
        "episode_id": row["episode_id"],
        "input": json_value(row["input"]),
        "output": json_value(row["output"]),
        "inference_params": json_value(row["inference_params"]) or {},
        "tags": tags,
        "processing_time_ms": row["processing_time_ms"],
        "ttft_ms": row["ttft_ms"],
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "cost": usage.cost if usage else None,
        "finish_reason": usage.finish_reason if usage else None,
        "cached": usage.cached if usage else False,
        "config_hash": None,
        "api_key_public_id": tags.get(API_KEY_TAG) if isinstance(tags, dict) else None,
    }
    data: dict[str, Any] = {
        "inference_id": inference_id,
        "created_at": created_at,
        "rendered_input": usage.rendered_input if usage else None,
        "extra_body": extra_body or None,
        "extra_headers": None,
        "original_response": usage.original_response if usage else None,
    }
    if source is CHAT:
        return [ChatInferenceRecord(tool_params=tool_params(row), **common), ChatInferenceDataRecord(**data)]
    return [
        JsonInferenceRecord(output_schema=json_value(row["output_schema"]), **common),
        JsonInferenceDataRecord(**data),
    ]


def tool_params(row: Row) -> dict[str, Any] | None:
    """LSD's tool_params from TensorZero's columns: `tools_available` (what LSD's engine reads), `tool_choice` and
    `parallel_tool_calls`, plus the keys of TensorZero's stored inference that list_inferences echoes:
    `additional_tools` (its dynamic tools), `allowed_tools` (names: TensorZero stores a config tool by name only)
    and `provider_tools`. NULL when the inference was offered no tools and set no tool choice."""
    tools = [tool_json(t) for t in json_list(row["dynamic_tools"])]
    tools = [t for t in tools if t is not None]
    provider_tools = json_list(row["dynamic_provider_tools"])
    allowed = json_value(row["allowed_tools"])
    names = allowed.get("tools") if isinstance(allowed, dict) else None
    choice = json_value(row["tool_choice"])
    parallel = row["parallel_tool_calls"]
    if not tools and not provider_tools and not names and choice is None and parallel is None:
        return None
    return {
        "tools_available": tools,
        "tool_choice": choice if choice is not None else "auto",
        "parallel_tool_calls": parallel,
        "additional_tools": tools or None,
        "allowed_tools": list(names) if isinstance(names, list) else None,
        "provider_tools": provider_tools,
    }


def tool_json(value: Any) -> dict[str, Any] | None:
    tool = json_value(value)
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        return None
    return {
        "name": tool["name"],
        "description": tool.get("description") or "",
        "parameters": tool.get("parameters") or {},
        "strict": bool(tool.get("strict")),
    }


def json_list(value: Any) -> list[Any]:
    """A JSON array column (jsonb, or a text[] of JSON texts in earlier releases) as a list; [] for NULL."""
    items = json_value(value)
    return [json_value(item) for item in items] if isinstance(items, list) else []


def model_records(row: Row, target: SourceTarget | None) -> list[Record]:
    model_inference_id: uuid.UUID = row["id"]
    created_at = timestamp_of(model_inference_id)
    error = row["error"]
    return [
        ModelInferenceRecord(
            id=model_inference_id,
            created_at=created_at,
            inference_id=row["inference_id"],
            inference_kind=target.kind if target else "chat",
            attempt=min(int(row["attempt"] or 1), MAX_ATTEMPT),
            function_name=target.function_name if target else None,
            variant_name=target.variant_name if target else None,
            model_name=row["model_name"],
            model_provider_name=row["model_provider_name"],
            provider_type=UNKNOWN_PROVIDER_TYPE,
            status="ok" if error is None else "error",
            error_kind=None if error is None else "provider_error",
            error=error,
            latency_ms=row["response_time_ms"],
            ttft_ms=row["ttft_ms"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cost=row["cost"],
            finish_reason=finish_reason_of(row["finish_reason"]),
            cached=bool(row["cached"]),
            streamed=row["ttft_ms"] is not None,
        ),
        ModelInferenceDataRecord(
            model_inference_id=model_inference_id,
            created_at=created_at,
            inference_id=row["inference_id"],
            raw_request=row["raw_request"],
            raw_response=row["raw_response"],
            request_headers=None,
            api_key_sha256=None,
        ),
    ]


def metric_record(source: SourceTable, row: Row, targets_inference: bool) -> Record:
    tags = json_value(row["tags"]) or {}
    common: dict[str, Any] = {
        "id": row["id"],
        "created_at": timestamp_of(row["id"]),
        "target_id": row["target_id"],
        "target_level": "inference" if targets_inference else "episode",
        "metric_name": row["metric_name"],
        "tags": tags,
        "api_key_public_id": tags.get(API_KEY_TAG) if isinstance(tags, dict) else None,
    }
    if source is BOOLEAN:
        return BooleanMetricFeedbackRecord(value=bool(row["value"]), **common)
    return FloatMetricFeedbackRecord(value=float(row["value"]), **common)


def comment_record(row: Row) -> Record:
    tags = json_value(row["tags"]) or {}
    return CommentFeedbackRecord(
        id=row["id"],
        created_at=timestamp_of(row["id"]),
        target_id=row["target_id"],
        target_level="episode" if row["target_type"] == "episode" else "inference",
        value=row["value"],
        tags=tags,
        api_key_public_id=tags.get(API_KEY_TAG) if isinstance(tags, dict) else None,
    )


def demonstration_record(row: Row) -> Record:
    tags = json_value(row["tags"]) or {}
    return DemonstrationFeedbackRecord(
        id=row["id"],
        created_at=timestamp_of(row["id"]),
        inference_id=row["inference_id"],
        value=json_value(row["value"]),
        tags=tags,
        api_key_public_id=tags.get(API_KEY_TAG) if isinstance(tags, dict) else None,
    )


def json_value(value: Any) -> Any:
    """A JSON value as stored: jsonb arrives decoded; a text column (earlier releases) or a jsonb string holding
    JSON text is decoded here; text that is not JSON stays text."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def int_value(value: Any) -> int | None:
    return None if value is None else int(value)


def finish_reason_of(value: str | None) -> str | None:
    return None if value is None else FINISH_REASONS.get(value, value)

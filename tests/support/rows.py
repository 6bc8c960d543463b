"""Synthetic observability rows for store tests: inferences, attempts and feedback written with plain INSERTs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from lsd.ids import timestamp_of, uuid7


def ms_of(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def inference(
    conn: psycopg.Connection[Any],
    *,
    kind: str = "chat",
    function_name: str = "f",
    variant_name: str = "a",
    id: UUID | None = None,
    episode_id: UUID | None = None,
    tags: dict[str, str] | None = None,
    input_tokens: int | None = 10,
    output_tokens: int | None = 5,
    cost: float | None = 0.25,
    processing_time_ms: int | None = 100,
    output: Any = None,
    extra_body: Any = None,
    api_key_public_id: str | None = None,
) -> UUID:
    """One chat or json inference row and its *_inference_data row; returns the id."""
    id = id or uuid7()
    created = timestamp_of(id)
    if output is None:
        output = [{"type": "text", "text": "hi"}] if kind == "chat" else {"raw": '{"a":1}', "parsed": {"a": 1}}
    extra = "tool_params" if kind == "chat" else "output_schema"
    conn.execute(
        f"INSERT INTO {kind}_inferences (id, created_at, function_name, variant_name, episode_id, input, output, "
        f"{extra}, inference_params, tags, processing_time_ms, ttft_ms, input_tokens, output_tokens, cost, "
        "api_key_public_id) VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, NULL, %s, %s, %s, %s)",
        (
            id,
            created,
            function_name,
            variant_name,
            episode_id or uuid7(),
            Jsonb({"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}),
            Jsonb(output),
            Jsonb({"chat_completion": {}}),
            Jsonb(tags or {}),
            processing_time_ms,
            input_tokens,
            output_tokens,
            cost,
            api_key_public_id,
        ),
    )
    conn.execute(
        f"INSERT INTO {kind}_inference_data (inference_id, created_at, extra_body) VALUES (%s, %s, %s)",
        (id, created, Jsonb(extra_body) if extra_body is not None else None),
    )
    return id


def attempt(
    conn: psycopg.Connection[Any],
    inference_id: UUID,
    *,
    model_name: str = "m",
    provider: str = "p",
    status: str = "ok",
    latency_ms: int | None = 120,
    function_name: str | None = "f",
    variant_name: str | None = "a",
    id: UUID | None = None,
    attempt_number: int = 1,
    ttft_ms: int | None = None,
    tags: dict[str, str] | None = None,
) -> UUID:
    id = id or uuid7(ms_of(timestamp_of(inference_id)))
    conn.execute(
        "INSERT INTO model_inferences (id, created_at, inference_id, inference_kind, attempt, function_name, "
        "variant_name, model_name, model_provider_name, provider_type, status, error, latency_ms, input_tokens, "
        f"output_tokens, cost, ttft_ms{', tags' if tags is not None else ''}) "
        "VALUES (%s, %s, %s, 'chat', %s, %s, %s, %s, %s, 'dummy', %s, %s, %s, %s, %s, %s, %s"
        f"{', %s' if tags is not None else ''})",
        (
            id,
            timestamp_of(id),
            inference_id,
            attempt_number,
            function_name,
            variant_name,
            model_name,
            provider,
            status,
            None if status == "ok" else "boom",
            latency_ms,
            10 if status == "ok" else None,
            5 if status == "ok" else None,
            0.5 if status == "ok" else None,
            ttft_ms,
            *((Jsonb(tags),) if tags is not None else ()),  # the column of schema version 19
        ),
    )
    conn.execute(
        "INSERT INTO model_inference_data (model_inference_id, created_at, inference_id, raw_request, raw_response) "
        "VALUES (%s, %s, %s, 'req', 'resp')",
        (id, timestamp_of(id), inference_id),
    )
    return id


def feedback(
    conn: psycopg.Connection[Any],
    target_id: UUID,
    metric_name: str,
    value: bool | float,
    *,
    level: str = "inference",
    id: UUID | None = None,
) -> UUID:
    table = "boolean_metric_feedback" if isinstance(value, bool) else "float_metric_feedback"
    id = id or uuid7()
    conn.execute(
        f"INSERT INTO {table} (id, created_at, target_id, target_level, metric_name, value) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (id, timestamp_of(id), target_id, level, metric_name, value),
    )
    return id


def demonstration(conn: psycopg.Connection[Any], inference_id: UUID, value: Any, *, id: UUID | None = None) -> UUID:
    id = id or uuid7()
    conn.execute(
        "INSERT INTO demonstration_feedback (id, created_at, inference_id, value) VALUES (%s, %s, %s, %s)",
        (id, timestamp_of(id), inference_id, Jsonb(value)),
    )
    return id


def now() -> datetime:
    return datetime.now(tz=UTC)

"""TensorZero's wire format: every response and error body of LSD's native API, built from the engine's typed
results (lsd.inference.result) and the services' value objects. The only module that knows these shapes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson

from lsd import ids
from lsd.errors import (
    AllAttemptsFailed,
    AttemptFailure,
    BatchNotFound,
    ConfigError,
    DatabaseUnavailable,
    InternalError,
    InvalidOpenAIRequest,
    InvalidRequest,
    LsdError,
    NotFound,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RequestTimeout,
    SchemaValidation,
    Unauthorized,
    UnknownEmbeddingModel,
    UnknownFunction,
    UnknownMetric,
    UnknownModel,
    UnknownVariant,
)
from lsd.inference.batch import BatchSubmitted, BatchView
from lsd.inference.listing import InferencePage
from lsd.inference.raw_entries import entries_json
from lsd.inference.recording import block_to_json
from lsd.inference.result import InferenceResult
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.store.batch import StoredResult
from lsd.store.queries import StoredRow
from lsd.types import OutputBlock, Text, Thought, ToolCall, Usage

# -- inference -------------------------------------------------------------------------------------------------


def usage_json(usage: Usage, cost: float | None) -> dict[str, Any]:
    """TensorZero's usage: the cache-token keys only when the provider reported them."""
    out: dict[str, Any] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    if usage.cache_read_input_tokens is not None:
        out["provider_cache_read_input_tokens"] = usage.cache_read_input_tokens
    if usage.cache_write_input_tokens is not None:
        out["provider_cache_write_input_tokens"] = usage.cache_write_input_tokens
    out["cost"] = cost
    return out


def inference_json(result: InferenceResult) -> dict[str, Any]:
    """A non-streamed `/inference` answer."""
    body: dict[str, Any] = {
        "inference_id": ids.text(result.inference_id),
        "episode_id": ids.text(result.episode_id),
        "variant_name": result.variant_name,
    }
    if result.output is not None:
        body["output"] = {"raw": result.output.raw, "parsed": result.output.parsed}
    else:
        body["content"] = [block_to_json(b) for b in result.content]
    body["usage"] = usage_json(result.usage, result.cost)
    if result.finish_reason is not None:
        body["finish_reason"] = result.finish_reason
    if result.original_response is not None:
        body["original_response"] = result.original_response
    if result.raw_usage is not None:
        body["raw_usage"] = entries_json(result.raw_usage)
    if result.raw_response is not None:
        body["raw_response"] = entries_json(result.raw_response)
    return body


def delta_json(block: OutputBlock) -> dict[str, Any]:
    """A streamed content delta in TensorZero's chunk shape."""
    if isinstance(block, Text):
        return {"type": "text", "id": "0", "text": block.text}
    if isinstance(block, ToolCall):
        return {"type": "tool_call", "id": block.id, "raw_name": block.name, "raw_arguments": block.arguments}
    if isinstance(block, Thought):
        return {"type": "thought", "id": "0", "text": block.text or "", "signature": block.signature}
    return {**block_to_json(block), "id": "0"}


def chunk_head(stream: InferenceStream) -> dict[str, Any]:
    """The fields every chunk of `stream` starts with (made once per stream, copied into each chunk)."""
    return {
        "inference_id": ids.text(stream.inference_id),
        "episode_id": ids.text(stream.episode_id),
        "variant_name": stream.variant_name,
    }


def chunk_json(
    stream: InferenceStream,
    event: StreamEvent,
    *,
    with_error_json: bool = False,
    head: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One streamed `/inference` chunk, or its error event (`{"error": message, "error_json"?, ...}`, after which
    the stream may go on). The last chunk has no content (`content: []`, or `raw: ""` for a JSON function), the
    inference's usage with its cost, and the finish reason. `head`: `chunk_head(stream)`, made once."""
    if event.error is not None:
        return error_object(event.error, with_error_json=with_error_json)
    chunk = dict(head) if head is not None else chunk_head(stream)
    if stream.function_type == "json":
        chunk["raw"] = "".join(b.text for b in event.content if isinstance(b, Text))
    else:
        chunk["content"] = [delta_json(b) for b in event.content]
    if event.usage is not None:
        chunk["usage"] = usage_json(event.usage, event.cost)
    if event.raw_usage is not None:
        chunk["raw_usage"] = entries_json(event.raw_usage)
    if event.raw_response is not None:
        chunk["raw_response"] = entries_json(event.raw_response)
    if event.finish_reason is not None:
        chunk["finish_reason"] = event.finish_reason
    if event.raw_chunk is not None:
        chunk["raw_chunk"] = event.raw_chunk
    return chunk


class ChunkEncoder:
    """The SSE line (`data: <JSON>\\n\\n`) of each `chunk_json` of one stream, and whether it only trails the
    content: the `encode` of its JsonEventStream. A content chunk is its head encoded once with the deltas after it
    (a text delta's text is the only value encoded per token), byte for byte what orjson makes of `chunk_json`."""

    __slots__ = ("_head", "_json", "_prefix", "_raw", "_stream", "_text_prefix", "_thought", "_with_error_json")

    def __init__(self, stream: InferenceStream, *, with_error_json: bool = False) -> None:
        self._stream = stream
        self._with_error_json = with_error_json
        self._head = chunk_head(stream)
        self._json = stream.function_type == "json"
        self._prefix = b"data: " + orjson.dumps(self._head)[:-1] + (b',"raw":' if self._json else b',"content":[')
        self._text_prefix = self._prefix + _TEXT_DELTA
        self._thought = [0, False]  # the current thought block's id, and whether it is still open
        self._raw = stream.raw_chunks  # each chunk carries its raw_chunk: the general path

    def __call__(self, event: StreamEvent) -> tuple[bytes, bool]:
        if event.error is not None or event.usage is not None or event.finish_reason is not None:
            last = chunk_json(self._stream, event, with_error_json=self._with_error_json, head=self._head)
            return b"data: " + orjson.dumps(last) + b"\n\n", event.trailing
        content = event.content
        if self._raw:
            chunk: dict[str, Any] = dict(self._head)
            if self._json:
                chunk["raw"] = "".join(b.text for b in content if isinstance(b, Text))
            else:
                chunk["content"] = [self._delta(b) for b in content]
            chunk["raw_chunk"] = event.raw_chunk
            return b"data: " + orjson.dumps(chunk) + b"\n\n", False
        if self._json:
            raw = "".join(b.text for b in content if isinstance(b, Text))
            return self._prefix + orjson.dumps(raw) + b"}\n\n", False
        if len(content) == 1 and type(content[0]) is Text:
            return self._text_prefix + orjson.dumps(content[0].text) + b"}]}\n\n", False
        return self._prefix + b",".join([orjson.dumps(self._delta(b)) for b in content]) + b"]}\n\n", False

    def _delta(self, block: OutputBlock) -> dict[str, Any]:
        """delta_json, with each thought block's own id: the pieces of one thinking block share it, and a new block
        (after a signature closed the last, or a block of its own such as a redacted thought) gets the next one, as
        lsd.inference.streaming puts them together for the stored answer."""
        delta = delta_json(block)
        if isinstance(block, Thought):
            state = self._thought
            if block.text is None or not state[1]:
                state[0] += 1
            state[1] = block.text is not None and not block.signature
            delta["id"] = str(state[0] - 1)
        return delta


_TEXT_DELTA = b'{"type":"text","id":"0","text":'  # delta_json of a Text, up to its text

# -- feedback --------------------------------------------------------------------------------------------------


def feedback_json(feedback_id: UUID) -> dict[str, Any]:
    return {"feedback_id": str(feedback_id)}


# -- batch inference -------------------------------------------------------------------------------------------


def submission_json(submitted: BatchSubmitted) -> dict[str, Any]:
    return {
        "batch_id": str(submitted.batch_id),
        "inference_ids": [str(i) for i in submitted.inference_ids],
        "episode_ids": [str(i) for i in submitted.episode_ids],
    }


def stored_result_json(result: StoredResult) -> dict[str, Any]:
    """A recorded batch inference in the shape of a non-streaming `/inference` response."""
    body: dict[str, Any] = {
        "inference_id": ids.text(result.inference_id),
        "episode_id": ids.text(result.episode_id),
        "variant_name": result.variant_name,
    }
    body["output" if result.function_type == "json" else "content"] = result.output
    body["usage"] = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens, "cost": result.cost}
    if result.finish_reason is not None:
        body["finish_reason"] = result.finish_reason
    return body


def batch_view_json(view: BatchView) -> dict[str, Any]:
    """TensorZero's shape ({status} while pending; {status, batch_id, inferences} after), plus LSD's `errors`
    (batch-level messages and each failed input) and `provider_status`."""
    if view.status == "pending":
        return {"status": "pending", "batch_id": str(view.batch_id), "provider_status": view.provider_status}
    return {
        "status": view.status,
        "batch_id": str(view.batch_id),
        "inferences": [stored_result_json(i) for i in view.inferences],
        "errors": list(view.errors),
        "provider_status": view.provider_status,
    }


# -- stored inferences (list_inferences, get_inferences) ------------------------------------------------------


def rfc3339(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _attempt_json(a: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in a.items() if k not in ("created_at", "cost")}
    out["id"] = str(a["id"])
    out["inference_id"] = str(a["inference_id"])
    out["timestamp"] = rfc3339(a["created_at"])
    out["cost"] = float(a["cost"]) if a["cost"] is not None else None
    return out


def stored_inference_json(
    row: StoredRow, *, include_model_inferences: bool = False, include_usage: bool = False
) -> dict[str, Any]:
    """One row as TensorZero's StoredInference (plus `model_inferences` and `usage` when asked for)."""
    out: dict[str, Any] = {
        "type": row.kind,
        "function_name": row.function_name,
        "variant_name": row.variant_name,
        "input": row.input,
        "output": row.output,
        "dispreferred_outputs": [row.dispreferred_output] if row.dispreferred_output is not None else [],
        "timestamp": rfc3339(row.created_at),
        "episode_id": str(row.episode_id),
        "inference_id": str(row.id),
        "tags": row.tags,
        "extra_body": row.extra_body or [],
        "inference_params": row.inference_params,
        "processing_time_ms": row.processing_time_ms,
        "ttft_ms": row.ttft_ms,
    }
    if row.kind == "chat":
        tools = row.tool_params if isinstance(row.tool_params, dict) else {}
        for key in ("additional_tools", "allowed_tools", "tool_choice", "parallel_tool_calls"):
            out[key] = tools.get(key)
        out["provider_tools"] = tools.get("provider_tools") or []
    else:
        out["output_schema"] = row.output_schema
    if include_model_inferences:
        out["model_inferences"] = [_attempt_json(a) for a in row.model_inferences]
    if include_usage:
        cost = float(row.cost) if row.cost is not None else None
        out["usage"] = {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens, "cost": cost}
    return out


def page_json(page: InferencePage) -> dict[str, Any]:
    """`{"inferences": [...], "next_cursor": ...}` (list_inferences) or `{"inferences": [...]}` (get_inferences)."""
    body: dict[str, Any] = {
        "inferences": [
            stored_inference_json(
                r, include_model_inferences=page.include_model_inferences, include_usage=page.include_usage
            )
            for r in page.rows
        ]
    }
    if page.paged:
        body["next_cursor"] = page.next_cursor
    return body


# -- errors ----------------------------------------------------------------------------------------------------

RAW_ERROR_CHARS = 16384  # of a raw request or response in error_json


def _provider_error_json(exc: ProviderError, failure: AttemptFailure | None = None) -> dict[str, Any]:
    """A failed provider call as TensorZero's ModelProviderTimeout, InferenceClient (the provider answered 4xx) or
    InferenceServer; `failure`, when the error is one attempt of several, adds the provider's type and what
    crossed the wire."""
    if isinstance(exc, ProviderTimeout) or exc.kind == "timeout":
        return {"ModelProviderTimeout": {"provider_name": exc.provider, "timeout": None, "kind": None}}
    provider_type = failure.provider_type if failure is not None else exc.provider_type
    fields: dict[str, Any] = {
        "message": exc.message,
        "provider_type": provider_type or exc.provider,  # the provider's name where its type is not known
        "api_type": "chat_completions",
        "raw_request": _capped(failure.raw_request if failure is not None else exc.raw_request),
        "raw_response": _capped(failure.raw_response if failure is not None else exc.raw_response),
    }
    if exc.status is not None and 400 <= exc.status < 500:
        return {"InferenceClient": {**fields, "status_code": exc.status}}
    return {"InferenceServer": fields}


def _capped(raw: str | None) -> str | None:
    """A raw request or response for an error body: its first RAW_ERROR_CHARS characters (a 300 kB prompt would
    otherwise be copied into the error once per attempt); the whole is in the attempt's model_inference_data row."""
    if raw is None or len(raw) <= RAW_ERROR_CHARS:
        return raw
    return f"{raw[:RAW_ERROR_CHARS]}... [{len(raw) - RAW_ERROR_CHARS} more characters in model_inference_data]"


def _attempts_json(exc: AllAttemptsFailed) -> dict[str, Any]:
    """{"AllVariantsFailed": {"errors": {variant: {"AllModelProvidersFailed": {"provider_errors": {...}}}}}}."""
    variants: dict[str, dict[str, Any]] = {}
    for f in exc.failures:
        providers = variants.setdefault(f.variant, {})
        failure = ProviderError(f.message, provider=f.provider, kind=f.kind, status=f.status)
        providers[f.provider] = _provider_error_json(failure, f)
    return {
        "AllVariantsFailed": {
            "errors": {v: {"AllModelProvidersFailed": {"provider_errors": p}} for v, p in variants.items()}
        }
    }


def error_json(exc: LsdError) -> dict[str, Any]:
    """TensorZero's `error_json` for `exc`: its ErrorDetails variant, `{"<Variant>": {fields}}` (what
    `gateway.unstable_error_json = true` adds to an error body)."""
    if isinstance(exc, UnknownFunction | UnknownVariant | UnknownModel | UnknownMetric):
        return {type(exc).__name__: {"name": exc.name}}  # the class names are TensorZero's variant names
    if isinstance(exc, UnknownEmbeddingModel):
        return {"ModelNotFound": {"model_name": exc.name}}
    if isinstance(exc, BatchNotFound):
        return {"BatchNotFound": {"id": exc.batch_id}}
    if isinstance(exc, InvalidOpenAIRequest):
        return {"InvalidOpenAICompatibleRequest": {"message": exc.detail}}
    if isinstance(exc, SchemaValidation):
        details = {"JsonSchemaValidation": {"messages": exc.messages, "data": exc.data, "schema": exc.schema}}
        return {"InputValidation": {"source": details}}
    if isinstance(exc, AllAttemptsFailed):
        return _attempts_json(exc)
    if isinstance(exc, ProviderError):
        return _provider_error_json(exc)
    if isinstance(exc, RateLimited):
        return {"RateLimitExceeded": {"failed_rate_limits": [{"rule": exc.rule, "retry_after_s": exc.retry_after_s}]}}
    if isinstance(exc, Unauthorized):
        return {"TensorZeroAuth": {"message": exc.message}}
    if isinstance(exc, RequestTimeout):
        return {"InferenceTimeout": {"variant_name": None}}
    if isinstance(exc, DatabaseUnavailable):
        return {"PostgresConnection": {"message": exc.message}}
    if isinstance(exc, ConfigError):
        return {"Config": {"message": exc.message}}
    if isinstance(exc, InvalidRequest | NotFound):
        return {"InvalidRequest": {"message": exc.message}}
    return {"InternalError": {"message": exc.message}}


def error_object(exc: LsdError, *, with_error_json: bool = False) -> dict[str, Any]:
    """`{"error": message, "error_json"?, "error_code", "field"?, ...}`: TensorZero's keys first, then LSD's."""
    body: dict[str, Any] = {"error": exc.message}
    if with_error_json:
        body["error_json"] = error_json(exc)
    body["error_code"] = exc.error_code
    if exc.field:
        body["field"] = exc.field
    if isinstance(exc, InternalError):
        body["error_id"] = exc.error_id
    if isinstance(exc, RateLimited):
        body["rule"] = exc.rule
        body["retry_after_s"] = exc.retry_after_s
    if isinstance(exc, AllAttemptsFailed):
        body["attempts"] = [
            {
                "variant": f.variant,
                "model": f.model,
                "provider": f.provider,
                "kind": f.kind,
                "error": f.message,
            }
            for f in exc.failures
        ]
    return body


def error_body(exc: LsdError, *, with_error_json: bool = False) -> bytes:
    """The error's native body, compact JSON (as TensorZero sends it)."""
    return orjson.dumps(error_object(exc, with_error_json=with_error_json))


def route_not_found_body(method: str, path: str, status: int, *, with_error_json: bool = False) -> bytes:
    """A path (or method) no route serves: TensorZero's `Route not found: METHOD /path`."""
    if status == 404:
        body: dict[str, Any] = {"error": f"Route not found: {method} {path}"}
        if with_error_json:
            body["error_json"] = {"RouteNotFound": {"path": path, "method": method}}
        body["error_code"] = "not_found"
    else:
        body = {"error": f"method not allowed: {method} {path}", "error_code": "method_not_allowed"}
    return orjson.dumps(body)

"""Anthropic's Message Batches: `POST /v1/messages/batches`, polling, then the results JSONL at `results_url`.

Pure functions (`batch_body`, `batch_state`, `parse_result_lines`) hold the wire format; `start` and `poll` are
the I/O around them. A batch whose `processing_status` is `ended` is completed, each request with its own
result (succeeded, errored, canceled or expired); it is failed only when not one request succeeded and every
request was canceled or expired (a cancelled or wholly expired batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from lsd.errors import ProviderError
from lsd.providers.anthropic.wire import parse_response
from lsd.providers.base import (
    BatchItemResult,
    BatchPoll,
    BatchStatus,
    BatchSubmission,
    CallContext,
    json_object,
    redact_url,
)
from lsd.providers.batch_lines import ResultLine, item_result, mapping
from lsd.providers.http import HttpProvider
from lsd.types import Json


def batch_body(bodies: Sequence[tuple[str, Mapping[str, Json]]]) -> tuple[dict[str, Json], dict[str, str]]:
    """The create-batch body and each request's params as sent, by custom id."""
    requests = [{"custom_id": custom_id, "params": dict(body)} for custom_id, body in bodies]
    return {"requests": requests}, {custom_id: orjson.dumps(body).decode() for custom_id, body in bodies}


def batch_state(batch: Mapping[str, Any]) -> tuple[BatchStatus, str, tuple[str, ...]]:
    """LSD's status, the provider's processing_status and what the request counts say went wrong."""
    word = batch.get("processing_status")
    if word in ("in_progress", "canceling"):
        return "pending", word, ()
    if word != "ended":
        raise ValueError(f"unknown processing_status {word!r}")
    counts = mapping(batch.get("request_counts"))
    number = {k: v for k, v in counts.items() if isinstance(v, int)}
    errors = tuple(f"{number[k]} request(s) {k}" for k in ("errored", "canceled", "expired") if number.get(k))
    lost = number.get("canceled", 0) + number.get("expired", 0)
    if number.get("succeeded", 0) == 0 and lost and lost == sum(number.values()):
        return "failed", word, errors
    return "completed", word, errors


def parse_result_lines(text: str, json_tool_ids: frozenset[str] = frozenset()) -> list[ResultLine]:
    """Every line of a results file; anything but `succeeded` (or an unparseable message) is an error."""
    parsed = []
    for raw in text.splitlines():
        line = json_object(raw) if raw.strip() else None
        if line is None or not isinstance(line.get("custom_id"), str):
            continue
        custom_id = line["custom_id"]
        result = mapping(line.get("result"))
        kind = result.get("type")
        if kind == "succeeded":
            try:
                content, usage, reason = parse_response(
                    result.get("message") or {}, json_tool=custom_id in json_tool_ids
                )
            except ValueError as exc:
                parsed.append(ResultLine(custom_id, raw, error=f"malformed response: {exc}", kind="malformed"))
                continue
            parsed.append(ResultLine(custom_id, raw, content, usage, reason, answer=result.get("message")))
        elif kind == "errored":
            error = mapping(result.get("error"))
            inner = mapping(error.get("error")) or error
            message = f"{inner.get('type') or 'error'}: {inner.get('message') or ''}"
            parsed.append(ResultLine(custom_id, raw, error=message))
        else:
            parsed.append(ResultLine(custom_id, raw, error=f"the request was {kind}", kind=str(kind)))
    return parsed


async def start(
    provider: HttpProvider,
    url: str,
    bodies: Sequence[tuple[str, Mapping[str, Json]]],
    json_tool: Sequence[str],
    ctx: CallContext,
) -> BatchSubmission:
    body, sent = batch_body(bodies)
    created = await provider.post_json(url, body, ctx)
    batch_id = created.data.get("id")
    if not isinstance(batch_id, str):
        raise provider.attach(ProviderError("malformed response: the batch has no id"), created)
    try:
        _, word, _ = batch_state(created.data)
    except ValueError as exc:
        raise provider.attach(ProviderError(f"malformed response: {exc}"), created) from None
    return BatchSubmission(
        provider_batch_id=batch_id,
        provider_status=word,
        # The body holds every request: the per-item bodies are stored with each item instead.
        raw_request=f"POST {redact_url(url)} ({len(bodies)} requests)",
        raw_response=created.raw_response,
        data={"json_tool": sorted(json_tool)},
        item_requests=sent,
    )


async def poll(
    provider: HttpProvider, url: str, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext
) -> BatchPoll:
    exchange = await provider.get_json(f"{url}/{provider_batch_id}", ctx)
    try:
        status, word, errors = batch_state(exchange.data)
    except ValueError as exc:
        raise provider.attach(ProviderError(f"malformed response: {exc}"), exchange) from None
    if status == "pending":
        return BatchPoll(status, word, exchange.raw_response, errors=errors)
    results_url = exchange.data.get("results_url")
    results: list[BatchItemResult] = []
    if isinstance(results_url, str) and results_url:
        text = (await provider.get_bytes(results_url, ctx)).decode("utf-8", "replace")
        json_tool = frozenset(data.get("json_tool") or ())
        results = [item_result(provider, line) for line in parse_result_lines(text, json_tool)]
    return BatchPoll(status, word, exchange.raw_response, tuple(results), errors)

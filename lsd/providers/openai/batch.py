"""OpenAI's Batch API (also Azure OpenAI's): a JSONL file uploaded to `/files`, `POST /batches`, then polling.

The wire format is pure functions (`batch_lines`, `multipart_body`, `batch_state`, `parse_result_lines`), so the
tests need no socket; `start` and `poll` are the I/O around them, called by the Chat Completions provider.

A batch object's `status` maps to LSD's: validating, in_progress, finalizing and cancelling are pending;
completed is completed; failed, expired and cancelled are failed. An expired or cancelled batch may still have
an output file with the requests that did finish; those results are read and recorded all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from lsd.errors import ProviderError
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.providers.base import BatchItemResult, BatchPoll, BatchStatus, BatchSubmission, CallContext, json_object
from lsd.providers.batch_lines import ResultLine, item_result, mapping
from lsd.providers.http import HttpProvider
from lsd.providers.openai.wire import parse_response
from lsd.types import ProviderRequest

_PENDING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_FAILED = frozenset({"failed", "expired", "cancelled"})
COMPLETION_WINDOW = "24h"


@immutable
class BatchApi:
    """Where one provider's batch endpoints are. `endpoint` is the `url` of each JSONL line."""

    files_url: str
    batches_url: str
    batch_url: Callable[[str], str]
    file_content_url: Callable[[str], str]
    endpoint: str


def openai_api(api_base: str) -> BatchApi:
    base = api_base.rstrip("/")
    return BatchApi(
        files_url=f"{base}/files",
        batches_url=f"{base}/batches",
        batch_url=lambda batch_id: f"{base}/batches/{batch_id}",
        file_content_url=lambda file_id: f"{base}/files/{file_id}/content",
        endpoint="/v1/chat/completions",
    )


def azure_api(endpoint: str, api_version: str) -> BatchApi:
    base = f"{endpoint.rstrip('/')}/openai"
    query = f"?api-version={api_version}"
    return BatchApi(
        files_url=f"{base}/files{query}",
        batches_url=f"{base}/batches{query}",
        batch_url=lambda batch_id: f"{base}/batches/{batch_id}{query}",
        file_content_url=lambda file_id: f"{base}/files/{file_id}/content{query}",
        endpoint="/chat/completions",
    )


# ---- pure wire functions -----------------------------------------------------------------------------------


def batch_lines(bodies: Sequence[tuple[str, Mapping[str, Any]]], endpoint: str) -> tuple[bytes, dict[str, str]]:
    """The JSONL input file (one request per line) and each line's body as sent, by custom id."""
    lines = []
    sent = {}
    for custom_id, body in bodies:
        lines.append(orjson.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}))
        sent[custom_id] = orjson.dumps(body).decode()
    return b"\n".join(lines) + b"\n", sent


def multipart_body(jsonl: bytes, filename: str, boundary: str) -> tuple[bytes, str]:
    """A multipart/form-data body with `purpose=batch` and the JSONL file; returns (body, content type)."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    return head + jsonl + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def batch_state(batch: Mapping[str, Any]) -> tuple[BatchStatus, str, tuple[str, ...]]:
    """LSD's status, the provider's status word and the errors a batch object reports."""
    word = batch.get("status")
    if not isinstance(word, str):
        raise ValueError("the batch object has no status")
    errors: list[str] = []
    listed = batch.get("errors")
    if isinstance(listed, Mapping) and isinstance(listed.get("data"), list):
        for item in listed["data"]:
            if isinstance(item, Mapping):
                line = f" (line {item['line']})" if item.get("line") is not None else ""
                errors.append(f"{item.get('code') or 'error'}: {item.get('message') or ''}{line}")
    if word in _PENDING:
        return "pending", word, tuple(errors)
    if word == "completed":
        return "completed", word, tuple(errors)
    if word in _FAILED:
        return "failed", word, tuple(errors) or (f"the batch is {word}",)
    raise ValueError(f"unknown batch status {word!r}")


def parse_result_lines(text: str, json_tool_ids: frozenset[str] = frozenset()) -> list[ResultLine]:
    """Every line of an output or error file. A line with a non-200 status, an `error`, or a body that does
    not parse becomes a ResultLine with `error` set; lines without a custom_id are skipped."""
    parsed = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        line = json_object(raw)
        if line is None or not isinstance(line.get("custom_id"), str):
            continue
        custom_id = line["custom_id"]
        response = mapping(line.get("response"))
        status = response.get("status_code") if isinstance(response.get("status_code"), int) else None
        body = response.get("body")
        error = line.get("error")
        if error or status != 200:
            message = _error_message(error) or _error_message(body) or f"HTTP {status}"
            kind = "bad_request" if status is not None and 400 <= status < 500 else "batch_item_failed"
            parsed.append(ResultLine(custom_id, raw, error=message, status=status, kind=kind))
            continue
        try:
            content, usage, reason = parse_response(body, json_tool=custom_id in json_tool_ids)
        except ProviderError as exc:
            parsed.append(ResultLine(custom_id, raw, error=exc.message, status=status))
            continue
        parsed.append(ResultLine(custom_id, raw, content, usage, reason, status=status, answer=body))
    return parsed


def _error_message(value: Any) -> str | None:
    if isinstance(value, Mapping):
        inner = mapping(value.get("error")) or value
        message = inner.get("message")
        code = inner.get("code")
        if isinstance(message, str):
            return f"{code}: {message}" if isinstance(code, str) else message
    return None


# ---- I/O ----------------------------------------------------------------------------------------------------


async def start(
    provider: HttpProvider,
    api: BatchApi,
    bodies: Sequence[tuple[str, Mapping[str, Any]]],
    requests: Sequence[tuple[str, ProviderRequest]],
    ctx: CallContext,
) -> BatchSubmission:
    """Upload the JSONL file, then create the batch."""
    jsonl, sent = batch_lines(bodies, api.endpoint)
    body, content_type = multipart_body(jsonl, f"lsd-batch-{uuid7()}.jsonl", f"lsd-{uuid7().hex}")
    uploaded = await provider.post_bytes(api.files_url, body, content_type, ctx)
    file_id = uploaded.data.get("id")
    if not isinstance(file_id, str):
        raise provider.attach(ProviderError("malformed response: the file has no id"), uploaded)
    create = {"input_file_id": file_id, "endpoint": api.endpoint, "completion_window": COMPLETION_WINDOW}
    created = await provider.post_json(api.batches_url, create, ctx)
    batch_id = created.data.get("id")
    if not isinstance(batch_id, str):
        raise provider.attach(ProviderError("malformed response: the batch has no id"), created)
    try:
        _, word, _ = batch_state(created.data)
    except ValueError as exc:
        raise provider.attach(ProviderError(f"malformed response: {exc}"), created) from None
    json_tool = sorted(custom_id for custom_id, r in requests if r.params.json_mode == "tool")
    return BatchSubmission(
        provider_batch_id=batch_id,
        provider_status=word,
        raw_request=created.raw_request,
        raw_response=created.raw_response,
        data={"input_file_id": file_id, "json_tool": json_tool},
        item_requests=sent,
    )


async def poll(
    provider: HttpProvider, api: BatchApi, provider_batch_id: str, data: Mapping[str, Any], ctx: CallContext
) -> BatchPoll:
    """The batch's state; once it ended, the results in its output and error files."""
    exchange = await provider.get_json(api.batch_url(provider_batch_id), ctx)
    try:
        status, word, errors = batch_state(exchange.data)
    except ValueError as exc:
        raise provider.attach(ProviderError(f"malformed response: {exc}"), exchange) from None
    if status == "pending":
        return BatchPoll(status, word, exchange.raw_response, errors=errors)
    json_tool = frozenset(data.get("json_tool") or ())
    results: list[BatchItemResult] = []
    for key in ("output_file_id", "error_file_id"):
        file_id = exchange.data.get(key)
        if isinstance(file_id, str) and file_id:
            text = (await provider.get_bytes(api.file_content_url(file_id), ctx)).decode("utf-8", "replace")
            results.extend(item_result(provider, line) for line in parse_result_lines(text, json_tool))
    return BatchPoll(status, word, exchange.raw_response, tuple(results), errors)

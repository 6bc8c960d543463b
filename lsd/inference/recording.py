"""The rows one inference produces: built here from the engine's results, written by the store's writer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, AnyStr
from uuid import UUID

import orjson

from lsd.errors import ProviderError
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.result import JsonOutput, ResultBlock, ToolCallOutput
from lsd.records import (
    ChatInferenceDataRecord,
    ChatInferenceRecord,
    JsonInferenceDataRecord,
    JsonInferenceRecord,
    ModelInferenceDataRecord,
    ModelInferenceRecord,
    Record,
)
from lsd.store.escaping import ESCAPE, NUL
from lsd.store.input_strings import long_strings
from lsd.types import EmbeddingResponse, InferenceParams, Input, Message, ProviderResponse, Text, ToolResult, Usage


@immutable
class Attempt:
    """One provider call, successful or not, with everything its two rows need (never a key)."""

    variant_name: str
    model_name: str
    provider_name: str
    provider_type: str
    started_ms: int
    latency_ms: int
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    finish_reason: str | None = None
    raw_request: str | bytes | None = None  # bytes: a JSON body as sent (ProviderResponse), decoded for its row
    raw_response: str | None = None
    request_headers: Mapping[str, str] | None = None
    api_key_sha256: str | None = None
    error: ProviderError | None = None
    ttft_ms: int | None = None
    cached: bool = False
    streamed: bool = False
    t0: float = 0.0  # perf_counter() at the start, and seconds taken: telemetry's precise timings
    elapsed_s: float = 0.0
    row_id: UUID | None = None  # its model_inferences id, when the answer names it (raw_entries); else made below

    @classmethod
    def succeeded(
        cls,
        names: tuple[str, str, str, str],
        started_ms: int,
        t0: float,
        response: ProviderResponse | EmbeddingResponse,
        *,
        cached: bool = False,
    ) -> Attempt:
        elapsed = time.perf_counter() - t0
        return cls(
            *names,
            started_ms,
            int(elapsed * 1000),
            response.usage,
            response.cost,
            response.finish_reason if type(response) is ProviderResponse else None,
            response.raw_request,
            response.raw_response,
            dict(response.request_headers) or None,
            response.api_key_sha256,
            cached=cached,
            t0=t0,
            elapsed_s=elapsed,
        )

    @classmethod
    def failed(
        cls,
        names: tuple[str, str, str, str],
        started_ms: int,
        t0: float,
        error: ProviderError,
        *,
        streamed: bool = False,
    ) -> Attempt:
        elapsed = time.perf_counter() - t0
        return cls(
            *names,
            started_ms,
            int(elapsed * 1000),
            raw_request=error.raw_request,
            raw_response=error.raw_response,
            error=error,
            streamed=streamed,
            t0=t0,
            elapsed_s=elapsed,
        )


INT4_MAX = 2**31 - 1  # the token columns are integer: binary COPY would wrap a larger count into another number


def storable(usage: Usage) -> Usage:
    """`usage` as its columns can hold it: a count outside 0..INT4_MAX (a provider's bug: negative, or billions) is
    stored as NULL, never as a different number (the answer still says what the provider said)."""
    counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens, usage.cache_write_input_tokens)
    if all(c is None or 0 <= c <= INT4_MAX for c in counts):
        return usage
    return Usage(*(c if c is None or 0 <= c <= INT4_MAX else None for c in counts))


def money(value: float | None) -> Decimal | None:
    """A cost for a numeric column (via str, so 0.1 stays 0.1)."""
    return None if value is None else Decimal(str(value))


def time_of(inference_id: UUID) -> datetime:
    return datetime.fromtimestamp((inference_id.int >> 80) / 1000, tz=UTC)


def block_to_json(block: Any) -> dict[str, Any]:
    """A content block as stored (TensorZero's JSON: type first, None fields dropped; a checked tool call keeps
    its null name/arguments)."""
    if type(block) is Text:  # the common block, without the generic walk over its fields
        return {"type": "text", "text": block.text}
    if type(block) is ToolResult:  # is_error stays out: TensorZero's clients refuse a field they do not know
        return {"type": "tool_result", "id": block.id, "name": block.name, "result": block.result}
    if type(block) is ToolCallOutput:
        return {
            "type": "tool_call",
            "id": block.id,
            "name": block.name,
            "arguments": block.arguments,
            "raw_name": block.raw_name,
            "raw_arguments": block.raw_arguments,
        }
    out: dict[str, Any] = {"type": block.type}
    for name in block.__dataclass_fields__:
        if name != "type":
            value = getattr(block, name)
            if value is not None:
                out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


def output_to_json(content: Sequence[ResultBlock], output: JsonOutput | None) -> Any:
    """A result's output as stored in the inference rows: chat blocks, or json {raw, parsed}."""
    if output is not None:
        return {"raw": output.raw, "parsed": output.parsed}
    return [block_to_json(b) for b in content]


def messages_to_json(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": [block_to_json(b) for b in m.content]} for m in messages]


def input_to_json(input: Input) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": messages_to_json(input.messages)}
    if input.system is not None:
        out["system"] = input.system if isinstance(input.system, str) else dict(input.system)
    return out


# prompt_cache_key is not stored here (TensorZero's stored params have no such key): the OpenAI routes keep it as the
# tag lsd::prompt_cache_key; given as a param on /inference it is sent on only (a routing hint).
_PARAMS = tuple(k for k in InferenceParams.__dataclass_fields__ if k != "prompt_cache_key")


def params_to_json(params: InferenceParams) -> dict[str, Any]:
    values = {k: v for k in _PARAMS if (v := getattr(params, k)) is not None}
    return {"chat_completion": values}


@immutable
class InferenceRow:
    """What the inference-level rows hold, for chat and json alike."""

    inference_id: UUID
    episode_id: UUID
    function_name: str
    function_type: str
    variant_name: str
    input: dict[str, Any]
    output: Any  # chat: list of blocks; json: {"raw", "parsed"}
    rendered_input: dict[str, Any] | None
    inference_params: dict[str, Any]
    tool_params: dict[str, Any] | None
    output_schema: Mapping[str, Any] | None
    tags: Mapping[str, str]
    processing_time_ms: int | None  # None for batch results (no wall time of our own)
    ttft_ms: int | None
    usage: Usage
    cost: float | None
    finish_reason: str | None
    cached: bool
    config_hash: str | None
    api_key_public_id: str | None
    extra_body: list[Any] | None
    extra_headers: list[Any] | None
    original_response: str | None  # the successful attempt's raw_response (stored once: in model_inference_data)


def _rendered_is_input(rendered: dict[str, Any] | None, input: dict[str, Any]) -> bool:
    """The rendered messages are the input's own (no template rewrote them): stored once, as `input`. Their
    texts are the same str objects when nothing was rendered, so this compares identities, not texts."""
    return (
        rendered is not None
        and len(rendered) == 2
        and rendered.get("messages") == input["messages"]
        and "system" in rendered
        and rendered["system"] == input.get("system")
    )


def inference_records(row: InferenceRow) -> list[Record]:
    # Every record built by one direct call (no dict of keyword arguments unpacked into it): this runs on the event
    # loop for every inference.
    now = time_of(row.inference_id)
    usage = storable(row.usage)
    json = row.function_type == "json"
    cls: type[ChatInferenceRecord | JsonInferenceRecord] = JsonInferenceRecord if json else ChatInferenceRecord
    schema_or_tools = (dict(row.output_schema) if row.output_schema else None) if json else row.tool_params
    inference = cls(
        row.inference_id,
        now,
        row.function_name,
        row.variant_name,
        row.episode_id,
        row.input,
        row.output,
        schema_or_tools,  # both classes hold it eighth: output_schema (json), tool_params (chat)
        row.inference_params,
        dict(row.tags),
        row.processing_time_ms,
        row.ttft_ms,
        usage.input_tokens,
        usage.output_tokens,
        money(row.cost),
        row.finish_reason,
        row.cached,
        row.config_hash,
        row.api_key_public_id,
        usage.cache_read_input_tokens,
        usage.cache_write_input_tokens,
    )
    # Each payload stored once (0012_payload_once.sql; read back through lsd.store.payloads): a copy that can be
    # rebuilt is left out and flagged.
    rendered_is_input = _rendered_is_input(row.rendered_input, row.input)
    original_is_raw = row.original_response is not None
    # Nothing of its own to hold (both copies rebuilt, no extra_body/extra_headers): no data row at all, which the
    # view inference_payloads reads as both flags set.
    if rendered_is_input and original_is_raw and row.extra_body is None and row.extra_headers is None:
        return [inference]
    data_cls = JsonInferenceDataRecord if json else ChatInferenceDataRecord
    data = data_cls(
        inference_id=row.inference_id,
        created_at=now,
        rendered_input=None if rendered_is_input else row.rendered_input,
        extra_body=row.extra_body,
        extra_headers=row.extra_headers,
        original_response=None,
        rendered_input_is_input=rendered_is_input,
        original_response_is_raw=original_is_raw,
    )
    return [inference, data]


# -- payload references (0012_payload_once.sql) ------------------------------------------------------------------

REF = "\ue001"  # delimits a reference in a stored raw_request/raw_response (a private-use code point)
_REF_UTF8 = REF.encode()
MIN_REF_CHARS = 256  # a shorter text is left in place: its reference would save too little


def _input_texts(input: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(reference, text) of each long text of a stored input: its system, its messages' text blocks, tool results
    and files' data (lsd.store.input_strings walks them)."""
    for path, text in long_strings(input, MIN_REF_CHARS):
        yield "i" + ",".join(map(str, path)), text


def _output_texts(output: Any) -> Iterator[tuple[str, str]]:
    """(reference, text) of each long text of a stored output: chat text blocks, or a json output's raw."""
    if isinstance(output, dict):
        raw = output.get("raw")
        if isinstance(raw, str) and len(raw) >= MIN_REF_CHARS:
            yield "oraw", raw
        return
    for j, block in enumerate(output or ()):
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, str) and len(text) >= MIN_REF_CHARS:
            yield f"o{j},text", text


def _referenced(raw: str | bytes | None, texts: Sequence[tuple[str, str]]) -> str | None:
    """`raw` with each text of `texts` found in it as a JSON string (as orjson, and PostgreSQL's to_json, write
    it) replaced by its reference; None when none was found. The view model_inference_payloads reverses it.
    A JSON body kept as the bytes sent is searched as bytes (UTF-8 finds the same places), and only what is left
    once its long texts are references is decoded: a 100 KiB prompt is never decoded nor copied again.
    `raw` holding the delimiter itself gives None too: told by the delimiters left in the (short) result, as the
    replaced texts hold none, instead of a search of the whole of `raw`."""
    if raw is None:
        return None
    kept: list[tuple[str, bytes]] = []  # (reference, the text as a JSON string, or bare: a file's base64)
    for ref, text in texts:
        if ref.endswith(",data"):  # base64, sent inside a data URL too: found bare (JSON escapes none of it)
            if _BASE64.fullmatch(text):
                kept.append((ref, text.encode()))
            continue
        # Encoded first: that reads the text once, from memory, and the checks below find it in the cache.
        encoded = orjson.dumps(text)
        # A text stored escaped in jsonb is not the text to_json gives: left in place.
        if NUL not in text and ESCAPE not in text and REF not in text:
            kept.append((ref, encoded))
    markers = [_marker(ref) for ref, _ in kept]
    if isinstance(raw, bytes):
        out = _replaced(raw, [e for _, e in kept], [m.encode() for m in markers])
        if out is None or out[0].count(_REF_UTF8) != 2 * out[1]:
            return None
        return out[0].decode("utf-8", "replace")
    replaced = _replaced(raw, [e.decode() for _, e in kept], markers)
    if replaced is None or replaced[0].count(REF) != 2 * replaced[1]:
        return None
    return replaced[0]


_BASE64 = re.compile(r"[A-Za-z0-9+/]+=*")


def _marker(ref: str) -> str:
    """A reference as it stands in a raw payload: for a JSON string, in its place, quotes kept; for a file's bare
    base64, in place of the base64 alone (lsd_expand_payload puts the text back between the two delimiters)."""
    return f"{REF}{ref}{REF}" if ref.endswith(",data") else f'"{REF}{ref}{REF}"'


def _replaced(raw: AnyStr, quoted_texts: Sequence[AnyStr], markers: Sequence[AnyStr]) -> tuple[AnyStr, int] | None:
    """`raw` with every occurrence of each `quoted_texts[i]` replaced by `markers[i]`, in order, and the number of
    markers put in; None when none occurs."""
    out: AnyStr | None = None
    count = 0
    for quoted, marker in zip(quoted_texts, markers, strict=True):
        base = raw if out is None else out
        at = _first(base, quoted)
        if at < 0:
            continue
        start = 0
        pieces: list[AnyStr] = []
        while at >= 0:  # every occurrence, left to right, as str.replace
            pieces += (base[start:at], marker)
            count += 1
            start = at + len(quoted)
            at = base.find(quoted, start)  # usually at once: what follows the text is shorter than it
        pieces.append(base[start:])
        out = base[:0].join(pieces)
    return None if out is None else (out, count)


def _holds_ref(raw: str | bytes | None) -> bool:
    if raw is None:
        return False
    if isinstance(raw, str):
        return REF in raw
    return 0xEE in raw and raw.find(_REF_UTF8) >= 0  # a memchr first (lsd.store.escaping.dumps)


def _first(base: AnyStr, quoted: AnyStr) -> int:
    """Where `quoted` first stands in `base`, or -1. Its first 64 characters are looked for, then the whole compared
    there: ~10 us for a 100 KiB prompt in its raw request, where `in` and `replace` take ~90 us each (they prepare
    a search for the whole 100 KiB needle). When that first candidate is not it, the full search (linear whatever
    the text) decides."""
    at = base.find(quoted[:64])
    if at >= 0 and base.startswith(quoted, at):
        return at
    return base.find(quoted) if at >= 0 else -1


def _input_texts_of(inference: Record | None) -> list[tuple[str, str]]:
    if not isinstance(inference, ChatInferenceRecord | JsonInferenceRecord):
        return []
    return list(_input_texts(inference.input))


def _output_texts_of(inference: Record | None) -> list[tuple[str, str]]:
    if not isinstance(inference, ChatInferenceRecord | JsonInferenceRecord):
        return []
    return list(_output_texts(inference.output))


def attempt_records(
    inference_id: UUID,
    inference_kind: str,
    function_name: str | None,
    attempts: Sequence[Attempt],
    inference: Record | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[Record]:
    """The two rows of each attempt. With the `inference` row (chat or json), the long texts of its input and
    output are stored once: each attempt's raw_request/raw_response refers to them (payload_refs). `tags`: those of
    an inference that got no answer (no inference row holds them), kept on each of its attempts."""
    attempt_tags = dict(tags) if tags else None
    records: list[Record] = []
    inputs: list[tuple[str, str]] | None = None  # the long texts, found on first need
    outputs: list[tuple[str, str]] | None = None
    for number, attempt in enumerate(attempts, start=1):
        raw_request, raw_response = attempt.raw_request, attempt.raw_response
        refs = False
        # A raw text no longer than MIN_REF_CHARS cannot hold a referenced text's JSON string (the text and its
        # quotes): most requests and responses, which then skip the walk over the input or the output.
        if inputs is None and raw_request is not None and len(raw_request) > MIN_REF_CHARS:
            inputs = _input_texts_of(inference)
        if outputs is None and raw_response is not None and len(raw_response) > MIN_REF_CHARS:
            outputs = _output_texts_of(inference)
        if inputs or outputs:
            request = _referenced(raw_request, inputs) if inputs else None
            response = _referenced(raw_response, outputs) if outputs else None
            refs = request is not None or response is not None
            # A referenced one holds no delimiter of its own (_referenced checked): only the other is searched.
            if refs and (
                (request is None and _holds_ref(raw_request)) or (response is None and _holds_ref(raw_response))
            ):
                refs = False  # one of the two holds the delimiter itself: store both as they are
            elif refs:
                raw_request, raw_response = request or raw_request, response or raw_response
        if isinstance(raw_request, bytes):  # not referenced: stored whole, as text
            raw_request = raw_request.decode("utf-8", "replace")
        model_inference_id = attempt.row_id or uuid7(attempt.started_ms)
        created = datetime.fromtimestamp(attempt.started_ms / 1000, tz=UTC)
        error = attempt.error
        usage = storable(attempt.usage)
        # By position (lsd.records keeps the order): a keyword call of 23 fields costs ~0.8 us more, per attempt.
        records.append(
            ModelInferenceRecord(
                model_inference_id,
                created,
                inference_id,
                inference_kind,
                number,  # attempt
                function_name,
                attempt.variant_name,
                attempt.model_name,
                attempt.provider_name,  # model_provider_name
                attempt.provider_type,
                "error" if error else "ok",  # status
                error.kind if error else None,  # error_kind
                error.message if error else None,  # error
                attempt.latency_ms,
                attempt.ttft_ms,
                usage.input_tokens,
                usage.output_tokens,
                money(attempt.cost),
                attempt.finish_reason,
                attempt.cached,
                attempt.streamed,
                usage.cache_read_input_tokens,
                usage.cache_write_input_tokens,
                attempt_tags,
            )
        )
        records.append(
            ModelInferenceDataRecord(
                model_inference_id,
                created,
                inference_id,
                raw_request,
                raw_response,
                dict(attempt.request_headers) if attempt.request_headers else None,
                attempt.api_key_sha256,
                refs,  # payload_refs
            )
        )
    return records

"""OpenAI's Chat Completions and Embeddings answers, chunks and errors, built from the engine's typed results (the
request side: lsd.api.openai_request)."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from typing import Any

import orjson

from lsd import ids
from lsd.api.openai_request import ChatCompletionRequest
from lsd.api.provider_answer import ProviderAnswer
from lsd.api.tensorzero_wire import error_json
from lsd.errors import InternalError, LsdError, RateLimited
from lsd.inference.raw_entries import entries_json
from lsd.inference.recording import block_to_json
from lsd.inference.result import EmbeddingResult, InferenceResult, ResultBlock, ToolCallOutput
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.types import (
    OutputBlock,
    Text,
    Thought,
    ToolCall,
    Unknown,
    Usage,
)

FINISH = {
    "stop": "stop",
    "stop_sequence": "stop",
    "unknown": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_call": "tool_calls",
}


def response_model(call: ChatCompletionRequest, variant_name: str) -> str:
    """The answer's `model`, in the prefix the request used: `<prefix>function_name::F::variant_name::V` or
    `<prefix>model_name::M`."""
    ref = call.model
    if ref.alias is not None:
        return ref.alias
    if ref.kind == "function_name":
        return f"{ref.prefix}function_name::{ref.name}::variant_name::{variant_name}"
    return f"{ref.prefix}{ref.kind}::{ref.name}"


def extra_content_json(block: OutputBlock | ResultBlock, insert_index: int | None) -> dict[str, Any] | None:
    """A thought or unknown block as a `tensorzero_extra_content` entry (None for text and tool calls)."""
    if not isinstance(block, Thought | Unknown):
        return None
    entry = {**block_to_json(block)}
    if insert_index is not None:
        entry["insert_index"] = insert_index
    return entry


def usage_json(usage: Usage, cost: float | None) -> dict[str, Any]:
    prompt, completion = usage.input_tokens, usage.output_tokens
    out: dict[str, Any] = {}
    if prompt is not None:
        out["prompt_tokens"] = prompt
    if completion is not None:
        out["completion_tokens"] = completion
    if prompt is not None or completion is not None:
        out["total_tokens"] = (prompt or 0) + (completion or 0)
    if usage.cache_read_input_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_input_tokens}
    if usage.cache_write_input_tokens is not None:
        out["tensorzero_provider_cache_write_input_tokens"] = usage.cache_write_input_tokens
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    out["tensorzero_cost"] = cost
    return out


def completion_json(call: ChatCompletionRequest, result: InferenceResult) -> dict[str, Any]:
    extra: list[dict[str, Any]] = []
    if result.output is not None:
        content: str | None = result.output.raw
        tool_calls: list[dict[str, Any]] = []
    else:
        texts = [b.text for b in result.content if isinstance(b, Text)]
        content = "".join(texts) if texts else None
        tool_calls = [
            {"id": b.id, "type": "function", "function": {"name": b.raw_name, "arguments": b.raw_arguments}}
            for b in result.content
            if isinstance(b, ToolCallOutput)
        ]
        for i, b in enumerate(result.content):
            entry = extra_content_json(b, i)
            if entry is not None:
                extra.append(entry)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    reasoning = _reasoning_text(result.content) if result.output is None else None
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    if extra:
        message["tensorzero_extra_content"] = extra
    body: dict[str, Any] = {
        "id": ids.text(result.inference_id),
        "episode_id": ids.text(result.episode_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response_model(call, result.variant_name),
        "system_fingerprint": "",
        "service_tier": None,
        "choices": [
            {
                "index": 0,
                "finish_reason": FINISH.get(result.finish_reason or "stop", "stop"),
                "logprobs": None,
                "message": message,
            }
        ],
        "usage": usage_json(result.usage, result.cost),
    }
    if result.original_response is not None:
        body["tensorzero_original_response"] = result.original_response
    if result.raw_usage is not None:
        body["tensorzero_raw_usage"] = entries_json(result.raw_usage)
    if result.raw_response is not None:
        body["tensorzero_raw_response"] = entries_json(result.raw_response)
    return body


def _reasoning_text(content: Sequence[Any]) -> str:
    """The text of an answer's thoughts, as `reasoning_content` (DeepSeek's and vLLM's field, which the clients of
    OpenAI-compatible servers read: the AI SDK, opencode, aider); the whole thought, signature and all, stays in
    `tensorzero_extra_content`."""
    return "".join(b.text for b in content if isinstance(b, Thought) and b.text)


class ChunkWriter:
    """Turns one stream's events into `chat.completion.chunk` objects (tool call indexes, first-delta role, the
    answer's `model` in the request's prefix). The last chunk carries the finish reason and, with
    `stream_options.include_usage`, the usage; a JSON function's has `content: ""`. A stream that broke (its last
    error came after all of its content) gets no finish reason, so no client reads a cut answer as finished: only
    the usage, with `include_usage`, in a chunk with no choices (as OpenAI sends usage)."""

    def __init__(self, call: ChatCompletionRequest, stream: InferenceStream, *, with_error_json: bool = False) -> None:
        self.call = call
        self.stream = stream
        self.with_error_json = with_error_json
        self.created = int(time.time())
        self.first = True
        self.tool_index: dict[str, int] = {}
        # Where each thought goes back: the answer's blocks so far (a text run, a tool call, a thought each), as the
        # whole answer's `insert_index` counts them; and the open thought's entry id and index (its text deltas
        # share them until its signature; a thought with no text, such as Gemini's signature of the call after
        # it, is a block of its own, so that it goes back apart from the thought before it).
        self.blocks = 0
        self.in_text = False
        self.thought: tuple[str, int] | None = None
        self.broken = False  # the last event was an error (content after one: the stream went on)

    def _extra(self, block: Thought | Unknown) -> dict[str, Any]:
        """A thought or unknown delta's `tensorzero_extra_content` entry, with its block's id and insert_index."""
        self.in_text = False
        if self.thought is None or not isinstance(block, Thought) or block.text is None:
            self.thought = (str(self.blocks), self.blocks)
            self.blocks += 1
        entry_id, insert_index = self.thought
        if not isinstance(block, Thought) or block.text is None or block.signature:
            self.thought = None  # the block is whole: the next thought starts another
        entry = extra_content_json(block, insert_index)
        assert entry is not None
        return {**entry, "id": entry_id}

    def chunk(self, event: StreamEvent) -> dict[str, Any] | None:
        if event.error is not None:
            self.broken = True
            return openai_error_object(event.error, with_error_json=self.with_error_json)
        if event.content:
            self.broken = False
        delta: dict[str, Any] = {}
        if self.first:
            delta["role"] = "assistant"
            self.first = False
        texts = [b.text for b in event.content if isinstance(b, Text)]
        if texts:
            delta["content"] = "".join(texts)
        calls = []
        extra = []
        for block in event.content:
            if isinstance(block, Text):
                if block.text and not self.in_text:
                    self.blocks, self.in_text, self.thought = self.blocks + 1, True, None
            elif isinstance(block, ToolCall):
                new = block.id not in self.tool_index
                index = self.tool_index.setdefault(block.id, len(self.tool_index))
                call: dict[str, Any] = {
                    "index": index,
                    "type": "function",
                    "function": {"name": block.name, "arguments": block.arguments},
                }
                if new:
                    call["id"] = block.id
                    self.blocks, self.in_text, self.thought = self.blocks + 1, False, None
                calls.append(call)
            elif isinstance(block, Thought | Unknown):
                extra.append(self._extra(block))
        if calls:
            delta["tool_calls"] = calls
        if extra:  # thoughts are among them: their text also as reasoning_content (a text delta needs no look)
            delta["tensorzero_extra_content"] = extra
            reasoning = _reasoning_text(event.content)
            if reasoning:
                delta["reasoning_content"] = reasoning
        last = event.usage is not None
        if event.usage is not None and self.broken:
            return self._chunk([], usage_json(event.usage, event.cost)) if self.call.include_usage else None
        finish = FINISH.get(event.finish_reason or "stop", "stop") if last else None
        if last and self.stream.function_type == "json":
            delta["content"] = ""
        if not delta and finish is None:
            return None
        choice = {"index": 0, "finish_reason": finish, "logprobs": None, "delta": delta}
        usage = usage_json(event.usage, event.cost) if event.usage is not None and self.call.include_usage else None
        chunk = self._chunk([choice], usage)
        if event.raw_chunk is not None:
            chunk["tensorzero_raw_chunk"] = event.raw_chunk
        if event.raw_usage is not None:
            chunk["tensorzero_raw_usage"] = entries_json(event.raw_usage)
        if event.raw_response is not None:
            chunk["tensorzero_raw_response"] = entries_json(event.raw_response)
        return chunk

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": ids.text(self.stream.inference_id),
            "episode_id": ids.text(self.stream.episode_id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": response_model(self.call, self.stream.variant_name),
            "system_fingerprint": "",
            "service_tier": None,
            "choices": choices,
            "usage": usage,
        }


def embeddings_json(result: EmbeddingResult, encoding: str, prefix: str = "tensorzero::") -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding_vector(v, encoding)}
            for i, v in enumerate(result.embeddings)
        ],
        "model": f"{prefix}embedding_model_name::{result.model_name}",
        "usage": {
            "prompt_tokens": result.usage.input_tokens or 0,
            "total_tokens": result.usage.input_tokens or 0,
            "tensorzero_cost": result.cost,
        },
    }


def openai_error_object(exc: LsdError, *, with_error_json: bool = False) -> dict[str, Any]:
    """TensorZero's OpenAI-compatible error, `{"error": {"message", "error_json"?, "tensorzero_error_json"?}}`,
    plus OpenAI's `type`, `code` and `param` (LSD's error code and field) so the OpenAI SDK reads it."""
    if isinstance(exc, ProviderAnswer):
        return {"error": _provider_answer(exc)}
    error: dict[str, Any] = {"message": exc.message}
    if with_error_json:
        details = error_json(exc)
        error["error_json"] = details  # TensorZero's deprecated name, still sent beside the new one
        error["tensorzero_error_json"] = details
    error.update(type=exc.error_code, code=exc.error_code, param=exc.field)
    if isinstance(exc, InternalError):
        error["error_id"] = exc.error_id
    if isinstance(exc, RateLimited):
        error["rule"] = exc.rule
    return {"error": error}


# A passed-on answer's `type` when the provider's body names none (an Anthropic-bodied provider's 529, a plain body).
_ANSWER_TYPES = {400: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def _provider_answer(exc: ProviderAnswer) -> dict[str, Any]:
    """A provider's answer passed on (the Responses API): its own message, `type`, `code` and `param` when its
    body is OpenAI's (`context_length_exceeded`, `rate_limit_exceeded`)."""
    own = exc.provider_error()
    kind = own.get("type") if isinstance(own.get("type"), str) else None
    code = own.get("code") if isinstance(own.get("code"), str) else None  # (Google's is its HTTP status: not one)
    if code is None and exc.context_overflow:  # another vendor's overflow, in the code OpenAI clients act on
        code = "context_length_exceeded"
    elif code is None and exc.http_status == 429:  # another vendor's rate limit (Anthropic's names no code)
        code = "rate_limit_exceeded"
    return {
        "message": exc.message,
        "type": kind or _ANSWER_TYPES.get(exc.http_status, "server_error"),
        "code": code,
        "param": own.get("param") if isinstance(own.get("param"), str) else None,
    }


def openai_error_body(exc: LsdError, *, with_error_json: bool = False) -> bytes:
    return orjson.dumps(openai_error_object(exc, with_error_json=with_error_json))


def embedding_vector(values: tuple[float, ...], encoding: str) -> list[float] | str:
    """`base64` is what the OpenAI SDK asks for by default: little-endian float32s."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return list(values)

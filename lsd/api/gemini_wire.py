"""Gemini's generateContent answers, stream chunks and errors, built from the engine's typed results (the request
side: lsd.api.gemini_request).

An answer is one GenerateContentResponse with one candidate; its `responseId` is the inference id's 32 hex digits
(the id `/feedback` takes) and `modelVersion` the model as the URL named it. Function calls carry their `id` (a
Gemini client sends it back on the function response). Thoughts are parts with `thought: true`; signatures follow
lsd.api.gemini_signatures. A stream sends text and thoughts as they come and each function call whole, in the last
chunk (Gemini streams a call in one piece; other vendors stream its arguments in fragments). Usage: promptTokenCount
is every input token (cachedContentTokenCount the cached part), candidatesTokenCount the answer without its thinking
(thoughtsTokenCount, when the provider told it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from lsd.api.gemini_request import GenerateRequest
from lsd.api.gemini_signatures import is_geminis, wrapped
from lsd.api.inbound import tool_input
from lsd.api.provider_answer import ProviderAnswer, retry_after_s
from lsd.errors import AllAttemptsFailed, InternalError, LsdError
from lsd.inference.result import InferenceResult, ResultBlock, ToolCallOutput
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.providers.base import json_object
from lsd.providers.gemini.wire import GROUNDING
from lsd.types import Text, Thought, ToolCall, Unknown, Usage

FINISH_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "stop": "STOP",
        "stop_sequence": "STOP",
        "tool_call": "STOP",  # Gemini ends a turn that calls functions with STOP
        "length": "MAX_TOKENS",
        "content_filter": "SAFETY",
        "unknown": "STOP",
    }
)
# google.rpc.Code names, as Google's error bodies give them (the SDKs retry 429 and 5xx).
_STATUSES: Mapping[int, str] = MappingProxyType(
    {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        405: "UNIMPLEMENTED",
        408: "DEADLINE_EXCEEDED",
        409: "ABORTED",
        413: "INVALID_ARGUMENT",
        429: "RESOURCE_EXHAUSTED",
        431: "INVALID_ARGUMENT",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
        529: "UNAVAILABLE",
    }
)


OVERFLOW_WORDS = "exceeds the maximum number of tokens"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def finish_reason(reason: str | None) -> str:
    return FINISH_REASONS.get(reason or "stop", "STOP")


def usage_json(usage: Usage) -> dict[str, int]:
    prompt, output = usage.input_tokens or 0, usage.output_tokens or 0
    thoughts = usage.reasoning_tokens
    out = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output - (thoughts or 0),
        "totalTokenCount": prompt + output,
    }
    if usage.cache_read_input_tokens:
        out["cachedContentTokenCount"] = usage.cache_read_input_tokens
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out


def response_json(call: GenerateRequest, result: InferenceResult) -> dict[str, Any]:
    """The whole answer as a GenerateContentResponse."""
    grounding = None
    if result.output is not None:
        parts: list[dict[str, Any]] = [{"text": result.output.raw or ""}]
    else:
        blocks = result.content
        if (
            blocks
            and type(blocks[-1]) is Unknown
            and isinstance(blocks[-1].data, dict)
            and GROUNDING in blocks[-1].data
        ):
            grounding, blocks = blocks[-1].data[GROUNDING], blocks[:-1]  # the candidate's, not a part
        parts = Parts().blocks(blocks)
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": parts},
        "finishReason": finish_reason(result.finish_reason),
        "index": 0,
    }
    if grounding is not None:
        candidate["groundingMetadata"] = grounding
    return {
        "candidates": [candidate],
        "usageMetadata": usage_json(result.usage),
        "modelVersion": call.model,
        "responseId": result.inference_id.hex,
    }


class Unservable(AllAttemptsFailed):
    """Every attempt failed for a reason a new call would meet again (a provider refusing the gateway's key, a key
    not set): a 400 FAILED_PRECONDITION on the Gemini route, since Gemini's clients retry any 5xx, ten times over
    minutes, and read no `x-should-retry`."""

    http_status = 400

    @classmethod
    def of(cls, exc: AllAttemptsFailed) -> Unservable:
        unservable = cls(exc.failures)
        unservable.inference = exc.inference
        return unservable


def blocked_json(call: GenerateRequest, reason: str) -> dict[str, Any]:
    """A prompt Gemini blocked, as Google answers it: no candidates, `promptFeedback.blockReason`. No `responseId`:
    the inference has no answer to give feedback on (its failed attempt is recorded)."""
    return {
        "promptFeedback": {"blockReason": reason},
        "usageMetadata": {"promptTokenCount": 0, "totalTokenCount": 0},
        "modelVersion": call.model,
    }


class Parts:
    """Result blocks as Gemini parts; a signature waits for the part after its thought (Gemini's own, or other
    vendors' thoughts wrapped whole: lsd.api.gemini_signatures)."""

    def __init__(self) -> None:
        self.signature: str | None = None  # Gemini's, for the next part that is not a thought
        self.foreign: list[Thought] = []  # other vendors' signed thoughts, for the next part that is not a thought

    @property
    def waiting(self) -> bool:
        return self.signature is not None or bool(self.foreign)

    def blocks(self, blocks: tuple[ResultBlock, ...]) -> list[dict[str, Any]]:
        parts = [part for block in blocks for part in self.block(block)]
        return parts + self.rest()

    def block(self, block: ResultBlock) -> list[dict[str, Any]]:
        if isinstance(block, Text):
            return [self.signed({"text": block.text})] if block.text or self.waiting else []
        if isinstance(block, ToolCallOutput):
            call = {"id": block.id, "name": block.raw_name, "args": tool_input(block)}
            return [self.signed({"functionCall": call})]
        if isinstance(block, Thought):
            return self.thought(block)
        if isinstance(block, Unknown) and isinstance(block.data, dict):
            return [dict(block.data)]  # a part the provider sent that LSD does not model (Gemini's executableCode)
        return []

    def thought(self, block: Thought) -> list[dict[str, Any]]:
        """Its text as a thought part; Gemini's signature on it (or, with no text, on the next part), another
        vendor's kept for the next part."""
        parts: list[dict[str, Any]] = [{"text": block.text, "thought": True}] if block.text else []
        if block.signature:
            if not is_geminis(block.provider_type):
                self.foreign.append(block)
            elif parts:
                parts[-1]["thoughtSignature"] = block.signature
            else:
                self.signature = block.signature
        return parts

    def signed(self, part: dict[str, Any]) -> dict[str, Any]:
        if self.foreign:
            part["thoughtSignature"], self.foreign = wrapped(self.foreign), []
        elif self.signature is not None:
            part["thoughtSignature"], self.signature = self.signature, None
        return part

    def rest(self) -> list[dict[str, Any]]:
        """A signature no part came after: on an empty text part, as Gemini sends one."""
        return [self.signed({"text": ""})] if self.waiting else []


class StreamWriter:
    """Turns one stream's events into GenerateContentResponse chunks: text and thought deltas as they come, each
    function call whole at the end (its argument fragments gathered), then the finish reason and usage. Another
    vendor's thought is gathered whole too, for the signature that carries it. An error is the last `data:`
    line, Google's error object, which the google-genai SDKs raise."""

    def __init__(self, call: GenerateRequest, stream: InferenceStream) -> None:
        self.call = call
        self.id = stream.inference_id.hex
        self.provider_type = getattr(getattr(stream, "provider", None), "type_name", None)
        self.geminis = is_geminis(self.provider_type)
        self.parts = Parts()
        self.calls: dict[str, tuple[str, list[str]]] = {}  # id -> (name, argument fragments)
        self.thinking: list[str] = []  # another vendor's thought text so far (its signature ends it)
        self.failed = False

    def chunk(self, event: StreamEvent) -> dict[str, Any] | None:
        """The chunk for one event; None when it has nothing to send yet."""
        if self.failed:
            return None
        if event.error is not None:
            self.failed = True
            return error_object(event.error)
        parts: list[dict[str, Any]] = []
        for block in event.content:
            if isinstance(block, ToolCall):
                self.calls.setdefault(block.id, (block.name, []))[1].append(block.arguments)
            elif isinstance(block, Thought):
                parts += self._thought(block)
            elif isinstance(block, Text) and (block.text or self.parts.waiting):
                self.thinking = []
                parts.append(self.parts.signed({"text": block.text}))
        if event.usage is None:
            return self._chunk(parts) if parts else None
        for call_id, (name, fragments) in self.calls.items():
            call = {"id": call_id, "name": name, "args": json_object("".join(fragments) or "{}") or {}}
            parts.append(self.parts.signed({"functionCall": call}))
        parts += self.parts.rest()
        chunk = self._chunk(parts, finish_reason(event.finish_reason))
        chunk["usageMetadata"] = usage_json(event.usage)
        return chunk

    def _thought(self, block: Thought) -> list[dict[str, Any]]:
        if self.geminis:
            return self.parts.thought(block)
        # Another vendor's: its text streams as thought parts; its signature ends it and carries it whole.
        if block.text is None:  # a redacted thought, or encrypted reasoning: a signature alone
            if block.signature:
                self.parts.foreign.append(Thought(None, block.signature, provider_type=self.provider_type))
            return []
        self.thinking.append(block.text)
        if block.signature:
            text, self.thinking = "".join(self.thinking), []
            self.parts.foreign.append(Thought(text, block.signature, provider_type=self.provider_type))
        return [{"text": block.text, "thought": True}] if block.text else []

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "modelVersion": self.call.model, "responseId": self.id}


def sse_line(data: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\r\n\r\n"


def error_object(exc: LsdError) -> dict[str, Any]:
    """Google's error shape, `{"error": {"code", "message", "status"}}`; the message names the field (a provider's
    error passed on keeps the provider's own message)."""
    message = exc.message
    if exc.field and not message.startswith(exc.field):
        message = f"{exc.field}: {message}"
    if isinstance(exc, ProviderAnswer) and exc.context_overflow and OVERFLOW_WORDS not in message:
        message = f"The input token count {OVERFLOW_WORDS} allowed: {message}"  # Gemini's words for it
    status = exc.http_status
    name = "FAILED_PRECONDITION" if isinstance(exc, Unservable) else _STATUSES.get(status, "UNKNOWN")
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    details: list[Any] = []
    if isinstance(exc, InternalError):
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": exc.error_id})
    if isinstance(exc, ProviderAnswer):  # a Gemini provider's own answer: its status and details as Google gave them
        given = exc.provider_error()
        if isinstance(given.get("status"), str) and given["status"].isupper():
            error["status"] = given["status"]
        if isinstance(given.get("details"), list):
            details += given["details"]  # QuotaFailure (a daily quota: Gemini CLI stops), RetryInfo, ErrorInfo
    wait = retry_after_s(exc)
    if wait is not None and not any(isinstance(d, dict) and d.get("@type") == RETRY_INFO for d in details):
        details.append({"@type": RETRY_INFO, "retryDelay": f"{math.ceil(wait)}s"})  # Gemini CLI reads no Retry-After
    if details:
        error["details"] = details
    return {"error": error}


def gemini_error_body(exc: LsdError) -> bytes:
    return orjson.dumps(error_object(exc))

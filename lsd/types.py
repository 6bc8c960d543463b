"""Frozen value types shared by every layer: content blocks, messages, usage, provider requests/responses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field, replace
from typing import Any, Literal, TypeAlias

from lsd.immutable import immutable

Role: TypeAlias = Literal["user", "assistant"]
FinishReason: TypeAlias = Literal["stop", "stop_sequence", "length", "tool_call", "content_filter", "unknown"]
JsonMode: TypeAlias = Literal["off", "on", "strict", "tool"]
Json: TypeAlias = Any


@immutable
class Text:
    text: str
    type: Literal["text"] = "text"


@immutable
class RawText:
    """Text that bypasses templates."""

    value: str
    type: Literal["raw_text"] = "raw_text"


@immutable
class Template:
    """Arguments for a named template (or the role's schema'd template)."""

    name: str
    arguments: Mapping[str, Json]
    type: Literal["template"] = "template"


@immutable
class ToolCall:
    """A tool call made by the model; `arguments` is the raw JSON string the model produced."""

    id: str
    name: str
    arguments: str
    type: Literal["tool_call"] = "tool_call"


@immutable
class ToolResult:
    id: str
    name: str
    result: str
    type: Literal["tool_result"] = "tool_result"
    # The tool failed (Anthropic's `is_error`, Bedrock's status "error"); None, not False, when it did not say, so
    # that the stored block has no key for it.
    is_error: bool | None = None


@immutable
class File:
    """An image or other file, by URL or inline base64 data."""

    mime_type: str | None
    url: str | None = None
    data: str | None = None
    detail: str | None = None
    filename: str | None = None
    type: Literal["file"] = "file"


@immutable
class Thought:
    text: str | None
    signature: str | None = None
    summary: tuple[Json, ...] | None = None
    type: Literal["thought"] = "thought"
    # The provider type that wrote it (TensorZero's field): its signature is that vendor's, so it goes back only to
    # a provider of that type (lsd.inference.routing). None: not known, sent to any.
    provider_type: str | None = None


@immutable
class Unknown:
    data: Json
    model_name: str | None = None
    provider_name: str | None = None
    type: Literal["unknown"] = "unknown"


ContentBlock: TypeAlias = Text | RawText | Template | ToolCall | ToolResult | File | Thought | Unknown
OutputBlock: TypeAlias = Text | ToolCall | Thought | Unknown


@immutable
class Message:
    role: Role
    content: tuple[ContentBlock, ...]


@immutable
class Input:
    """The request's input: an optional system (string or schema'd arguments) and the messages."""

    system: str | Mapping[str, Json] | None
    messages: tuple[Message, ...]


@immutable
class Usage:
    """Token counts; None when the provider did not report one. `input_tokens` counts every input token, the
    cached ones included; the two cache counts are the parts of it read from / written to the provider's
    prompt cache (priced apart). `reasoning_tokens`, the part of `output_tokens` the model spent thinking, is passed
    on to the clients that show it (OpenAI's `reasoning_tokens`), not stored."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            add(self.input_tokens, other.input_tokens),
            add(self.output_tokens, other.output_tokens),
            add(self.cache_read_input_tokens, other.cache_read_input_tokens),
            add(self.cache_write_input_tokens, other.cache_write_input_tokens),
            add(self.reasoning_tokens, other.reasoning_tokens),
        )


# InferenceParams' reasoning and serving controls given as strings, sent under these names by the Chat Completions
# providers that take them (OpenAI and Azure all three).
CONTROL_PARAMS = ("reasoning_effort", "service_tier", "verbosity")


@immutable
class InferenceParams:
    """Sampling parameters; None means 'not set' (the provider's default applies)."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_sequences: tuple[str, ...] | None = None
    json_mode: JsonMode | None = None
    # TensorZero's reasoning and serving controls; each provider type sends those it has (docs/configuration.md)
    reasoning_effort: str | None = None
    service_tier: str | None = None
    thinking_budget_tokens: int | None = None
    verbosity: str | None = None
    # OpenAI's prompt-cache routing hint (Codex: its session id); sent to OpenAI's own API only, never a cache key
    prompt_cache_key: str | None = None

    def merged(self, override: InferenceParams) -> InferenceParams:
        """`override`'s set fields win over ours (ourselves, not a copy, when it sets none: most requests)."""
        changes = {name: value for name in _PARAM_FIELDS if (value := getattr(override, name)) is not None}
        return replace(self, **changes) if changes else self


_PARAM_FIELDS = tuple(InferenceParams.__dataclass_fields__)


@immutable
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Json]
    strict: bool = False


@immutable
class BodyPatch:
    """An `extra_body` entry: set `value` at the JSON Pointer (a final "-" appends), or delete it. Optional
    filters limit it to a variant, a model or a model's provider."""

    pointer: str
    value: Json = None
    delete: bool = False
    variant_name: str | None = None
    model_name: str | None = None
    provider_name: str | None = None


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\0]")


@immutable
class HeaderPatch:
    """An `extra_headers` entry: set or delete one HTTP header, with the same optional filters."""

    name: str
    value: str | None = None
    delete: bool = False
    variant_name: str | None = None
    model_name: str | None = None
    provider_name: str | None = None


@immutable
class ProviderRequest:
    """What a provider is asked to do: rendered messages (templates already applied) and parameters."""

    system: str | None
    messages: tuple[Message, ...]
    params: InferenceParams = field(default_factory=InferenceParams)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | Mapping[str, str] | None = None
    parallel_tool_calls: bool | None = None
    output_schema: Mapping[str, Json] | None = None
    stream: bool = False
    schema_strict: bool = True  # OpenAI's `strict` for the schema (InferenceRequest.output_schema_strict)


@immutable
class ProviderResponse:
    """One successful provider call; raw_request/raw_response are what crossed the wire (redacted later).
    A JSON request body may stay the bytes sent: recording refers to the prompt inside it and decodes only the rest
    (a 100 KiB prompt is never decoded again); `request_text` is the whole as text."""

    content: tuple[OutputBlock, ...]
    usage: Usage
    finish_reason: FinishReason | None
    raw_request: str | bytes
    raw_response: str
    cost: float | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)  # already redacted
    api_key_sha256: str | None = None

    @property
    def request_text(self) -> str:
        raw = self.raw_request
        return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


@immutable
class StreamChunk:
    """One streamed delta: text, a tool call fragment, (last) usage and finish reason, or an error.

    Deltas: `Text(text=<new text>)`; `ToolCall(id, name, arguments=<new argument text>)` where `name` is the
    tool name on the first delta of that call and "" after; `Thought(text=<new text>)`. `error` is a provider's
    error event that does not end its stream (the message; the chunk has no content): the client is told and the
    stream is read on, as TensorZero does. A provider raises ProviderError instead for an error that ends it.
    """

    content: tuple[OutputBlock, ...] = ()
    error: str | None = None
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    raw: str = ""
    # Set on the last chunk by providers that know them: what a non-streamed call reports in ProviderResponse.
    cost: float | None = None
    raw_request: str | None = None
    request_headers: Mapping[str, str] | None = None
    api_key_sha256: str | None = None
    # The provider's counts so far, on the first content chunk after it gave them (Anthropic's message_start: the
    # input and cache counts): what a stream that ends early (the client gone, an error event) is priced from.
    counted: Usage | None = None


# One embedding input: a text, or the token ids of a text already tokenized for the model (OpenAI's API takes both;
# LangChain's OpenAIEmbeddings sends token ids by default).
EmbeddingInput = str | tuple[int, ...]


@immutable
class EmbeddingResponse:
    embeddings: tuple[tuple[float, ...], ...]
    usage: Usage
    raw_request: str
    raw_response: str
    cost: float | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)  # already redacted
    api_key_sha256: str | None = None

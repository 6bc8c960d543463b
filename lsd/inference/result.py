"""What an inference returns, typed: the engine's results, which each wire format (lsd.api.*_wire) turns into JSON.

Nothing here knows a wire format. `InferenceResult` is a finished chat or json inference (plain, or a stream's
whole answer); `EmbeddingResult` a finished embedding inference. Their `attempts` are every provider call made,
in order, the successful one last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from uuid import UUID

import orjson

from lsd.immutable import immutable
from lsd.inference.schemas import conforms
from lsd.types import OutputBlock, Text, Thought, ToolCall, Unknown, Usage

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lsd.inference.raw_entries import RawEntry
    from lsd.inference.recording import Attempt
    from lsd.inference.tools import ToolParams


@immutable
class ToolCallOutput:
    """A tool call in a result: `raw_name`/`raw_arguments` as the model produced them; `name`/`arguments` the same
    once checked, None when the call names no offered tool or its arguments are not valid JSON matching the tool's
    parameters."""

    id: str
    raw_name: str
    raw_arguments: str
    name: str | None
    arguments: Any
    type: Literal["tool_call"] = "tool_call"


ResultBlock: TypeAlias = Text | ToolCallOutput | Thought | Unknown


@immutable
class JsonOutput:
    """A json function's answer: `raw` is the model's text; `parsed` its JSON value, None when invalid or
    off-schema."""

    raw: str | None
    parsed: Any | None


@immutable
class InferenceResult:
    inference_id: UUID
    episode_id: UUID
    function_name: str
    function_type: str  # chat | json
    variant_name: str
    model_name: str
    provider_name: str
    content: tuple[ResultBlock, ...]  # chat functions (empty for json)
    output: JsonOutput | None  # json functions (None for chat)
    usage: Usage
    cost: float | None
    finish_reason: str | None
    cached: bool = False
    original_response: str | None = None  # only when the request asked for it
    attempts: tuple[Attempt, ...] = ()
    raw_usage: tuple[RawEntry, ...] | None = None  # include_raw_usage
    raw_response: tuple[RawEntry, ...] | None = None  # include_raw_response

    @property
    def text(self) -> str:
        """The answer's text: a chat result's text blocks joined, or a json result's raw text."""
        if self.output is not None:
            return self.output.raw or ""
        return "".join(b.text for b in self.content if type(b) is Text)


@immutable
class EmbeddingResult:
    inference_id: UUID
    model_name: str
    provider_name: str
    embeddings: tuple[tuple[float, ...], ...]
    usage: Usage
    cost: float | None
    attempts: tuple[Attempt, ...] = ()


def check_tool_call(block: ToolCall, tools: ToolParams | None) -> ToolCallOutput:
    spec = next((t for t in tools.tools if t.name == block.name), None) if tools else None
    arguments: Any = None
    try:
        parsed = orjson.loads(block.arguments) if block.arguments else {}
    except orjson.JSONDecodeError:
        parsed = None
    if spec is not None and isinstance(parsed, dict) and conforms(parsed, spec.parameters):
        arguments = parsed
    return ToolCallOutput(block.id, block.name, block.arguments, block.name if spec is not None else None, arguments)


def chat_content(content: Sequence[OutputBlock], tools: ToolParams | None) -> tuple[ResultBlock, ...]:
    """A chat answer's blocks, tool calls checked against the tools offered."""
    return tuple(check_tool_call(b, tools) if isinstance(b, ToolCall) else b for b in content)


def json_output(content: Sequence[OutputBlock], schema: Mapping[str, Any] | None) -> JsonOutput:
    raw = "".join(b.text for b in content if isinstance(b, Text)) or None
    if raw is None:
        return JsonOutput(None, None)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return JsonOutput(raw, None)
    if schema and not conforms(parsed, schema):
        return JsonOutput(raw, None)
    return JsonOutput(raw, parsed)


def typed_output(
    function_type: str,
    content: Sequence[OutputBlock],
    tools: ToolParams | None,
    schema: Mapping[str, Any] | None,
) -> tuple[tuple[ResultBlock, ...], JsonOutput | None]:
    """A provider's answer as a result's (content, output): chat blocks checked, or json parsed and validated."""
    if function_type == "json":
        return (), json_output(content, schema)
    return chat_content(content, tools), None

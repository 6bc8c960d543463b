"""A streamed answer put back together from its deltas (Aggregate), and the usage estimate for a stream that
ended before its provider counted it (estimated_usage)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import orjson

from lsd.types import OutputBlock, ProviderRequest, StreamChunk, Text, Thought, ToolCall, ToolResult, Usage

CHARS_PER_TOKEN = 4  # the estimate's rule of thumb for English text (OpenAI's: ~4 characters a token)


@dataclass
class Slot:
    """One block of the answer being put back together: text, a thought, or a tool call."""

    __slots__ = ("closed", "kind", "name", "parts", "signature")

    def __init__(self, kind: str, name: str = "") -> None:
        self.kind = kind  # "text" | "thought" | "signed" (a thought block of its own: no text) | "tool:<id>"
        self.parts: list[str] = []
        self.signature: str | None = None
        self.closed = False  # a thought that got its signature: the next thought text starts another
        self.name = name  # a tool call's


@dataclass
class Aggregate:
    """The whole answer, put back together from deltas, its blocks in the order the provider sent them.

    Thoughts follow the parsers' convention: `Thought(text)` continues the open thought (or opens one);
    `Thought("", signature)` is the open thought's signature (Anthropic's signature_delta), which closes it;
    `Thought(None, signature)` is a block of its own (a redacted thought, or Gemini's signature of the part after it).
    So several thinking blocks, a redacted one between them, and a signature on a function call stay as they came,
    as in the non-streamed answer."""

    slots: list[Slot] = field(default_factory=list)
    calls: dict[str, Slot] = field(default_factory=dict)  # tool call id -> its slot
    open_text: list[str] | None = None  # the parts of the last slot while it is text: a token's whole work
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    cost: float | None = None
    raw: list[str] = field(default_factory=list)
    raw_request: str | None = None
    request_headers: dict[str, str] | None = None
    api_key_sha256: str | None = None
    errors: int = 0  # the provider's error events that did not end the stream
    estimated: tuple[str, ...] = ()  # usage counts estimated for a stream that ended early
    counted: Usage | None = None  # the provider's counts so far (StreamChunk.counted)

    def answer_chars(self) -> int:
        """The characters streamed so far (text, thoughts, tool names and arguments)."""
        return sum(len(part) for slot in self.slots for part in slot.parts) + sum(
            len(s.name) for s in self.calls.values()
        )

    def add(self, chunk: StreamChunk) -> None:
        for block in chunk.content:
            if type(block) is Text:
                if self.open_text is not None:
                    self.open_text.append(block.text)
                else:
                    slot = Slot("text")
                    slot.parts.append(block.text)
                    self.slots.append(slot)
                    self.open_text = slot.parts
            elif isinstance(block, ToolCall):
                self._call(block)
            elif isinstance(block, Thought):
                self._thought(block)
        if chunk.usage is not None:
            self.usage = self.usage + chunk.usage
        if chunk.counted is not None:
            self.counted = chunk.counted
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.cost is not None:
            self.cost = chunk.cost
        if chunk.raw:
            self.raw.append(chunk.raw)
        if chunk.raw_request is not None:
            self.raw_request = chunk.raw_request
        if chunk.request_headers is not None:
            self.request_headers = dict(chunk.request_headers)
        if chunk.api_key_sha256 is not None:
            self.api_key_sha256 = chunk.api_key_sha256

    def _call(self, block: ToolCall) -> None:
        slot = self.calls.get(block.id)
        if slot is None:
            slot = self.calls[block.id] = Slot(f"tool:{block.id}", block.name)
            self.slots.append(slot)
            self.open_text = None
        elif block.name and not slot.name:
            slot.name = block.name
        slot.parts.append(block.arguments)

    def _thought(self, block: Thought) -> None:
        if not block.text and not block.signature:
            return  # nothing (a part with neither text nor signature)
        last = self.slots[-1] if self.slots else None
        open_thought = last if last is not None and last.kind == "thought" and not last.closed else None
        self.open_text = None
        if block.text is None:  # a block of its own
            slot = Slot("signed")
            slot.signature, slot.closed = block.signature, True
            self.slots.append(slot)
            return
        if open_thought is None:
            open_thought = Slot("thought")
            self.slots.append(open_thought)
        if block.text:
            open_thought.parts.append(block.text)
        if block.signature:
            open_thought.signature, open_thought.closed = block.signature, True

    def blocks(self, provider_type: str | None = None) -> tuple[OutputBlock, ...]:
        """The answer's blocks; its thoughts marked as `provider_type`'s (Thought.provider_type)."""
        out: list[OutputBlock] = []
        for slot in self.slots:
            if slot.kind == "text":
                out.append(Text("".join(slot.parts)))
            elif slot.kind == "thought":  # "" when only its signature came (Claude 4 with the thinking omitted)
                out.append(Thought("".join(slot.parts), slot.signature, provider_type=provider_type))
            elif slot.kind == "signed":  # a redacted thought, or Gemini's signature of the part after it
                out.append(Thought(None, slot.signature, provider_type=provider_type))
            else:
                out.append(ToolCall(slot.kind[5:], slot.name, "".join(slot.parts)))
        return tuple(out)


def estimated_usage(usage: Usage, request: ProviderRequest, answer_chars: int) -> tuple[Usage, tuple[str, ...]]:
    """`usage` with each count the provider did not report estimated at CHARS_PER_TOKEN characters a token
    (rounded up): input from the rendered prompt's text (system, message text, tool calls and results; files not
    counted), output from the answer streamed so far. Also the names of the counts estimated."""
    estimated: list[str] = []
    inputs, outputs = usage.input_tokens, usage.output_tokens
    if inputs is None:
        inputs = math.ceil(prompt_chars(request) / CHARS_PER_TOKEN)
        estimated.append("input_tokens")
    if outputs is None:
        outputs = math.ceil(answer_chars / CHARS_PER_TOKEN)
        estimated.append("output_tokens")
    return replace(usage, input_tokens=inputs, output_tokens=outputs), tuple(estimated)


def prompt_chars(request: ProviderRequest) -> int:
    """The prompt's size in characters: system, message text, tool calls and results, thoughts, and the tool
    definitions and output schema a provider bills as prompt too (a chat UI sends dozens of tools each turn)."""
    chars = len(request.system or "")
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(orjson.dumps(tool.parameters))
    if request.output_schema is not None:
        chars += len(orjson.dumps(request.output_schema))
    for message in request.messages:
        for block in message.content:
            if isinstance(block, Text):
                chars += len(block.text)
            elif isinstance(block, ToolCall):
                chars += len(block.name) + len(block.arguments)
            elif isinstance(block, ToolResult):
                chars += len(block.result)
            elif isinstance(block, Thought):
                chars += len(block.text or "")
    return chars

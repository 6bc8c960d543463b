"""dicl (dynamic in-context learning): the input as JSON text, after the stored examples nearest to it.

The prompt is TensorZero's shape: a system text of instructions, then each example as a user message (its input
as JSON) and an assistant message (its output), the nearest example last, then the input itself as JSON. The
input's JSON text is also what the embedding model embeds, for the lookup and when examples are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from lsd.config.model import DiclConfig
from lsd.inference.recording import input_to_json
from lsd.store.dicl import Neighbour
from lsd.types import Input, Message, ProviderRequest, Text

DEFAULT_INSTRUCTIONS = (
    "Learn from the examples below how inputs map to outputs, then answer the last input in the same way. Each "
    "input is a JSON object; answer as the examples' outputs do."
)


def input_text(input_json: Any) -> str:
    """An input (as stored: {"system"?, "messages"}) as the JSON text the model sees and the embedding model embeds."""
    return orjson.dumps(input_json, option=orjson.OPT_SORT_KEYS).decode()


def output_text(output: Any) -> str:
    """A stored output as the assistant's text: a json output's raw text, or a chat output's text blocks (tool
    calls as JSON objects)."""
    if isinstance(output, dict):
        raw = output.get("raw")
        return raw if isinstance(raw, str) else orjson.dumps(output.get("parsed")).decode()
    parts: list[str] = []
    for block in output if isinstance(output, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") == "tool_call":
            call = {"name": block.get("name") or block.get("raw_name"), "arguments": block.get("arguments")}
            parts.append(orjson.dumps({"tool_call": call}).decode())
    return "\n".join(parts)


def prompt(config: DiclConfig, input: Input) -> tuple[str | None, tuple[Message, ...]]:
    """The system text and messages before any example: the instructions and the input as JSON."""
    return config.system_instructions or DEFAULT_INSTRUCTIONS, (
        Message("user", (Text(input_text(input_to_json(input))),)),
    )


def with_examples(request: ProviderRequest, neighbours: Sequence[Neighbour]) -> ProviderRequest:
    """`request` with the examples before its messages, the nearest last."""
    turns: list[Message] = []
    for example in reversed(neighbours):
        turns.append(Message("user", (Text(input_text(example.input)),)))
        turns.append(Message("assistant", (Text(output_text(example.output)),)))
    return replace(request, messages=(*turns, *request.messages))

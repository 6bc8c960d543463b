"""chain_of_thought (json functions): the model answers {"thinking", "response"}; the response is the output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from lsd.types import OutputBlock, ProviderRequest, Text, Thought


def wrapped_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The function's output schema inside an object that asks for the reasoning first."""
    return {
        "type": "object",
        "properties": {
            "thinking": {"type": "string", "description": "Think step by step before giving the response."},
            "response": dict(schema) if schema else {},
        },
        "required": ["thinking", "response"],
        "additionalProperties": False,
    }


def request_with_thinking(request: ProviderRequest) -> ProviderRequest:
    return replace(request, output_schema=wrapped_schema(request.output_schema))


def unwrapped(content: tuple[OutputBlock, ...]) -> tuple[OutputBlock, ...]:
    """The answer as the json function's: the thinking as a Thought block, the response as the JSON text. An
    answer that is not the wrapper object is kept as it came: it is then checked against the function's own schema,
    like any json answer (docs/experiments.md)."""
    text = "".join(b.text for b in content if isinstance(b, Text))
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError:
        return content
    if not isinstance(answer, dict) or "response" not in answer:
        return content
    thinking = answer.get("thinking")
    response = Text(orjson.dumps(answer["response"]).decode())
    return (Thought(thinking), response) if isinstance(thinking, str) else (response,)

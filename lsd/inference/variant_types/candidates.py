"""Candidates of a best_of_n_sampling or mixture_of_n variant, and how they are shown to its evaluator or fuser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import orjson

from lsd.immutable import immutable
from lsd.types import Message, ProviderRequest, ProviderResponse, Text, ToolCall


@immutable
class Candidate:
    """One candidate's answer: the variant that made it and its provider response (content already read, e.g. a
    chain_of_thought candidate's response without its thinking)."""

    variant_name: str
    response: ProviderResponse


def candidate_text(response: ProviderResponse) -> str:
    """A candidate's answer as text: its text blocks, and each tool call as a JSON object."""
    parts: list[str] = []
    for block in response.content:
        if isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, ToolCall):
            call = {"tool_call": {"name": block.name, "arguments": block.arguments}}
            parts.append(orjson.dumps(call).decode())
    return "\n".join(parts)


def listing(candidates: Sequence[Candidate]) -> str:
    """The candidates in one user message, each between tags that carry its index."""
    return "\n".join(
        f'<candidate index="{i}">\n{candidate_text(c.response)}\n</candidate>' for i, c in enumerate(candidates)
    )


def with_candidates(
    request: ProviderRequest, system: str, candidates: Sequence[Candidate], ask: str
) -> ProviderRequest:
    """`request` (the evaluator's or fuser's own rendering of the input) with `system` instead of its system
    text, and a last user message listing the candidates, then `ask`."""
    last = Message("user", (Text(f"{listing(candidates)}\n\n{ask}"),))
    return replace(request, system=system, messages=(*request.messages, last))


def problem(original_system: str | None) -> str:
    """The original system text, fenced, to quote inside the evaluator's or fuser's own instructions."""
    return f"\n------\n{original_system}\n------\n" if original_system else " (given by the conversation below)\n"

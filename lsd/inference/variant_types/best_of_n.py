"""best_of_n_sampling: the evaluator sees the conversation and every candidate, and answers the index of the best."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from lsd.inference.variant_types.candidates import Candidate, problem, with_candidates
from lsd.types import ProviderRequest, ProviderResponse, Text

JUDGE_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"thinking": {"type": "string"}, "answer_choice": {"type": "integer"}},
    "required": ["thinking", "answer_choice"],
    "additionalProperties": False,
}

_ASK = (
    'Judge the candidate responses above. Say in "thinking" how well each one answers the conversation and follows '
    'its instructions, then give in "answer_choice" the index of the best one. Answer with a JSON object only: '
    '{"thinking": "...", "answer_choice": <index>}.'
)


def evaluator_request(request: ProviderRequest, candidates: Sequence[Candidate]) -> ProviderRequest:
    """The evaluator's call: its own rendering of the input, a system text that makes it a judge, the candidates
    listed, a JSON answer asked for (no tools: it chooses, it does not act)."""
    system = (
        "You compare candidate responses to the following problem and choose the best one:"
        + problem(request.system)
        + "The conversation between the user and the assistant follows; its last message lists the candidates."
    )
    judged = with_candidates(request, system, candidates, _ASK)
    return replace(judged, output_schema=JUDGE_SCHEMA, tools=(), tool_choice=None, parallel_tool_calls=None)


def choice(response: ProviderResponse, count: int) -> int | None:
    """The index the evaluator chose, or None when its answer names no candidate."""
    text = "".join(b.text for b in response.content if isinstance(b, Text))
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    index = answer.get("answer_choice") if isinstance(answer, dict) else None
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count:
        return index
    return None


def chosen(response: ProviderResponse, candidates: Sequence[Candidate]) -> Candidate:
    """The evaluator's choice; a candidate drawn at random when its answer names none (as TensorZero does)."""
    index = choice(response, len(candidates))
    return candidates[index] if index is not None else random.choice(candidates)

"""`include_raw_usage` / `include_raw_response`: each model inference's own usage object and raw answer, as the
provider sent them, returned beside the normalised answer (TensorZero's `raw_usage` / `raw_response` entries).

An entry names the `model_inferences` row it came from (`model_inference_id`): the attempts of a request that asks
for entries get their row ids here, before their rows are built. Only successful, uncached calls have entries (a
failed attempt or a cache hit is not a model inference a client can read usage from)."""

from __future__ import annotations

from collections.abc import Iterable, MutableSequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import orjson

from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.recording import Attempt

# Where each wire keeps its usage: OpenAI, Anthropic, Bedrock and most others `usage`; Gemini `usageMetadata`;
# Anthropic's stream starts with `message_start`, whose message holds the input's counts.
_USAGE_KEYS = ("usage", "usageMetadata")


@immutable
class RawEntry:
    model_inference_id: UUID
    provider_type: str
    api_type: str  # chat_completions | embeddings
    data: Any  # raw_usage: the provider's usage object (None when it sent none); raw_response: its raw text


def with_row_ids(attempts: MutableSequence[Attempt]) -> None:
    """Give each attempt its model_inferences row id now (the rows are built later, with these ids)."""
    for i, attempt in enumerate(attempts):
        if attempt.row_id is None:
            attempts[i] = replace(attempt, row_id=uuid7(attempt.started_ms))


def raw_usage(attempts: Iterable[Attempt], api_type: str = "chat_completions") -> tuple[RawEntry, ...]:
    return tuple(RawEntry(i, a.provider_type, api_type, usage_object(a.raw_response)) for i, a in _entries_of(attempts))


def raw_responses(attempts: Iterable[Attempt], api_type: str = "chat_completions") -> tuple[RawEntry, ...]:
    return tuple(RawEntry(i, a.provider_type, api_type, a.raw_response or "") for i, a in _entries_of(attempts))


def entries_json(entries: tuple[RawEntry, ...]) -> list[dict[str, Any]]:
    return [
        {"model_inference_id": str(e.model_inference_id), "provider_type": e.provider_type, "api_type": e.api_type,
         "data": e.data}
        for e in entries
    ]  # fmt: skip


def usage_object(raw_response: str | None) -> dict[str, Any] | None:
    """The usage object in a provider's raw answer: the body's, or for a stream (its events' data, one a line) the
    usage objects of its events merged in order (later counts win). None when it holds none."""
    if not raw_response:
        return None
    try:
        events: list[Any] = [orjson.loads(raw_response)]  # a body (pretty-printed ones hold line breaks)
    except orjson.JSONDecodeError:
        events = []
        for line in raw_response.split("\n"):  # a stream's events
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    found: dict[str, Any] | None = None
    for event in events:
        for usage in _usages_in(event):
            found = {**found, **usage} if found is not None else dict(usage)
    return found


def _usages_in(event: Any) -> list[dict[str, Any]]:
    if not isinstance(event, dict):
        return []
    out = [event[k] for k in _USAGE_KEYS if isinstance(event.get(k), dict)]
    message = event.get("message")
    if isinstance(message, dict) and isinstance(message.get("usage"), dict):
        out.insert(0, message["usage"])
    return out


def _entries_of(attempts: Iterable[Attempt]) -> list[tuple[UUID, Attempt]]:
    """The attempts that are model inferences a client reads (succeeded, not from the cache), with their row ids."""
    return [(a.row_id, a) for a in attempts if a.error is None and not a.cached and a.row_id is not None]

"""The Responses API's `item_reference` input items: an output item of an earlier response LSD answered, named by
its id (`msg_`, `fc_`, `ctc_`, `ts_` or `rs_`, the inference id's hex and the item's index: lsd.api.responses_wire),
put back in the input as that response's item before the input is parsed (lsd.api.responses_items).

OpenAI keeps every stored response's items, and clients that leave `store` on (the Vercel AI SDK's default) send
earlier answers back by reference instead of whole. LSD records every answer, so it reads them back the same way
`previous_response_id` does: a reference is as good as the item it names, with the same rules (404 naming
`input[i].id` for an id of a response made with `store: false`, by another API key, or not found).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import orjson

from lsd.api.responses_request import stored_answer
from lsd.api.responses_wire import output_items
from lsd.errors import InvalidRequest, NotFound, PayloadTooLarge
from lsd.inference.result import ResultBlock, ToolCallOutput
from lsd.store.conversations import StoredConversation
from lsd.types import Text, ToolCall

ITEM_ID = re.compile(r"(?:msg|fc|ctc|ts|rs)_([0-9a-f]{32})_(\d{1,6})")

# How a referenced inference is read: (its id, the field to name in a 404, what to call it there) → it as stored.
Lookup = Callable[[UUID, str, str], Awaitable[StoredConversation]]


def references(raw_input: Any) -> dict[int, tuple[UUID, int]]:
    """The `item_reference` items of `input`, by their index: the inference each names and the index of its item
    in that response's `output`. 400 naming `input[i].id` for an id LSD did not make."""
    if not isinstance(raw_input, list):
        return {}
    found: dict[int, tuple[UUID, int]] = {}
    for i, item in enumerate(raw_input):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            item_id = item.get("id")
            match = ITEM_ID.fullmatch(item_id) if isinstance(item_id, str) else None
            if match is None:
                raise InvalidRequest.at(
                    f"input[{i}].id", f"not the id of an output item of a response LSD answered: {item_id!r}"
                )
            found[i] = (UUID(hex=match[1]), int(match[2]))
    return found


async def resolved(raw_input: list[Any], refs: Mapping[int, tuple[UUID, int]], lookup: Lookup, room: int) -> list[Any]:
    """`input` with each reference replaced by the item it names, each referenced response read once. The items
    put in may hold at most `room` bytes (as JSON): what the request could have sent whole within the body limit,
    so that small references never build an unbounded request (413 naming `input`); an item referenced twice is a
    400 (a copy of the same answer, which no client sends)."""
    answers: dict[UUID, list[dict[str, Any]]] = {}
    out = list(raw_input)
    seen: set[tuple[UUID, int]] = set()
    for i, (inference_id, index) in refs.items():
        field = f"input[{i}].id"
        if (inference_id, index) in seen:
            raise InvalidRequest.at(field, f"item {raw_input[i]['id']!r} is referenced twice")
        seen.add((inference_id, index))
        if inference_id not in answers:
            stored = await lookup(inference_id, field, f"item {raw_input[i]['id']!r}")
            answers[inference_id] = stored_items(inference_id, stored)
        items = answers[inference_id]
        if index >= len(items):
            raise NotFound(f"{field}: item {raw_input[i]['id']!r} not found", field=field)
        out[i] = items[index]
        room -= len(orjson.dumps(out[i]))
        if room < 0:
            raise PayloadTooLarge(
                "input: the items referenced make the request larger than gateway.max_body_bytes", field="input"
            )
    return out


def stored_items(inference_id: UUID, stored: StoredConversation) -> list[dict[str, Any]]:
    """A stored answer's `output` items, indexed as its response numbered them (each tool call as a function_call
    by the name the provider called it: how it was offered is that request's, not this one's)."""
    blocks = stored_answer(stored.output, stored.kind)
    if stored.kind == "json":
        return output_items(inference_id, (), "".join(b.text for b in blocks if isinstance(b, Text)))
    content: list[ResultBlock] = [
        ToolCallOutput(b.id, b.name, b.arguments, None, None) if isinstance(b, ToolCall) else b for b in blocks
    ]
    return output_items(inference_id, content, None)

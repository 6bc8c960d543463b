"""`POST /openai/v1/responses`: OpenAI's Responses API on the engine's one path (streamed too), and a
`previous_response_id` continued from the inference LSD stored for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from uuid import UUID

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lsd.api.access_log import note_result, note_stream
from lsd.api.auth import KEY_SCOPE, identify
from lsd.api.body import json_response_bytes, read_json
from lsd.api.responses_references import references, resolved
from lsd.api.responses_request import (
    STORE_TAG,
    ResponsesRequest,
    parse_responses_request,
    response_id,
    with_history,
)
from lsd.api.responses_wire import ResponseEvents, completed_json
from lsd.api.sse import EventStreamResponse, Final
from lsd.api.state import AppState
from lsd.errors import NotFound
from lsd.inference.streaming import InferenceStream, start_stream
from lsd.runtime import Runtime
from lsd.store.conversations import StoredConversation, find_conversation

# A previous response this process just answered (or one made moments ago, maybe by another process) may not be
# committed yet under async_writes: its rows are waited for this long before the id is called unknown.
COMMIT_WAIT_S = 5.0
COMMIT_POLL_S = (0.01, 0.02, 0.05, 0.1, 0.2)


async def responses(request: Request[AppState]) -> Response:
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    if isinstance(body, dict) and (refs := references(body.get("input"))):
        key_id = request.scope.get(KEY_SCOPE)

        async def lookup(inference_id: UUID, field: str, label: str) -> StoredConversation:
            return await stored_inference(services, inference_id, key_id, field, label)

        room = services.config.gateway.max_body_bytes - len(orjson.dumps(body))
        body = {**body, "input": await resolved(body["input"], refs, lookup, room)}
    call = parse_responses_request(body, services.config.inbound.openai.models)
    call = replace(call, request=identify(request.scope, call.request))
    if call.previous_response_id is not None:
        call = await continued(services, call, call.previous_response_id)
    if call.request.stream:
        stream = await start_stream(services.engine, call.request)
        note_stream(request.scope, stream)
        return EventStreamResponse(_sse(ResponseEvents(call, stream), stream))
    result = await services.engine.infer(call.request)
    note_result(request.scope, result)
    return Response(json_response_bytes(completed_json(call, result)), media_type="application/json")


async def _sse(writer: ResponseEvents, stream: InferenceStream) -> AsyncIterator[bytes]:
    """`event:`/`data:` pairs, as OpenAI streams them (no `[DONE]`); the last one ends the body."""
    pending = writer.start()
    async for event in stream.events():
        out = b"".join(_line(kind, data) for kind, data in pending)
        pending = writer.events(event)
        if out:
            yield out
    yield Final(b"".join(_line(kind, data) for kind, data in pending))


def _line(kind: str, data: dict[str, object]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def continued(services: Runtime, call: ResponsesRequest, previous_id: UUID) -> ResponsesRequest:
    """`call` after the conversation of the inference `previous_id` (stored_inference)."""
    found = await stored_inference(
        services, previous_id, call.request.api_key_public_id, "previous_response_id",
        f"previous response with id {response_id(previous_id)!r}",
    )  # fmt: skip
    return with_history(call, found.input, found.output, found.kind, found.episode_id)


async def stored_inference(
    services: Runtime, inference_id: UUID, key_id: str | None, field: str, label: str
) -> StoredConversation:
    """The inference `inference_id` as stored, waiting a moment for rows not committed yet; 404 naming `field`
    ("<label> not found") when there is none, it was made with `store: false`, or by another API key than the
    caller's `key_id` (gateway auth)."""
    if not services.engine.recorder.enabled:
        raise NotFound(
            f"{field}: this gateway records no inferences ([gateway.observability] enabled = false)", field=field
        )
    deadline: float | None = None
    polls = iter(COMMIT_POLL_S)
    while True:
        found = await find_conversation(services.database, inference_id)
        if found is not None:
            if found.tags.get(STORE_TAG) == "false" or found.api_key_public_id != key_id:
                break
            return found
        if deadline is None:
            if not _recent(services, inference_id):
                break
            deadline = time.monotonic() + COMMIT_WAIT_S
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(next(polls, COMMIT_POLL_S[-1]))
    raise NotFound(f"{field}: {label} not found", field=field)


def _recent(services: Runtime, inference_id: UUID) -> bool:
    """Whether the inference may still be on its way to the database: this process answered it recently, or its
    id (a UUIDv7) was made within the commit wait."""
    if services.recent.inference(inference_id) is not None:
        return True
    made_s = (inference_id.int >> 80) / 1000
    return inference_id.version == 7 and 0 <= time.time() - made_s < COMMIT_WAIT_S

"""Anthropic's Messages API under /anthropic/v1: messages (streaming too), count_tokens and the models list.

A Messages request is an ordinary LSD inference: parsed into the engine's request (lsd.api.anthropic_request), run
by `engine.infer` or `start_stream`, answered from the typed result (lsd.api.anthropic_wire).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.access_log import note_result, note_stream
from lsd.api.anthropic_extras import provider_extras
from lsd.api.anthropic_request import ANTHROPIC_BODY_TYPES, MessagesRequest, parse_messages_request, resolve_model
from lsd.api.anthropic_wire import StreamWriter, message_json, sse_bytes
from lsd.api.auth import identify
from lsd.api.body import json_response_bytes, read_json
from lsd.api.inbound import providers
from lsd.api.sse import EventStreamResponse, Final
from lsd.api.state import AppState
from lsd.config.inbound import ANY_MODEL
from lsd.errors import InvalidRequest, LsdError, NotFound
from lsd.inference.streaming import InferenceStream, start_stream
from lsd.providers.base import CallContext
from lsd.runtime import Runtime
from lsd.types import HeaderPatch, Json

BETA_HEADER = b"anthropic-beta"


@runtime_checkable
class TokenCounter(Protocol):
    """A provider that counts a Messages body's input tokens (`anthropic`, `gcp_vertex_anthropic`)."""

    async def count_tokens(self, body: Mapping[str, Json], ctx: CallContext) -> dict[str, Json]: ...


async def messages(request: Request[AppState]) -> Response:
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    call = parse_messages_request(body, services.config)
    call = _with_provider_extras(call, services, _header(request, BETA_HEADER))
    call = replace(call, request=identify(request.scope, call.request))
    if call.request.stream:
        stream = await start_stream(services.engine, call.request)
        note_stream(request.scope, stream)
        return EventStreamResponse(_sse(StreamWriter(call, stream), stream))
    result = await services.engine.infer(call.request)
    note_result(request.scope, result)
    return Response(json_response_bytes(message_json(call, result)), media_type="application/json")


async def _sse(writer: StreamWriter, stream: InferenceStream) -> AsyncIterator[bytes]:
    """The stream's events as Anthropic's SSE; the last (message_delta, message_stop) ends the body."""
    yield sse_bytes(writer.start())
    held = b""
    async for event in stream.events():
        data = sse_bytes(writer.events(event))
        if event.trailing:
            held += data
        elif data:
            yield held + data
            held = b""
    yield Final(held)


async def count_tokens(request: Request[AppState]) -> Response:
    """Passed through to the first provider with Anthropic's body and a token counter (`anthropic`,
    `gcp_vertex_anthropic`) the model routes to (400 naming `model` when none)."""
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    target = resolve_model(body.get("model"), services.config)
    counters = (p for _, p in providers(services, target) if p.type_name in ANTHROPIC_BODY_TYPES)
    provider = next((p for p in counters if isinstance(p, TokenCounter)), None)
    if provider is None:
        raise InvalidRequest.at(
            "model",
            f"count_tokens needs an anthropic provider behind the model: {body['model']!r} routes to none",
        )
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest.at("messages", "required: an array")
    credentials = body.get("lsd::credentials") or body.get("tensorzero::credentials") or {}
    if not isinstance(credentials, dict) or not all(isinstance(v, str) for v in credentials.values()):
        raise InvalidRequest.at("lsd::credentials", "expected an object of strings")
    passed = {k: v for k, v in body.items() if not k.startswith(("lsd::", "tensorzero::"))}
    beta = _header(request, BETA_HEADER)  # forwarded as /messages forwards it (a beta's tokens count too)
    headers = (HeaderPatch("anthropic-beta", beta),) if beta else ()
    ctx = CallContext(transport=services.transport, credentials=credentials, extra_headers=headers)
    answer = await provider.count_tokens(passed, ctx)
    return Response(json_response_bytes(answer), media_type="application/json")


def _with_provider_extras(call: MessagesRequest, services: Runtime, beta: str | None) -> MessagesRequest:
    if not call.anthropic_fields and not beta:
        return call
    routes = ((model, p.name, p.type_name) for model, p in providers(services, call.target))
    bodies, headers = provider_extras(call, routes, beta)
    if not bodies and not headers:
        return call
    request = replace(
        call.request,
        extra_body=(*call.request.extra_body, *bodies),
        extra_headers=(*call.request.extra_headers, *headers),
    )
    return replace(call, request=request)


def _header(request: Request[AppState], name: bytes) -> str | None:
    for key, value in request.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


# -- models (the SDK's client.models.list / retrieve) ----------------------------------------------------------------

EPOCH = "1970-01-01T00:00:00Z"  # LSD's models have no creation date: Anthropic's shape requires one
MAX_PAGE = 1000


def _model_ids(services: Runtime) -> list[str]:
    """Every `model` the Messages API takes, as a Claude client would pick one: the `[inbound.anthropic.models]`
    names, then LSD's models and functions."""
    config = services.config
    ids = sorted(set(config.inbound.anthropic.models) - {ANY_MODEL})
    ids += [m for m in sorted(config.models) if m not in config.inbound.anthropic.models]
    ids += [f"lsd::function_name::{f}" for f in sorted(config.functions)]
    return ids


def _model_object(model_id: str) -> dict[str, Json]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": EPOCH}


async def models(request: Request[AppState]) -> Response:
    """`GET /anthropic/v1/models`: Anthropic's page shape (`limit`, `after_id`, `before_id`)."""
    ids = _model_ids(request.state["services"])
    query = request.query_params
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise InvalidRequest.at("limit", f"expected an integer from 1 to {MAX_PAGE}")
    limit = int(raw_limit)
    start, end = 0, len(ids)
    if "after_id" in query:
        start = _position(ids, query["after_id"], "after_id") + 1
    if "before_id" in query:
        end = _position(ids, query["before_id"], "before_id")
    window = ids[start:end]
    page = window[-limit:] if "before_id" in query and "after_id" not in query else window[:limit]
    body = {
        "data": [_model_object(i) for i in page],
        "has_more": len(page) < len(window),
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
    return Response(json_response_bytes(body), media_type="application/json")


async def model(request: Request[AppState]) -> Response:
    """`GET /anthropic/v1/models/{model}`: one model, by any name the Messages API takes."""
    services = request.state["services"]
    asked: str = request.path_params["model"]
    try:
        resolve_model(asked, services.config)
    except LsdError:
        raise NotFound(f"model: {asked}") from None
    return Response(json_response_bytes(_model_object(asked)), media_type="application/json")


def _position(ids: list[str], model_id: str, name: str) -> int:
    try:
        return ids.index(model_id)
    except ValueError:
        raise InvalidRequest.at(name, f"unknown model id {model_id!r}") from None

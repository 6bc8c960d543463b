"""The OpenAI-compatible API under /openai/v1: chat completions (streaming too), embeddings, models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.access_log import note_result, note_stream
from lsd.api.auth import KEY_SCOPE, identify
from lsd.api.body import json_response_bytes, read_json
from lsd.api.openai_model import parse_model
from lsd.api.openai_request import parse_chat_request
from lsd.api.openai_wire import ChunkWriter, completion_json, embeddings_json
from lsd.api.sse import JsonEventStream, json_pair
from lsd.api.state import AppState
from lsd.config.inbound import ANY_MODEL, mapped
from lsd.errors import InvalidRequest, NotFound
from lsd.inference.embeddings import EmbeddingRequest
from lsd.inference.streaming import InferenceStream, start_stream
from lsd.types import EmbeddingInput

EMBEDDING_INPUT = (
    "input: expected a non-empty string, a non-empty array of them, an array of token ids (integers), or an array "
    "of non-empty arrays of token ids"
)


def embedding_inputs(raw: Any) -> tuple[EmbeddingInput, ...]:
    """OpenAI's four forms of embedding input: a text, texts, one input's token ids, several inputs' token ids."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(EMBEDDING_INPUT, field="input")
    if all(isinstance(i, str) and i for i in raw):
        return tuple(raw)
    if _token_ids(raw):
        return (tuple(raw),)
    if all(isinstance(i, list) and i and _token_ids(i) for i in raw):
        return tuple(tuple(i) for i in raw)
    raise InvalidRequest(EMBEDDING_INPUT, field="input")


def _token_ids(values: list[Any]) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


async def chat_completions(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    call = parse_chat_request(body, state["services"].config.inbound.openai.models)
    call = replace(call, request=identify(request.scope, call.request))
    if call.request.stream:
        stream = await start_stream(state["services"].engine, call.request)
        note_stream(request.scope, stream)
        writer = ChunkWriter(call, stream, with_error_json=state["services"].config.gateway.unstable_error_json)
        return JsonEventStream(_sse(writer, stream), json_pair)
    result = await state["services"].engine.infer(call.request)
    note_result(request.scope, result)
    return Response(json_response_bytes(completion_json(call, result)), media_type="application/json")


async def _sse(writer: ChunkWriter, stream: InferenceStream) -> AsyncIterator[tuple[dict[str, Any], bool]]:
    """Each chat.completion.chunk, and whether it only trails the content (usage, finish reason)."""
    async for event in stream.events():
        chunk = writer.chunk(event)
        if chunk is not None:
            yield chunk, event.trailing


async def embeddings(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest("body: expected a JSON object", field="body")
    model = parse_model(body.get("model"), "embedding_model_name")
    inputs = embedding_inputs(body.get("input"))
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise InvalidRequest("dimensions: expected a positive integer", field="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("encoding_format: must be float or base64", field="encoding_format")
    credentials = body.get("lsd::credentials") or body.get("tensorzero::credentials") or {}
    dryrun = bool(body.get("lsd::dryrun") or body.get("tensorzero::dryrun"))
    result = await state["services"].embedder.embed(
        EmbeddingRequest(
            model_name=model.name,
            inputs=inputs,
            dimensions=dimensions,
            credentials=credentials,
            dryrun=dryrun,
            api_key_public_id=request.scope.get(KEY_SCOPE),
        )
    )
    body = embeddings_json(result, encoding, model.prefix)
    return Response(json_response_bytes(body), media_type="application/json")


def _model_ids(request: Request[AppState], *, every: bool = False) -> list[str]:
    """The listed ids: the aliases, then (unless `[inbound.openai] list_models = "aliases"`, or `every`) every
    function and model by its `lsd::` name."""
    config = request.state["services"].config
    ids = sorted(set(config.inbound.openai.models) - {ANY_MODEL})  # the plain names an OpenAI client may send
    if config.inbound.openai.list_models == "aliases" and not every:
        return ids
    ids += [f"lsd::function_name::{f}" for f in sorted(config.functions)]
    ids += [f"lsd::model_name::{m}" for m in sorted(config.models)]
    ids += [f"lsd::embedding_model_name::{e}" for e in sorted(config.embedding_models)]
    return ids


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "lsd"}


async def models(request: Request[AppState]) -> Response:
    data = [_model_object(i) for i in _model_ids(request)]
    return Response(json_response_bytes({"object": "list", "data": data}), media_type="application/json")


async def model(request: Request[AppState]) -> Response:
    """One model object (`client.models.retrieve`), by any id the list gives, or with `tensorzero::` for `lsd::`."""
    asked: str = request.path_params["model"]
    listed = "lsd::" + asked.removeprefix("tensorzero::") if asked.startswith("tensorzero::") else asked
    aliases = request.state["services"].config.inbound.openai.models
    if listed not in _model_ids(request, every=True) and mapped(aliases, asked) is None:  # a `*` name is one too
        raise NotFound(f"The model `{asked}` does not exist")
    body = json_response_bytes(_model_object(asked))
    return Response(body, media_type="application/json")

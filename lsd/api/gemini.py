"""Gemini's API under /gemini/{v1beta,v1}: generateContent, streamGenerateContent (SSE), countTokens, embedContent,
batchEmbedContents and the models list — what Gemini CLI (`GOOGLE_GEMINI_BASE_URL`) and the google-genai SDKs
(`http_options.base_url`) call; the same methods under Vertex AI's paths (`.../publishers/google/models/...`, with or
without `projects/P/locations/L/`), for the SDKs' `vertexai=True`.

A generateContent request is an ordinary LSD inference: parsed into the engine's request (lsd.api.gemini_request),
run by `engine.infer` or `start_stream`, answered from the typed result (lsd.api.gemini_wire).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import replace

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from lsd.api.access_log import note_result, note_stream
from lsd.api.auth import KEY_SCOPE, identify
from lsd.api.body import json_response_bytes, read_json
from lsd.api.gemini_embed import parse_embed_request
from lsd.api.gemini_fields import camel
from lsd.api.gemini_request import (
    GenerateRequest,
    check_model_name,
    embedding_model,
    parse_contents,
    parse_generate_request,
    resolve_model,
)
from lsd.api.gemini_signatures import GEMINI_BODY_TYPES
from lsd.api.gemini_wire import StreamWriter, Unservable, blocked_json, response_json, sse_line
from lsd.api.inbound import MAX_SHOWN_CHARS, providers
from lsd.api.provider_answer import passed_on
from lsd.api.sse import EventStreamResponse, Final
from lsd.api.state import AppState
from lsd.config.inbound import ANY_MODEL
from lsd.errors import AllAttemptsFailed, InvalidRequest, LsdError, NotFound
from lsd.inference.embeddings import EmbeddingRequest
from lsd.inference.stream_answer import CHARS_PER_TOKEN, prompt_chars
from lsd.inference.streaming import InferenceStream, start_stream
from lsd.providers.gemini.wire import BLOCKED
from lsd.runtime import Runtime
from lsd.types import BodyPatch, File, Json, ProviderRequest

VERSIONS = frozenset({"v1beta", "v1", "v1alpha", "v1beta1"})  # v1beta1: Vertex AI's, as the SDKs send it
EMBEDDING_METHODS = ["embedContent", "batchEmbedContents"]
FILE_TOKENS = 258  # countTokens' estimate of an image or other file: what Gemini counts for an image up to 384 px
MAX_PAGE = 1000
ERROR_APART_S = 0.1  # the gap around a stream's bare error object, so that a client reads it on its own


async def model_call(request: Request[AppState]) -> Response:
    """`POST /gemini/{version}/models/{model}:{method}`: the method after the model's last colon."""
    _version(request)
    model, _, method = str(request.path_params["call"]).rpartition(":")
    handler = _METHODS.get(method)
    if handler is None or not model:
        raise NotFound(f"Method not found: {method[:MAX_SHOWN_CHARS]!r} (generateContent, streamGenerateContent, ...)")
    return await handler(request, check_model_name(model))


async def _generate(request: Request[AppState], model: str, stream: bool = False) -> Response:
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    call = parse_generate_request(body, model, services.config, stream)
    call = _with_provider_extras(call, services)
    call = replace(call, request=identify(request.scope, call.request))
    sse = request.query_params.get("alt") == "sse"
    try:
        if stream:
            opened = await start_stream(services.engine, call.request)
            note_stream(request.scope, opened)
            if not sse:  # Google's other stream: one JSON array, sent as it grows
                return StreamingResponse(_array(StreamWriter(call, opened), opened), media_type="application/json")
            return EventStreamResponse(_sse(StreamWriter(call, opened), opened))
        result = await services.engine.infer(call.request)
    except AllAttemptsFailed as exc:
        reason = _blocked(exc)
        if reason is None:
            if exc.retryable or passed_on(exc) is not exc:
                raise
            raise Unservable.of(exc) from None
        answer = blocked_json(call, reason)
        if not stream:
            return Response(json_response_bytes(answer), media_type="application/json")
        body = sse_line(answer) if sse else orjson.dumps([answer])
        return Response(body, media_type="text/event-stream" if sse else "application/json")
    note_result(request.scope, result)
    return Response(json_response_bytes(response_json(call, result)), media_type="application/json")


def _blocked(exc: AllAttemptsFailed) -> str | None:
    """The reason Gemini blocked the prompt, when that is why the last attempt failed: Google answers it as a 200
    with `promptFeedback` (a client must not retry it, as it would a 5xx)."""
    last = exc.failures[-1] if exc.failures else None
    if last is None or last.kind != "content_filter" or not last.message.startswith(BLOCKED):
        return None
    return last.message.removeprefix(BLOCKED)


async def _stream(request: Request[AppState], model: str) -> Response:
    return await _generate(request, model, stream=True)


async def _sse(writer: StreamWriter, stream: InferenceStream) -> AsyncIterator[bytes]:
    """The stream's chunks as `data:` lines; the last chunk (finish reason, usage) ends the body."""
    async for event in stream.events():
        chunk = writer.chunk(event)
        if chunk is None:
            continue
        if event.error is not None:
            # Google's own form first, the error object alone (Gemini CLI's SDK raises it only when one read of the
            # socket holds it and nothing else: apart in time from what came before and after), then as a `data:`
            # event, for the clients that read events only (@google/genai 2.x, the AI SDK's @ai-sdk/google)
            await asyncio.sleep(ERROR_APART_S)
            yield orjson.dumps(chunk) + b"\r\n\r\n"  # an event of its own, which event readers leave aside
            await asyncio.sleep(ERROR_APART_S)
            yield Final(sse_line(chunk))
            return
        if event.usage is not None:
            yield Final(sse_line(chunk))
            return
        yield sse_line(chunk)
    yield Final(b"")


async def _array(writer: StreamWriter, stream: InferenceStream) -> AsyncIterator[bytes]:
    """The stream's chunks as the elements of one JSON array (streamGenerateContent without `alt=sse`)."""
    separator = b"["
    async for event in stream.events():
        chunk = writer.chunk(event)
        if chunk is not None:
            yield separator + orjson.dumps(chunk)
            separator = b",\r\n"
            if event.usage is not None or event.error is not None:
                break
    yield b"[]" if separator == b"[" else b"]"


def _with_provider_extras(call: GenerateRequest, services: Runtime) -> GenerateRequest:
    """The Gemini-only fields as extra_body entries for each Gemini-bodied provider the model routes to; a request
    with Google's own tools needs one."""
    if not call.gemini_fields:
        return call
    routes = [(model, p.name) for model, p in providers(services, call.target) if p.type_name in GEMINI_BODY_TYPES]
    if call.google_tool is not None and not routes:
        message = f"a tool only Google serves: {call.model!r} routes to no Gemini model"
        raise InvalidRequest.at(call.google_tool, message)
    bodies = tuple(
        BodyPatch(pointer, value, model_name=model, provider_name=provider)
        for model, provider in routes
        for pointer, value in call.gemini_fields.items()
    )
    return replace(call, request=replace(call.request, extra_body=(*call.request.extra_body, *bodies)))


async def _count_tokens(request: Request[AppState], model: str) -> Response:
    """An estimate, at CHARS_PER_TOKEN characters a token, of the prompt's text (system, messages, tools), and
    FILE_TOKENS a file: LSD's providers have no common token counter. `contents`, or a whole
    `generateContentRequest`."""
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    resolve_model(model, services.config)
    body = camel(body)
    inner = body.get("generateContentRequest")
    if inner is not None:
        call = parse_generate_request(inner, model, services.config, stream=False).request
        prompt = ProviderRequest(
            call.input.system if isinstance(call.input.system, str) else None,
            call.input.messages,
            tools=call.additional_tools,
            output_schema=call.output_schema,
        )
    else:
        prompt = ProviderRequest(None, parse_contents(body.get("contents")))
    files = sum(isinstance(b, File) for m in prompt.messages for b in m.content)
    tokens = math.ceil(prompt_chars(prompt) / CHARS_PER_TOKEN) + files * FILE_TOKENS
    return Response(json_response_bytes({"totalTokens": tokens}), media_type="application/json")


# -- embeddings ------------------------------------------------------------------------------------------------------


def _embedding_model(model: str, services: Runtime) -> str:
    name = embedding_model(model, services.config)
    if name is None:
        message = f"{model[:MAX_SHOWN_CHARS]!r} is no embedding model: map it in [inbound.gemini] models or name one"
        raise NotFound(message, field="model")
    return name


async def _embed(request: Request[AppState], model: str, batch: bool) -> Response:
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    name = _embedding_model(model, services)
    texts, dimensions = parse_embed_request(body, model, batch)
    result = await services.embedder.embed(
        EmbeddingRequest(
            model_name=name,
            inputs=texts,
            dimensions=dimensions,
            api_key_public_id=request.scope.get(KEY_SCOPE),
        )
    )
    vectors = [{"values": list(v)} for v in result.embeddings]
    answer: dict[str, Json] = {"embeddings": vectors} if batch else {"embedding": vectors[0]}
    return Response(json_response_bytes(answer), media_type="application/json")


async def _embed_one(request: Request[AppState], model: str) -> Response:
    return await _embed(request, model, batch=False)


async def _embed_batch(request: Request[AppState], model: str) -> Response:
    return await _embed(request, model, batch=True)


_METHODS = {
    "generateContent": _generate,
    "streamGenerateContent": _stream,
    "countTokens": _count_tokens,
    "embedContent": _embed_one,
    "batchEmbedContents": _embed_batch,
}


# -- models (the SDKs' models.list / models.get) ---------------------------------------------------------------------


def _model_ids(services: Runtime) -> list[tuple[str, list[str]]]:
    """Every model name the route takes, with its methods: the `[inbound.gemini] models` names, then LSD's models,
    functions and embedding models."""
    config = services.config
    chat = ["generateContent", "streamGenerateContent", "countTokens"]
    ids = sorted(set(config.inbound.gemini.models) - {ANY_MODEL})
    ids += [m for m in sorted(config.models) if m not in config.inbound.gemini.models]
    ids += [f"lsd::function_name::{f}" for f in sorted(config.functions)]
    listed = [(i, chat) for i in ids]
    embedding_ids = sorted(config.inbound.gemini.embedding_models)
    embedding_ids += [e for e in sorted(config.embedding_models) if e not in config.inbound.gemini.embedding_models]
    listed += [(e, EMBEDDING_METHODS) for e in embedding_ids]
    return listed


def _model_object(model_id: str, methods: list[str]) -> dict[str, Json]:
    return {
        "name": f"models/{model_id}",
        "version": "lsd",
        "displayName": model_id,
        "supportedGenerationMethods": methods,
    }


async def models(request: Request[AppState]) -> Response:
    """`GET /gemini/{version}/models`: Google's page shape (`pageSize`, `pageToken`: the offset)."""
    _version(request)
    listed = _model_ids(request.state["services"])
    query = request.query_params
    size = query.get("pageSize", "50")
    if not (size.isascii() and size.isdigit() and len(size) <= 4) or not 1 <= int(size) <= MAX_PAGE:
        raise InvalidRequest.at("pageSize", f"expected an integer from 1 to {MAX_PAGE}")
    token = query.get("pageToken") or "0"
    if not (token.isascii() and token.isdigit() and len(token) <= 9):
        raise InvalidRequest.at("pageToken", "expected a token from an earlier page")
    start, end = int(token), int(token) + int(size)
    body: dict[str, Json] = {"models": [_model_object(i, m) for i, m in listed[start:end]]}
    if end < len(listed):
        body["nextPageToken"] = str(end)
    return Response(json_response_bytes(body), media_type="application/json")


async def model(request: Request[AppState]) -> Response:
    """`GET /gemini/{version}/models/{model}`: one model, by any name the route takes."""
    _version(request)
    services = request.state["services"]
    asked = check_model_name(str(request.path_params["model"]))
    if embedding_model(asked, services.config) is not None:
        methods = EMBEDDING_METHODS
    else:
        try:
            resolve_model(asked, services.config)
        except LsdError:
            raise NotFound(f"model: {asked[:MAX_SHOWN_CHARS]}") from None
        methods = ["generateContent", "streamGenerateContent", "countTokens"]
    return Response(json_response_bytes(_model_object(asked, methods)), media_type="application/json")


def _version(request: Request[AppState]) -> None:
    version = request.path_params["version"]
    if version not in VERSIONS:
        raise NotFound(f"API version {version!r}: expected v1beta or v1")

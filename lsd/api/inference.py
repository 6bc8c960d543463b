"""`POST /inference`: parse the TensorZero-shaped body, run the engine, answer in TensorZero's shape (or SSE)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lsd.api.access_log import note_result, note_stream
from lsd.api.auth import identify
from lsd.api.body import json_response_bytes, receive_json
from lsd.api.errors import error_response
from lsd.api.sse import JsonEventStream
from lsd.api.state import AppState
from lsd.api.tensorzero_wire import ChunkEncoder, inference_json
from lsd.errors import LsdError
from lsd.inference.request import InferenceRequest, parse_inference_request
from lsd.inference.streaming import start_stream


async def stream_response(state: AppState, parsed: InferenceRequest, scope: Scope) -> Response:
    stream = await start_stream(state["services"].engine, parsed)
    note_stream(scope, stream)
    with_error_json = state["services"].config.gateway.unstable_error_json
    return JsonEventStream(stream.events(), ChunkEncoder(stream, with_error_json=with_error_json))


async def answer(state: AppState, parsed: InferenceRequest, scope: Scope) -> bytes:
    """A non-streamed inference's JSON body."""
    result = await state["services"].engine.infer(parsed)
    note_result(scope, result)
    return json_response_bytes(inference_json(result))


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /inference as a bare ASGI app: no Request object, router or exception middleware on the hot path;
    a non-streamed answer is sent as two ASGI messages without a Response object."""
    state: AppState = scope["state"]
    try:
        body = await receive_json(scope, receive, state["services"].config.gateway.max_body_bytes)
        parsed = identify(scope, parse_inference_request(body))
        if not parsed.stream:
            content = await answer(state, parsed, scope)
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": content})
            return
        response = await stream_response(state, parsed, scope)
    except LsdError as exc:
        response = error_response(exc, scope)
    await response(scope, receive, send)


class DirectRoute:
    """The route table's entry for POST /inference, an ASGI app (starlette calls it as one, without a Request):
    the same `serve` the front door calls first, so there is one handler whichever way a request arrives."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send)


endpoint = DirectRoute()

"""`POST /batch_inference` and `GET /batch_inference/{batch_id}[/inference/{inference_id}]`: thin handlers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.api.tensorzero_wire import batch_view_json, submission_json
from lsd.inference.batch_request import parse_batch_request
from lsd.inference.request import parse_uuid


async def start_batch(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    submitted = await state["services"].batches.submit(parse_batch_request(body))
    return Response(json_response_bytes(submission_json(submitted)), media_type="application/json")


async def batch_status(request: Request[AppState]) -> Response:
    batch_id = parse_uuid(request.path_params["batch_id"], "batch_id")
    view = await request.state["services"].batches.status(batch_id)
    return Response(json_response_bytes(batch_view_json(view)), media_type="application/json")


async def batch_inference_status(request: Request[AppState]) -> Response:
    batch_id = parse_uuid(request.path_params["batch_id"], "batch_id")
    inference_id = parse_uuid(request.path_params["inference_id"], "inference_id")
    view = await request.state["services"].batches.inference_status(batch_id, inference_id)
    return Response(json_response_bytes(batch_view_json(view)), media_type="application/json")

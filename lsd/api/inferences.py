"""`POST /v1/inferences/list_inferences` and `POST /v1/inferences/get_inferences`: stored inferences."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.api.tensorzero_wire import page_json
from lsd.inference import listing


async def list_inferences(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    page = await listing.list_inferences(state["services"].database, body, state["services"].config.metrics)
    return Response(json_response_bytes(page_json(page)), media_type="application/json")


async def get_inferences(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    found = await listing.get_inferences(state["services"].database, body)
    return Response(json_response_bytes(page_json(found)), media_type="application/json")

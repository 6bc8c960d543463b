"""`POST /feedback`: TensorZero's body in, `{"feedback_id": ...}` out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.feedback import parse_feedback_request


async def feedback(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["config"].gateway.max_body_bytes)
    feedback_id = await state["feedback"].submit(parse_feedback_request(body))
    return Response(json_response_bytes({"feedback_id": str(feedback_id)}), media_type="application/json")

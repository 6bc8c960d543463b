"""`POST /feedback`: TensorZero's body in, `{"feedback_id": ...}` out."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.auth import KEY_SCOPE
from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.api.tensorzero_wire import feedback_json
from lsd.feedback import parse_feedback_request


async def feedback(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    parsed = dataclasses.replace(parse_feedback_request(body), api_key_public_id=request.scope.get(KEY_SCOPE))
    feedback_id = await state["services"].feedback.submit(parsed)
    return Response(json_response_bytes(feedback_json(feedback_id)), media_type="application/json")

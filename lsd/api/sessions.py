"""`/v1/sessions`: agent sessions' totals, newest first, and one session with its subagents' (lsd.sessions)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd import sessions
from lsd.api.body import json_response_bytes
from lsd.api.state import AppState


def _json(value: Any) -> Response:
    return Response(json_response_bytes(value), media_type="application/json")


async def list_sessions(request: Request[AppState]) -> Response:
    listing = sessions.parse_session_listing(dict(request.query_params))
    return _json(await sessions.list_sessions(request.state["services"].database, listing))


async def get_session(request: Request[AppState]) -> Response:
    session_id = request.path_params["session_id"]
    return _json(await sessions.get_session(request.state["services"].database, session_id))

"""`GET /health` (200 only while PostgreSQL answers) and `GET /status` (version and config hash)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lsd import __version__
from lsd.api.body import json_response_bytes
from lsd.api.state import AppState

# TensorZero's /health always names these stores, "ok" when not configured; LSD has none of them, so monitors written
# for TensorZero's body read the same keys.
ABSENT_STORES = {"clickhouse": "ok", "valkey": "ok", "valkey_cache": "ok"}


async def health(request: Request[AppState]) -> Response:
    ok = await request.state["services"].database.ping()
    body = {"gateway": "ok", "postgres": "ok" if ok else "error", **ABSENT_STORES}
    return Response(json_response_bytes(body), status_code=200 if ok else 503, media_type="application/json")


async def status(request: Request[AppState]) -> Response:
    body = {"status": "ok", "version": __version__, "config_hash": request.state["services"].config.source_hash}
    return Response(json_response_bytes(body), media_type="application/json")

"""`GET /metrics`: the Prometheus text format (every worker's values, summed, under `--workers N`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from lsd.api.state import AppState
from lsd.telemetry.metrics import Metrics


async def metrics(request: Request[AppState]) -> Response:
    body, content_type = request.state["services"].metrics.exposition()
    return Response(body, headers={"content-type": content_type})


def observe_http(scope: Scope, status: int, seconds: float) -> None:
    """Count one answered HTTP request by its route template (never the raw path: unmatched is `unmatched`)."""
    state: dict[str, Any] | None = scope.get("state")
    services = state.get("services") if state is not None else None
    recorder: Metrics | None = services.metrics if services is not None else None
    if recorder is not None:
        recorder.observe_http(_route_name(scope), scope["method"], status, seconds)


def _route_name(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None:
        name: str = route.path
        return name
    return "unmatched"

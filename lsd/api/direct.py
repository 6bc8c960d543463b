"""The hot path's front door: POST /inference served without starlette's router and exception middleware.

Installed as the innermost middleware, so everything above it (access log, and whatever else the app stacks)
still applies; every other request goes on to the router. It sets `scope["route"]` as the router would, so the
access log and the HTTP metrics name the route the same way on both paths.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lsd.api import inference
from lsd.api.routes import ROUTES

INFERENCE_PATH = "/inference"


class DirectRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inference_route = next(r for r in ROUTES if isinstance(r, Route) and r.path == INFERENCE_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == INFERENCE_PATH and scope["method"] == "POST":
            scope["route"] = self.inference_route
            await inference.serve(scope, receive, send)
            return
        await self.app(scope, receive, send)

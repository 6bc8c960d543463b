"""The hot path's front door: POST /inference served without starlette's router and exception middleware.

Installed as the innermost middleware, so everything above it (access log, and whatever else the app stacks)
still applies; every other request goes on to the router.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from lsd.api import inference


class DirectRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/inference" and scope["method"] == "POST":
            await inference.serve(scope, receive, send)
            return
        await self.app(scope, receive, send)

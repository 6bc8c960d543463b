"""The typed state the lifespan yields to every request: the one services object built at start-up."""

from __future__ import annotations

from typing import TypedDict

from lsd.runtime import Runtime


class AppState(TypedDict):
    services: Runtime

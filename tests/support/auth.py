"""An AuthService stand-in for the key-header tests: it records the Authorization each request would carry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class RecordingAuth:
    enabled = True

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def verify(self, authorization: str | None) -> Any:
        self.seen.append(authorization)
        return SimpleNamespace(public_id="pub123456789")

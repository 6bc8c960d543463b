"""What every fake provider server shares: its aiohttp app on a real socket (127.0.0.1, a free port by default),
stopped cleanly, usable as `async with Fake() as fake:`. A fake builds its routes in `build_app` and says in
`start` what it returns (its api_base or root URL)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from aiohttp import web


class FakeServer:
    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {}  # web.AppRunner's options (access_log, shutdown_timeout...)

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        await self.listen()
        return self.url

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.build_app(), **self.RUNNER_OPTIONS)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.host, self.port = self._runner.addresses[0][:2]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

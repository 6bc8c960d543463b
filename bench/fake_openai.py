"""The fake OpenAI server (tests.fakes.openai_server) in a process of its own, for the gateway benchmark.

    python -m bench.fake_openai --url-file /tmp/fake.url [--latency-ms 20]

Listens on a free port of 127.0.0.1 with no API key and without recording requests, writes its root URL to
`--url-file` once it accepts connections, and serves until SIGTERM or SIGINT. Runs on uvloop. With
`--latency-ms N` every chat answer (plain or streamed) waits N ms before its first byte, like a provider's
time to first token; the default 0 answers at once, exactly as the test fake does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from tests.fakes.openai_server import FakeOpenAI


class LatentFakeOpenAI(FakeOpenAI):
    """The test fake, with a fixed wait before each chat answer (the tests' fake is left as it is)."""

    def __init__(self, *, latency_s: float) -> None:
        super().__init__(api_key=None, record=False)
        self.latency_s = latency_s

    async def _answer(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return await super()._answer(request, body, model)


async def serve(url_file: Path, latency_ms: float) -> None:
    fake = LatentFakeOpenAI(latency_s=latency_ms / 1000) if latency_ms > 0 else FakeOpenAI(api_key=None, record=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    url = await fake.start()
    partial = url_file.with_suffix(".partial")
    partial.write_text(url)
    partial.replace(url_file)  # the reader never sees half a URL
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url-file", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before each chat answer (default 0)")
    args = parser.parse_args()
    uvloop.run(serve(args.url_file, args.latency_ms))


if __name__ == "__main__":
    main()

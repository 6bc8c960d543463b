"""The test suite's fake OpenAI server (tests/fakes/openai_server.py) as a service: the compose stack's provider.

    PYTHONPATH=. python deploy/fake-openai/serve.py --host 0.0.0.0 --port 8080

Speaks OpenAI's wire format (chat completions, streaming, embeddings) with no API key and without recording
requests; answers "echo: <last user text>" unless a "[fake:<directive>]" prefix asks for something else (see the
fake's docstring). Serves until SIGTERM or SIGINT. Not part of the lsd package: it exists so the stack works with
no provider keys.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from tests.fakes.openai_server import FakeOpenAI

log = logging.getLogger("fake-openai")


async def serve(host: str, port: int) -> None:
    fake = FakeOpenAI(api_key=None, record=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await fake.start(host, port)
    log.info("fake OpenAI listening on http://%s:%d (api_base http://%s:%d/v1/)", host, port, host, port)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="the fake OpenAI provider, as a service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

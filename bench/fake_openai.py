"""The fake OpenAI server (tests.fakes.openai_server) in a process of its own, for the gateway benchmark.

    python -m bench.fake_openai --url-file /tmp/fake.url

Listens on a free port of 127.0.0.1 with no API key and without recording requests, writes its root URL to
`--url-file` once it accepts connections, and serves until SIGTERM or SIGINT. Runs on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import uvloop

from tests.fakes.openai_server import FakeOpenAI


async def serve(url_file: Path) -> None:
    fake = FakeOpenAI(api_key=None, record=False)
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
    uvloop.run(serve(parser.parse_args().url_file))


if __name__ == "__main__":
    main()

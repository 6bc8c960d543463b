"""CPU per request of the outbound HTTP client alone: lsd's Transport against aiohttp's ClientSession.

    .venv/bin/python -m bench.client_cost [--requests 20000] [--rounds 3]

Both post the same body to the same fake OpenAI server (its own process) over pooled keep-alive connections, 32
callers at a time, in one uvloop process; the table gives this process's CPU time per request (median of the
rounds, which alternate). This is what the gateway's hop costs in the client: lsd.providers.connections exists
because aiohttp's session took ~4x the CPU of this path (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.children import Children
from bench.gateway import FAKE_BODY, start_fake
from bench.loop import run as run_async
from lsd.providers.transport import Transport

CONCURRENCY = 32
HEADERS = {"Content-Type": "application/json", "User-Agent": "lsd", "Authorization": "Bearer sk-bench"}


async def cpu_per_request(call: Callable[[], Awaitable[None]], requests: int) -> float:
    async def caller(count: int) -> None:
        for _ in range(count):
            await call()

    per_caller = requests // CONCURRENCY
    start = time.process_time()
    await asyncio.gather(*(caller(per_caller) for _ in range(CONCURRENCY)))
    return 1e6 * (time.process_time() - start) / (per_caller * CONCURRENCY)


async def measure(url: str, requests: int, rounds: int) -> dict[str, list[float]]:
    transport = Transport()
    await transport.open()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=256))
    timeout = aiohttp.ClientTimeout(total=900)

    async def lsd() -> None:
        reply = await transport.post(url, FAKE_BODY, HEADERS, provider="bench")
        assert reply.status == 200

    async def aiohttp_session() -> None:
        async with session.post(url, data=FAKE_BODY, headers=HEADERS, timeout=timeout) as reply:
            await reply.read()
            assert reply.status == 200

    clients = {"lsd Transport": lsd, "aiohttp ClientSession": aiohttp_session}
    results: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for call in clients.values():
            await cpu_per_request(call, 2000)  # warm-up: connections opened
        for _ in range(rounds):
            for name, call in clients.items():
                results[name].append(await cpu_per_request(call, requests))
    finally:
        await session.close()
        await transport.close()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.client_cost", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000, help="requests per round (default 20000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per client, alternating (default 3)")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-client-"))
    try:
        with Children(workdir) as children:
            _, fake_url = start_fake(children, 0.0)
            results = run_async(measure(f"{fake_url}/v1/chat/completions", args.requests, args.rounds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("| client | CPU µs/request (median) | rounds |")
    print("|---|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} | {len(values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

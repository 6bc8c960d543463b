"""The baseline gateway: POST /inference -> the fake's POST /v1/chat/completions, no validation, no recording.

    python -m bench.bare_proxy --bind 127.0.0.1:8001 --upstream http://127.0.0.1:8000 [--server uvicorn|hypercorn]

Starlette served by the same HTTP server as `lsd serve` (uvicorn with httptools by default, or hypercorn) on uvloop
in one process, one pooled aiohttp session: what LSD would cost
if it did nothing but forward. It takes the same TensorZero body as `lsd serve` and returns the provider's JSON;
with `"stream": true` in the body it asks the provider to stream and relays the provider's bytes (its SSE
events) as they arrive, chunk by chunk, without parsing them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import uvicorn
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

HEADERS = {"Content-Type": "application/json"}


def build_app(upstream: str) -> Starlette:
    url = upstream.rstrip("/") + "/v1/chat/completions"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # As lsd's transport: no total connection limit, keep-alive connections reused across requests.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield {"session": session}

    async def inference(request: Request) -> Response:
        body = orjson.loads(await request.body())
        upstream = {"model": body["model_name"], "messages": body["input"]["messages"]}
        session: aiohttp.ClientSession = request.state.session
        if body.get("stream"):
            upstream["stream"] = True
            return StreamingResponse(relay(session, orjson.dumps(upstream)), media_type="text/event-stream")
        async with session.post(url, data=orjson.dumps(upstream), headers=HEADERS) as reply:
            content = await reply.read()
        return Response(content, status_code=reply.status, media_type="application/json")

    async def relay(session: aiohttp.ClientSession, upstream_body: bytes) -> AsyncIterator[bytes]:
        async with session.post(url, data=upstream_body, headers=HEADERS) as reply:
            async for chunk in reply.content.iter_any():
                yield chunk

    return Starlette(routes=[Route("/inference", inference, methods=["POST"])], lifespan=lifespan)


async def run(bind: str, upstream: str, server: str = "uvicorn") -> None:
    if server == "uvicorn":
        await _run_uvicorn(bind, upstream)
        return
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.keep_alive_timeout = 75  # as lsd serve
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(build_app(upstream), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


async def _run_uvicorn(bind: str, upstream: str) -> None:
    """As `lsd serve` runs uvicorn (lsd.servers), without the head limit: httptools, no access log."""
    host, _, port = bind.rpartition(":")
    config = uvicorn.Config(
        build_app(upstream),
        host=host,
        port=int(port),
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_keep_alive=75,
        server_header=False,
    )
    server = uvicorn.Server(config)
    await server.serve()  # uvicorn stops on SIGTERM/SIGINT itself


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, help="HOST:PORT")
    parser.add_argument("--upstream", required=True, help="the fake's root URL")
    parser.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn", help="default uvicorn")
    args = parser.parse_args()
    uvloop.run(run(args.bind, args.upstream, args.server))


if __name__ == "__main__":
    main()

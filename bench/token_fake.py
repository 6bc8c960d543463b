"""A fake OpenAI chat-completions server for the streams and big-context parts, on raw asyncio (uvloop).

    python -m bench.token_fake --url-file F [--tokens 100] [--token-rate 50] [--answer-bytes 2048]

Streamed (`"stream": true`): one `chat.completion.chunk` per token, the first at once and then one every
1/token-rate seconds (each stream on its own timer, so streams started at different times stay spread out), then a
usage chunk and `data: [DONE]`. Each token's text is `t<CLOCK_MONOTONIC ns> `, the moment it was written: a client on
the same machine subtracts it from the moment it reads the token, through a gateway or directly, and gets the
delay each hop added to that chunk. Not streamed: one completion whose content is `answer-bytes` of text.

Written on asyncio's Protocol rather than aiohttp so that the fake itself takes little CPU: the part measures the
gateway, and on two cores the fake shares them. It reads just enough HTTP/1.1 (Content-Length bodies, keep-alive).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from pathlib import Path

import orjson
import uvloop

_CHUNK_HEAD = b'{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,"model":"fake","choices":'


def _sse(payload: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    data = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def token_chunk(text: str) -> bytes:
    delta = orjson.dumps([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
    return _sse(_CHUNK_HEAD + delta + b"}")


def final_chunks(tokens: int) -> bytes:
    finish = _sse(_CHUNK_HEAD + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    usage = orjson.dumps({"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens})
    return finish + _sse(_CHUNK_HEAD + b'[],"usage":' + usage + b"}") + _sse(b"[DONE]") + b"0\r\n\r\n"


class FakeProtocol(asyncio.Protocol):
    def __init__(self, settings: argparse.Namespace, answer: bytes) -> None:
        self.settings = settings
        self.answer = answer
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            if (at := head.find(b"content-length:")) >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.respond(body)

    def respond(self, body: bytes) -> None:
        assert self.transport is not None
        if b'"stream":true' in body.replace(b" ", b""):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            self.stream(0, time.monotonic())
        else:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(self.answer), self.answer)
            )

    def stream(self, sent: int, start: float) -> None:
        if self.transport is None:
            return
        tokens = self.settings.tokens
        if sent == tokens:
            self.transport.write(final_chunks(tokens))
            self.handle = None
            return
        self.transport.write(token_chunk(f"t{time.monotonic_ns()} "))
        self.handle = self.loop.call_at(start + (sent + 1) / self.settings.token_rate, self.stream, sent + 1, start)


def answer_body(answer_bytes: int) -> bytes:
    words = (b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 64)[
        : max(answer_bytes, 1)
    ]
    return orjson.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": words.decode()}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": max(answer_bytes // 4, 1), "total_tokens": 10},
        }
    )


async def serve(settings: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    answer = answer_body(settings.answer_bytes)
    server = await loop.create_server(lambda: FakeProtocol(settings, answer), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    Path(settings.url_file).write_text(f"http://127.0.0.1:{port}")  # noqa: ASYNC240 (once, at start-up)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url-file", required=True)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--token-rate", type=float, default=50.0)
    p.add_argument("--answer-bytes", type=int, default=2048)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()

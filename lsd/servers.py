"""The HTTP servers `lsd serve` runs the app under: uvicorn (httptools, the default) or hypercorn (HTTP/2).

Both are configured here, in code, from LSD's own `[gateway]` settings (never from their own config files), and
both are stopped by LSD: SIGTERM/SIGINT/SIGHUP (or the supervisor's shutdown event) stop accepting connections, let
in-flight requests finish for up to `graceful_timeout_s`, then run the lifespan's exit, which flushes the writer.

Why uvicorn by default: under the same load it spends about half the CPU per request that hypercorn does in front of
the same app (`python -m bench.run --parts front-door`; docs/performance.md), which is most of what LSD adds to a
direct call. hypercorn stays for HTTP/2 (`http_server = "hypercorn"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any, Literal

import orjson
import uvicorn
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lsd.config.model import GatewayConfig

log = logging.getLogger("lsd")

KEEP_ALIVE_S = 75  # longer than the usual load balancer's idle timeout (60 s), so the balancer closes first
HEAD_TIMEOUT_S = 60.0  # a new connection's first request line and headers must arrive within this (HeadLimitedProtocol)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What `lsd serve` tells either server; plain values, so the supervisor can pass them across an exec."""

    kind: Literal["uvicorn", "hypercorn"]
    bind: str
    graceful_timeout_s: float
    max_header_bytes: int
    application_path: str = ""  # "module:factory", a function building the app, for worker processes

    @classmethod
    def from_gateway(cls, gateway: GatewayConfig, bind: str | None = None) -> ServerSettings:
        return cls(
            gateway.http_server, bind or gateway.bind_address, gateway.graceful_timeout_s, gateway.max_header_bytes
        )

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        return cls(**orjson.loads(text))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request line and headers, which httptools lacks.

    The app's guard answers 431 (JSON, in the route's wire format) above `max_header_bytes`; this hard bound, twice
    that, stops a client from making the server buffer an unbounded head before the app ever sees it."""

    head_limit = 2 * 16 * 1024  # replaced per server by `_protocol_class`
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # A connection must send its first request's head within HEAD_TIMEOUT_S: one that sends nothing, or stops
        # in its headers, would otherwise hold its file descriptor forever (uvicorn's keep-alive timer only starts
        # after a response). Once per connection, not per request: a kept-alive connection's silence is the
        # keep-alive timer's.
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._head_too_large = False
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.head_limit:
            self._head_too_large = True
            raise ValueError("request head too large")  # httptools turns it into HttpParserCallbackError

    def send_400_response(self, msg: str) -> None:
        if not getattr(self, "_head_too_large", False):
            super().send_400_response(msg)
            return
        body = orjson.dumps({"error": "request line and headers too large", "error_code": "headers_too_large"})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


def _protocol_class(settings: ServerSettings) -> type[HeadLimitedProtocol]:
    return type("HeadLimitedProtocol", (HeadLimitedProtocol,), {"head_limit": 2 * settings.max_header_bytes})


class UvicornServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: LSD decides when to stop (`stop()`, or the supervisor's
    shutdown event), so a worker exits 0 after a clean drain instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, bind: str, shutdown_event: ProcessEvent | None = None) -> None:
        super().__init__(config)
        self._bind = bind
        self._shutdown_event = shutdown_event

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # as hypercorn says it, once the lifespan (the database pool included) is up
            log.info("Running on http://%s (CTRL + C to quit)", self._bind)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def stop(self) -> None:
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._shutdown_event is not None and counter % 2 == 0 and self._shutdown_event.is_set():
            self.should_exit = True
        return await super().on_tick(counter)


def uvicorn_config(app: Any, settings: ServerSettings) -> uvicorn.Config:
    """`app` is the ASGI app, or "module:factory" for uvicorn to import and call."""
    host, port = settings.host_port
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=host,
        port=port,
        loop="uvloop",
        http=_protocol_class(settings),
        lifespan="on",
        log_config=None,  # LSD's logging (lsd.telemetry.logging) stays as configured
        access_log=False,  # LSD writes its own access log
        proxy_headers=False,  # LSD reads X-Forwarded-* itself, from gateway.trusted_proxies only
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
        server_header=False,
        date_header=True,
    )


def hypercorn_config(settings: ServerSettings) -> HypercornConfig:
    hconfig = HypercornConfig()
    hconfig.bind = [settings.bind]
    hconfig.graceful_timeout = settings.graceful_timeout_s
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    hconfig.keep_alive_timeout = KEEP_ALIVE_S
    hconfig.h11_max_incomplete_size = settings.max_header_bytes  # the request line and headers
    hconfig.h2_max_header_list_size = settings.max_header_bytes
    hconfig.worker_class = "uvloop"
    if settings.application_path:
        hconfig.application_path = settings.application_path + "()"
    return hconfig


# What stops `lsd serve` (draining, then flushing): SIGHUP too, as the supervisor of --workers N takes it; left at
# its default, a closed terminal or a `kill -HUP` meant as a reload killed the process with its write queue.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def serve(app: Any, settings: ServerSettings) -> None:
    """Serve `app` in this process until SIGTERM, SIGINT or SIGHUP, then drain and run the lifespan's exit."""
    loop = asyncio.get_running_loop()
    if settings.kind == "hypercorn":
        stop = asyncio.Event()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)
        return
    server = UvicornServer(uvicorn_config(app, settings), settings.bind)
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, server.stop)
    await server.serve()
    if not server.started:
        raise SystemExit(3)  # the lifespan failed (its error is logged): as hypercorn, do not exit 0


def listening_socket(settings: ServerSettings) -> socket.socket:
    """The socket every worker accepts on (created once, by the supervisor)."""
    host, port = settings.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_worker(settings: ServerSettings, sock: socket.socket, shutdown_event: ProcessEvent) -> None:
    """One worker process of `lsd serve --workers N` under uvicorn: uvicorn builds the app from
    `settings.application_path` (a factory reading the environment `lsd serve` set), on uvloop."""
    server = UvicornServer(uvicorn_config(settings.application_path, settings), settings.bind, shutdown_event)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)


PARENT_CHECK_S = 1.0


def run_worker(target: Callable[..., object], kwargs: dict[str, object], parent: int, shutdown: Any) -> None:
    """A worker process: `target(**kwargs)`, with a thread that sets the shutdown event if the supervisor dies
    (the worker's parent changes), so the worker drains and flushes as on SIGTERM. The stop signals are ignored
    here: the supervisor turns them into the shutdown event (a worker started after the supervisor installed its
    handlers does not inherit the ignored dispositions the first ones got)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    watch = threading.Thread(target=_watch_parent, args=(parent, shutdown), name="lsd-parent-watch", daemon=True)
    watch.start()
    target(**kwargs)


def _watch_parent(parent: int, shutdown: Any) -> None:
    while not shutdown.is_set():
        if os.getppid() != parent:
            logging.getLogger("lsd.supervisor").error("the supervisor (pid %d) is gone: shutting down", parent)
            shutdown.set()
            return
        time.sleep(PARENT_CHECK_S)

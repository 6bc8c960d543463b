"""CPU per request of the ASGI app alone, no HTTP server: lsd's app against the bare proxy's app.

    .venv/bin/python -m bench.app_cost [--requests 10000] [--rounds 3] [--breakdown]

`make bench` measures whole servers under wrk, which on a small shared machine moves with everything else that
runs. This measures only what differs between lsd and the bare proxy: both apps are called in this process with
ASGI messages (32 concurrent callers, the same body as `make bench`), each calling the same fake OpenAI server
(its own process) through aiohttp; hypercorn and h11, identical for both, are left out. lsd runs with its
production settings (every inference recorded by its writer into a throwaway PostgreSQL, access log on, to
/dev/null) and the CPU time of this process per request is reported, until the writer has committed every row of
the round, with the part spent in the garbage collector.
Rounds alternate between the apps; the table shows medians. Use it to see what a change to the request path costs.
`--stream` does the same with streamed requests against bench/token_fake.py (`--stream-tokens` tokens at
`--token-rate` tokens/s each, every token in a read of its own as from a real provider) and also reports CPU per token:
what a change to the streaming path costs, without the HTTP server's write per token that both apps pay alike.
`--prompt-kib K` sends part bigctx's request instead (a K KiB prompt; 2 KiB answers from bench/token_fake.py, 2,000
requests a round): what a change costs a big context, without the HTTP server's reads of the body. Part bigctx's
prompt is the same in every request (an agent's or an app's fixed context); `--unique` gives each request a prompt of
its own (a counter in front of it), which no store-once can save.
`--breakdown` adds lsd with its access log off, with recording off (`[gateway.observability] enabled = false`),
and with both off: what each costs, and what the engine alone costs over the bare proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench import bigctx, report, streams
from bench.bare_proxy import build_app as build_bare_app
from bench.children import Children, shielded
from bench.database import Cluster
from bench.gateway import BODY, LSD_CONFIG, MODEL, start_fake, unrecorded
from bench.loop import run as run_async
from lsd.app import build_app
from lsd.config import parse
from lsd.telemetry import logging as lsd_logging

CONCURRENCY = 32
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


class GcClock:
    """Time spent in the garbage collector, from gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


async def drive(
    app: App,
    state: dict[str, Any],
    requests: int,
    body: bytes | Callable[[], bytes] = BODY,
    events: list[int] | None = None,
) -> int:
    """`requests` POST /inference calls, CONCURRENCY at a time; every answer must be a 200. `events`: add the
    number of SSE `data:` lines answered to events[0]. `body`: the body, or a function making each request's."""

    async def one() -> None:
        sent = body() if callable(body) else body
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/inference",
            "raw_path": b"/inference",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(sent)),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "state": dict(state),
        }
        received = False
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:
                await asyncio.Event().wait()  # no disconnect while the app works
            received = True
            return {"type": "http.request", "body": sent, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif events is not None:
                events[0] += message.get("body", b"").count(b"data:")

        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"expected one 200, got {statuses}")

    async def caller(count: int) -> None:
        for _ in range(count):
            await one()

    per_caller = requests // CONCURRENCY
    await asyncio.gather(*(caller(per_caller) for _ in range(CONCURRENCY)))
    return per_caller * CONCURRENCY


async def drained(state: dict[str, Any]) -> None:
    """Until lsd's writer has committed every queued row (at once for the bare proxy, which has none)."""
    services = state.get("services")  # lsd's lifespan state holds the Runtime
    writer = getattr(services, "writer", None)
    while writer is not None and writer.stats.queued_rows:
        await asyncio.sleep(0.005)


async def measure(
    app: Any,
    requests: int,
    rounds: int,
    results: dict[str, list[dict[str, float]]],
    name: str,
    body: bytes | Callable[[], bytes] = BODY,
    warmup: int = 2000,
) -> None:
    async with app.router.lifespan_context(app) as state:
        await drive(app, state or {}, min(requests, warmup), body)  # warm-up: connections, caches
        clock = GcClock()
        gc.callbacks.append(clock)
        try:
            for _ in range(rounds):
                clock.seconds = 0.0
                events = [0]
                cpu = time.process_time()
                done = await drive(app, state or {}, requests, body, events)
                await drained(state or {})  # the writer's work for these requests is part of their cost
                cpu = time.process_time() - cpu
                sample = {"cpu_us": 1e6 * cpu / done, "gc_us": 1e6 * clock.seconds / done}
                if events[0]:
                    sample["cpu_us_per_event"] = 1e6 * cpu / events[0]
                results[name].append(sample)
        finally:
            gc.callbacks.remove(clock)


def variants(config_text: str, breakdown: bool) -> dict[str, tuple[str, str]]:
    """lsd's variants to run: name -> (config text, LSD_LOG_LEVEL)."""
    unrecorded_text = unrecorded(config_text)
    runs = {"lsd": (config_text, "INFO")}
    if breakdown:
        runs["lsd, access log off"] = (config_text, "WARNING")
        runs["lsd, recording off"] = (unrecorded_text, "INFO")
        runs["lsd, both off"] = (unrecorded_text, "WARNING")
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.app_cost", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=None, help="requests per round (default 10000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per app, alternating (default 3)")
    p.add_argument("--breakdown", action="store_true", help="also lsd without access log, recording, both")
    p.add_argument("--stream", action="store_true", help="streamed requests (default 1000 a round), CPU per token too")
    p.add_argument("--stream-tokens", type=int, default=100, help="tokens per stream (default 100)")
    p.add_argument("--token-rate", type=float, default=500.0, help="tokens per second of each stream (default 500)")
    p.add_argument("--prompt-kib", type=int, default=0, help="part bigctx's request with a prompt of this size")
    p.add_argument("--answer-bytes", type=int, default=2048, help="with --prompt-kib: the answer's size")
    p.add_argument("--unique", action="store_true", help="with --prompt-kib: a prompt of its own in every request")
    args = p.parse_args(argv)
    if args.stream and args.prompt_kib:
        p.error("--stream and --prompt-kib are separate measures")
    if args.unique and not args.prompt_kib:
        p.error("--unique goes with --prompt-kib")
    default_requests = 1_000 if args.stream else 2_000 if args.prompt_kib else 10_000
    requests = args.requests if args.requests is not None else default_requests
    body: bytes | Callable[[], bytes]
    if args.stream:
        body, warmup = streams.body_for("lsd"), 200
    elif args.prompt_kib:
        body, warmup = (bigctx.unique_bodies(args.prompt_kib) if args.unique else bigctx.body(args.prompt_kib)), 200
    else:
        body, warmup = BODY, 2000
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-app-"))
    cluster = Cluster(workdir / "postgres")
    results: dict[str, list[dict[str, float]]] = {}
    # lsd's access log goes to stderr: point it at /dev/null for the run, keep our own output on stdout.
    saved_stderr = os.dup(2)
    try:
        cluster.start()
        database_url = cluster.create("bench_app", migrated=True)
        with Children(workdir) as children:
            if args.stream:
                tokens = ("--tokens", str(args.stream_tokens), "--token-rate", str(args.token_rate))
                _, fake_url = children.fake("token-fake", "bench.token_fake", *tokens)
            elif args.prompt_kib:
                answer = ("--answer-bytes", str(args.answer_bytes))
                _, fake_url = children.fake("bigctx-fake", "bench.token_fake", *answer)
            else:
                _, fake_url = start_fake(children, 0.0)
            config_text = LSD_CONFIG.format(spool_dir=workdir / "spool", model=MODEL, api_base=f"{fake_url}/v1/")
            runs = variants(config_text, args.breakdown)
            results = {name: [] for name in ("bare", *runs)}
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            for _ in range(args.rounds):
                run_async(measure(build_bare_app(fake_url), requests, 1, results, "bare", body, warmup))
                for name, (text, level) in runs.items():
                    os.environ["LSD_LOG_LEVEL"] = level
                    lsd_logging.configure()  # as `lsd serve`: JSON access lines at INFO (to /dev/null here)
                    app = build_app(parse(text, base_dir=workdir), database_url)
                    run_async(measure(app, requests, 1, results, name, body, warmup))
    except KeyboardInterrupt:
        return 130
    finally:
        os.dup2(saved_stderr, 2)
        with shielded():
            cluster.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    keys = ("cpu_us", "gc_us", "cpu_us_per_event") if args.stream else ("cpu_us", "gc_us")
    summary = {
        name: {key: statistics.median(r[key] for r in samples) for key in keys} for name, samples in results.items()
    }
    bare = summary["bare"]["cpu_us"]
    unit = "stream" if args.stream else "request"
    token_head, token_rule = (" CPU µs/token (SSE event) |", "---:|") if args.stream else ("", "")
    print(f"| app | CPU µs/{unit} (median) | over bare | of which GC | rounds |{token_head}")
    print(f"|---|---:|---:|---:|---:|{token_rule}")
    for name, values in summary.items():
        over = f"+{values['cpu_us'] - bare:.1f}" if name != "bare" else ""
        token = f" {values['cpu_us_per_event']:.1f} |" if args.stream else ""
        print(f"| {name} | {values['cpu_us']:.1f} | {over} | {values['gc_us']:.1f} | {len(results[name])} |{token}")
    saved = report.save({"machine": report.machine(), "app_cost": {"runs": results, "median": summary}})
    print(f"results: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instructions lsd's app executes per streamed token and per request, counted by valgrind: an A/B measure that does
not move with the machine's load.

    .venv/bin/python -m bench.instructions [--streams 32] [--tokens 20,220] [--requests 64,320]

On a shared two-core VM the CPU time of the same code moves by 5-15 % from one run to the next (docs/performance.md),
more than most changes to the request path are worth. Instruction counts do not: two runs of the same tree agree to
~0.2 %. This runs lsd's app in-process (bench.app_cost's ASGI driver, 32 callers, recording into a throwaway
PostgreSQL, access log on) under `valgrind --tool=callgrind` with the provider's socket replaced by canned answers
(`Transport.stream_bytes` yields an OpenAI stream's token events, each after one pass of the event loop;
`Transport.post` returns a chat completion), twice per measure with different sizes, and reports the difference
over the difference in tokens (or requests): the per-token (per-request) cost, the start-up and per-stream costs
cancelled out. It counts the gateway's process only (the committer's thread included), not PostgreSQL, and
instructions, not cache misses or syscalls: compare trees with it, not gateways. Needs valgrind (Debian's
`valgrind`); about two minutes per measure, the two runs side by side.

`--no-recording` runs lsd with `[gateway.observability] enabled = false`: the per-request count with recording
moves by ~2 % with the writer's batching (how many rows each flush carries, which path encodes them), without it
by ~0.5 %. `--callgrind-out DIR` keeps each run's callgrind file (`DIR/<measure>-<size>.out`): `callgrind_annotate`
on the two sizes of a measure, their difference over the tokens (requests) between them, gives the cost of each C
function per token (request), which shows what no Python profiler does (docs/performance.md, session 13).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from bench import app_cost, streams
from bench.database import Cluster
from bench.gateway import BODY, LSD_CONFIG, MODEL, unrecorded
from bench.loop import run as run_async
from lsd.app import build_app
from lsd.config import parse
from lsd.providers import transport
from lsd.telemetry import logging as lsd_logging

_HEAD = b'{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,"model":"fake","choices":'
_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
)
_COLLECTED = re.compile(r"Collected : (\d+)")


def _event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def stream_events(tokens: int) -> list[bytes]:
    """An OpenAI stream's body as a provider sends it: one event per token, then finish, usage and [DONE]."""
    events = [
        _event(
            _HEAD + orjson.dumps([{"index": 0, "delta": {"content": f"t{10**9 + i} "}, "finish_reason": None}]) + b"}"
        )
        for i in range(tokens)
    ]
    usage = orjson.dumps({"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens})
    events.append(
        _event(_HEAD + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        + _event(_HEAD + b'[],"usage":' + usage + b"}")
        + _event(b"[DONE]")
    )
    return events


def _canned_transport(tokens: int) -> None:
    """Replace the provider's socket: streams get `stream_events(tokens)`, plain calls `_COMPLETION`."""
    events = stream_events(tokens)

    async def stream_bytes(
        self: Any, url: str, body: bytes, headers: Mapping[str, str], **_: Any
    ) -> AsyncIterator[bytes]:
        for event in events:
            await asyncio.sleep(0)  # as a read that waits for the provider
            yield event

    async def post(self: Any, url: str, body: bytes, headers: Mapping[str, str], **_: Any) -> transport.HttpResponse:
        await asyncio.sleep(0)
        return transport.HttpResponse(200, _COMPLETION, {"content-type": "application/json"})

    transport.Transport.stream_bytes = stream_bytes  # type: ignore[assignment,method-assign]
    transport.Transport.post = post  # type: ignore[method-assign]


def child(kind: str, count: int, size: int, recording: bool = True) -> None:
    """One run, to be counted: `count` requests (streamed with `size` tokens each when kind is "stream")."""
    _canned_transport(size)
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-instr-"))
    cluster = Cluster(workdir / "postgres")
    saved_stderr = os.dup(2)
    try:
        cluster.start()
        url = cluster.create("bench_instructions", migrated=True)
        text = LSD_CONFIG.format(spool_dir=workdir / "spool", model=MODEL, api_base="http://127.0.0.1:9/v1/")
        if not recording:
            text = unrecorded(text)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # the access log (INFO, as `lsd serve`) goes nowhere
        os.environ["LSD_LOG_LEVEL"] = "INFO"
        lsd_logging.configure()
        app = build_app(parse(text, base_dir=workdir), url)
        body = streams.body_for("lsd") if kind == "stream" else BODY
        results: dict[str, list[dict[str, float]]] = {"lsd": []}
        run_async(app_cost.measure(app, count, 1, results, "lsd", body, warmup=app_cost.CONCURRENCY))
    finally:
        os.dup2(saved_stderr, 2)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start(kind: str, count: int, size: int, recording: bool, out: Path | None) -> subprocess.Popen[str]:
    target = out / f"{kind}-{size or count}.out" if out is not None else "/dev/null"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={target}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        f"{kind},{count},{size},{int(recording)}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _collected(process: subprocess.Popen[str]) -> int:
    _, err = process.communicate()
    found = _COLLECTED.search(err)
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"a counted run failed (exit {process.returncode}):\n{err[-2000:]}")
    return int(found.group(1))


def measure(
    kind: str,
    runs: tuple[tuple[int, int], tuple[int, int]],
    per: int,
    recording: bool = True,
    out: Path | None = None,
) -> float:
    """Instructions per unit: two runs (count, size) side by side, their difference over `per` units."""
    first, second = (_start(kind, count, size, recording, out) for count, size in runs)
    return (_collected(second) - _collected(first)) / per


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=32, help="streams per run, a multiple of 32 (default 32)")
    p.add_argument("--tokens", default="20,220", help="tokens per stream in the two runs (default 20,220)")
    p.add_argument("--requests", default="64,320", help="plain requests in the two runs (default 64,320)")
    p.add_argument("--skip", choices=("stream", "plain"), help="leave one measure out")
    p.add_argument("--no-recording", action="store_true", help="lsd with [gateway.observability] enabled = false")
    p.add_argument("--callgrind-out", type=Path, help="keep each run's callgrind file in this folder")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, count, size, recording = args.child.split(",")
        child(kind, int(count), int(size), recording == "1")
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr)
        return 1
    if args.streams % app_cost.CONCURRENCY:
        p.error(f"--streams must be a multiple of {app_cost.CONCURRENCY}")
    recording, out = not args.no_recording, args.callgrind_out
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        out = out.resolve()
    label = ", recording off" if args.no_recording else ""
    print("| measure | instructions | runs |")
    print("|---|---:|---|")
    if args.skip != "stream":
        t1, t2 = (int(v) for v in args.tokens.split(","))
        per_token = measure(
            "stream", ((args.streams, t1), (args.streams, t2)), args.streams * (t2 - t1), recording, out
        )
        print(f"| per streamed token | {per_token:,.0f} | {args.streams} streams of {t1} and of {t2} tokens{label} |")
    if args.skip != "plain":
        r1, r2 = (int(v) for v in args.requests.split(","))
        per_request = measure("plain", ((r1, 0), (r2, 0)), r2 - r1, recording, out)
        print(f"| per request (not streamed) | {per_request:,.0f} | {r1} and {r2} requests{label} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Part streams: how many long streams one worker holds. The fake streams `--stream-tokens` tokens at `--token-rate`
tokens/s (bench/token_fake.py); C clients, started at random moments of the ramp, each keep one stream open, back to
back, for `--stream-window` seconds, at C = 10, 25, 50, 100, 150, 200, 250, 400, ... for the fake called directly,
the bare proxy relaying bytes and `lsd serve` (recording on; `--stream-targets` adds `lsd-norec`, the same gateway
with observability off). Every server is started first; at each C the fake runs, then each target still holding;
the ramp ends when none is left.

    python -m bench.run --parts streams [--stream-tokens 100 --token-rate 50 --stream-levels 25,50,100,200,400]

Measured at each C: TTFT (send to the first `data:` line) and, for every token, the delay from the moment the fake
wrote it (its text carries the fake's CLOCK_MONOTONIC) to the moment the client read it. A target *holds* C streams
while, against the fake called directly at the same C, its TTFT p99 adds at most 5 ms and its per-token delay p99
adds at most 1 ms (issue #23's limits). Also: the server's CPU per token and its memory per open stream (RSS with C
streams open less RSS before, over C). The clients are raw asyncio connections in this process, so that the load
generator's own cost per token stays small next to the targets'.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.children import Child, Children, rss_kib, wait_for_http
from bench.cpu import tree_cpu_s
from bench.database import Cluster
from bench.gateway import LSD_CONFIG, MODEL, unrecorded
from bench.load import percentile
from bench.loop import run as run_async
from bench.report import table
from lsd.store.local import free_port

TTFT_LIMIT_MS = 5.0
DEFAULT_LEVELS = (10, 25, 50, 100, 150, 200, 250, 400, 800)
TARGETS = ("fake", "bare", "lsd", "lsd-norec")
DELAY_LIMIT_MS = 1.0
_TOKEN = re.compile(rb"t(\d{6,}) ")


@dataclass(frozen=True, slots=True)
class Settings:
    tokens: int = 100
    token_rate: float = 50.0
    levels: tuple[int, ...] = DEFAULT_LEVELS
    window_s: float = 5.0
    targets: tuple[str, ...] = ("fake", "bare", "lsd")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = getattr(args, "quick", False)
        return cls(
            tokens=getattr(args, "stream_tokens", 100),
            token_rate=getattr(args, "token_rate", 50.0),
            levels=(10, 25) if quick else getattr(args, "stream_levels", DEFAULT_LEVELS),
            window_s=3.0 if quick else getattr(args, "stream_window", 5.0),
            targets=getattr(args, "stream_targets", ("fake", "bare", "lsd")),
        )


class StreamClient(asyncio.Protocol):
    """One connection that runs streams back to back until `until` (loop time), recording TTFT and token delays."""

    def __init__(self, request: bytes, until: float, stats: LevelStats, done: asyncio.Future[None]) -> None:
        self.request = request
        self.until = until
        self.stats = stats
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.pending = b""
        self.sent_ns = 0
        self.first = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.start()

    def start(self) -> None:
        assert self.transport is not None
        if asyncio.get_running_loop().time() >= self.until:
            self.transport.close()
            return
        self.pending, self.first = b"", False
        self.sent_ns = time.monotonic_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.pending += data
        lines = self.pending.split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            steady = now >= self.stats.steady_ns  # once every client has started
            if not self.first:
                self.first = True
                if steady:
                    self.stats.ttft_ms.append((now - self.sent_ns) / 1e6)
            if match := _TOKEN.search(line):
                if steady:
                    self.stats.delay_ms.append((now - int(match.group(1))) / 1e6)
            elif b"[DONE]" in line:
                self.stats.streams += 1
                self.start()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class LevelStats:
    ttft_ms: list[float]
    delay_ms: list[float]
    steady_ns: int  # measurements count from here: every client has started
    streams: int = 0

    def summary(self) -> dict[str, Any]:
        ttft, delay = sorted(self.ttft_ms), sorted(self.delay_ms)
        return {
            "streams": self.streams,
            "tokens": len(delay),
            "ttft_p50_ms": round(percentile(ttft, 50), 2) if ttft else None,
            "ttft_p99_ms": round(percentile(ttft, 99), 2) if ttft else None,
            "delay_p50_ms": round(percentile(delay, 50), 3) if delay else None,
            "delay_p99_ms": round(percentile(delay, 99), 3) if delay else None,
        }


async def drive(
    host: str, port: int, path: str, body: bytes, clients: int, window_s: float, ramp_s: float
) -> LevelStats:
    """`clients` connections, started evenly over `ramp_s`, each streaming back to back until the window ends;
    only what happens after the ramp is measured."""
    loop = asyncio.get_running_loop()
    request = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        path.encode(),
        host.encode(),
        len(body),
        body,
    )
    stats = LevelStats([], [], time.monotonic_ns() + int(ramp_s * 1e9))
    until = loop.time() + ramp_s + window_s
    finished: list[asyncio.Future[None]] = []
    start = loop.time()
    for offset in start_offsets(clients, ramp_s):
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        done: asyncio.Future[None] = loop.create_future()
        finished.append(done)
        await loop.create_connection(lambda d=done: StreamClient(request, until, stats, d), host, port)  # type: ignore[misc]
    await asyncio.wait_for(asyncio.gather(*finished), timeout=window_s + ramp_s + 60)
    return stats


def start_offsets(clients: int, ramp_s: float, seed: int = 23) -> list[float]:
    """When each client starts within the ramp: uniformly at random (seeded), as independent users would. Evenly
    spaced starts would phase-lock the streams: at `ramp_s / clients` equal to the token interval (100 clients over
    2 s at 50 tokens/s) every stream's tokens fall due in the same millisecond, a burst of C tokens every interval."""
    rng = random.Random(seed)
    return sorted(rng.uniform(0.0, ramp_s) for _ in range(clients))


def _start(
    name: str, children: Children, cluster: Cluster, workdir: Path, fake_url: str
) -> tuple[Child | None, str, str]:
    """(server child or None for the fake, host:port, path)."""
    if name == "fake":
        return None, fake_url.removeprefix("http://"), "/v1/chat/completions"
    bind = f"127.0.0.1:{free_port()}"
    if name == "bare":
        child = children.python("streams-bare", "-m", "bench.bare_proxy", "--bind", bind, "--upstream", fake_url)
        wait_for_http(f"http://{bind}/inference", child, any_status=True)
        return child, bind, "/inference"
    config = workdir / f"streams-{name}.toml"
    text = LSD_CONFIG.format(spool_dir=workdir / f"spool-streams-{name}", model=MODEL, api_base=f"{fake_url}/v1/")
    if name == "lsd-norec":  # the same gateway recording nothing: what recording costs a stream
        text = unrecorded(text)
    config.write_text(text)
    database = cluster.create(f"bench_streams_{name.replace('-', '_')}")
    env = {"LSD_DATABASE_URL": database, "LSD_LOG_FORMAT": "json", "LSD_LOG_LEVEL": "INFO"}
    child = children.python(f"streams-{name}", "-m", "lsd", "serve", "--config", str(config), "--bind", bind, env=env)
    wait_for_http(f"http://{bind}/health", child, timeout_s=120)
    return child, bind, "/inference"


def body_for(name: str) -> bytes:
    messages = [{"role": "user", "content": "stream to me"}]
    if name == "fake":
        return orjson.dumps({"model": "fake", "messages": messages, "stream": True})
    return orjson.dumps({"model_name": MODEL, "input": {"messages": messages}, "stream": True})


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    stream_s = settings.tokens / settings.token_rate
    print(
        f"\n## Part streams: {settings.tokens} tokens at {settings.token_rate:g} tokens/s ({stream_s:.1f} s a stream), "
        f"{settings.window_s:g} s at each level"
    )
    fake, fake_url = children.fake(
        "token-fake", "bench.token_fake", "--tokens", str(settings.tokens), "--token-rate", str(settings.token_rate)
    )
    results: dict[str, dict[str, Any]] = {name: {} for name in settings.targets}
    started: dict[str, tuple[Child | None, str, str]] = {}
    try:
        # Every target up from the start (an idle server costs nothing), the levels interleaved: at each C the fake
        # first, then each target that held every level below. The ramp stops when none is left, so the fake is
        # not driven to levels no target reaches.
        for name in settings.targets:
            started[name] = _start(name, children, cluster, workdir, fake_url)
        running = [name for name in settings.targets if name != "fake"]
        for clients in settings.levels:
            if not running:
                break
            for name in ("fake", *running) if "fake" in settings.targets else running:
                child, bind, path = started[name]
                level = _level(name, child or fake, bind, path, clients, settings, stream_s)
                direct = results.get("fake", {}).get(str(clients))
                if name != "fake" and not _holds(level, direct):
                    # One stall of a few ms on a shared machine can push a p99 past its limit: a missed level is
                    # measured once more and the better run kept (the same second chance for every target).
                    again = _level(name, child or fake, bind, path, clients, settings, stream_s)
                    again["retried"] = True
                    level = again if _holds(again, direct) else level
                results[name][str(clients)] = level
                if name != "fake" and not _holds(level, direct):
                    running.remove(name)  # past its limit: higher levels only get worse
    finally:
        for child, _, _ in started.values():
            if child is not None:
                children.stop(child, timeout_s=60)
        children.stop(fake)
    summary = {"settings": asdict(settings), "targets": results, "held": _held(results)}
    print()
    print(_render(summary))
    return summary


def _level(
    name: str, server: Child, bind: str, path: str, clients: int, settings: Settings, stream_s: float
) -> dict[str, Any]:
    """One level: `clients` streams through one target, with the server's CPU per token and RSS growth."""
    host, port = bind.rsplit(":", 1)
    rss0, cpu0 = rss_kib(server.pid), tree_cpu_s(server.pid)
    stats = run_async(
        drive(host, int(port), path, body_for(name), clients, settings.window_s, ramp_s=min(stream_s, 2.0))
    )
    cpu = tree_cpu_s(server.pid) - cpu0
    level = stats.summary()
    level["cpu_us_per_token"] = round(1e6 * cpu / max(level["tokens"], 1), 1)
    level["rss_growth_kib"] = rss_kib(server.pid) - rss0
    print(
        f"  {name}, {clients} streams: TTFT p99 {level['ttft_p99_ms']} ms, token delay p50/p99 "
        f"{level['delay_p50_ms']}/{level['delay_p99_ms']} ms, {level['cpu_us_per_token']} us CPU/token, "
        f"{level['streams']} streams done"
    )
    return level


def _holds(level: dict[str, Any], direct: dict[str, Any] | None) -> bool:
    if direct is None or level["ttft_p99_ms"] is None or level["delay_p99_ms"] is None:
        return False
    ttft_added = float(level["ttft_p99_ms"]) - float(direct["ttft_p99_ms"])
    delay_added = float(level["delay_p99_ms"]) - float(direct["delay_p99_ms"])
    return ttft_added <= TTFT_LIMIT_MS and delay_added <= DELAY_LIMIT_MS


def _held(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Per target, the largest C at which it held (and every level below it held)."""
    out: dict[str, int] = {}
    direct = results.get("fake", {})
    for name, levels in results.items():
        if name == "fake":
            continue
        held = 0
        for key in sorted(levels, key=int):
            if not _holds(levels[key], direct.get(key)):
                break
            held = int(key)
        out[name] = held
    return out


def _render(summary: dict[str, Any]) -> str:
    direct = summary["targets"].get("fake", {})
    rows = []
    for name, levels in summary["targets"].items():
        for key, level in sorted(levels.items(), key=lambda kv: int(kv[0])):
            base = direct.get(key)
            ttft_add = round(level["ttft_p99_ms"] - base["ttft_p99_ms"], 2) if base and level["ttft_p99_ms"] else None
            delay_add = (
                round(level["delay_p99_ms"] - base["delay_p99_ms"], 3) if base and level["delay_p99_ms"] else None
            )
            per_stream = round(level["rss_growth_kib"] / int(key), 1)
            rows.append(
                [
                    name,
                    key,
                    level["ttft_p99_ms"],
                    ttft_add,
                    level["delay_p50_ms"],
                    level["delay_p99_ms"],
                    delay_add,
                    level["cpu_us_per_token"],
                    per_stream,
                    level["streams"],
                ]
            )
    headers = ["target", "streams", "TTFT p99 ms", "added", "token delay p50 ms", "p99 ms", "added", "CPU us/token"]
    headers += ["RSS growth KiB/stream", "streams done"]
    held = ", ".join(f"{n}: {c}" for n, c in summary["held"].items())
    bare = summary["held"].get("bare")
    ratio = f"; lsd/bare = {summary['held'].get('lsd', 0) / bare:.2f}" if bare else ""
    return (
        table(headers, rows)
        + f"\n\nstreams held (TTFT +<= {TTFT_LIMIT_MS:g} ms, delay +<= {DELAY_LIMIT_MS:g} ms): {held}{ratio}"
    )

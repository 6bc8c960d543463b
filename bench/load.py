"""Load generators: closed-loop with wrk (most requests per second) and open-loop at a fixed rate (aiohttp).

wrk keeps `connections` requests in flight and measures how many complete; its latencies include the time a
request waits behind others, so they grow with load. The open-loop generator schedules request i at
start + i / rate whatever the server does, and measures each latency from the scheduled time, so a stalled
server shows up as latency instead of as fewer requests (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.loop import run as run_async

_MARK = "BENCH_JSON "
_LUA = """
wrk.method = "POST"
wrk.body = [==[BODY]==]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "MARK{\\"requests\\": %d, \\"duration_us\\": %d, \\"status_errors\\": %d, \\"socket_errors\\": %d, " ..
    "\\"timeouts\\": %d, \\"p50_us\\": %.0f, \\"p90_us\\": %.0f, \\"p99_us\\": %.0f, \\"max_us\\": %.0f, " ..
    "\\"mean_us\\": %.1f}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One load run. `ok` counts 2xx answers; `errors` everything else (bad statuses, socket errors, timeouts)."""

    tool: str
    connections: int | None
    target_rate: float | None
    duration_s: float
    requests: int
    ok: int
    errors: int
    rps: float
    p50_ms: float | None  # None: no successful request to measure
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    warmup_ok: int = 0  # open loop: 2xx answers during the warm-up, not in the numbers above
    schedule_p50_ms: float | None = None  # open loop: latency from the due time, not the send time
    schedule_p90_ms: float | None = None
    schedule_p99_ms: float | None = None
    lag_p99_ms: float | None = None  # open loop: how late the generator sent (p99)
    stream: bool = False  # open loop: SSE answers; the p* above are then the time to the end of the stream
    ttft_p50_ms: float | None = None  # streaming: from the send to the first `data:` line received
    ttft_p90_ms: float | None = None
    ttft_p99_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadError(RuntimeError):
    """The load generator could not run or its output could not be read."""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: float,
    script_dir: Path,
    headers: dict[str, str] | None = None,
    cpus: tuple[str, ...] = (),
) -> LoadResult:
    """`wrk -t1 -c<connections>`: one thread is enough to saturate a Python server and leaves the other core."""
    if b"]==]" in body or any("]==]" in k + v for k, v in (headers or {}).items()):
        raise LoadError("the body or a header cannot be quoted in Lua")
    script = script_dir / "post.lua"
    extra = "".join(f"wrk.headers[ [==[{k}]==] ] = [==[{v}]==]\n" for k, v in (headers or {}).items())
    script.write_text(extra + _LUA.replace("BODY", body.decode()).replace("MARK", _MARK))
    command = [
        *cpus,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=duration_s + 60)
    line = next((x for x in result.stdout.splitlines() if x.startswith(_MARK)), None)
    if result.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = orjson.loads(line[len(_MARK) :])
    requests = int(data["requests"])
    # wrk counts statuses >= 400 as status errors; socket errors and timeouts are requests without an answer.
    errors = int(data["status_errors"]) + int(data["socket_errors"]) + int(data["timeouts"])
    seconds = data["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        connections=connections,
        target_rate=None,
        duration_s=round(seconds, 3),
        requests=requests,
        ok=requests - int(data["status_errors"]),
        errors=errors,
        rps=round(requests / seconds, 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=round(data["mean_us"] / 1000, 3),
    )


async def _closed_loop(
    url: str, body: bytes, connections: int, duration_s: float, headers: dict[str, str] | None = None
) -> LoadResult:
    """The fallback when wrk is missing: `connections` aiohttp workers posting back to back."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Content-Type": "application/json", **(headers or {})}
    ) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            nonlocal errors
            while (sent := time.perf_counter()) < deadline:
                try:
                    async with session.post(url, data=body) as reply:
                        await reply.read()
                        good = 200 <= reply.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    good = False
                if good:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - started
    return _summary("aiohttp closed loop", connections, None, seconds, latencies, errors)


def closed_loop(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: float,
    script_dir: Path,
    headers: dict[str, str] | None = None,
    cpus: tuple[str, ...] = (),
) -> LoadResult:
    """wrk if installed, else an aiohttp closed loop (slower: it takes CPU from the server under test).

    `cpus`: an argv prefix for wrk (`taskset -c 0-3`, see bench.pinning)."""
    if have_wrk():
        return wrk(
            url,
            body,
            connections=connections,
            duration_s=duration_s,
            script_dir=script_dir,
            headers=headers,
            cpus=cpus,
        )
    return run_async(_closed_loop(url, body, connections, duration_s, headers))


async def open_loop(
    url: str,
    body: bytes,
    *,
    rate: float,
    duration_s: float,
    warmup_s: float,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Request i is due at start + i / rate, whether or not earlier ones have been answered.

    The latencies reported are from the moment each request is sent; `schedule_*` are from its due time, so
    they also hold the generator's own lateness (`lag_p99_ms`: uvloop's timers tick in milliseconds). The
    first `warmup_s` seconds are sent at the same rate but left out (their 2xx answers are in `warmup_ok`).

    With `stream` the body asks for server-sent events: the answer is read line by line, `ttft_*` run from
    the send to the first `data:` line, and the latencies to the end of the stream. A 2xx answer without any
    `data:` line counts as an error."""
    clock = time.perf_counter
    warmup_count = int(warmup_s * rate)
    total = warmup_count + int(duration_s * rate)
    latencies: list[float] = []
    from_due: list[float] = []
    firsts: list[float] = []
    lags: list[float] = []
    errors = 0
    warmup_ok = 0
    last_done = 0.0
    pending: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"Content-Type": "application/json", **(headers or {})}
    ) as session:

        async def one(due: float, measured: bool) -> None:
            nonlocal errors, warmup_ok, last_done
            sent = clock()
            first = 0.0
            try:
                async with session.post(url, data=body) as reply:
                    if stream:
                        async for line in reply.content:
                            if not first and line.startswith(b"data:"):
                                first = clock()
                    else:
                        await reply.read()
                    good = 200 <= reply.status < 300 and (first > 0 or not stream)
            except (aiohttp.ClientError, TimeoutError):
                good = False
            done = clock()
            if not measured:
                warmup_ok += good
                return
            last_done = max(last_done, done)
            lags.append(sent - due)
            if good:
                latencies.append(done - sent)
                from_due.append(done - due)
                if stream:
                    firsts.append(first - sent)
            else:
                errors += 1

        start = clock() + 0.05
        for i in range(total):
            due = start + i / rate
            if (wait := due - clock()) > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(one(due, i >= warmup_count))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    seconds = max(last_done - (start + warmup_count / rate), 1e-9)
    tool = "open loop (aiohttp, streaming)" if stream else "open loop (aiohttp)"
    result = _summary(tool, None, rate, seconds, latencies, errors)
    from_due.sort()
    lags.sort()
    firsts.sort()
    return replace(
        result,
        warmup_ok=warmup_ok,
        schedule_p50_ms=_ms(from_due, 50),
        schedule_p90_ms=_ms(from_due, 90),
        schedule_p99_ms=_ms(from_due, 99),
        lag_p99_ms=_ms(lags, 99),
        stream=stream,
        ttft_p50_ms=_ms(firsts, 50) if stream else None,
        ttft_p90_ms=_ms(firsts, 90) if stream else None,
        ttft_p99_ms=_ms(firsts, 99) if stream else None,
    )


def _ms(sorted_values: list[float], p: float) -> float | None:
    """The percentile in ms; None when there is nothing to measure (every request failed)."""
    return round(percentile(sorted_values, p) * 1000, 3) if sorted_values else None


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (`p` in 0..100) of an ascending list; 0.0 for an empty one."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _summary(
    tool: str, connections: int | None, rate: float | None, seconds: float, latencies: list[float], errors: int
) -> LoadResult:
    values = sorted(latencies)
    requests = len(values) + errors
    return LoadResult(
        tool=tool,
        connections=connections,
        target_rate=rate,
        duration_s=round(seconds, 3),
        requests=requests,
        ok=len(values),
        errors=errors,
        rps=round(requests / seconds, 1) if seconds else 0.0,
        p50_ms=_ms(values, 50),
        p90_ms=_ms(values, 90),
        p99_ms=_ms(values, 99),
        max_ms=round(values[-1] * 1000, 3) if values else None,
        mean_ms=round(sum(values) / len(values) * 1000, 3) if values else None,
    )

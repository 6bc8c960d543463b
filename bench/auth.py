"""`python -m bench.auth`: what API keys and rate limits cost a request, in-process and end to end.

    python -m bench.auth                 # both parts, about a minute on 2 cores
    python -m bench.auth --parts micro   # only the in-process microbenchmarks
    python -m bench.run --parts auth     # the same, as a part of `make bench`

Part micro (a throwaway PostgreSQL, fsync on): each check timed on its own with perf_counter_ns, one call after
another on one event loop. `auth, warm cache`: the Guard's key check (header scan, parse, SHA-256, cache lookup,
constant-time compare). `rate limit, leases`: RateLimiter.acquire and Reservation.settle for two rules (an
inference limit per key and a global token limit) with `lease = 0.01`. `rate limit, lease = 0`: the same with
every admission one atomic database call (the round trip).
Part e2e: `lsd serve` in front of the fake OpenAI saturated by wrk, first with auth and rate limiting off, then
with auth on and the two rules (nothing refused), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench import report
from bench.children import Children, shielded, wait_for_http
from bench.database import Cluster
from bench.gateway import LSD_CONFIG, MODEL
from bench.load import closed_loop, have_wrk
from bench.loop import run as run_async
from lsd.api.auth import authenticate
from lsd.auth import AuthService, new_key
from lsd.config import parse
from lsd.config.auth import AuthConfig
from lsd.ratelimit.limiter import RateLimiter
from lsd.ratelimit.rules import LimitRequest
from lsd.store import keys
from lsd.store.database import Database
from lsd.store.local import free_port

PARTS = ("micro", "e2e")
# max_tokens: a token limit needs it to reserve an estimate (else 400). Sent with auth off too, for a fair pair.
BODY = orjson.dumps(
    {
        "model_name": MODEL,
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "params": {"chat_completion": {"max_tokens": 100}},
    }
)
RULES = """
[gateway.auth]
enabled = true
[rate_limiting]
lease = {lease}
lease_ttl_ms = 60000
[[rate_limiting.rules]]
always = true
model_inferences_per_minute = 100000000
scope = [{{ api_key_public_id = "lsd::each" }}]
[[rate_limiting.rules]]
always = true
tokens_per_hour = 100000000000
"""


@dataclass(frozen=True, slots=True)
class Settings:
    parts: tuple[str, ...] = PARTS
    calls: int = 20_000  # timed calls of each in-process check (lease = 0: a tenth of it)
    lease: float = 0.01
    connections: int = 32
    warmup_s: float = 3.0
    duration_s: float = 10.0
    rounds: int = 2  # off, on, off, on, ...


def _quantiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3, 1)

    return {"p50_us": at(0.5), "p99_us": at(0.99), "mean_us": round(sum(ordered) / len(ordered) / 1e3, 1)}


def _create_key(url: str) -> tuple[str, str]:
    made = new_key()
    with psycopg.connect(url, autocommit=True) as conn:
        keys.insert_key(
            conn, made.public_id, made.secret_sha256, description="bench", organization=None, workspace=None
        )
    return made.public_id, made.token


async def _micro(url: str, settings: Settings) -> dict[str, Any]:
    public_id, token = _create_key(url)
    database = Database(url, min_size=1, max_size=4)
    await database.open()
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    listener = asyncio.create_task(auth.listen())
    try:
        while not auth.listening:
            await asyncio.sleep(0.01)
        headers = [(b"host", b"127.0.0.1:3000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
        headers += [(b"content-type", b"application/json"), (b"content-length", b"90")]
        headers += [(b"authorization", f"Bearer {token}".encode())]
        scope: dict[str, Any] = {"headers": headers}
        await authenticate(auth, scope)
        samples = []
        for _ in range(settings.calls):
            t0 = time.perf_counter_ns()
            await authenticate(auth, scope)
            samples.append(time.perf_counter_ns() - t0)
        results: dict[str, Any] = {"auth, warm cache": {**_quantiles(samples), "db_reads": auth.cache_misses}}
        for lease, calls in ((settings.lease, settings.calls), (0.0, settings.calls // 10)):
            config = parse(RULES.format(lease=lease), base_dir=Path(".")).rate_limiting
            limiter = RateLimiter(config, database)
            request = LimitRequest({"user": "u"}, public_id, tokens=100.0)
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                reservation = await limiter.acquire(request)
                assert reservation is not None
                reservation.settle(tokens=80.0, cost=None)
                samples.append(time.perf_counter_ns() - t0)
            await limiter.flush(everything=True)
            label = f"rate limit, lease = {lease:g}" if lease else "rate limit, lease = 0 (exact)"
            results[label] = {**_quantiles(samples), "db_calls": limiter.round_trips, "calls": calls}
        return results
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await database.close()


def _e2e(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    fake, fake_url = children.fake("fake-auth", "bench.fake_openai")
    results: dict[str, Any] = {}
    try:
        for round_, variant in ((r, v) for r in range(settings.rounds) for v in ("off", "on")):
            database_url = cluster.create(f"bench_auth_{variant}", migrated=True)
            text = LSD_CONFIG.format(
                spool_dir=workdir / f"spool-auth-{variant}", model=MODEL, api_base=f"{fake_url}/v1/"
            )
            headers: dict[str, str] = {}
            if variant == "on":
                text = RULES.format(lease=settings.lease) + text
                headers["Authorization"] = f"Bearer {_create_key(database_url)[1]}"
            config = workdir / f"auth-{variant}.toml"
            config.write_text(text)
            bind = f"127.0.0.1:{free_port()}"
            child = children.python(
                f"lsd-auth-{variant}",
                "-m",
                "lsd",
                "serve",
                "--config",
                str(config),
                "--bind",
                bind,
                env={"LSD_DATABASE_URL": database_url, "LSD_LOG_LEVEL": "WARNING"},
            )
            wait_for_http(f"http://{bind}/health", child, timeout_s=120)
            target = f"http://{bind}/inference"
            for seconds in (settings.warmup_s, settings.duration_s):  # the warm-up's numbers are left out
                measured = closed_loop(
                    target,
                    BODY,
                    connections=settings.connections,
                    duration_s=seconds,
                    script_dir=workdir,
                    headers=headers,
                )
            children.stop(child, timeout_s=60)
            results.setdefault(variant, []).append(measured.as_dict())
            print(
                f"  round {round_ + 1}, auth + rate limit {variant}: {measured.rps:,.0f} req/s, "
                f"p50 {measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms, errors {measured.errors}"
            )
    finally:
        children.stop(fake)
    # Alternating rounds, so that a neighbour's burst of CPU use hurts both variants alike; the means compared.
    off, on = (sum(r["rps"] for r in results[v]) / len(results[v]) for v in ("off", "on"))
    results["mean_rps"] = {"off": round(off, 1), "on": round(on, 1)}
    results["on_vs_off"] = round(on / off, 3) if off else None
    return results


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(f"\n## Auth and rate limiting ({'wrk' if have_wrk() else 'aiohttp closed loop: wrk not found'})")
    results: dict[str, Any] = {"settings": asdict(settings)}
    if "micro" in settings.parts:
        micro = run_async(_micro(cluster.create("bench_auth_micro", migrated=True), settings))
        results["micro"] = micro
        rows = [
            [name, m["p50_us"], m["p99_us"], m["mean_us"], m.get("db_calls", m.get("db_reads"))]
            for name, m in micro.items()
        ]
        print(report.table(["in-process check", "p50 µs", "p99 µs", "mean µs", "database calls"], rows))
    if "e2e" in settings.parts:
        results["e2e"] = _e2e(settings, children, cluster, workdir)
        e2e = results["e2e"]
        print(
            f"  mean throughput: off {e2e['mean_rps']['off']:,.0f} req/s, on {e2e['mean_rps']['on']:,.0f} req/s "
            f"(on / off {e2e['on_vs_off']})"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.auth", description=__doc__.splitlines()[0])
    p.add_argument("--parts", default=",".join(PARTS), help="micro,e2e (default both)")
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--lease", type=float, default=0.01)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds of the e2e part (default 2)")
    args = p.parse_args(argv)
    parts = tuple(x for x in args.parts.split(",") if x)
    if not set(parts) <= set(PARTS):
        p.error(f"--parts: choose from {', '.join(PARTS)}")
    settings = Settings(
        parts=parts, calls=args.calls, lease=args.lease, duration_s=args.duration, rounds=max(1, args.rounds)
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-auth-"))
    cluster = Cluster(workdir / "postgres")
    results: dict[str, Any] = {"machine": report.machine()}
    try:
        cluster.start()
        with Children(workdir) as children:
            results["auth"] = run(settings, children, cluster, workdir)
    except KeyboardInterrupt:
        return 130
    finally:
        with shielded():
            cluster.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nresults: {report.save(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

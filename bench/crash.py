"""Crash loss: acknowledged inferences missing after a SIGKILL under load, per `durability` mode.

    python -m bench.crash [--runs 5] [--modes queue,journal] [--connections 32] [--load-s 4] [--keep]

For each mode and run: a fresh database on a throwaway PostgreSQL cluster (bench.database, fsync on), `lsd serve`
(one worker) in front of the fake OpenAI (bench.fake_openai), a closed loop of `--connections` clients posting
/inference and keeping the `inference_id` of every 200; after `--load-s` seconds, while the load runs, lsd gets
SIGKILL (its whole process group). lsd is then started again on the same config (its start replays the spool and,
with the journal, the journal), and once the rows stop changing the acknowledged ids are looked up in
chat_inferences. Printed per run: acknowledged, missing, throughput, p50/p99 latency and the writer queue
(`lsd_writer_queue_rows`, sampled every 100 ms) before the kill; a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import UUID

import aiohttp
import orjson
import psycopg

from bench.children import Child, Children, wait_for_file, wait_for_http
from bench.database import Cluster
from lsd.store.local import free_port

MODES = ("queue", "journal")
BODY = orjson.dumps({"model_name": "gpt", "input": {"messages": [{"role": "user", "content": "hi"}]}})
CONFIG = """\
# Written by bench/crash.py
[gateway.observability]
durability = "{durability}"
spool_dir = "{spool_dir}"

[gateway.observability.batch_writes]
flush_interval_ms = 100
max_rows = 1000

[models.gpt]
routing = ["fake"]

[models.gpt.providers.fake]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{api_base}"
api_key_location = "none"
"""


@dataclass(frozen=True, slots=True)
class Run:
    mode: str
    run: int
    acknowledged: int
    missing: int
    throughput: float  # 200s per second over the load
    p50_ms: float
    p99_ms: float
    queue_max: int  # the writer queue's largest sample during the load (rows)
    queue_at_kill: int  # its last sample before the kill


@dataclass
class Load:
    acked: list[UUID]
    latencies: list[float]
    queue: list[int]
    seconds: float


async def drive(base: str, connections: int, load_s: float, lsd: Child) -> Load:
    """Post until `load_s` has passed, then SIGKILL lsd while the requests are still in flight."""
    load = Load([], [], [], 0.0)
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=connections + 1)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:

        async def worker() -> None:
            while not stop.is_set():
                sent = time.perf_counter()
                try:
                    async with session.post(f"{base}/inference", data=BODY) as reply:
                        data = await reply.read()
                        if reply.status != 200:
                            continue
                except (aiohttp.ClientError, TimeoutError, OSError):
                    await asyncio.sleep(0.01)
                    continue
                if stop.is_set():
                    return  # answered, but perhaps after the kill was sent: not counted either way
                load.acked.append(UUID(orjson.loads(data)["inference_id"]))
                load.latencies.append(time.perf_counter() - sent)

        async def sampler() -> None:
            while not stop.is_set():
                try:
                    async with session.get(f"{base}/metrics") as reply:
                        text = (await reply.read()).decode()
                except (aiohttp.ClientError, TimeoutError, OSError):
                    text = ""
                for line in text.splitlines():
                    if line.startswith("lsd_writer_queue_rows"):
                        load.queue.append(int(float(line.split()[-1])))
                await asyncio.sleep(0.1)

        started = time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(connections)] + [asyncio.create_task(sampler())]
        await asyncio.sleep(load_s)
        # The kill first, then stop counting: a 200 read before this line was sent by a live lsd.
        stop.set()
        os.killpg(lsd.pid, signal.SIGKILL)
        load.seconds = time.perf_counter() - started
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
    return load


def start_lsd(children: Children, config: Path, database_url: str, port: int, name: str) -> Child:
    child = children.python(
        name,
        "-m",
        "lsd",
        "serve",
        "--config",
        str(config),
        "--bind",
        f"127.0.0.1:{port}",
        env={"LSD_DATABASE_URL": database_url, "LSD_LOG_FORMAT": "text", "LSD_LOG_LEVEL": "WARNING"},
    )
    wait_for_http(f"http://127.0.0.1:{port}/health", child, timeout_s=120)
    return child


def found(database_url: str, ids: Sequence[UUID]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM chat_inferences WHERE id = ANY(%s)", (list(ids),)).fetchone()
    return int(row[0]) if row else 0


def settle(database_url: str, ids: Sequence[UUID], spool_dir: Path, timeout_s: float = 60.0) -> int:
    """How many of `ids` are in the database once the restarted lsd has replayed what it will (no spool file left
    and the count unchanged for a second)."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = found(database_url, ids)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now == len(ids) or (not list(spool_dir.glob("*.spool")) and time.monotonic() - stable_since > 1.0):
            return now
        time.sleep(0.2)
    return last


def one_run(
    children: Children, cluster: Cluster, workdir: Path, api_base: str, mode: str, run: int, args: argparse.Namespace
) -> Run:
    database_url = cluster.create(f"crash_{mode}_{run}", migrated=True)
    spool_dir = workdir / f"spool-{mode}-{run}"
    config = workdir / f"{mode}-{run}.toml"
    config.write_text(CONFIG.format(durability=mode, spool_dir=spool_dir, api_base=api_base))
    port = free_port()
    lsd = start_lsd(children, config, database_url, port, f"lsd-{mode}-{run}")
    load = asyncio.run(drive(f"http://127.0.0.1:{port}", args.connections, args.load_s, lsd))
    children.stop(lsd)  # reaps it (it is dead already)
    again = start_lsd(children, config, database_url, port, f"lsd-{mode}-{run}-restarted")
    present = settle(database_url, load.acked, spool_dir)
    children.stop(again)
    latencies = sorted(load.latencies) or [0.0]
    result = Run(
        mode=mode,
        run=run,
        acknowledged=len(load.acked),
        missing=len(load.acked) - present,
        throughput=len(load.acked) / load.seconds,
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        queue_max=max(load.queue, default=0),
        queue_at_kill=load.queue[-1] if load.queue else 0,
    )
    print(
        f"  {mode:8} run {run}: {result.acknowledged:6} acknowledged, {result.missing:5} missing; "
        f"{result.throughput:7.0f} inf/s, p50 {result.p50_ms:6.1f} ms, p99 {result.p99_ms:6.1f} ms; "
        f"writer queue max {result.queue_max} rows, {result.queue_at_kill} at the last sample",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default=",".join(MODES), help="queue,journal (default both)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--load-s", type=float, default=4.0, help="seconds of load before the SIGKILL (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, PostgreSQL data)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-crash-"))
    results: list[Run] = []
    cluster = Cluster(workdir / "pg")
    with Children(workdir) as children:
        cluster.start()
        try:
            url_file = workdir / "fake.url"
            fake = children.python("fake", "-m", "bench.fake_openai", "--url-file", str(url_file))
            api_base = wait_for_file(url_file, fake) + "/v1/"
            print(f"## Crash loss: SIGKILL after {args.load_s:g} s of load, {args.connections} connections")
            for run in range(1, args.runs + 1):
                for mode in modes:  # interleaved: both modes see the same machine conditions
                    results.append(one_run(children, cluster, workdir, api_base, mode, run, args))
        finally:
            children.close()
            cluster.stop()
    print(orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2).decode())
    for mode in modes:
        runs = [r for r in results if r.mode == mode]
        print(
            f"{mode}: missing per run {[r.missing for r in runs]} of {[r.acknowledged for r in runs]}; "
            f"median {statistics.median(r.throughput for r in runs):.0f} inf/s, "
            f"p99 median {statistics.median(r.p99_ms for r in runs):.1f} ms"
        )
    if not args.keep:
        print(f"(logs and data in {workdir}: removed)")
        _remove(workdir)
    else:
        print(f"(logs and data kept in {workdir})")


def _remove(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


if __name__ == "__main__":
    main()

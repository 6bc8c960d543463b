"""What one PostgreSQL primary pays per 1,000 recorded inferences: WAL bytes, backend CPU, and stored bytes.

    python -m bench.wal                                   # 20,000 inferences at 500 req/s, "hi" and a 2 KB prompt
    python -m bench.wal --inferences 5000 --prompts 0     # a quick look

A throwaway cluster (fsync on, PostgreSQL's defaults otherwise), the fake OpenAI server and one `lsd serve` (the
bench/gateway.py config: every inference recorded in 4 rows, statistics refreshed every 10 s) in processes of
their own. Per prompt size: a warm-up of 1,000 inferences; CHECKPOINT; then `--inferences` at a fixed `--rate`
(bench.load.open_loop). Around the run (from before the first request until every row is in and one statistics
refresh has folded them): `pg_current_wal_lsn()` and `pg_stat_wal`, the CPU time of every PostgreSQL process
(the postmaster's tree, from /proc: backends, walwriter, checkpointer, autovacuum) and of lsd's. Afterwards the
on-disk size of each table (heap, indexes, TOAST) over its rows, and the PostgreSQL CPU of a few kinds of
`list_inferences` request (`--queries` of each, 8 in flight, after the writes). Writes
bench/results/wal-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
from psycopg import sql

from bench.children import Children, process_tree, wait_for_file, wait_for_http
from bench.cpu import _jiffies
from bench.database import Cluster
from bench.gateway import LSD_CONFIG, MODEL
from bench.load import open_loop
from bench.loop import run as run_async
from bench.report import table
from lsd.store.local import free_port

TICKS = os.sysconf("SC_CLK_TCK")
TABLES = ("chat_inferences", "chat_inference_data", "model_inferences", "model_inference_data")
STATISTICS_INTERVAL_S = 10.0
RESULTS = Path(__file__).resolve().parent / "results"


def prose(chars: int, seed: int = 7) -> str:
    """`chars` characters of made-up words (a 2,000-word vocabulary used by Zipf's law): compresses about as well as
    English does (pglz/lz4 keep ~50-60 %), where a repeated phrase would compress to almost nothing."""
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    vocabulary = ["".join(rng.choices(letters, weights=range(26, 0, -1), k=rng.randint(2, 9))) for _ in range(2000)]
    zipf = [1 / rank for rank in range(1, len(vocabulary) + 1)]
    words: list[str] = []
    length = 0
    while length < chars:
        word = rng.choices(vocabulary, weights=zipf)[0]
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


def _cpu_s(root: int | None) -> float:
    if root is None:
        return 0.0
    return sum(_jiffies(pid) for pid in process_tree(root)) / TICKS


def _wal(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"
        ).fetchone()
    assert row is not None
    return {"lsn": int(row[0]), "records": int(row[1]), "fpi": int(row[2]), "bytes": int(row[3])}


def _rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM model_inferences").fetchone()
    return int(row[0]) if row else 0


def _sizes(url: str) -> dict[str, dict[str, int]]:
    """Per table: rows, heap bytes, index bytes, TOAST bytes (over all its partitions)."""
    query = """
        SELECT p.relname,
               sum(pg_relation_size(c.oid)),
               sum(pg_indexes_size(c.oid)),
               sum(coalesce(pg_total_relation_size(c.reltoastrelid), 0))
        FROM pg_class p JOIN pg_inherits i ON i.inhparent = p.oid JOIN pg_class c ON c.oid = i.inhrelid
        WHERE p.relname = ANY(%s) GROUP BY p.relname"""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        out = {}
        for name, heap, index, toast in conn.execute(query, [list(TABLES)]).fetchall():
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
            out[name] = {
                "rows": int(count[0]) if count else 0,
                "heap": int(heap),
                "index": int(index),
                "toast": int(toast),
            }
    return out


def _wait_rows(url: str, expected: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _rows(url) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_rows(url)} of {expected} model_inferences rows arrived")
        time.sleep(0.2)


def measure(
    prompt_chars: int, args: argparse.Namespace, children: Children, cluster: Cluster, work: Path
) -> dict[str, Any]:
    name = f"wal_{prompt_chars}"
    url = cluster.create(name, migrated=True)
    config = work / f"{name}.toml"
    config.write_text(LSD_CONFIG.format(spool_dir=work / f"spool-{name}", model=MODEL, api_base=f"{args.fake_url}/v1/"))
    bind = f"127.0.0.1:{free_port()}"
    lsd = children.python(
        name, "-m", "lsd", "serve", "--config", str(config), "--bind", bind, env={"LSD_DATABASE_URL": url}
    )
    wait_for_http(f"http://{bind}/health", lsd, timeout_s=120)
    text = "hi" if prompt_chars == 0 else prose(prompt_chars)
    body = orjson.dumps({"model_name": MODEL, "input": {"messages": [{"role": "user", "content": text}]}})
    target = f"http://{bind}/inference"
    try:
        warm = run_async(open_loop(target, body, rate=args.rate, duration_s=1000 / args.rate, warmup_s=0))
        _wait_rows(url, warm.ok)
        before_rows = _rows(url)
        cluster.checkpoint()
        time.sleep(1)
        wal0, pg0, lsd0, t0 = _wal(url), _cpu_s(cluster.postmaster_pid()), _cpu_s(lsd.pid), time.monotonic()
        load = run_async(open_loop(target, body, rate=args.rate, duration_s=args.inferences / args.rate, warmup_s=0))
        _wait_rows(url, before_rows + load.ok)
        time.sleep(STATISTICS_INTERVAL_S + 1)  # one statistics refresh folds the new rows in (its WAL and CPU count)
        wal1, pg1, lsd1, t1 = _wal(url), _cpu_s(cluster.postmaster_pid()), _cpu_s(lsd.pid), time.monotonic()
        # Leave autovacuum and the checkpointer nothing to do, so that the reads' CPU is the queries'.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        cluster.checkpoint()
        reads = {name: _read_cost(cluster, f"http://{bind}", query, args.queries) for name, query in READS.items()}
    finally:
        children.stop(lsd)
    per_k = 1000 / max(load.ok, 1)
    sizes = _sizes(url)
    cluster.drop(name)
    return {
        "prompt_chars": prompt_chars,
        "inferences": load.ok,
        "errors": load.errors,
        "rate": args.rate,
        "seconds": round(t1 - t0, 1),
        "load": load.as_dict(),
        "wal_bytes_per_1k": round((wal1["lsn"] - wal0["lsn"]) * per_k),
        "wal_stat_bytes_per_1k": round((wal1["bytes"] - wal0["bytes"]) * per_k),
        "wal_records_per_1k": round((wal1["records"] - wal0["records"]) * per_k),
        "wal_fpi_per_1k": round((wal1["fpi"] - wal0["fpi"]) * per_k, 1),
        "pg_cpu_s_per_1k": round((pg1 - pg0) * per_k, 3),
        "lsd_cpu_s_per_1k": round((lsd1 - lsd0) * per_k, 3),
        "pg_cpu_pct_of_one_core": round(100 * (pg1 - pg0) / (t1 - t0), 1),
        "sizes": sizes,
        "reads": reads,
    }


# Query API reads, measured after the writes (no load meanwhile): PostgreSQL CPU per request.
READS = {
    "newest 20 of a function": {"function_name": "tensorzero::default", "limit": 20},
    "newest 100 with their attempts": {
        "function_name": "tensorzero::default",
        "limit": 100,
        "include_model_inferences": True,
    },
    "newest 20 of a model (joins attempts)": {"model_name": MODEL, "limit": 20},
}


def _read_cost(cluster: Cluster, base_url: str, query: dict[str, Any], n: int) -> dict[str, float]:
    body = orjson.dumps(query)

    async def run() -> int:
        async with aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as session:

            async def one(i: int) -> bool:
                async with session.post(f"{base_url}/v1/inferences/list_inferences", data=body) as reply:
                    await reply.read()
                    return reply.status == 200

            oks = 0
            for start in range(0, n, 8):  # 8 in flight, like a handful of dashboard users
                oks += sum(await asyncio.gather(*(one(i) for i in range(start, min(start + 8, n)))))
            return oks

    pg0, t0 = _cpu_s(cluster.postmaster_pid()), time.monotonic()
    ok = run_async(run())
    pg1, t1 = _cpu_s(cluster.postmaster_pid()), time.monotonic()
    return {
        "requests": ok,
        "pg_cpu_ms_per_request": round(1000 * (pg1 - pg0) / max(ok, 1), 3),
        "seconds": round(t1 - t0, 2),
    }


def render(runs: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["prompt_chars"] or '2 ("hi")',
            f"{r['inferences']:,}",
            f"{r['wal_bytes_per_1k'] / 2**20:.2f} MiB",
            f"{r['wal_fpi_per_1k']:.0f}",
            f"{r['pg_cpu_s_per_1k']:.2f} s",
            f"{r['lsd_cpu_s_per_1k']:.2f} s",
        ]
        for r in runs
    ]
    out = [
        table(
            ["prompt chars", "inferences", "WAL / 1k", "full-page images / 1k", "PostgreSQL CPU / 1k", "lsd CPU / 1k"],
            rows,
        )
    ]
    size_rows = []
    for r in runs:
        for name, s in sorted(r["sizes"].items()):
            n = max(s["rows"], 1)
            size_rows.append(
                [
                    r["prompt_chars"],
                    name,
                    f"{s['rows']:,}",
                    round(s["heap"] / n),
                    round(s["index"] / n),
                    round(s["toast"] / n),
                ]
            )
    out.append(table(["prompt chars", "table", "rows", "heap B/row", "index B/row", "TOAST B/row"], size_rows))
    read_rows = [
        [r["prompt_chars"], name, v["requests"], v["pg_cpu_ms_per_request"]]
        for r in runs
        for name, v in r["reads"].items()
    ]
    out.append(table(["prompt chars", "list_inferences", "requests", "PostgreSQL CPU ms/request"], read_rows))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inferences", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--queries", type=int, default=1000, help="list_inferences requests per query kind")
    parser.add_argument("--prompts", default="0,2000", help="prompt sizes in characters, comma-separated (0: 'hi')")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lsd-bench-wal-"))
    cluster = Cluster(work / "pg")
    cluster.start()
    try:
        with Children(work) as children:
            url_file = work / "fake.url"
            fake = children.python("fake", "-m", "bench.fake_openai", "--url-file", str(url_file))
            args.fake_url = wait_for_file(url_file, fake)
            runs = [measure(int(p), args, children, cluster, work) for p in args.prompts.split(",")]
        summary = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "postgres": {"version": cluster.version(), **cluster.settings()},
            "runs": runs,
        }
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"wal-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(render(runs))
    print(f"\n{summary['postgres']}\nresults: {out}")


if __name__ == "__main__":
    main()

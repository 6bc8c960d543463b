"""Benchmark of the variant types (issue 19): dicl's nearest-neighbour lookup at 10k and 100k stored examples, and
what best-of-n (3 candidates and an evaluator) costs over a plain variant.

    python -m bench.variant_types [--sizes 10000,100000] [--dimensions 1536] [--queries 50] [--requests 2000]

dicl: a migrated database gets `size` examples of one variant (clustered unit vectors, 50 per cluster, like
embeddings of related inputs), then each query (a stored vector plus noise) runs the query lsd.store.dicl.nearest
sends, timed alone (p50/p95); a few exact full scans (lsd_dot over every row) give its recall@k. pgvector is
reported when the extension is installed (LSD does not use it: it is never required).

best-of-n: an in-process Engine over the dummy provider (no latency, no network), rows not recorded, requests
one after another: wall and CPU time per request of a plain chat_completion variant and of a best_of_n_sampling
variant whose 3 candidates and evaluator are that same plain call.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import struct
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from bench import report
from bench.database import Cluster
from bench.loop import run as run_async
from lsd.config import parse
from lsd.inference.models import ModelTable
from lsd.inference.request import InferenceRequest
from lsd.inference.run import Engine
from lsd.providers.transport import Transport
from lsd.records import Record
from lsd.store.dicl import SKETCH_BITS, nearest_query, sketch
from lsd.types import Input, Message, Text

FUNCTION, VARIANT = "bench", "dicl"
K = 5
PER_CLUSTER = 50
FLOAT4_OID = 700
BEST_OF_N_CONFIG = """
[models.echo]
routing = ["dummy"]
[models.echo.providers.dummy]
type = "dummy"
model_name = "echo"

[functions.plain]
type = "chat"
[functions.plain.variants.a]
type = "chat_completion"
model = "echo"

[functions.best]
type = "chat"
[functions.best.variants.a]
type = "chat_completion"
model = "echo"
[functions.best.variants.best]
type = "best_of_n_sampling"
candidates = ["a", "a", "a"]
[functions.best.variants.best.evaluator]
model = "echo"
"""


@dataclass(frozen=True, slots=True)
class Settings:
    sizes: tuple[int, ...] = (10_000, 100_000)
    dimensions: int = 1536
    queries: int = 50
    exact_queries: int = 5
    requests: int = 2_000


# -- dicl ---------------------------------------------------------------------------------------------------------


def sketches(vectors: np.ndarray) -> list[str]:
    """lsd.store.dicl.sketch of each row, vectorised (checked against it on the first rows)."""
    n, d = vectors.shape
    size = 1
    while size < d:
        size *= 2
    index = np.arange(d, dtype=np.int64)
    signs = np.where((index * 2654435761 >> 13) & 1, 1.0, -1.0)
    a = np.zeros((n, size))
    a[:, :d] = vectors.astype(np.float64) * signs
    step = 1
    while step < size:
        evens, odds = a[:, 0::2], a[:, 1::2]
        a = np.concatenate([evens + odds, evens - odds], axis=1)
        step *= 2
    bits = a[:, :SKETCH_BITS] > 0
    out = ["".join("1" if b else "0" for b in row).ljust(SKETCH_BITS, "0") for row in bits]
    for row in range(min(n, 3)):
        assert out[row] == sketch(vectors[row].tolist()), "bench sketch differs from lsd.store.dicl.sketch"
    return out


def clustered(rng: np.random.Generator, count: int, dimensions: int) -> np.ndarray:
    # Contiguous clusters of PER_CLUSTER: the first 10k rows are 200 whole clusters, as the 100k are 2,000.
    centers = rng.standard_normal((max(count // PER_CLUSTER, 1), dimensions))
    members = np.minimum(np.arange(count) // PER_CLUSTER, len(centers) - 1)
    points = centers[members] + 0.35 * rng.standard_normal((count, dimensions))
    result: np.ndarray = points / np.linalg.norm(points, axis=1, keepdims=True)
    return result.astype(np.float32)


def binary_arrays(vectors: np.ndarray) -> list[bytes]:
    """Each row as PostgreSQL's binary real[] (COPY BINARY): header, then (length 4, big-endian float4) per element."""
    n, d = vectors.shape
    header = struct.pack(">iiiii", 1, 0, FLOAT4_OID, d, 1)
    cells = np.empty((n, d), dtype=[("length", ">i4"), ("value", ">f4")])
    cells["length"] = 4
    cells["value"] = vectors
    return [header + row.tobytes() for row in cells]


def binary_bits(text: str) -> bytes:
    """A bit string as PostgreSQL's binary bit(n): the length in bits, then the bits, first bit highest."""
    return struct.pack(">i", len(text)) + np.packbits(np.array([c == "1" for c in text])).tobytes()


def load(url: str, vectors: np.ndarray, start: int) -> float:
    """COPY (binary) the examples (inputs and outputs numbered from `start`); returns the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    columns = "id, function_name, variant_name, input, output, embedding, sketch, created_at"
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for chunk in range(0, len(vectors), 5_000):
            part = vectors[chunk : chunk + 5_000]
            with cur.copy(f"COPY dicl_examples ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                # The array and bit columns go as their binary wire format, passed through as bytea.
                copy.set_types(["uuid", "text", "text", "jsonb", "jsonb", "bytea", "bytea", "timestamptz"])
                for i, (array, bits) in enumerate(zip(binary_arrays(part), sketches(part), strict=True)):
                    n = start + chunk + i
                    message = {"role": "user", "content": [{"type": "text", "text": f"question {n}"}]}
                    copy.write_row(
                        (
                            uuid.uuid4(),
                            FUNCTION,
                            VARIANT,
                            Jsonb({"messages": [message]}),
                            Jsonb([{"type": "text", "text": f"answer {n}"}]),
                            array,
                            binary_bits(bits),
                            now,
                        )
                    )
        conn.commit()
        conn.execute("ANALYZE dicl_examples")
    return time.perf_counter() - started


def exact(conn: psycopg.Connection[Any], query: Sequence[float], k: int) -> list[str]:
    rows = conn.execute(
        "SELECT output->0->>'text' FROM dicl_examples WHERE function_name = %s AND variant_name = %s"
        " ORDER BY lsd_dot(embedding, %s::real[]) DESC LIMIT %s",
        (FUNCTION, VARIANT, list(query), k),
    ).fetchall()
    return [r[0] for r in rows]


def lookups(url: str, stored: np.ndarray, settings: Settings, rng: np.random.Generator) -> dict[str, Any]:
    picks = rng.integers(0, len(stored), settings.queries)
    # A query is a stored example moved by a tenth of its length (its cluster's other examples are farther).
    noise = (0.1 / np.sqrt(stored.shape[1])) * rng.standard_normal((settings.queries, stored.shape[1]))
    noise = noise.astype(np.float32)
    queries = (stored[picks] + noise).tolist()
    times_ms: list[float] = []
    found: list[list[str]] = []
    with psycopg.connect(url) as conn:
        sql, _ = nearest_query(FUNCTION, VARIANT, queries[0], K)
        conn.execute(sql, nearest_query(FUNCTION, VARIANT, queries[0], K)[1]).fetchall()  # warm the cache
        for q in queries:
            sql, params = nearest_query(FUNCTION, VARIANT, q, K)
            started = time.perf_counter()
            rows = conn.execute(sql, params).fetchall()
            times_ms.append((time.perf_counter() - started) * 1000)
            found.append([r[1][0]["text"] for r in rows])
        exact_ms: list[float] = []
        hits = 0
        for q, got in list(zip(queries, found, strict=True))[: settings.exact_queries]:
            started = time.perf_counter()
            truth = exact(conn, q, K)
            exact_ms.append((time.perf_counter() - started) * 1000)
            hits += len(set(truth) & set(got))
    quantiles = statistics.quantiles(times_ms, n=20)
    return {
        "p50_ms": round(statistics.median(times_ms), 2),
        "p95_ms": round(quantiles[18], 2),
        "exact_scan_ms": round(statistics.median(exact_ms), 1) if exact_ms else None,
        f"recall_at_{K}": round(hits / (K * len(exact_ms)), 3) if exact_ms else None,
    }


def pgvector_available(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'").fetchone() == (1,)


def dicl(settings: Settings, cluster: Cluster) -> dict[str, Any]:
    url = cluster.create("bench_dicl", migrated=True)
    rng = np.random.default_rng(19)
    total = max(settings.sizes)
    vectors = clustered(rng, total, settings.dimensions)
    results: dict[str, Any] = {"pgvector": "installed, not measured" if pgvector_available(url) else "not installed"}
    loaded = 0
    for size in sorted(settings.sizes):
        load_s = load(url, vectors[loaded:size], loaded)
        loaded = size
        results[str(size)] = {"load_s": round(load_s, 1), **lookups(url, vectors[:size], settings, rng)}
    cluster.drop("bench_dicl")
    return results


# -- best-of-n overhead -------------------------------------------------------------------------------------------


class NoRows:
    """A recorder that keeps nothing (rows are the writer's cost, measured by the writer part)."""

    enabled = False

    async def record(self, records: Sequence[Record]) -> None:
        return None

    def submit(self, records: Sequence[Record]) -> None:
        return None


async def per_request(engine: Engine, function: str, variant: str, count: int) -> dict[str, float]:
    request = InferenceRequest(
        input=Input(None, (Message("user", (Text("hello there"),)),)), function_name=function, variant_name=variant
    )
    for _ in range(min(200, count)):  # warm-up
        await engine.infer(request)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(count):
        await engine.infer(request)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_us": round(wall / count * 1e6, 1), "cpu_us": round(cpu / count * 1e6, 1)}


async def best_of_n(settings: Settings) -> dict[str, Any]:
    config = parse(BEST_OF_N_CONFIG, base_dir=Path.cwd())
    engine = Engine(config=config, models=ModelTable.from_config(config), transport=Transport(), recorder=NoRows())
    plain = await per_request(engine, "plain", "a", settings.requests)
    best = await per_request(engine, "best", "best", settings.requests)
    return {
        "plain": plain,
        "best_of_3": best,
        "overhead_us": round(best["wall_us"] - plain["wall_us"], 1),
        "beyond_its_4_calls_us": round(best["wall_us"] - 4 * plain["wall_us"], 1),
    }


def run(settings: Settings, cluster: Cluster) -> dict[str, Any]:
    print(f"\n## Variant types: dicl lookup ({settings.dimensions} dimensions, k = {K}) and best-of-n overhead")
    results: dict[str, Any] = {"settings": asdict(settings), "dicl": dicl(settings, cluster)}
    rows = [
        [int(size), r["load_s"], r["p50_ms"], r["p95_ms"], r["exact_scan_ms"], r[f"recall_at_{K}"]]
        for size, r in results["dicl"].items()
        if size.isdigit()
    ]
    print(report.table(["examples", "load s", "lookup p50 ms", "p95 ms", "exact scan ms", f"recall@{K}"], rows))
    print(f"pgvector: {results['dicl']['pgvector']}; load average {report.loadavg()}")
    results["best_of_n"] = run_async(best_of_n(settings))
    b = results["best_of_n"]
    print(
        report.table(
            ["variant", "wall µs/request", "CPU µs/request"],
            [
                ["chat_completion", b["plain"]["wall_us"], b["plain"]["cpu_us"]],
                ["best_of_n_sampling (3 + evaluator)", b["best_of_3"]["wall_us"], b["best_of_3"]["cpu_us"]],
            ],
        )
    )
    print(
        f"best-of-3 overhead: {b['overhead_us']} µs/request; "
        f"beyond its 4 provider calls: {b['beyond_its_4_calls_us']} µs"
    )
    return results


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.variant_types", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--dimensions", type=int, default=1536)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--requests", type=int, default=2_000)
    p.add_argument("--exact-queries", type=int, default=5, help="exact full scans for the recall (slow at 100k)")
    args = p.parse_args()
    settings = Settings(
        sizes=tuple(int(s) for s in args.sizes.split(",")),
        dimensions=args.dimensions,
        queries=args.queries,
        requests=args.requests,
        exact_queries=args.exact_queries,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-"))
    cluster = Cluster(workdir / "postgres")
    try:
        cluster.start()
        results = run(settings, cluster)
        print(f"results: {report.save({'variant_types': results, 'machine': report.machine()}, '-variant-types')}")
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`make bench` part `scale`: six months of history (issue #22). Loads N chat inferences over D days with
bench.history's `load` (LSD's own binary COPY), then measures every list query shape, get_inferences, the statistics
refresh after 10k new inferences, retention of half the history with a concurrent 3 s reader, and bytes per
inference. Method and results: docs/scaling.md.

    python -m bench.run --parts scale                          # 1M inferences over 90 days
    python -m bench.run --parts scale --scale-rows 10000000    # 10M: ~12 min to load on 2 cores, ~20 GB of disk
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
from psycopg import sql

from bench import report
from bench.database import Cluster
from bench.history import BOOLEAN_METRIC, FLOAT_METRIC, LoadStats, append, load
from lsd.ids import uuid7
from lsd.inference import listing
from lsd.store.database import Database
from lsd.store.retention import apply_retention_sync
from lsd.store.statistics import refresh_statistics_sync

__all__ = ["LoadStats", "Settings", "load", "run"]

# The tables an inference's rows live in (bench/wal.py measures the same four), and the feedback around them.
INFERENCE_TABLES = ("chat_inferences", "chat_inference_data", "model_inferences", "model_inference_data")
FEEDBACK_TABLES = ("boolean_metric_feedback", "float_metric_feedback", "boolean_metric_latest", "float_metric_latest")
METRICS = {
    FLOAT_METRIC: SimpleNamespace(type="float", level="inference"),
    BOOLEAN_METRIC: SimpleNamespace(type="boolean", level="inference"),
}
READER_S = 3.0


@dataclass(frozen=True, slots=True)
class Settings:
    rows: int = 1_000_000
    days: int = 90
    repeat: int = 30  # calls per query shape
    refreshes: int = 3  # statistics refreshes after 10k new inferences each; the median is shown
    new_rows: int = 10_000
    layout_rows: int = 100_000  # inferences loaded in each payload layout for bytes per inference (0: skip)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- bytes per inference -----------------------------------------------------------------------------------

_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)
FROM pg_class c
WHERE c.relname = ANY(%(tables)s) AND c.relkind = 'r'
   OR c.oid IN (SELECT inhrelid FROM pg_inherits JOIN pg_class p ON p.oid = inhparent WHERE p.relname = ANY(%(tables)s))
"""


def table_bytes(url: str, tables: tuple[str, ...]) -> int:
    """Heap, indexes and TOAST of `tables` (all their partitions), after VACUUM."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(table)))
        row = conn.execute(_SIZE, {"tables": list(tables)}).fetchone()
    return int(row[0]) if row else 0


def bytes_per_inference(url: str) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM chat_inferences").fetchone()
    count = int(row[0]) if row and row[0] else 1
    return {
        "inference_tables": table_bytes(url, INFERENCE_TABLES) / count,
        "feedback_tables": table_bytes(url, FEEDBACK_TABLES) / count,
    }


# -- list queries ------------------------------------------------------------------------------------------


def shapes(url: str, days: int) -> dict[str, dict[str, Any]]:
    """One request body per query shape; ids and times picked from the loaded history."""
    with psycopg.connect(url, autocommit=True) as conn:
        middle = conn.execute(
            "SELECT id, episode_id FROM chat_inferences WHERE id >= lsd_uuid7_floor(now() - %s * interval '1 day') "
            "ORDER BY id LIMIT 1",
            (days / 2,),
        ).fetchone()
        assert middle is not None, "no history loaded"
        sample = [r[0] for r in conn.execute("SELECT id FROM chat_inferences TABLESAMPLE SYSTEM (0.05) LIMIT 20")]
    day = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days // 3)
    high = {"type": "float_metric", "metric_name": FLOAT_METRIC, "value": 0.9, "comparison_operator": ">"}
    by_quality = [{"by": "metric", "name": FLOAT_METRIC, "direction": "descending"}]
    return {
        "plain": {},
        "function": {"function_name": "fn3"},
        "variant": {"function_name": "fn3", "variant_name": "b"},
        "episode": {"episode_id": str(middle[1])},
        "tag (95% of rows)": {"tags": {"env": "prod"}},
        "tag (0.1%)": {"tags": {"experiment": "rare"}},
        "tag (0.01%)": {"tags": {"user_id": "u42"}},
        "tag (0.1%) + function": {"function_name": "fn3", "tags": {"experiment": "rare"}},
        "tag (no match)": {"tags": {"experiment": "none"}},
        "model": {"model_name": "gpt"},
        "time range (12 h)": {
            "function_name": "fn0",
            "since": day.isoformat(),
            "until": (day.replace(hour=12)).isoformat(),
        },
        "metric filter": {"filters": high},
        "metric filter + function": {"function_name": "fn3", "filters": high},
        "boolean metric filter": {"filters": {"type": "boolean_metric", "metric_name": BOOLEAN_METRIC, "value": False}},
        "order by metric": {"order_by": by_quality},
        "order by metric + function": {"function_name": "fn3", "order_by": by_quality},
        "order by metric + 1 day": {
            "order_by": by_quality,
            "since": (day - timedelta(days=1)).isoformat(),
            "until": day.isoformat(),
        },
        "cursor page": {"cursor": listing.encode_cursor("<", middle[0])},
        "get_inferences (20 ids)": {"ids": [str(i) for i in sample], "get": True},
    }


def _caller(database: Database, body: dict[str, Any]) -> Callable[[], Coroutine[Any, Any, listing.InferencePage]]:
    async def get() -> listing.InferencePage:
        return await listing.get_inferences(database, {"ids": body["ids"]})

    async def list_() -> listing.InferencePage:
        return await listing.list_inferences(database, body, METRICS)  # type: ignore[arg-type]

    return get if body.get("get") else list_


async def _time_shapes(url: str, bodies: dict[str, dict[str, Any]], repeat: int) -> dict[str, dict[str, float]]:
    database = Database(url, min_size=1, max_size=2)
    await database.open()
    out: dict[str, dict[str, float]] = {}
    try:
        for name, body in bodies.items():
            call = _caller(database, body)
            first_started = time.perf_counter()
            page = await call()  # prepares the statement on this connection: reported apart
            first_ms = (time.perf_counter() - first_started) * 1000
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                await call()
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {
                "rows": len(page.rows),
                "first_ms": round(first_ms, 1),
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(_quantile(times, 0.95), 2),
            }
            p50, p95 = out[name]["p50_ms"], out[name]["p95_ms"]
            print(f"| {name} | {len(page.rows)} | {p50:.1f} | {p95:.1f} | {first_ms:.0f} |", flush=True)
    finally:
        await database.close()
    return out


# -- statistics refresh ------------------------------------------------------------------------------------


def refresh_times(url: str, settings: Settings) -> dict[str, Any]:
    """The first refresh (the whole history is new), then `refreshes` times: `new_rows` more inferences, one refresh."""
    with psycopg.connect(url, autocommit=True) as conn:
        result = refresh_statistics_sync(conn)
        assert result is not None
        first = result.duration_s
        times = []
        rows = []
        for n in range(settings.refreshes):
            append(url, settings.new_rows, seed=100 + n)
            conn.execute("ANALYZE chat_inferences, model_inferences, boolean_metric_feedback, float_metric_feedback")
            result = refresh_statistics_sync(conn)
            assert result is not None
            times.append(result.duration_s * 1000)
            rows.append(result.total_rows)
    return {
        "first_s": round(first, 1),
        "ms": [round(t) for t in times],
        "median_ms": round(statistics.median(times)),
        "rows": rows,
    }


# -- retention with a long reader --------------------------------------------------------------------------


def _insert_one(conn: psycopg.Connection[Any]) -> None:
    id = uuid7()
    conn.execute(
        "INSERT INTO chat_inferences (id, created_at, function_name, variant_name, episode_id, input, output) "
        "VALUES (%s, now(), 'fn0', 'a', %s, '{}', '[]')",
        (id, id),
    )


def retention_stall(url: str, keep_days: int) -> dict[str, Any]:
    """Retention of everything older than `keep_days` while a reader holds a 3 s transaction on chat_inferences and
    an inserter writes one inference every 10 ms: the slowest insert, against the slowest before retention."""
    latencies: list[tuple[float, float]] = []  # (start, seconds)
    stop = threading.Event()

    def inserter() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                _insert_one(conn)
                latencies.append((started, time.perf_counter() - started))
                stop.wait(0.01)

    def reader() -> None:
        with psycopg.connect(url) as conn:
            conn.execute("SELECT count(*) FROM (SELECT 1 FROM chat_inferences LIMIT 1000) x").fetchone()
            conn.execute("SELECT pg_sleep(%s)", (READER_S,))
            conn.commit()

    writer = threading.Thread(target=inserter)
    writer.start()
    time.sleep(1.0)  # a quiet second: the inserter's own noise floor
    reading = threading.Thread(target=reader)
    reading.start()
    time.sleep(0.3)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        dropped = apply_retention_sync(conn, keep_days)
    retention_s = time.perf_counter() - started
    reading.join()
    time.sleep(0.5)
    stop.set()
    writer.join()
    before = [s for at, s in latencies if at < started - 0.3]
    during = [s for at, s in latencies if at >= started - 0.3]
    return {
        "partitions_dropped": len(dropped),
        "retention_s": round(retention_s, 2),
        "inserts_during": len(during),
        "max_insert_ms_during": round(max(during, default=0) * 1000, 1),
        "p99_insert_ms_during": round(_quantile(during, 0.99) * 1000, 1) if during else None,
        "max_insert_ms_before": round(max(before, default=0) * 1000, 1),
    }


# -- the part ----------------------------------------------------------------------------------------------


def run(settings: Settings, cluster: Cluster) -> dict[str, Any]:
    """Load, measure, drop the database; returns every number (printed as markdown tables on the way)."""
    results: dict[str, Any] = {"settings": dataclasses.asdict(settings)}
    print(f"\n## Scale: {settings.rows:,} chat inferences over {settings.days} days")
    if settings.layout_rows:
        layouts = {}
        for copies in (True, False):
            url = cluster.create("scale_layout", migrated=True)
            load(url, settings.layout_rows, settings.days, migrated=True, copies=copies)
            layouts["before 0012 (copies)" if copies else "stored once"] = bytes_per_inference(url)
            cluster.drop("scale_layout")
        results["layouts"] = layouts
        print(f"bytes per inference at {settings.layout_rows:,}: {layouts}")
    url = cluster.create("scale", migrated=True)
    try:
        loaded = load(url, settings.rows, settings.days, migrated=True, progress=True)
        results["load"] = {
            "inferences": loaded.inferences,
            "seconds": round(loaded.seconds, 1),
            "per_s": round(loaded.rate),
        }
        print(f"loaded {loaded.inferences:,} in {loaded.seconds:.0f} s ({loaded.rate:,.0f}/s); {report.loadavg()}")
        results["bytes_per_inference"] = bytes_per_inference(url)
        print(f"bytes per inference: {results['bytes_per_inference']}")
        results["statistics_refresh"] = refresh_times(url, settings)
        print(f"statistics refresh: {results['statistics_refresh']}; {report.loadavg()}")
        print("\n| shape | rows | p50 ms | p95 ms | first call ms |\n|---|---|---|---|---|")
        results["loadavg_before_queries"] = report.loadavg()
        results["queries"] = asyncio.run(_time_shapes(url, shapes(url, settings.days), settings.repeat))
        results["loadavg_after_queries"] = report.loadavg()
        results["retention"] = retention_stall(url, settings.days // 2)
        print(f"retention of half the history with a {READER_S:.0f} s reader: {results['retention']}")
    finally:
        cluster.drop("scale")
    return results

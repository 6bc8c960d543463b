"""`make bench` part `console`: every console page rendered against a large history, p95 per page, and the plan of
every statement a page runs checked for a sequential scan of an inference table (issue #20).

    python -m bench.run --parts console                       # 1M inferences over 30 days
    python -m bench.run --parts console --console-inferences 200000

The history is bench.history's (the scale benchmark's loader: binary COPY through lsd.store.bulk), then one
statistics refresh. Pages are rendered in-process through starlette's TestClient on the real app (so a render is
the handler, its queries and the template, without a socket). The plans come from PostgreSQL's auto_explain
(`log_analyze` off: EXPLAIN without running twice) for every statement, nested ones included, while each page is
rendered once more; a `Seq Scan` on a partition of an inference, attempt, payload or feedback table that holds
rows is a failure. Empty partitions (days with no rows yet) are listed apart: the planner may read an empty
table whichever way.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from starlette.testclient import TestClient

from bench.database import Cluster
from bench.history import BOOLEAN_METRIC, FLOAT_METRIC, load
from lsd.app import build_app
from lsd.config import parse
from lsd.store.statistics import refresh_statistics_sync

TARGET_P95_MS = 300.0
INFERENCE_TABLES = (
    "chat_inferences",
    "json_inferences",
    "model_inferences",
    "chat_inference_data",
    "json_inference_data",
    "model_inference_data",
    "boolean_metric_feedback",
    "float_metric_feedback",
    "comment_feedback",
    "demonstration_feedback",
)
_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
CONFIG = f"""
[gateway.observability]
statistics_refresh_interval_s = 0
[models.echo]
routing = ["dummy"]
[models.echo.providers.dummy]
type = "dummy"
model_name = "echo"
[functions.fn0]
type = "chat"
[functions.fn0.variants.a]
type = "chat_completion"
model = "echo"
[functions.fn0.variants.b]
type = "chat_completion"
model = "echo"
[functions.fn0.variants.c]
type = "chat_completion"
model = "echo"
[metrics.{BOOLEAN_METRIC}]
type = "boolean"
optimize = "max"
level = "inference"
[metrics.{FLOAT_METRIC}]
type = "float"
optimize = "max"
level = "inference"
"""


@dataclass(frozen=True, slots=True)
class Settings:
    inferences: int = 1_000_000
    days: int = 30
    renders: int = 20  # per page, after one warm-up render


@dataclass
class PageResult:
    path: str
    p50_ms: float
    p95_ms: float
    max_ms: float
    seq_scans: list[str] = field(default_factory=list)  # partitions with rows
    empty_seq_scans: list[str] = field(default_factory=list)


def pages(url: str) -> dict[str, str]:
    """Each page by name, with ids from the loaded history."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id, episode_id FROM chat_inferences WHERE id >= lsd_uuid7_floor(now() - interval '1 day') "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None, "no inference in the last day"
    inference_id, episode_id = row
    return {
        "overview 24h": "/ui/",
        "overview 30d": "/ui/?range=30d",
        "functions": "/ui/functions",
        "function fn0 7d": "/ui/functions/fn0?range=7d",
        "inferences": "/ui/inferences",
        "inferences fn0/b": "/ui/inferences?function=fn0&variant=b",
        "inferences tag": "/ui/inferences?tag=user_id%3Du42",
        f"inferences {BOOLEAN_METRIC}": f"/ui/inferences?function=fn0&metric={BOOLEAN_METRIC}&value=true",
        f"inferences {FLOAT_METRIC}>0.5": f"/ui/inferences?function=fn0&metric={FLOAT_METRIC}&op=%3E&value=0.5",
        "inference": f"/ui/inferences/{inference_id}",
        "episode": f"/ui/episodes/{episode_id}",
        "sessions": "/ui/sessions",
        "evaluations": "/ui/evaluations",
        "datasets": "/ui/datasets",
        "batches": "/ui/batches",
        "keys": "/ui/keys",
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _populated(url: str) -> set[str]:
    """Partitions (and tables) of the inference tables that hold rows, by the statistics ANALYZE left."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND c.reltuples > 0 AND c.relname ~ %s",
            ("^(" + "|".join(INFERENCE_TABLES) + ")(_p\\d{8})?$",),
        ).fetchall()
    return {r[0] for r in rows}


def _is_inference_table(name: str) -> bool:
    return any(name == t or re.fullmatch(rf"{t}_p\d{{8}}", name) for t in INFERENCE_TABLES)


def run(settings: Settings, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(f"\n## Part console: every page over {settings.inferences:,} inferences ({settings.days} days)")
    url = cluster.create("bench_console", migrated=True)
    loaded = load(url, settings.inferences, settings.days, migrated=True, progress=True)
    print(f"loaded {loaded.inferences:,} inferences in {loaded.seconds:.0f} s ({loaded.rate:,.0f}/s)")
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        refresh_statistics_sync(conn)
        refresh_s = time.perf_counter() - started
        # What autovacuum does to a table that took a bulk load: without it every tag lookup also reads each
        # partition's GIN pending list (up to gin_pending_list_limit of unsorted entries) sequentially.
        conn.execute("VACUUM ANALYZE")
    print(f"statistics refresh of the whole history: {refresh_s:.1f} s")
    targets = pages(url)
    config = parse(CONFIG, base_dir=workdir)
    results: dict[str, PageResult] = {}
    with TestClient(build_app(config, url)) as client:
        for name, path in targets.items():
            response = client.get(path)
            assert response.status_code == 200, (name, response.status_code, response.text[:300])
            times = []
            for _ in range(settings.renders):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            results[name] = PageResult(path, statistics.median(times), _percentile(times, 0.95), max(times))
    _explain(cluster, url, config, targets, results)
    print("\n| page | p50 ms | p95 ms | max ms | seq scans of an inference table with rows |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        scans = ", ".join(r.seq_scans) or "none"
        print(f"| {name} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.max_ms:.1f} | {scans} |")
    slow = [name for name, r in results.items() if r.p95_ms >= TARGET_P95_MS]
    scanned = [name for name, r in results.items() if r.seq_scans]
    verdict = (
        f"p95 under {TARGET_P95_MS:.0f} ms on every page: {'yes' if not slow else 'no (' + ', '.join(slow) + ')'}; "
        f"no sequential scan of an inference table: {'yes' if not scanned else 'no (' + ', '.join(scanned) + ')'}"
    )
    print(f"\n{verdict}")
    cluster.drop("bench_console")
    return {
        "inferences": loaded.inferences,
        "days": settings.days,
        "renders": settings.renders,
        "load_s": round(loaded.seconds, 1),
        "statistics_refresh_s": round(refresh_s, 1),
        "pages": [
            {
                "page": name,
                "path": r.path,
                "p50_ms": round(r.p50_ms, 1),
                "p95_ms": round(r.p95_ms, 1),
                "max_ms": round(r.max_ms, 1),
                "seq_scans": r.seq_scans,
                "empty_partition_seq_scans": r.empty_seq_scans,
            }
            for name, r in results.items()
        ],
        "verdict": verdict,
    }


def _explain(cluster: Cluster, url: str, config: Any, targets: dict[str, str], results: dict[str, PageResult]) -> None:
    """Render each page once with auto_explain logging every statement's plan; read the plans from the log."""
    with psycopg.connect(url, autocommit=True) as conn:
        dbname = conn.info.dbname
        for setting, value in (
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "off"),
            ("auto_explain.log_nested_statements", "on"),
        ):
            conn.execute(f"ALTER DATABASE \"{dbname}\" SET {setting} = '{value}'")
    populated = _populated(url)
    log = cluster.server.data_dir / "server.log"
    try:
        with TestClient(build_app(config, url)) as client:
            for name, path in targets.items():
                offset = log.stat().st_size
                assert client.get(path).status_code == 200
                time.sleep(0.2)  # the server writes its log lines asynchronously
                with log.open("rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                for table in sorted(set(_SEQ_SCAN.findall(text))):
                    if _is_inference_table(table):
                        (results[name].seq_scans if table in populated else results[name].empty_seq_scans).append(table)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" RESET ALL')

"""Benchmark: one statistics refresh after 10k new inferences, with 100k and then 1M already present.

    python -m bench.stats_refresh [--sizes 100000,1000000] [--new 10000]

Runs a throwaway local PostgreSQL (fsync off). Each inference comes with one provider attempt, and every tenth
with a feedback row (alternating boolean/float, inference/episode level); ids spread over the last 30 days.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from lsd.ids import uuid7
from lsd.store import migrate
from lsd.store.local import LocalServer
from lsd.store.statistics import RefreshResult, refresh_statistics_sync

DAYS = 30
INPUT = '{"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}'
OUTPUT = '[{"type": "text", "text": "hi there"}]'


def _rows(count: int, rng: random.Random, episodes: list[UUID], *, recent: bool) -> Iterator[tuple[Any, ...]]:
    now = datetime.now(tz=UTC)
    for _ in range(count):
        age = timedelta(seconds=rng.uniform(0, 600)) if recent else timedelta(days=rng.uniform(0, DAYS))
        at = now - age
        yield uuid7(int(at.timestamp() * 1000)), at, rng.choice(episodes)


def load(conn: psycopg.Connection[Any], count: int, rng: random.Random, *, recent: bool) -> None:
    """`count` inferences with their attempts, and a feedback row for every tenth, by COPY."""
    episodes = [uuid7() for _ in range(max(count // 5, 1))]
    made = list(_rows(count, rng, episodes, recent=recent))
    inference_columns = (
        "id, created_at, function_name, variant_name, episode_id, input, output, tags, processing_time_ms, "
        "input_tokens, output_tokens, cost"
    )
    with conn.cursor() as cur:
        with cur.copy(sql.SQL(f"COPY chat_inferences ({inference_columns}) FROM STDIN")) as copy:
            for id, at, episode in made:
                copy.write_row(
                    (
                        id,
                        at,
                        f"fn{rng.randint(0, 9)}",
                        f"v{rng.randint(0, 3)}",
                        episode,
                        INPUT,
                        OUTPUT,
                        "{}",
                        rng.randint(50, 5000),
                        rng.randint(10, 2000),
                        rng.randint(1, 500),
                        round(rng.random() / 100, 6),
                    )
                )
        attempt_columns = (
            "id, created_at, inference_id, inference_kind, function_name, variant_name, model_name, "
            "model_provider_name, provider_type, status, latency_ms, input_tokens, output_tokens, cost"
        )
        with cur.copy(sql.SQL(f"COPY model_inferences ({attempt_columns}) FROM STDIN")) as copy:
            for id, at, _ in made:
                ok = rng.random() < 0.97
                copy.write_row(
                    (
                        uuid7(int(at.timestamp() * 1000)),
                        at,
                        id,
                        "chat",
                        "fn0",
                        "v0",
                        f"model{rng.randint(0, 4)}",
                        f"provider{rng.randint(0, 1)}",
                        "openai",
                        "ok" if ok else "error",
                        int(rng.lognormvariate(6.5, 1)),
                        100,
                        20,
                        0.001,
                    )
                )
        for table, value in (
            ("boolean_metric_feedback", lambda: rng.random() < 0.7),
            ("float_metric_feedback", rng.random),
        ):
            columns = "id, created_at, target_id, target_level, metric_name, value"
            with cur.copy(sql.SQL(f"COPY {table} ({columns}) FROM STDIN")) as copy:
                for n, (id, at, episode) in enumerate(made[::20]):
                    level = "episode" if n % 3 == 0 else "inference"
                    fb_at = at + timedelta(seconds=5)
                    copy.write_row(
                        (
                            uuid7(int(fb_at.timestamp() * 1000)),
                            fb_at,
                            episode if level == "episode" else id,
                            level,
                            f"metric{n % 3}",
                            value(),
                        )
                    )


def _refresh(conn: psycopg.Connection[Any]) -> RefreshResult:
    result = refresh_statistics_sync(conn)
    assert result is not None, "another process holds the statistics lock"
    return result


def measure(admin_url: str, size: int, new: int) -> dict[str, float]:
    name = f"bench_stats_{size}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    rng = random.Random(size)
    result: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.apply(conn)
        conn.execute("SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - %s, %s)", (DAYS + 1, DAYS + 2))
        started = time.perf_counter()
        load(conn, size, rng, recent=False)
        conn.execute("ANALYZE")
        result["load_s"] = time.perf_counter() - started
        result["first_refresh_s"] = _refresh(conn).duration_s  # everything is new: O(table) once
        load(conn, new, rng, recent=True)
        conn.execute("ANALYZE")
        refresh = _refresh(conn)
        result["refresh_s"] = refresh.duration_s
        result["refresh_rows"] = refresh.total_rows
        result["idle_refresh_s"] = _refresh(conn).duration_s
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--new", type=int, default=10_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lsd-bench-"))
    server = LocalServer(tmp, fast_unsafe=True)
    try:
        admin_url = server.start()
        print(f"{'present':>10} {'load':>8} {'first':>8} {'new rows':>9} {'refresh':>9} {'idle':>8}")
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(admin_url, size, args.new)
            print(
                f"{size:>10} {r['load_s']:>7.1f}s {r['first_refresh_s']:>7.2f}s {int(r['refresh_rows']):>9} "
                f"{r['refresh_s'] * 1000:>7.0f}ms {r['idle_refresh_s'] * 1000:>6.1f}ms",
                flush=True,
            )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

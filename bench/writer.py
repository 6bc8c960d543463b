"""Part 2, writer throughput: N inferences (4 rows each) through lsd's Writer against bare psycopg baselines.

Every method writes the same rows (built once from lsd.records) into a fresh copy of a migrated database:

- writer:      lsd.store.writer.Writer with batch_writes (max_rows 1000 and 5000) on uvloop; the clock runs from
               the first submit() to the moment its stats count every row written.
- COPY:        sync psycopg, binary COPY with copy.set_types (the columns' own types), one transaction per
               batch of the same size (the four tables' rows of batch/4 inferences), JSON dumped by orjson as
               the writer does; and the same COPY on an AsyncConnection (as the writer uses) at the first size.
- executemany: cursor.executemany of a single-row INSERT (psycopg pipelines it), one transaction per batch.
- unnest:      one multi-row INSERT ... SELECT * FROM unnest(<one array per column>) per table and batch.

The clock of each baseline includes turning records into tuples, as the writer's does. Then the request-path
cost of Writer.submit(): one perf_counter_ns pair around each of N calls, with the writer flushing meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps

from bench.cpu import CpuMeter, own_roots, wait_quiet
from bench.database import Cluster, count_rows
from bench.inferences import Group, make_inferences
from bench.load import percentile
from bench.loop import run as run_async
from bench.report import table
from lsd.config.model import BatchWritesConfig, ObservabilityConfig
from lsd.records import Record
from lsd.store.writer import Writer

TABLES = ("chat_inferences", "chat_inference_data", "model_inferences", "model_inference_data")
ROWS_PER_INFERENCE = len(TABLES)
WRITE_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    inferences: int = 100_000
    batch_rows: tuple[int, ...] = (1000, 5000)
    submit_calls: int = 100_000
    repeat: int = 3  # runs of each method, round-robin; the tables show the median
    quiet_wait_s: float = 0.0  # before each run, wait up to this long for other processes to calm down
    durability: tuple[str, ...] = ("fsync on",)  # "fsync on" and/or "fsync off"


# -- lsd's writer ------------------------------------------------------------------------------------------


def _observability(max_rows: int, spool_dir: Path, queue_rows: int) -> ObservabilityConfig:
    # The whole load is queued at once: max_queue_rows above it, so nothing moves to the spool.
    return ObservabilityConfig(
        enabled=True,
        async_writes=True,
        batch_writes=BatchWritesConfig(enabled=True, flush_interval_ms=100, max_rows=max_rows),
        max_queue_rows=max(queue_rows, 100_000),
        spool_dir=spool_dir,
    )


def _written(writer: Writer) -> int:
    return sum(writer.stats.written_rows.values())


def _lost(writer: Writer) -> int:
    stats = writer.stats
    return sum(stats.spooled_rows.values()) + sum(stats.dropped_rows.values()) + sum(stats.rejected_rows.values())


async def _drain(writer: Writer, total: int) -> None:
    """Wait until the writer's stats count `total` rows written; fail if rows went elsewhere."""
    deadline = time.perf_counter() + WRITE_TIMEOUT_S
    while _written(writer) < total:
        if _lost(writer):
            raise RuntimeError(f"the writer spooled, dropped or rejected rows: {writer.stats}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the writer did not finish in {WRITE_TIMEOUT_S:.0f} s: {writer.stats}")
        await asyncio.sleep(0.001)


async def _writer_run(url: str, groups: list[Group], max_rows: int, spool_dir: Path) -> dict[str, Any]:
    rows = len(groups) * ROWS_PER_INFERENCE
    writer = Writer(url, _observability(max_rows, spool_dir, 2 * rows))
    await writer.open()
    try:
        await writer.write(make_inferences(1)[0])  # connected, table types learned: not part of the clock
        total = _written(writer) + rows
        flushes = writer.stats.flushes
        started = time.perf_counter()
        for group in groups:
            writer.submit(group)
        submitted = time.perf_counter()
        await _drain(writer, total)
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "submit_seconds": submitted - started,
            "flushes": writer.stats.flushes - flushes,
            "flush_failures": writer.stats.flush_failures,
        }
    finally:
        await writer.close()


def writer_run(url: str, groups: list[Group], max_rows: int, spool_dir: Path) -> dict[str, Any]:
    return run_async(_writer_run(url, groups, max_rows, spool_dir))


# -- bare psycopg baselines --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    getter: Callable[[Any], tuple[Any, ...]]


def _tables(conn: psycopg.Connection[Any], groups: list[Group]) -> dict[type, _Table]:
    """Each record class's table, columns (the dataclass fields, in order) and their PostgreSQL types."""
    out: dict[type, _Table] = {}
    for record in groups[0]:
        cls = type(record)
        columns = tuple(f.name for f in fields(cls))
        cur = conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (cls.TABLE,),
        )
        types = dict(cur.fetchall())
        out[cls] = _Table(cls.TABLE, columns, tuple(types[c] for c in columns), attrgetter(*columns))
    return out


def _batches(groups: list[Group], batch_rows: int) -> list[list[Group]]:
    size = max(1, batch_rows // ROWS_PER_INFERENCE)
    return [groups[i : i + size] for i in range(0, len(groups), size)]


def _by_type(batch: list[Group]) -> dict[type, list[Record]]:
    by_type: dict[type, list[Record]] = defaultdict(list)
    for group in batch:
        for record in group:
            by_type[type(record)].append(record)
    return by_type


def _connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    set_json_dumps(orjson.dumps, context=conn)
    return conn


def copy_run(url: str, groups: list[Group], batch_rows: int) -> dict[str, Any]:
    with _connect(url) as conn:
        tables = _tables(conn, groups)
        statements = {
            cls: sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(t.name), sql.SQL(", ").join(map(sql.Identifier, t.columns))
            )
            for cls, t in tables.items()
        }
        batches = _batches(groups, batch_rows)
        started = time.perf_counter()
        for batch in batches:
            with conn.transaction(), conn.cursor() as cur:
                for cls, records in _by_type(batch).items():
                    spec = tables[cls]
                    with cur.copy(statements[cls]) as copy:
                        copy.set_types(list(spec.types))
                        for record in records:
                            copy.write_row(spec.getter(record))
        return {"seconds": time.perf_counter() - started, "transactions": len(batches)}


async def _async_copy_run(url: str, groups: list[Group], batch_rows: int) -> dict[str, Any]:
    with _connect(url) as sync_conn:
        tables = _tables(sync_conn, groups)
    statements = {
        cls: sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(t.name), sql.SQL(", ").join(map(sql.Identifier, t.columns))
        )
        for cls, t in tables.items()
    }
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        set_json_dumps(orjson.dumps, context=conn)
        batches = _batches(groups, batch_rows)
        started = time.perf_counter()
        for batch in batches:
            async with conn.transaction():
                for cls, records in _by_type(batch).items():
                    spec = tables[cls]
                    async with conn.cursor().copy(statements[cls]) as copy:
                        copy.set_types(list(spec.types))
                        for record in records:
                            await copy.write_row(spec.getter(record))
        return {"seconds": time.perf_counter() - started, "transactions": len(batches)}
    finally:
        await conn.close()


def async_copy_run(url: str, groups: list[Group], batch_rows: int) -> dict[str, Any]:
    """The same COPY on psycopg's AsyncConnection under uvloop, as the writer runs it: how much is psycopg async."""
    return run_async(_async_copy_run(url, groups, batch_rows))


def _adapt(spec: _Table) -> Callable[[Any], tuple[Any, ...]]:
    """Row values for a parameterised INSERT: JSON columns wrapped in Jsonb (a list would become an array)."""
    json_columns = frozenset(i for i, t in enumerate(spec.types) if t in ("jsonb", "json"))
    getter = spec.getter

    def row(record: Any) -> tuple[Any, ...]:
        values = getter(record)
        return tuple(
            Jsonb(v, dumps=orjson.dumps) if i in json_columns and v is not None else v for i, v in enumerate(values)
        )

    return row


def executemany_run(url: str, groups: list[Group], batch_rows: int) -> dict[str, Any]:
    with _connect(url) as conn:
        tables = _tables(conn, groups)
        adapters = {cls: _adapt(t) for cls, t in tables.items()}
        statements = {
            cls: sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(t.name),
                sql.SQL(", ").join(map(sql.Identifier, t.columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(t.columns)),
            )
            for cls, t in tables.items()
        }
        batches = _batches(groups, batch_rows)
        started = time.perf_counter()
        for batch in batches:
            with conn.transaction(), conn.cursor() as cur:
                for cls, records in _by_type(batch).items():
                    adapt = adapters[cls]
                    cur.executemany(statements[cls], [adapt(r) for r in records])
        return {"seconds": time.perf_counter() - started, "transactions": len(batches)}


def unnest_run(url: str, groups: list[Group], batch_rows: int) -> dict[str, Any]:
    """One multi-row INSERT per table and batch: INSERT ... SELECT * FROM unnest(%s::uuid[], %s::jsonb[], ...),
    one binary array parameter (%b) per column. (A literal VALUES list with thousands of placeholders is much
    slower: psycopg re-parses every query longer than 4 KiB on each execute; text arrays escape each element.)"""
    with _connect(url) as conn:
        tables = _tables(conn, groups)
        adapters = {cls: _adapt(t) for cls, t in tables.items()}
        # An array column (input_refs, NULL in these rows) cannot be an unnest argument: it keeps its default.
        plain = {cls: [i for i, kind in enumerate(t.types) if not kind.endswith("[]")] for cls, t in tables.items()}
        statements = {
            cls: sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({})").format(
                sql.Identifier(t.name),
                sql.SQL(", ").join(sql.Identifier(t.columns[i]) for i in plain[cls]),
                sql.SQL(", ").join(sql.SQL("%b::{}[]").format(sql.SQL(t.types[i])) for i in plain[cls]),
            )
            for cls, t in tables.items()
        }
        batches = _batches(groups, batch_rows)
        started = time.perf_counter()
        for batch in batches:
            with conn.transaction(), conn.cursor() as cur:
                for cls, records in _by_type(batch).items():
                    adapt = adapters[cls]
                    columns = [list(c) for c in zip(*(adapt(r) for r in records), strict=True)]
                    columns = [columns[i] for i in plain[cls]]
                    cur.execute(statements[cls], columns)
        return {"seconds": time.perf_counter() - started, "transactions": len(batches)}


# -- submit() on the request path --------------------------------------------------------------------------


async def _submit_cost(url: str, groups: list[Group], spool_dir: Path) -> dict[str, Any]:
    clock = time.perf_counter_ns
    overhead = []
    for _ in range(len(groups)):
        t0 = clock()
        overhead.append(clock() - t0)
    overhead.sort()
    rows = len(groups) * ROWS_PER_INFERENCE
    writer = Writer(url, _observability(1000, spool_dir, 2 * rows))
    await writer.open()
    timings: list[int] = []
    try:
        await writer.write(make_inferences(1)[0])
        total = _written(writer) + rows
        for i, group in enumerate(groups):
            t0 = clock()
            writer.submit(group)
            timings.append(clock() - t0)
            if i % 250 == 249:
                await asyncio.sleep(0)  # let the writer flush between bursts, as requests would
        await _drain(writer, total)
    finally:
        await writer.close()
    timings.sort()
    return {
        "calls": len(timings),
        "median_us": percentile(timings, 50) / 1000,
        "p99_us": percentile(timings, 99) / 1000,
        "p999_us": percentile(timings, 99.9) / 1000,
        "max_us": timings[-1] / 1000,
        "timer_overhead_median_us": percentile(overhead, 50) / 1000,
    }


# -- the part ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Method:
    kind: str
    label: str
    batch_rows: int
    run: Callable[[str], dict[str, Any]]


def _methods(groups: list[Group], settings: Settings, spool_dir: Path) -> list[_Method]:
    methods: list[_Method] = []
    for batch in settings.batch_rows:
        methods.append(
            _Method(
                "writer",
                f"lsd Writer (max_rows {batch})",
                batch,
                partial(writer_run, groups=groups, max_rows=batch, spool_dir=spool_dir),
            )
        )
        methods.append(
            _Method(
                "copy",
                f"bare binary COPY ({batch} rows/txn)",
                batch,
                partial(copy_run, groups=groups, batch_rows=batch),
            )
        )
    first = settings.batch_rows[0]
    methods.append(
        _Method(
            "async-copy",
            f"bare binary COPY, async ({first} rows/txn)",
            first,
            lambda u: async_copy_run(u, groups, first),
        )
    )
    methods.append(
        _Method(
            "executemany", f"executemany INSERT ({first} rows/txn)", first, lambda u: executemany_run(u, groups, first)
        )
    )
    methods.append(
        _Method(
            "unnest", f"multi-row INSERT ... unnest ({first} rows/txn)", first, lambda u: unnest_run(u, groups, first)
        )
    )
    return methods


def _measure(method: _Method, groups: list[Group], cluster: Cluster, quiet_wait_s: float) -> dict[str, Any]:
    """One run of one method on a fresh copy of the migrated database, checked by row counts."""
    url = cluster.create("bench_writer", migrated=True)
    cluster.checkpoint()
    gc.collect()
    roots = own_roots(cluster.postmaster_pid)
    waited = wait_quiet(roots, quiet_wait_s)
    with CpuMeter(roots) as meter:
        outcome = method.run(url)
    counts = count_rows(url, TABLES)
    cluster.drop("bench_writer")
    expected = len(groups) + (1 if method.kind == "writer" else 0)  # the writer's warm-up inference
    rows = len(groups) * ROWS_PER_INFERENCE
    return {
        "rows_per_s": rows / outcome["seconds"],
        "complete": all(n == expected for n in counts.values()),
        "counts": counts,
        "cpu": asdict(meter.share) if meter.share else None,
        "waited_for_quiet_s": round(waited, 1),
        **outcome,
    }


def run(settings: Settings, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(
        f"\n## Part 2: writer throughput ({settings.inferences:,} inferences x {ROWS_PER_INFERENCE} tables, "
        f"median of {settings.repeat})"
    )
    started = time.perf_counter()
    groups = make_inferences(settings.inferences)
    rows = len(groups) * ROWS_PER_INFERENCE
    print(f"- built {rows:,} records in {time.perf_counter() - started:.1f} s")
    methods = _methods(groups, settings, workdir / "spool")
    results: dict[str, Any] = {
        "settings": {
            "inferences": settings.inferences,
            "rows": rows,
            "batch_rows": list(settings.batch_rows),
            "repeat": settings.repeat,
            "submit_calls": settings.submit_calls,
            "durability": list(settings.durability),
        },
        "postgres": cluster.settings(),
        "runs": {},
    }
    for durability in settings.durability:
        cluster.set_durable(durability == "fsync on")
        samples: list[list[dict[str, Any]]] = [[] for _ in methods]
        # Round-robin, so that a disturbance of a few seconds hits one sample of several methods, not one method.
        for round_ in range(settings.repeat):
            for method, taken in zip(methods, samples, strict=True):
                sample = _measure(method, groups, cluster, settings.quiet_wait_s)
                taken.append(sample)
                others = sample["cpu"]["others_pct"] if sample["cpu"] else 0.0
                print(
                    f"- [{durability}, round {round_ + 1}] {method.label}: {sample['rows_per_s']:,.0f} rows/s "
                    f"({sample['seconds']:.2f} s; other processes' CPU {others:.0f}%)"
                    + ("" if sample["complete"] else f"  ROW COUNTS WRONG: {sample['counts']}")
                )
        results["runs"][durability] = [
            _summarise(method, taken, len(groups)) for method, taken in zip(methods, samples, strict=True)
        ]
        results.setdefault("writer_vs_copy", {})[durability] = ratios(results["runs"][durability])
    cluster.set_durable(True)
    url = cluster.create("bench_writer", migrated=True)
    submit = run_async(_submit_cost(url, groups[: settings.submit_calls], workdir / "spool"))
    cluster.drop("bench_writer")
    results["submit"] = submit
    print(f"- Writer.submit(): median {submit['median_us']:.2f} µs, p99 {submit['p99_us']:.2f} µs")
    print()
    print(render(results))
    return results


def _summarise(method: _Method, samples: list[dict[str, Any]], inferences: int) -> dict[str, Any]:
    rates = sorted(s["rows_per_s"] for s in samples)
    median = statistics.median(rates)
    return {
        "kind": method.kind,
        "label": method.label,
        "batch_rows": method.batch_rows,
        "rows_per_s": median,
        "inferences_per_s": median / ROWS_PER_INFERENCE,
        "min_rows_per_s": rates[0],
        "max_rows_per_s": rates[-1],
        "seconds": statistics.median(s["seconds"] for s in samples),
        "complete": all(s["complete"] for s in samples),
        "max_others_cpu_pct": max((s["cpu"]["others_pct"] for s in samples if s["cpu"]), default=None),
        "samples": samples,
    }


def ratios(runs: list[dict[str, Any]]) -> dict[int, float]:
    """writer rows/s over bare COPY rows/s (medians), per batch size."""
    copy = {r["batch_rows"]: r["rows_per_s"] for r in runs if r["kind"] == "copy"}
    return {
        r["batch_rows"]: round(r["rows_per_s"] / copy[r["batch_rows"]], 3)
        for r in runs
        if r["kind"] == "writer" and r["batch_rows"] in copy
    }


def render(results: dict[str, Any]) -> str:
    parts: list[str] = []
    settings = results["settings"]
    for durability, runs in results["runs"].items():
        copy = {r["batch_rows"]: r["rows_per_s"] for r in runs if r["kind"] == "copy"}
        parts.append(
            f"### Writing {settings['rows']:,} rows ({settings['inferences']:,} inferences x 4 tables), {durability}, "
            f"median of {settings['repeat']}"
        )
        rows = [
            [
                r["label"],
                round(r["seconds"], 2),
                round(r["rows_per_s"]),
                f"{r['min_rows_per_s']:,.0f} - {r['max_rows_per_s']:,.0f}",
                round(r["inferences_per_s"]),
                round(r["rows_per_s"] / copy[r["batch_rows"]], 3) if r["batch_rows"] in copy else None,
                r["complete"],
                r["max_others_cpu_pct"],
            ]
            for r in runs
        ]
        headers = [
            "method",
            "seconds",
            "rows/s",
            "rows/s range",
            "inferences/s",
            "vs bare COPY (same batch)",
            "all rows in",
            "other processes' CPU % (max)",
        ]
        parts.append(table(headers, rows))
        parts.append("")
    submit = results.get("submit")
    if submit:
        parts.append(f"### Writer.submit() on the request path ({submit['calls']:,} calls, writer flushing meanwhile)")
        keys = {
            "median µs": "median_us",
            "p99 µs": "p99_us",
            "p99.9 µs": "p999_us",
            "max µs": "max_us",
            "timer overhead µs (median, included)": "timer_overhead_median_us",
        }
        parts.append(table(list(keys), [[submit[k] for k in keys.values()]]))
    return "\n".join(parts)

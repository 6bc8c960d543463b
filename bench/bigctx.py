"""Part bigctx: agent-sized requests. 100 KiB prompts (`--prompt-kib`) and 2 KiB answers (`--answer-bytes`) through the
bare proxy and `lsd serve` (recording on): closed-loop throughput, then latency at `--bigctx-rates` (50,100,200 req/s),
the writer's queue, and the bytes PostgreSQL stores per inference, by column.

    python -m bench.run --parts bigctx

The prompt is pseudo-random words (it compresses about as well as prose, not as well as a repeated string). Bytes
per inference are the growth of every table in the database (heap, TOAST and indexes) over the inferences
recorded; the by-column table shows which stored copies take them.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.children import Child, Children, wait_for_http
from bench.cpu import machine_cpu_s, tree_cpu_s
from bench.database import Cluster
from bench.gateway import LSD_CONFIG, MODEL, drain, writer_backlog
from bench.load import closed_loop, open_loop
from bench.loop import run as run_async
from bench.report import table
from lsd.store.local import free_port

WORDS = (  # noqa: SIM905 (a sentence reads better than a list of 110 strings)
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word but "
    "not what all were we when your can said there use an each which she do how their if will up other about out many "
    "then them these so some her would make like him into time has look two more write go see number no way could "
    "people my than first water been call who oil its now find long down day did get come made may part function tool "
    "json schema request response stream token model provider gateway latency database record inference feedback"
).split()


@dataclass(frozen=True, slots=True)
class Settings:
    prompt_kib: int = 100
    answer_bytes: int = 2048
    rates: tuple[float, ...] = (50.0, 100.0, 200.0)
    connections: int = 16
    warmup_s: float = 3.0
    duration_s: float = 8.0
    rate_warmup_s: float = 2.0
    rate_duration_s: float = 6.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = getattr(args, "quick", False)
        return cls(
            prompt_kib=getattr(args, "prompt_kib", 100),
            answer_bytes=getattr(args, "answer_bytes", 2048),
            rates=(50.0,) if quick else getattr(args, "bigctx_rates", (50.0, 100.0, 200.0)),
            warmup_s=args.warmup,
            duration_s=args.duration,
            rate_warmup_s=args.rate_warmup,
            rate_duration_s=args.rate_duration,
        )


def prompt(kib: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < kib * 1024:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[: kib * 1024]


def body(kib: int) -> bytes:
    return orjson.dumps({"model_name": MODEL, "input": {"messages": [{"role": "user", "content": prompt(kib)}]}})


def unique_bodies(kib: int) -> Callable[[], bytes]:
    """A function making part bigctx's body with a prompt of its own each call (a counter in front of the text)."""
    text = prompt(kib)
    count = itertools.count()

    def make() -> bytes:
        unique = f"{next(count)} {text}"[: kib * 1024]
        return orjson.dumps({"model_name": MODEL, "input": {"messages": [{"role": "user", "content": unique}]}})

    return make


def stored_bytes(url: str) -> int:
    """Every table's heap + TOAST + indexes in the public schema."""
    query = """
        SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"""
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def by_column(url: str) -> list[tuple[str, int]]:
    """(table.column, bytes as stored, compressed where PostgreSQL compressed it) for every large column."""
    out: list[tuple[str, int]] = []
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            """SELECT c.table_name, c.column_name FROM information_schema.columns c
               JOIN pg_class t ON t.relname = c.table_name AND t.relkind = 'p'
               WHERE c.table_schema = 'public' AND c.data_type IN ('jsonb', 'text', 'bytea', 'json')"""
        ).fetchall()
        for table_name, column in columns:
            # Names from the catalog, quoted.
            sql = f'SELECT coalesce(sum(pg_column_size("{column}")), 0)::bigint FROM "{table_name}"'
            row = conn.execute(sql).fetchone()
            if row and int(row[0]) > 0:
                out.append((f"{table_name}.{column}", int(row[0])))
    return sorted(out, key=lambda item: -item[1])


def count_inferences(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM chat_inferences").fetchone()
    return int(row[0]) if row else 0


def start_target(
    name: str,
    children: Children,
    workdir: Path,
    fake_url: str,
    database_url: str,
    *,
    part: str = "bigctx",
    observability: str = "",
) -> tuple[Child, str]:
    """The bare proxy (`name` "bare") or `lsd serve` (any other name) in front of the fake; its /inference URL.
    `observability`: lines added to lsd's `[gateway.observability]` (part agents: `input_strings_once`)."""
    bind = f"127.0.0.1:{free_port()}"
    if name == "bare":
        child = children.python(f"{part}-bare", "-m", "bench.bare_proxy", "--bind", bind, "--upstream", fake_url)
        wait_for_http(f"http://{bind}/inference", child, any_status=True)
        return child, f"http://{bind}/inference"
    config = workdir / f"{part}-{name}.toml"
    text = LSD_CONFIG.format(spool_dir=workdir / f"spool-{part}-{name}", model=MODEL, api_base=f"{fake_url}/v1/")
    config.write_text(text.replace("[gateway.observability]\n", f"[gateway.observability]\n{observability}"))
    env = {"LSD_DATABASE_URL": database_url, "LSD_LOG_FORMAT": "json", "LSD_LOG_LEVEL": "INFO"}
    child = children.python(f"{part}-{name}", "-m", "lsd", "serve", "--config", str(config), "--bind", bind, env=env)
    wait_for_http(f"http://{bind}/health", child, timeout_s=120)
    return child, f"http://{bind}/inference"


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(f"\n## Part bigctx: {settings.prompt_kib} KiB prompts, {settings.answer_bytes} B answers")
    fake, fake_url = children.fake("bigctx-fake", "bench.token_fake", "--answer-bytes", str(settings.answer_bytes))
    database_url = cluster.create("bench_bigctx")
    payload = body(settings.prompt_kib)
    results: dict[str, Any] = {}
    try:
        for name in ("bare", "lsd"):
            before = stored_bytes(database_url)
            child, url = start_target(name, children, workdir, fake_url, database_url)
            closed_loop(
                url, payload, connections=settings.connections, duration_s=settings.warmup_s, script_dir=workdir
            )
            roles = {"server": child.pid, "postgres": cluster.postmaster_pid(), "fake": fake.pid}
            cpu0 = {role: tree_cpu_s(pid) for role, pid in roles.items()}
            machine0 = machine_cpu_s()
            closed = closed_loop(
                url, payload, connections=settings.connections, duration_s=settings.duration_s, script_dir=workdir
            )
            per_request = {
                role: round(1e6 * (tree_cpu_s(pid) - cpu0[role]) / max(closed.ok, 1), 1) for role, pid in roles.items()
            }
            per_request["machine"] = round(1e6 * (machine_cpu_s() - machine0) / max(closed.ok, 1), 1)
            entry: dict[str, Any] = {
                "closed": closed.as_dict(),
                "cpu_us_per_request": per_request["server"],
                # Where the machine's CPU went per request in the closed loop: the server, PostgreSQL (the whole
                # cluster: backends, WAL writer, checkpointer), the fake provider, and all processes together (the
                # load generator and anything else included).
                "cpu_us_per_request_by_role": per_request,
                "rates": {},
            }
            if name == "lsd":
                # The closed loop outruns PostgreSQL here: let the writer catch up before the fixed rates, so that
                # their queue readings are theirs; how long it takes is the writer's own rate for these rows.
                entry["writer_drain"] = drained = drain(url)
                entry["writer_queue_rows_after_closed"] = drained["queue_rows"]
                print(
                    f"  lsd's writer: {drained['queue_rows'] or 0:,.0f} rows queued after the closed loop, committed "
                    f"in {drained['seconds']} s ({drained['rows_per_s'] or 0:,} rows/s)"
                )
            print(
                f"  {name}: closed loop {closed.rps:,.0f} req/s, p99 {closed.p99_ms} ms, errors {closed.errors}; CPU "
                "per request (us): " + ", ".join(f"{role} {us:,.0f}" for role, us in per_request.items())
            )
            for rate in settings.rates:
                fixed = run_async(
                    open_loop(
                        url, payload, rate=rate, duration_s=settings.rate_duration_s, warmup_s=settings.rate_warmup_s
                    )
                )
                entry["rates"][f"{rate:g}"] = fixed.as_dict()
                queue = writer_backlog(url) if name == "lsd" else None
                entry["rates"][f"{rate:g}"]["writer_queue_rows"] = queue
                print(
                    f"  {name} at {rate:g} req/s: achieved {fixed.rps:,.0f}, p50 {fixed.p50_ms} ms, p99 "
                    f"{fixed.p99_ms} ms, errors {fixed.errors}" + (f", writer queue {queue:,.0f} rows" if queue else "")
                )
            children.stop(child, timeout_s=120)
            if name == "lsd":
                recorded = count_inferences(database_url)
                grown = stored_bytes(database_url) - before
                entry["inferences_recorded"] = recorded
                entry["bytes_per_inference"] = round(grown / max(recorded, 1))
                entry["by_column_bytes_per_inference"] = {
                    column: round(size / max(recorded, 1)) for column, size in by_column(database_url)
                }
            results[name] = entry
    finally:
        children.stop(fake)
    summary = {"settings": asdict(settings), "targets": results}
    print()
    print(render(summary))
    return summary


def render(summary: dict[str, Any]) -> str:
    targets = summary["targets"]
    bare, lsd = targets.get("bare"), targets.get("lsd")
    lines = []
    rows = []
    for name, entry in targets.items():
        closed = entry["closed"]
        ratio = round(closed["rps"] / bare["closed"]["rps"], 2) if bare and bare["closed"]["rps"] else None
        roles = entry.get("cpu_us_per_request_by_role", {})
        rows.append(
            [name, round(closed["rps"]), ratio, closed["p50_ms"], closed["p99_ms"], entry["cpu_us_per_request"]]
            + [roles.get(role) for role in ("postgres", "fake", "machine")]
        )
    headers = ["target", "closed-loop req/s", "vs bare", "p50 ms", "p99 ms", "server CPU us/req"]
    lines.append(table([*headers, "PostgreSQL CPU us/req", "fake CPU us/req", "machine CPU us/req"], rows))
    rows = []
    for name, entry in targets.items():
        for key, run in entry["rates"].items():
            base = bare["rates"].get(key) if bare else None
            over = round(run["p99_ms"] - base["p99_ms"], 2) if base and run["p99_ms"] and base["p99_ms"] else None
            rows.append(
                [key, name, run["rps"], run["p50_ms"], run["p99_ms"], over, run["errors"], run["writer_queue_rows"]]
            )
    lines.append("")
    lines.append(
        table(["req/s", "target", "achieved", "p50 ms", "p99 ms", "p99 over bare", "errors", "writer queue"], rows)
    )
    bare_roles = bare.get("cpu_us_per_request_by_role") if bare else None
    lsd_roles = lsd.get("cpu_us_per_request_by_role") if lsd else None
    if bare_roles and lsd_roles and bare_roles.get("machine"):
        # A recording gateway costing no more than the bare proxy still adds PostgreSQL's work per inference to the
        # machine's: on a machine the closed loop saturates, that bounds its throughput ratio.
        ceiling = bare_roles["machine"] / (bare_roles["machine"] + lsd_roles["postgres"])
        lines.append(
            f"\nPostgreSQL's CPU per recorded inference: {lsd_roles['postgres']:,.0f} us; on this machine a gateway "
            f"as cheap as the bare proxy that stores the same rows would reach at most {ceiling:.2f}x its closed-loop "
            "throughput (the machine's CPU per bare request over that plus PostgreSQL's)"
        )
    if lsd and "bytes_per_inference" in lsd:
        lines.append(
            f"\nstored per inference: {lsd['bytes_per_inference']:,} bytes ({lsd['inferences_recorded']:,} inferences)"
        )
        rows = [[column, size] for column, size in lsd["by_column_bytes_per_inference"].items()]
        lines.append(table(["column", "bytes per inference (as stored)"], rows))
    return "\n".join(lines)

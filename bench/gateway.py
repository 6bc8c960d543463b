"""Part 1, gateway overhead: the same load on a bare proxy and on `lsd serve`, both in front of the fake OpenAI.

Every server runs in a process of its own (fake, bare proxy, lsd): on a 2-core machine they share the cores
with the load generator and PostgreSQL, as they would in a small deployment. For each target: a closed-loop
warm-up, a closed-loop run (wrk, `connections` in flight), then an open-loop run at a fixed rate. After the runs
of an lsd target: its RSS, then SIGTERM (the writer flushes), then the rows in PostgreSQL against the 200
answers lsd's access log reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.children import Child, Children, command_line, process_tree, rss_kib, wait_for_file, wait_for_http
from bench.cpu import CpuMeter, CpuShare, own_roots, tree_cpu_s, wait_quiet
from bench.database import Cluster, count_rows
from bench.load import LoadResult, closed_loop, have_wrk, open_loop
from bench.loop import run as run_async
from bench.report import table
from lsd.store.local import free_port

TARGETS = ("fake", "bare", "lsd", "lsd2")
DEFAULT_TARGETS = ("bare", "lsd", "lsd2")
MODEL = "gpt"
BODY = orjson.dumps({"model_name": MODEL, "input": {"messages": [{"role": "user", "content": "hi"}]}})
FAKE_BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
OTHERS = "other processes' CPU %"  # of the whole machine, during the run: anything above a few % disturbs it
RECORDED_TABLES = ("chat_inferences", "chat_inference_data", "model_inferences", "model_inference_data")

LSD_CONFIG = """\
# Written by bench/gateway.py: one model, an `openai` provider pointing at the fake; every inference recorded.
[gateway.observability]
enabled = true
async_writes = true
spool_dir = "{spool_dir}"

[gateway.observability.batch_writes]
enabled = true
flush_interval_ms = 100
max_rows = 1000

[models.{model}]
routing = ["fake"]

[models.{model}.providers.fake]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{api_base}"
api_key_location = "none"
"""


@dataclass(frozen=True, slots=True)
class Settings:
    targets: tuple[str, ...] = DEFAULT_TARGETS
    connections: int = 32
    warmup_s: float = 5.0
    duration_s: float = 15.0
    rate: float = 500.0
    rate_warmup_s: float = 3.0
    rate_duration_s: float = 15.0
    quiet_wait_s: float = 0.0  # before each measured run, wait up to this long for other processes to calm down
    gc_trace: bool = False  # run the one-worker lsd under bench.gc_trace and report its gen-2 GC pauses


def describe(name: str) -> str:
    return {
        "fake": "fake OpenAI, direct",
        "bare": "bare proxy (starlette+aiohttp)",
        "lsd": "lsd serve (1 worker)",
        "lsd2": "lsd serve --workers 2",
    }[name]


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(f"\n## Part 1: gateway overhead ({'wrk' if have_wrk() else 'aiohttp closed loop: wrk not found'})")
    url_file = workdir / "fake.url"
    fake = children.python("fake", "-m", "bench.fake_openai", "--url-file", str(url_file))
    fake_url = wait_for_file(url_file, fake)
    results: dict[str, Any] = {}
    try:
        for name in settings.targets:
            print(f"- {describe(name)}")
            results[name] = _measure(name, settings, children, cluster, workdir, fake_url)
    finally:
        children.stop(fake)
    comparison = _compare(results)
    summary = {"settings": asdict(settings), "targets": results, "comparison": comparison}
    print()
    print(render(summary))
    return summary


def _start(
    name: str, children: Children, cluster: Cluster, workdir: Path, fake_url: str, *, gc_trace: bool = False
) -> tuple[Child | None, str]:
    """Start the target's server; returns it (None for the fake itself) and the URL to load."""
    if name == "fake":
        return None, f"{fake_url}/v1/chat/completions"
    port = free_port()
    bind = f"127.0.0.1:{port}"
    base = f"http://{bind}"
    if name == "bare":
        child = children.python("bare", "-m", "bench.bare_proxy", "--bind", bind, "--upstream", fake_url)
        wait_for_http(f"{base}/inference", child, any_status=True)  # GET: 405 once it listens
        return child, f"{base}/inference"
    database_url = cluster.create(f"bench_{name}")
    config = workdir / f"{name}.toml"
    config.write_text(LSD_CONFIG.format(spool_dir=workdir / f"spool-{name}", model=MODEL, api_base=f"{fake_url}/v1/"))
    workers = ["--workers", "2"] if name == "lsd2" else []
    module = "bench.gc_trace" if gc_trace and name == "lsd" else "lsd"
    child = children.python(
        name,
        "-m",
        module,
        "serve",
        "--config",
        str(config),
        "--bind",
        bind,
        *workers,
        env={"LSD_DATABASE_URL": database_url, "LSD_LOG_FORMAT": "json", "LSD_LOG_LEVEL": "INFO"},
    )
    wait_for_http(f"{base}/health", child, timeout_s=120)
    return child, f"{base}/inference"


def _measure(
    name: str, settings: Settings, children: Children, cluster: Cluster, workdir: Path, fake_url: str
) -> dict[str, Any]:
    child, url = _start(name, children, cluster, workdir, fake_url, gc_trace=settings.gc_trace)
    body = FAKE_BODY if name == "fake" else BODY
    roots = own_roots(cluster.postmaster_pid)
    warm = closed_loop(url, body, connections=settings.connections, duration_s=settings.warmup_s, script_dir=workdir)
    _settle(roots, settings.quiet_wait_s)
    with CpuMeter(roots) as closed_cpu:
        closed = closed_loop(
            url, body, connections=settings.connections, duration_s=settings.duration_s, script_dir=workdir
        )
    _print_run("closed loop", closed, closed_cpu.share)
    _settle(roots, settings.quiet_wait_s)
    target_cpu0, pg_cpu0 = tree_cpu_s(child.pid if child else None), tree_cpu_s(cluster.postmaster_pid())
    with CpuMeter(roots) as fixed_cpu:
        fixed = run_async(
            open_loop(
                url, body, rate=settings.rate, duration_s=settings.rate_duration_s, warmup_s=settings.rate_warmup_s
            )
        )
    # CPU per request over the whole open-loop run (warm-up included): robust to other processes on the machine.
    sent = max(fixed.ok + fixed.warmup_ok, 1)
    cpu_us = {
        "target_us_per_request": round(1e6 * (tree_cpu_s(child.pid if child else None) - target_cpu0) / sent, 1),
        "postgres_us_per_request": round(1e6 * (tree_cpu_s(cluster.postmaster_pid()) - pg_cpu0) / sent, 1),
    }
    _print_run(f"{settings.rate:.0f} req/s", fixed, fixed_cpu.share)
    print(
        f"  CPU per request at {settings.rate:.0f} req/s: server {cpu_us['target_us_per_request']:.0f} us, "
        f"PostgreSQL {cpu_us['postgres_us_per_request']:.0f} us"
    )
    result: dict[str, Any] = {
        "warmup": warm.as_dict(),
        "closed": {**closed.as_dict(), "cpu": asdict(closed_cpu.share) if closed_cpu.share else None},
        "fixed_rate": {
            **fixed.as_dict(),
            "cpu": asdict(fixed_cpu.share) if fixed_cpu.share else None,
            **cpu_us,
        },
    }
    if child is None:
        return result
    pids = process_tree(child.pid)
    rss = {pid: rss_kib(pid) for pid in pids}
    result["rss_kib"] = sum(rss.values())
    result["rss_by_process"] = [{"pid": pid, "rss_kib": kib, "command": command_line(pid)} for pid, kib in rss.items()]
    result["processes"] = len(pids)
    code = children.stop(child, timeout_s=60)
    result["exit_code"] = code
    if name.startswith("lsd"):
        client_ok = warm.ok + closed.ok + fixed.warmup_ok + fixed.ok
        # wrk stops with up to `connections` requests in flight, twice (warm-up and run): lsd answers and records
        # them, but wrk never counts them.
        cut = 2 * settings.connections if have_wrk() else 0
        result["recording"] = rec = _recording(cluster.url(f"bench_{name}"), child.log_path, client_ok, cut)
        print(
            f"  rows: chat_inferences {rec['rows']['chat_inferences']:,}, model_inferences "
            f"{rec['rows']['model_inferences']:,}; 200s in lsd's access log {rec['log_200'] or 'none logged'}; "
            f"2xx seen by the clients {client_ok:,}: {rec['verdict']}"
        )
    if settings.gc_trace and name == "lsd":
        result["gc_gen2"] = pauses = _gc_pauses(child.log_path)
        print(
            f"  gen-2 GC: {pauses['count']} collections, longest {pauses['max_ms']:.0f} ms, "
            f"{pauses['total_ms']:.0f} ms in all (the last {pauses['last_ms']:.0f} ms)"
        )
    print(f"  RSS after the run: {result['rss_kib'] / 1024:.0f} MiB over {len(pids)} process(es); exit code {code}")
    return result


def _settle(roots: Callable[[], Iterable[int]], max_wait_s: float) -> None:
    if max_wait_s > 0 and (waited := wait_quiet(roots, max_wait_s)) > 2.5:
        print(f"  (waited {waited:.0f} s for other processes to leave the CPUs)")


def _print_run(label: str, run: LoadResult, cpu: CpuShare | None) -> None:
    busy = f"; CPU: machine {cpu.machine_pct:.0f}%, other processes {cpu.others_pct:.0f}%" if cpu else ""
    print(
        f"  {label}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p90 {run.p90_ms:.2f} ms, "
        f"p99 {run.p99_ms:.2f} ms, errors {run.errors}{busy}"
    )


def _recording(database_url: str, log_path: Path, client_ok: int, cut: int) -> dict[str, Any]:
    """Rows written against the 200 answers to POST /inference in lsd's access log (one JSON line per request).

    Without access-log lines (lsd serve --workers N logs none: its workers never set up logging), the rows are
    compared with the 2xx answers the clients saw, which miss at most `cut` requests wrk left in flight."""
    statuses: dict[int, int] = {}
    writer_errors = 0
    for line in log_path.read_bytes().splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("logger") == "lsd.writer" and entry.get("level") in ("error", "critical"):
            writer_errors += 1
        if entry.get("logger") == "lsd.access" and entry.get("route") == "/inference":
            status = int(entry.get("status", 0))
            statuses[status] = statuses.get(status, 0) + 1
    rows = count_rows(database_url, RECORDED_TABLES)
    log_200 = statuses.get(200, 0)
    inferences, attempts = rows["chat_inferences"], rows["model_inferences"]
    if statuses:
        check = "exact: rows = 200s in lsd's access log"
        recorded = inferences == attempts == log_200
    else:
        check = f"bounded: no access log; 2xx at the clients <= rows <= that + {cut} cut by wrk"
        recorded = inferences == attempts and client_ok <= inferences <= client_ok + cut
    verdict = "every inference recorded" if recorded else "MISMATCH"
    return {
        "rows": rows,
        "log_200": log_200 if statuses else None,
        "log_statuses": statuses,
        "client_2xx": client_ok,
        "writer_error_lines": writer_errors,
        "check": check,
        "all_recorded": recorded,
        "verdict": f"{verdict} ({check})",
    }


def _gc_pauses(log_path: Path) -> dict[str, Any]:
    """The gen-2 collections bench.gc_trace logged: count, longest, total and last pause."""
    pauses = []
    for line in log_path.read_bytes().splitlines():
        if line.startswith(b'{"logger":"bench.gc"'):
            pauses.append(float(orjson.loads(line)["pause_ms"]))
    return {
        "count": len(pauses),
        "max_ms": max(pauses, default=0.0),
        "total_ms": round(sum(pauses), 1),
        "last_ms": pauses[-1] if pauses else 0.0,
        "pauses_ms": pauses,
    }


def _compare(results: dict[str, Any]) -> dict[str, Any]:
    """Each lsd target against the bare proxy: throughput ratio, latency ratios and overhead (lsd - bare)."""
    bare = results.get("bare")
    if bare is None:
        return {}
    out: dict[str, Any] = {}
    for name, result in results.items():
        if not name.startswith("lsd"):
            continue
        closed, fixed = result["closed"], result["fixed_rate"]
        bare_closed, bare_fixed = bare["closed"], bare["fixed_rate"]
        out[name] = {
            "throughput_ratio": _ratio(closed["rps"], bare_closed["rps"]),
            "closed_p50_overhead_ms": round(closed["p50_ms"] - bare_closed["p50_ms"], 3),
            "closed_p99_overhead_ms": round(closed["p99_ms"] - bare_closed["p99_ms"], 3),
            "fixed_p50_ratio": _ratio(fixed["p50_ms"], bare_fixed["p50_ms"]),
            "fixed_p99_ratio": _ratio(fixed["p99_ms"], bare_fixed["p99_ms"]),
            "fixed_p50_overhead_ms": round(fixed["p50_ms"] - bare_fixed["p50_ms"], 3),
            "fixed_p99_overhead_ms": round(fixed["p99_ms"] - bare_fixed["p99_ms"], 3),
        }
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _load_row(name: str, run: dict[str, Any]) -> list[Any]:
    others = run["cpu"]["others_pct"] if run.get("cpu") else None
    return [describe(name), *(run[k] for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors")), others]


def render(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    targets: dict[str, Any] = summary["targets"]
    parts: list[str] = []
    closed_rows = [_load_row(n, r["closed"]) for n, r in targets.items()]
    tool = next(iter(targets.values()))["closed"]["tool"] if targets else "wrk"
    parts.append(
        f"### Closed loop: {tool}, {settings['connections']} connections, {settings['duration_s']:.0f} s "
        f"after a {settings['warmup_s']:.0f} s warm-up"
    )
    parts.append(table(["target", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", OTHERS], closed_rows))
    fixed_rows = [
        [
            *_load_row(n, r["fixed_rate"]),
            *(r["fixed_rate"].get(k) for k in ("schedule_p99_ms", "lag_p99_ms")),
            *(r["fixed_rate"].get(k) for k in ("target_us_per_request", "postgres_us_per_request")),
        ]
        for n, r in targets.items()
    ]
    parts.append(
        f"\n### Fixed rate: {settings['rate']:.0f} req/s open loop, {settings['rate_duration_s']:.0f} s after a "
        f"{settings['rate_warmup_s']:.0f} s warm-up (latency from each send)"
    )
    headers = ["target", "achieved req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", OTHERS]
    extra = ["p99 from due time ms", "sender lag p99 ms", "server CPU us/req", "PostgreSQL CPU us/req"]
    parts.append(table([*headers, *extra], fixed_rows))
    comparison: dict[str, Any] = summary["comparison"]
    if comparison:
        parts.append("\n### lsd against the bare proxy (overhead = lsd latency - bare latency)")
        keys = {
            "req/s ratio lsd/bare": "throughput_ratio",
            "closed p50 overhead ms": "closed_p50_overhead_ms",
            "closed p99 overhead ms": "closed_p99_overhead_ms",
            "fixed p50 ratio": "fixed_p50_ratio",
            "fixed p99 ratio": "fixed_p99_ratio",
            "fixed p50 overhead ms": "fixed_p50_overhead_ms",
            "fixed p99 overhead ms": "fixed_p99_overhead_ms",
        }
        rows = [[describe(n), *(c[k] for k in keys.values())] for n, c in comparison.items()]
        parts.append(table(["target", *keys], rows))
    recorded = {n: r for n, r in targets.items() if "rss_kib" in r}
    if recorded:
        parts.append("\n### Memory and recording (after the runs)")
        rows = []
        for n, r in recorded.items():
            rec = r.get("recording")
            rows.append(
                [
                    describe(n),
                    round(r["rss_kib"] / 1024, 1),
                    r["processes"],
                    rec["log_200"] if rec else None,
                    rec["client_2xx"] if rec else None,
                    rec["rows"]["chat_inferences"] if rec else None,
                    rec["rows"]["model_inferences"] if rec else None,
                    rec["all_recorded"] if rec else None,
                ]
            )
        headers = [
            "target",
            "RSS MiB",
            "processes",
            "200s in lsd's log",
            "2xx at the clients",
            "chat_inferences rows",
            "model_inferences rows",
            "every 200 recorded",
        ]
        parts.append(table(headers, rows))
    return "\n".join(parts)

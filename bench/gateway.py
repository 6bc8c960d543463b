"""Part 1, gateway overhead: the same load on the fake OpenAI itself, a bare proxy and `lsd serve` in front of it.

Every server runs in a process of its own (fake, bare proxy, lsd): on a 2-core machine they share the cores
with the load generator and PostgreSQL, as they would in a small deployment. For each target: a closed-loop
warm-up, a closed-loop run (wrk, `connections` in flight: the maximum throughput), then an open-loop run at
each fixed rate, plain and then streaming (time to first token). After the runs of a server: its RSS and peak
RSS; then SIGTERM (lsd's writer flushes), then, for lsd, the rows in PostgreSQL against the 200 answers lsd's
access log reports. Tables and verdicts: bench/gateway_report.py.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import pinning
from bench.children import (
    Child,
    Children,
    command_line,
    peak_rss_kib,
    process_tree,
    rss_kib,
    wait_for_file,
    wait_for_http,
)
from bench.cpu import CpuMeter, CpuShare, own_roots, tree_cpu_s, wait_quiet
from bench.database import Cluster, count_rows
from bench.gateway_report import compare, compare_direct, describe, rate_key, render
from bench.load import LoadResult, closed_loop, have_wrk, open_loop
from bench.loop import run as run_async
from lsd.store.local import free_port

TARGETS = ("fake", "bare", "lsd", "lsd2", "lsd-norec")
DEFAULT_TARGETS = ("fake", "bare", "lsd", "lsd2")
MODEL = "gpt"
BODY = orjson.dumps({"model_name": MODEL, "input": {"messages": [{"role": "user", "content": "hi"}]}})
FAKE_BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
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
    warmup_s: float = 3.0
    duration_s: float = 10.0
    rates: tuple[float, ...] = (100.0, 500.0, 1000.0)
    stream_rates: tuple[float, ...] = (100.0, 500.0, 1000.0)
    rate_warmup_s: float = 2.0
    rate_duration_s: float = 6.0
    latency_ms: float = 0.0  # the fake's wait before each answer
    quiet_wait_s: float = 0.0  # before each measured run, wait up to this long for other processes to calm down
    wrk_prefix: tuple[str, ...] = ()  # `taskset -c CPUS` with --pin load=CPUS (bench.pinning)
    gc_trace: bool = False  # run the one-worker lsd under bench.gc_trace and report its gen-2 GC pauses

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """From the options `python -m bench.run` and `python -m bench.peers` share (peers has no --gc-trace)."""
        return cls(
            targets=args.targets,
            connections=args.connections,
            warmup_s=args.warmup,
            duration_s=args.duration,
            rates=args.rates,
            stream_rates=() if args.no_stream else args.stream_rates,
            rate_warmup_s=args.rate_warmup,
            rate_duration_s=args.rate_duration,
            latency_ms=args.latency_ms,
            quiet_wait_s=args.quiet_wait,
            gc_trace=getattr(args, "gc_trace", False),
            wrk_prefix=tuple(pinning.prefix(args.pin, "load")),
        )


def unrecorded(config_text: str) -> str:
    """LSD_CONFIG's text with `[gateway.observability] enabled = false`: the same gateway recording nothing."""
    text = config_text.replace("[gateway.observability]\nenabled = true", "[gateway.observability]\nenabled = false", 1)
    assert text != config_text
    return text


def start_fake(children: Children, latency_ms: float) -> tuple[Child, str]:
    """The fake OpenAI server in its own process; returns it and its root URL."""
    return children.fake("fake", "bench.fake_openai", "--latency-ms", str(latency_ms))


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print(f"\n## Part 1: gateway overhead ({'wrk' if have_wrk() else 'aiohttp closed loop: wrk not found'})")
    if not have_wrk():
        print("  (install wrk for the closed-loop runs: apt-get install -y wrk; the aiohttp fallback takes more CPU)")
    fake, _ = start_fake(children, settings.latency_ms)
    results: dict[str, Any] = {}
    try:
        for name in settings.targets:
            print(f"- {describe(name)}")
            results[name] = measure(name, settings, children, cluster, workdir, fake)
    finally:
        children.stop(fake)
    summary = {
        "settings": asdict(settings),
        "targets": results,
        "comparison": compare(results),
        "direct": compare_direct(results),
    }
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
    database_url = cluster.create(database_name(name))
    config = workdir / f"{name}.toml"
    text = LSD_CONFIG.format(spool_dir=workdir / f"spool-{name}", model=MODEL, api_base=f"{fake_url}/v1/")
    if name == "lsd-norec":  # the same gateway recording nothing: what recording adds to the latency
        text = unrecorded(text)
    config.write_text(text)
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


def bodies(name: str) -> tuple[bytes, bytes]:
    """The target's request body, plain and streaming: OpenAI's for the fake and LiteLLM, TensorZero's else."""
    plain = FAKE_BODY if name in ("fake", "litellm") else BODY
    return plain, orjson.dumps({**orjson.loads(plain), "stream": True})


def drive(
    url: str,
    name: str,
    settings: Settings,
    *,
    roots: Callable[[], list[int]],
    server_cpu: Callable[[], float],
    postgres_cpu: Callable[[], float],
    script_dir: Path,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The load on one target: closed-loop warm-up and run, then each fixed rate, plain and streaming.

    `server_cpu` and `postgres_cpu` give the CPU seconds the target's and PostgreSQL's process trees have used
    so far; `roots` the processes that are ours for the "other processes' CPU" share; `headers` go with every
    request (bench.peers: LiteLLM's master key)."""
    body, stream_body = bodies(name)
    warm = closed_loop(
        url,
        body,
        connections=settings.connections,
        duration_s=settings.warmup_s,
        script_dir=script_dir,
        cpus=settings.wrk_prefix,
        headers=headers,
    )
    _settle(roots, settings.quiet_wait_s)
    with CpuMeter(roots) as closed_cpu:
        closed = closed_loop(
            url,
            body,
            connections=settings.connections,
            duration_s=settings.duration_s,
            script_dir=script_dir,
            cpus=settings.wrk_prefix,
            headers=headers,
        )
    _print_run("closed loop", closed, closed_cpu.share)
    backlog = writer_backlog(url) if name.startswith("lsd") else None
    if backlog is not None:
        # A writer that fell behind would make the closed-loop rate unsustainable: its work would be deferred.
        print(f"    writer queue at the end of the closed loop: {backlog:,.0f} rows")
    result: dict[str, Any] = {
        "warmup": warm.as_dict(),
        "closed": {
            **closed.as_dict(),
            "cpu": asdict(closed_cpu.share) if closed_cpu.share else None,
            "writer_queue_rows": backlog,
        },
        "rates": {},
        "stream": {},
    }
    client_ok = warm.ok + closed.ok
    runs = [("rates", rate, body, False) for rate in settings.rates]
    runs += [("stream", rate, stream_body, True) for rate in settings.stream_rates]
    for kind, rate, payload, stream in runs:
        _settle(roots, settings.quiet_wait_s)
        server0, pg0 = server_cpu(), postgres_cpu()
        with CpuMeter(roots) as cpu:
            fixed = run_async(
                open_loop(
                    url,
                    payload,
                    rate=rate,
                    duration_s=settings.rate_duration_s,
                    warmup_s=settings.rate_warmup_s,
                    stream=stream,
                    headers=headers,
                )
            )
        # CPU per answered request over the whole open-loop run (warm-up included): robust to other processes.
        answered = fixed.ok + fixed.warmup_ok
        cpu_us = {
            "target_us_per_request": round(1e6 * (server_cpu() - server0) / answered, 1) if answered else None,
            "postgres_us_per_request": round(1e6 * (postgres_cpu() - pg0) / answered, 1) if answered else None,
        }
        client_ok += fixed.ok + fixed.warmup_ok
        label = f"{rate:.0f} req/s{' streaming' if stream else ''}"
        _print_run(label, fixed, cpu.share)
        if stream:
            print(f"    TTFT p50 {_ms(fixed.ttft_p50_ms)}, p99 {_ms(fixed.ttft_p99_ms)}")
        result[kind][rate_key(rate)] = {
            **fixed.as_dict(),
            "cpu": asdict(cpu.share) if cpu.share else None,
            **cpu_us,
        }
    result["client_2xx"] = client_ok
    return result


def measure(
    name: str, settings: Settings, children: Children, cluster: Cluster, workdir: Path, fake: Child
) -> dict[str, Any]:
    fake_url = wait_for_file(workdir / "fake.url", fake)
    child, url = _start(name, children, cluster, workdir, fake_url, gc_trace=settings.gc_trace)
    server = child or fake  # the fake called directly: its own CPU and memory
    result = drive(
        url,
        name,
        settings,
        roots=own_roots(cluster.postmaster_pid),
        server_cpu=lambda: tree_cpu_s(server.pid),
        postgres_cpu=lambda: tree_cpu_s(cluster.postmaster_pid()),
        script_dir=workdir,
    )
    result.update(memory(server.pid))
    if child is None:
        print(f"  RSS of the fake: {result['rss_kib'] / 1024:.0f} MiB, peak {result['peak_rss_kib'] / 1024:.0f} MiB")
        return result
    code = children.stop(child, timeout_s=60)
    result["exit_code"] = code
    if name.startswith("lsd") and name != "lsd-norec":
        # wrk stops with up to `connections` requests in flight, twice (warm-up and run): lsd answers and records
        # them, but wrk never counts them.
        cut = 2 * settings.connections if have_wrk() else 0
        client_ok = result["client_2xx"]
        result["recording"] = rec = _recording(cluster.url(database_name(name)), child.log_path, client_ok, cut)
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
    print(
        f"  RSS after the runs: {result['rss_kib'] / 1024:.0f} MiB, peak {result['peak_rss_kib'] / 1024:.0f} MiB, "
        f"over {result['processes']} process(es); exit code {code}"
    )
    return result


def database_name(target: str) -> str:
    return f"bench_{target.replace('-', '_')}"


def writer_backlog(inference_url: str) -> float | None:
    """lsd's writer queue (rows in memory, summed over workers) from its /metrics, or None if unreadable."""
    metrics_url = inference_url.rsplit("/", 1)[0] + "/metrics"
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("lsd_writer_queue_rows")]
    return sum(values) if values else None


def drain(inference_url: str, *, below_rows: float = 100, timeout_s: float = 180.0) -> dict[str, Any]:
    """Wait until lsd's writer queue is under `below_rows`: the rows it held, the seconds it took to commit them
    and their rate (the writer's sustained rate for these rows, the requests stopped)."""
    start = time.monotonic()
    first = writer_backlog(inference_url)
    queue = first
    while queue is not None and queue >= below_rows and time.monotonic() - start < timeout_s:
        time.sleep(0.25)
        queue = writer_backlog(inference_url)
    seconds = time.monotonic() - start
    drained = (first or 0) - (queue or 0)
    return {
        "queue_rows": first,
        "left_rows": queue,
        "seconds": round(seconds, 2),
        "rows_per_s": round(drained / seconds) if drained > 0 and seconds > 0 else None,
    }


def memory(pid: int) -> dict[str, Any]:
    """RSS now and peak RSS (VmHWM), each summed over the process tree of `pid`.

    The peaks of several processes need not have coincided, so their sum is an upper bound of the tree's peak."""
    pids = process_tree(pid)
    rows = [
        {"pid": p, "rss_kib": rss_kib(p), "peak_rss_kib": peak_rss_kib(p), "command": command_line(p)} for p in pids
    ]
    return {
        "rss_kib": sum(r["rss_kib"] for r in rows),
        "peak_rss_kib": sum(r["peak_rss_kib"] for r in rows),
        "rss_by_process": rows,
        "processes": len(pids),
    }


def _settle(roots: Callable[[], Iterable[int]], max_wait_s: float) -> None:
    if max_wait_s > 0 and (waited := wait_quiet(roots, max_wait_s)) > 2.5:
        print(f"  (waited {waited:.0f} s for other processes to leave the CPUs)")


def _print_run(label: str, run: LoadResult, cpu: CpuShare | None) -> None:
    busy = f"; CPU: machine {cpu.machine_pct:.0f}%, other processes {cpu.others_pct:.0f}%" if cpu else ""
    print(
        f"  {label}: {run.rps:,.0f} req/s, p50 {_ms(run.p50_ms)}, p90 {_ms(run.p90_ms)}, "
        f"p99 {_ms(run.p99_ms)}, errors {run.errors}{busy}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


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

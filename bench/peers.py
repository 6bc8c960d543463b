"""`make bench-peers`: the gateway load of `make bench` on LiteLLM's proxy, next to the bare proxy and lsd.

    make bench-peers                                  # installs litellm[proxy] and prisma into .bench-peers/venv
    python -m bench.peers --litellm /path/to/venv/bin/litellm [--targets bare,lsd,litellm,litellm-db] [--rates 50]

LiteLLM runs from its own virtual environment (its dependencies are not lsd's), in front of the same fake
OpenAI server as the bare proxy and lsd, with one uvicorn worker like one-worker lsd, in two setups:
- `litellm`: nothing that needs a database: no master key (`dangerously_permit_weak_or_unset_master_key`, as
  lsd here runs without authentication), no spend logs. It records nothing, while lsd records every inference.
- `litellm-db`: its documented production setup: a master key (sent by the load generator as a bearer token),
  `DATABASE_URL` = a database of the same throwaway PostgreSQL, spend logs on (one LiteLLM_SpendLogs row per
  request, written in batches; by default without the prompt or the answer, which lsd stores: in LiteLLM's favour),
  `proxy_batch_write_at: 60`, `database_connection_pool_limit: 10`. At the end the
  LiteLLM_SpendLogs rows are counted against the 2xx answers. LiteLLM migrates its schema (`prisma migrate
  deploy`) and generates its Prisma client at start-up, which needs Prisma's engine binaries for Prisma 5.17
  (prisma-client-py 0.15, engines 393aa359): the Prisma CLI downloads them from Prisma's binary host on first
  use; on a machine that cannot reach it, export PRISMA_QUERY_ENGINE_BINARY and PRISMA_SCHEMA_ENGINE_BINARY (paths
  to those two binaries, fetched elsewhere) before the run: the CLI then skips its download. When
  LiteLLM cannot start this way the target is reported NOT MEASURED, with LiteLLM's own message, and the run
  goes on.
Both use the bundled model cost map (no download) and no telemetry. Same load as part 1 of `make bench`: wrk
closed loop (maximum throughput), then the open loop at each fixed rate (50 and 500 req/s: LiteLLM sustains the
first on 2 cores, not the second), plain and streaming. Prints the tables, the ratios against the bare proxy and
lsd against each LiteLLM setup (each rate LiteLLM did not sustain marked); writes
bench/results/<UTC timestamp>-peers.json.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg

from bench import gateway, gateway_report, pinning, report
from bench.children import Child, ChildError, Children, wait_for_file, wait_for_http
from bench.cpu import own_roots, tree_cpu_s
from bench.database import Cluster, count_rows
from bench.run import csv_list, stop_and_clean
from lsd.store.local import free_port

TARGETS = ("fake", "bare", "lsd", "lsd2", "litellm", "litellm-db")
DEFAULT_TARGETS = ("bare", "lsd", "litellm", "litellm-db")
LITELLM_TARGETS = ("litellm", "litellm-db")

LITELLM_MODELS = """\
# Written by bench/peers.py: LiteLLM's proxy in front of the benchmark's fake OpenAI.
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sk-bench-dummy
"""
LITELLM_CONFIG = (
    LITELLM_MODELS
    + """\
# Nothing that needs a database.
litellm_settings:
  telemetry: false
  set_verbose: false
general_settings:
  disable_spend_logs: true
  dangerously_permit_weak_or_unset_master_key: true
"""
)
# LiteLLM's production best practices (docs/proxy/prod): a master key, the database, spend updates batched every
# 60 s, 10 connections per worker, exception rows off. Spend logs stay on (its default): one LiteLLM_SpendLogs
# row per request, queued in memory and written in batches.
LITELLM_DB_CONFIG = (
    LITELLM_MODELS
    + """\
litellm_settings:
  telemetry: false
  set_verbose: false
  request_timeout: 600
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  database_url: os.environ/DATABASE_URL
  proxy_batch_write_at: 60
  database_connection_pool_limit: 10
  disable_error_logs: true
"""
)
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the model price list at start-up (no network here)
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
}
MASTER_KEY = "sk-bench-throwaway-master-key-0123456789abcdef"  # a throwaway key for a throwaway database
SPEND_LOGS = "LiteLLM_SpendLogs"
# LiteLLM 1.108 flushes its spend-log queue from a monitor polling every 2 s (at 100 rows, else backing off to
# 30 s); key and user spend counters go every proxy_batch_write_at (60 s). A count still for 90 s is final.
SPEND_FLUSH_WAIT_S = 90.0


def start_litellm(
    executable: str, children: Children, workdir: Path, fake_url: str, database_url: str | None = None
) -> tuple[Child, str]:
    """`litellm --config ... --port P` with one worker; returns it and its chat completions URL.

    With `database_url`: the production setup (master key, PostgreSQL, spend logs). LiteLLM then runs
    `prisma migrate deploy` and generates its Prisma client at start-up, both of which need Prisma's engine
    binaries (downloaded by the Prisma CLI on first use, or found through PRISMA_QUERY_ENGINE_BINARY and
    PRISMA_SCHEMA_ENGINE_BINARY): allow a few minutes on the first start."""
    name = "litellm-db" if database_url else "litellm"
    config = workdir / f"{name}.yaml"
    template = LITELLM_DB_CONFIG if database_url else LITELLM_CONFIG
    config.write_text(template.format(api_base=f"{fake_url}/v1"))
    env = dict(LITELLM_ENV)
    if database_url:
        env |= {"DATABASE_URL": database_url, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_MODE": "PRODUCTION"}
    port = free_port()
    argv = [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    child = children.start(name, argv, env=env)
    wait_for_http(f"http://127.0.0.1:{port}/health/liveliness", child, timeout_s=600 if database_url else 180)
    return child, f"http://127.0.0.1:{port}/v1/chat/completions"


def measure_litellm(
    name: str,
    executable: str,
    settings: gateway.Settings,
    children: Children,
    cluster: Cluster,
    workdir: Path,
    fake: Child,
) -> dict[str, Any]:
    database_url = cluster.create("bench_litellm") if name == "litellm-db" else None
    child, url = start_litellm(executable, children, workdir, wait_for_file(workdir / "fake.url", fake), database_url)
    result = gateway.drive(
        url,
        "litellm",  # its request body: OpenAI's
        settings,
        roots=own_roots(cluster.postmaster_pid),
        server_cpu=lambda: tree_cpu_s(child.pid),
        postgres_cpu=lambda: tree_cpu_s(cluster.postmaster_pid()),
        script_dir=workdir,
        headers={"Authorization": f"Bearer {MASTER_KEY}"} if database_url else None,
    )
    result.update(gateway.memory(child.pid))
    if database_url:
        runs = [result["warmup"], result["closed"], *result["rates"].values(), *result["stream"].values()]
        # wrk leaves up to `connections` requests in flight twice; a request the client gave up on (30 s) may
        # still be answered and logged by LiteLLM: both may have rows without a 2xx at the clients.
        slack = 2 * settings.connections + sum(int(run.get("errors") or 0) for run in runs)
        # Not "recording": that key holds lsd's row check, which gateway_report's memory table reads.
        result["spend_logs"] = spend_logs(database_url, result["client_2xx"], slack)
    result["exit_code"] = children.stop(child, timeout_s=30)
    print(f"  RSS after the runs: {result['rss_kib'] / 1024:.0f} MiB, peak {result['peak_rss_kib'] / 1024:.0f} MiB")
    return result


def spend_logs(database_url: str, client_ok: int, slack: int) -> dict[str, Any]:
    """LiteLLM_SpendLogs rows against the 2xx answers the clients saw, once the count has stopped growing.

    LiteLLM queues spend logs in memory and writes them in batches: stop once the rows reach the 2xx count or
    the count has not moved for SPEND_FLUSH_WAIT_S. Up to `slack` rows may have no 2xx at the clients (see
    measure_litellm)."""
    started = time.monotonic()
    rows, stable_since = -1, started
    while time.monotonic() - started < 2 * SPEND_FLUSH_WAIT_S:
        try:
            now = count_rows(database_url, (SPEND_LOGS,))[SPEND_LOGS]
        except psycopg.Error:  # the table is not there: LiteLLM never migrated its schema
            now = 0
        if now != rows:
            rows, stable_since = now, time.monotonic()
        elif now >= client_ok or time.monotonic() - stable_since >= SPEND_FLUSH_WAIT_S:
            break
        time.sleep(2.0)
    waited = round(time.monotonic() - started, 1)
    verdict = "every request logged" if client_ok <= rows <= client_ok + slack else "MISMATCH"
    print(f"  rows: {SPEND_LOGS} {rows:,} after {waited:.0f} s; 2xx seen by the clients {client_ok:,}: {verdict}")
    return {"rows": {SPEND_LOGS: rows}, "client_2xx": client_ok, "slack": slack, "waited_s": waited, "verdict": verdict}


def sustained(run: dict[str, Any], rate: float) -> bool:
    """An open-loop rate the target kept up with: no error and at least 95 % of the rate answered."""
    return not run.get("errors") and (run.get("rps") or 0.0) >= 0.95 * rate


def against_litellm(targets: dict[str, Any]) -> list[list[Any]]:
    """lsd targets over each LiteLLM target: throughput ratio (higher is better) and p99 ratio per rate (lower is
    better), each rate marked where LiteLLM did not sustain it (its p99 is then its queue, not its latency)."""
    rows: list[list[Any]] = []
    for peer_name in LITELLM_TARGETS:
        if (peer := targets.get(peer_name)) is None:
            continue
        for name, result in targets.items():
            if not name.startswith("lsd"):
                continue
            ratios = []
            for kind, field, label in (("rates", "p99_ms", ""), ("stream", "ttft_p99_ms", " streaming")):
                for key, run in result[kind].items():
                    theirs = peer[kind].get(key, {})
                    note = (
                        "" if sustained(theirs, float(key)) else f" (LiteLLM not sustained: {theirs.get('rps')} req/s)"
                    )
                    if run[field] is not None and theirs.get(field):
                        ratios.append(f"{key} req/s{label}: {run[field] / theirs[field]:.3g}{note}")
                    elif theirs.get("errors"):
                        ratios.append(
                            f"{key} req/s{label}: LiteLLM answered none in time ({theirs['errors']:,} errors)"
                        )
            theirs_rps = peer["closed"]["rps"]
            throughput = round(result["closed"]["rps"] / theirs_rps, 3) if theirs_rps else None
            rows.append([gateway_report.describe(name), peer_name, throughput, "; ".join(ratios) or None])
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--litellm", required=True, help="the `litellm` executable (of its own virtual environment)")
    p.add_argument(
        "--targets", type=csv_list(str, TARGETS), default=DEFAULT_TARGETS, help="default bare,lsd,litellm,litellm-db"
    )
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--warmup", type=float, default=3.0, help="closed-loop warm-up seconds (default 3)")
    p.add_argument("--duration", type=float, default=10.0, help="closed-loop seconds measured (default 10)")
    p.add_argument("--rates", type=csv_list(float), default=(50.0, 500.0), help="open-loop req/s (default 50,500)")
    p.add_argument(
        "--stream-rates", type=csv_list(float), default=(50.0, 500.0), help="streaming req/s (default 50,500)"
    )
    p.add_argument("--no-stream", action="store_true", help="skip the streaming runs")
    p.add_argument("--rate-warmup", type=float, default=2.0, help="open-loop warm-up seconds per rate (default 2)")
    p.add_argument("--rate-duration", type=float, default=8.0, help="open-loop seconds per rate (default 8)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="the fake provider's wait before each answer")
    p.add_argument("--quiet-wait", type=float, default=0.0, help="wait up to this long for a quiet machine")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, configuration)")
    p.add_argument("--pin", type=pinning.parse, default={}, help="ROLE=CPUS,...: as python -m bench.run --pin")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if shutil.which(args.litellm) is None:
        print(f"{args.litellm} not found: pip install 'litellm[proxy]' into a virtual environment", file=sys.stderr)
        return 2
    settings = gateway.Settings.from_args(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-peers-"))
    cluster = Cluster(workdir / "postgres")
    results: dict[str, Any] = {"machine": report.machine(), "args": vars(args), "loadavg": {"start": report.loadavg()}}
    started, code = time.monotonic(), 0
    print(f"# Peers: {', '.join(map(gateway_report.describe, settings.targets))} ({workdir})")
    targets: dict[str, Any] = {}
    not_measured: dict[str, str] = {}
    try:
        pinning.move_self(args.pin, "postgres")
        cluster.start()
        pinning.move_self(args.pin, "load")
        with Children(workdir, args.pin) as children:
            fake, _ = gateway.start_fake(children, settings.latency_ms)
            for name in settings.targets:
                print(f"- {gateway_report.describe(name)}")
                if name == "litellm-db":
                    try:
                        targets[name] = measure_litellm(name, args.litellm, settings, children, cluster, workdir, fake)
                    except ChildError as exc:  # typically: no Prisma engine binaries (see start_litellm)
                        not_measured[name] = str(exc)
                        print(f"  NOT MEASURED: {exc}")
                elif name == "litellm":
                    targets[name] = measure_litellm(name, args.litellm, settings, children, cluster, workdir, fake)
                else:
                    targets[name] = gateway.measure(name, settings, children, cluster, workdir, fake)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every child process and PostgreSQL")
        code = 130
    except (ChildError, OSError, RuntimeError) as exc:
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        results["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        stop_and_clean(cluster, workdir, keep=args.keep)
    if not_measured:
        results["not_measured"] = not_measured
    if targets:
        summary = {"settings": asdict(settings), "targets": targets, "comparison": gateway_report.compare(targets)}
        results["peers"] = summary
        print()
        print(gateway_report.render(summary))
        if rows := against_litellm(targets):
            print("\n### lsd against LiteLLM (req/s ratio: higher is better; p99 and TTFT p99 ratios: lower is better)")
            print(
                report.table(["target", "LiteLLM", "req/s lsd/LiteLLM", "p99 (streaming: TTFT p99) lsd/LiteLLM"], rows)
            )
        results["verdicts"] = lines = gateway_report.verdicts(summary, None)
        print("\n## Against the bare proxy, with the issue's targets for lsd (ratios)")
        for line in lines:
            print(f"- {line}")
        for name, result in targets.items():
            if check := result.get("spend_logs"):
                print(
                    f"\n{name}: {check['rows'][SPEND_LOGS]:,} {SPEND_LOGS} rows for {check['client_2xx']:,} 2xx at the "
                    f"clients (up to {check['slack']:,} more allowed): {check['verdict']}"
                )
        for name, reason in not_measured.items():
            lines = reason.splitlines()
            cause = next((line for line in lines if line.startswith("Error:")), lines[0] if lines else "")
            print(f"\n{name} was NOT measured: {cause} (its whole log tail is in the results file)")
        path = report.save(results, "-peers")
        print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"elapsed: {results['elapsed_s']:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""`make bench-peers`: the gateway load of `make bench` on LiteLLM's proxy, next to the bare proxy and lsd.

    make bench-peers                                  # installs litellm[proxy] into .bench-peers/venv first
    python -m bench.peers --litellm /path/to/venv/bin/litellm [--rates 500] [--stream-rates 500]

LiteLLM runs from its own virtual environment (its dependencies are not lsd's), in front of the same fake
OpenAI server as the bare proxy and lsd, with one uvicorn worker like one-worker lsd. Its configuration
(written to the temporary folder) has one model_list entry, `openai/gpt-4o-mini` with `api_base` the fake's
/v1, and nothing that needs a database: no master key (`dangerously_permit_weak_or_unset_master_key`, as lsd
here runs without authentication), no spend logs, no telemetry, the bundled model cost map instead of a download.
It therefore records nothing, while lsd records every inference in PostgreSQL. Same load as part 1 of
`make bench`: wrk closed loop (maximum throughput), then the open loop at each fixed rate (50 and 500 req/s:
LiteLLM sustains the first on 2 cores, not the second), plain and streaming.
Prints the tables, the ratios against the bare proxy and lsd against LiteLLM; writes
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

from bench import gateway, gateway_report, pinning, report
from bench.children import Child, ChildError, Children, wait_for_file, wait_for_http
from bench.cpu import own_roots, tree_cpu_s
from bench.database import Cluster
from bench.run import csv_list, stop_and_clean
from lsd.store.local import free_port

TARGETS = ("fake", "bare", "lsd", "lsd2", "litellm")
DEFAULT_TARGETS = ("bare", "lsd", "litellm")

LITELLM_CONFIG = """\
# Written by bench/peers.py: LiteLLM's proxy in front of the benchmark's fake OpenAI, nothing needing a database.
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sk-bench-dummy
litellm_settings:
  telemetry: false
  set_verbose: false
general_settings:
  disable_spend_logs: true
  dangerously_permit_weak_or_unset_master_key: true
"""
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the model price list at start-up (no network here)
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
}


def start_litellm(executable: str, children: Children, workdir: Path, fake_url: str) -> tuple[Child, str]:
    """`litellm --config ... --port P` with one worker; returns it and its chat completions URL."""
    config = workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(api_base=f"{fake_url}/v1"))
    port = free_port()
    argv = [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    child = children.start("litellm", argv, env=LITELLM_ENV)
    wait_for_http(f"http://127.0.0.1:{port}/health/liveliness", child, timeout_s=180)
    return child, f"http://127.0.0.1:{port}/v1/chat/completions"


def measure_litellm(
    executable: str, settings: gateway.Settings, children: Children, cluster: Cluster, workdir: Path, fake: Child
) -> dict[str, Any]:
    child, url = start_litellm(executable, children, workdir, wait_for_file(workdir / "fake.url", fake))
    result = gateway.drive(
        url,
        "litellm",
        settings,
        roots=own_roots(cluster.postmaster_pid),
        server_cpu=lambda: tree_cpu_s(child.pid),
        postgres_cpu=lambda: tree_cpu_s(cluster.postmaster_pid()),
        script_dir=workdir,
    )
    result.update(gateway.memory(child.pid))
    result["exit_code"] = children.stop(child, timeout_s=30)
    print(f"  RSS after the runs: {result['rss_kib'] / 1024:.0f} MiB, peak {result['peak_rss_kib'] / 1024:.0f} MiB")
    return result


def against_litellm(targets: dict[str, Any]) -> list[list[Any]]:
    """lsd targets over LiteLLM: throughput ratio (higher is better) and p99 ratio per rate (lower is better)."""
    peer = targets.get("litellm")
    rows: list[list[Any]] = []
    if peer is None:
        return rows
    for name, result in targets.items():
        if not name.startswith("lsd"):
            continue
        ratios = []
        for kind, field, label in (("rates", "p99_ms", ""), ("stream", "ttft_p99_ms", " streaming")):
            for key, run in result[kind].items():
                theirs = peer[kind].get(key, {}).get(field)
                errors = peer[kind].get(key, {}).get("errors")
                if run[field] is not None and theirs:
                    ratios.append(f"{key} req/s{label}: {run[field] / theirs:.3g}")
                elif errors:
                    ratios.append(f"{key} req/s{label}: LiteLLM answered none in time ({errors:,} errors)")
        throughput = round(result["closed"]["rps"] / peer["closed"]["rps"], 3) if peer["closed"]["rps"] else None
        rows.append([gateway_report.describe(name), throughput, "; ".join(ratios) or None])
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--litellm", required=True, help="the `litellm` executable (of its own virtual environment)")
    p.add_argument("--targets", type=csv_list(str, TARGETS), default=DEFAULT_TARGETS, help="default bare,lsd,litellm")
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
    try:
        pinning.move_self(args.pin, "postgres")
        cluster.start()
        pinning.move_self(args.pin, "load")
        with Children(workdir, args.pin) as children:
            fake, _ = gateway.start_fake(children, workdir, settings.latency_ms)
            for name in settings.targets:
                print(f"- {gateway_report.describe(name)}")
                if name == "litellm":
                    targets[name] = measure_litellm(args.litellm, settings, children, cluster, workdir, fake)
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
    if targets:
        summary = {"settings": asdict(settings), "targets": targets, "comparison": gateway_report.compare(targets)}
        results["peers"] = summary
        print()
        print(gateway_report.render(summary))
        if rows := against_litellm(targets):
            print("\n### lsd against LiteLLM (req/s ratio: higher is better; p99 and TTFT p99 ratios: lower is better)")
            print(report.table(["target", "req/s lsd/LiteLLM", "p99 (streaming: TTFT p99) lsd/LiteLLM"], rows))
        results["verdicts"] = lines = gateway_report.verdicts(summary, None)
        print("\n## Against the bare proxy, with the issue's targets for lsd (ratios)")
        for line in lines:
            print(f"- {line}")
        path = report.save(results, "-peers")
        print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"elapsed: {results['elapsed_s']:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: gateway overhead against a bare proxy (part 1), writer throughput against bare COPY (part 2), and
what auth and rate limiting cost (part auth, bench/auth.py).

    python -m bench.run                                  # everything, under 10 minutes on 2 cores
    python -m bench.run --parts gateway --rates 500,2000 # BENCH_ARGS="--parts gateway --rates 500,2000" make bench
    python -m bench.run --parts writer --durability on,off
    python -m bench.run --quick                          # a smoke run of every part in about two minutes

Starts a throwaway PostgreSQL (fsync on) in a temporary folder, and the fake OpenAI server, the bare proxy and
`lsd serve` as child processes; stops all of them at the end, on error and on Ctrl-C or SIGTERM. Prints
markdown tables and one verdict line per target against issue #7's targets, and writes every number to
bench/results/<UTC timestamp>.json. The method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    agents,
    auth,
    bigctx,
    console,
    front_door,
    gateway,
    gateway_report,
    pinning,
    plots,
    report,
    scale,
    streams,
    variant_types,
    writer,
)
from bench.children import Children, shielded
from bench.database import Cluster
from lsd.store.local import LocalServerError

PARTS = ("gateway", "writer", "auth", "front-door", "streams", "bigctx", "agents", "console", "scale", "variants")
# The parts that load a large history (console, scale: 1M inferences by default) or 100k embeddings (variants) take
# 5-15 minutes each: asked for by name, so that `make bench` stays under 15 minutes.
DEFAULT_PARTS = ("gateway", "writer", "auth", "front-door", "streams", "bigctx", "agents")


def csv_list(kind: type, choices: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        if choices is not None:
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(choices)}")
        if not values:
            raise argparse.ArgumentTypeError("empty list")
        return values

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--parts",
        type=csv_list(str, PARTS),
        default=DEFAULT_PARTS,
        help=", ".join(PARTS) + " (default: " + ",".join(DEFAULT_PARTS) + ")",
    )
    p.add_argument("--quick", action="store_true", help="short runs (3 s, 10k inferences): to check the harness")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each measured run, wait up to this many seconds for other processes\n"
        "to use under 10%% of the CPUs (default 0: do not wait)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, PostgreSQL data)")
    p.add_argument(
        "--pin",
        type=pinning.parse,
        default={},
        help="ROLE=CPUS,...: run the load generator, the fake, the server under test and PostgreSQL\n"
        "on CPUs of their own (taskset), e.g. load=0-3,fake=4-5,target=6-11,postgres=12-15",
    )
    g = p.add_argument_group("part 1: gateway")
    g.add_argument(
        "--targets",
        type=csv_list(str, gateway.TARGETS),
        default=gateway.DEFAULT_TARGETS,
        help="fake,bare,lsd,lsd2,lsd-norec (default fake,bare,lsd,lsd2; fake is the fake provider called\n"
        "directly, lsd2 is lsd serve --workers 2, lsd-norec is lsd with observability.enabled = false)",
    )
    g.add_argument(
        "--gc-trace",
        action="store_true",
        help="run the one-worker lsd under bench.gc_trace and report its gen-2 GC pauses",
    )
    g.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    g.add_argument("--warmup", type=float, default=3.0, help="closed-loop warm-up seconds (default 3)")
    g.add_argument("--duration", type=float, default=10.0, help="closed-loop seconds measured (default 10)")
    g.add_argument(
        "--rates", type=csv_list(float), default=(100.0, 500.0, 1000.0), help="open-loop req/s (default 100,500,1000)"
    )
    g.add_argument(
        "--stream-rates",
        type=csv_list(float),
        default=(100.0, 500.0, 1000.0),
        help="open-loop req/s with streaming bodies (default 100,500,1000)",
    )
    g.add_argument("--no-stream", action="store_true", help="skip the streaming runs")
    g.add_argument("--rate-warmup", type=float, default=2.0, help="open-loop warm-up seconds per rate (default 2)")
    g.add_argument("--rate-duration", type=float, default=6.0, help="open-loop seconds measured per rate (default 6)")
    g.add_argument(
        "--latency-ms", type=float, default=0.0, help="the fake provider's wait before each answer (default 0)"
    )
    st = p.add_argument_group("part streams: long streams (bench/streams.py)")
    st.add_argument("--stream-tokens", type=int, default=100, help="tokens per stream (default 100)")
    st.add_argument("--token-rate", type=float, default=50.0, help="tokens per second of each stream (default 50)")
    st.add_argument("--stream-levels", type=csv_list(int), default=streams.DEFAULT_LEVELS, help="concurrent streams")
    st.add_argument(
        "--stream-targets",
        type=csv_list(str, streams.TARGETS),
        default=("fake", "bare", "lsd"),
        help="fake,bare,lsd,lsd-norec (default fake,bare,lsd; lsd-norec is lsd with observability.enabled = false)",
    )
    st.add_argument("--stream-window", type=float, default=5.0, help="seconds measured at each level (default 5)")
    bc = p.add_argument_group("part bigctx: big prompts (bench/bigctx.py)")
    bc.add_argument("--prompt-kib", type=int, default=100, help="prompt size in KiB (default 100)")
    bc.add_argument("--answer-bytes", type=int, default=2048, help="answer size in bytes (default 2048)")
    bc.add_argument("--bigctx-rates", type=csv_list(float), default=(50.0, 100.0, 200.0), help="open-loop req/s")
    ag = p.add_argument_group("part agents: agent sessions resending their conversation (bench/agents.py)")
    ag.add_argument("--agent-sessions", type=int, default=160, help="sessions (default 160)")
    ag.add_argument("--agent-steps", type=int, default=10, help="steps per session (default 10)")
    ag.add_argument("--agent-concurrency", type=int, default=16, help="sessions at once (default 16)")
    cg = p.add_argument_group("part console: every console page over a large history (bench/console.py)")
    cg.add_argument("--console-inferences", type=int, default=1_000_000, help="inferences loaded (default 1M)")
    cg.add_argument("--console-days", type=int, default=30, help="days they are spread over (default 30)")
    cg.add_argument("--console-renders", type=int, default=20, help="renders of each page (default 20)")
    sg = p.add_argument_group("part scale: list queries, statistics and retention over a long history (bench/scale.py)")
    sg.add_argument("--scale-rows", type=int, default=1_000_000, help="inferences loaded (default 1M; 10M on request)")
    sg.add_argument("--scale-days", type=int, default=90, help="days they are spread over (default 90)")
    w = p.add_argument_group("part 2: writer")
    w.add_argument("--inferences", type=int, default=60_000, help="inferences written, 4 rows each (default 60000)")
    w.add_argument(
        "--batch-rows", type=csv_list(int), default=(1000, 5000), help="writer max_rows and COPY batch sizes"
    )
    w.add_argument("--repeat", type=int, default=3, help="runs of each write method; the median is shown (default 3)")
    w.add_argument("--submit-calls", type=int, default=100_000, help="Writer.submit() calls timed (default 100000)")
    w.add_argument(
        "--durability",
        type=csv_list(str, ("on", "off")),
        default=("on",),
        help="on, off or on,off (default on: realistic); off turns fsync, synchronous_commit\nand full_page_writes off",
    )
    return p


def stop_and_clean(cluster: Cluster, workdir: Path, *, keep: bool) -> None:
    """At the end of a run, even on Ctrl-C: stop PostgreSQL, then remove the temporary folder unless `keep`."""
    with shielded():
        try:
            cluster.stop()
        except LocalServerError as exc:
            print(f"could not stop PostgreSQL: {exc}", file=sys.stderr)
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.warmup, args.duration, args.rate_warmup, args.rate_duration = 1.0, 3.0, 1.0, 2.0
        args.inferences = min(args.inferences, 10_000)
        args.submit_calls = min(args.submit_calls, 10_000)
        args.repeat = 1
    # SIGTERM unwinds like Ctrl-C, so the finally blocks below stop every child and PostgreSQL.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="lsd-bench-"))
    cluster = Cluster(workdir / "postgres")
    results: dict[str, Any] = {"machine": report.machine(), "args": vars(args), "loadavg": {"start": report.loadavg()}}
    started = time.monotonic()
    code = 0
    print(f"# LSD benchmarks, {results['machine']['date']}, {results['machine']['cpu_count']} CPUs")
    print(f"(temporary folder {workdir}; load average {results['loadavg']['start']})")
    try:
        pinning.move_self(args.pin, "postgres")  # pg_ctl and the cluster inherit this process's CPUs
        cluster.start()
        pinning.move_self(args.pin, "load")
        results["postgres"] = {"version": cluster.version(), **cluster.settings()}
        print(f"PostgreSQL {results['postgres']['version']}, fsync {results['postgres'].get('fsync')}")
        with Children(workdir, args.pin) as children:
            if "gateway" in args.parts:
                settings = gateway.Settings.from_args(args)
                results["gateway"] = gateway.run(settings, children, cluster, workdir)
                results["loadavg"]["after_gateway"] = report.loadavg()
            if "front-door" in args.parts:
                fsettings = front_door.Settings(
                    rounds=1 if args.quick else 2, warmup_s=args.warmup, duration_s=min(args.duration, 8.0)
                )
                results["front_door"] = front_door.run(fsettings, children, cluster, workdir)
            if "streams" in args.parts:
                results["streams"] = streams.run(streams.Settings.from_args(args), children, cluster, workdir)
            if "bigctx" in args.parts:
                results["bigctx"] = bigctx.run(bigctx.Settings.from_args(args), children, cluster, workdir)
            if "agents" in args.parts:
                results["agents"] = agents.run(agents.Settings.from_args(args), children, cluster, workdir)
            if "auth" in args.parts:
                asettings = auth.Settings(
                    calls=2_000 if args.quick else 20_000,
                    connections=args.connections,
                    warmup_s=args.warmup,
                    duration_s=args.duration,
                )
                results["auth"] = auth.run(asettings, children, cluster, workdir)
                results["loadavg"]["after_auth"] = report.loadavg()
        if "writer" in args.parts:
            wsettings = writer.Settings(
                inferences=args.inferences,
                batch_rows=args.batch_rows,
                submit_calls=min(args.submit_calls, args.inferences),
                repeat=max(1, args.repeat),
                quiet_wait_s=args.quiet_wait,
                durability=tuple(f"fsync {d}" for d in args.durability),
            )
            results["writer"] = writer.run(wsettings, cluster, workdir)
            results["loadavg"]["after_writer"] = report.loadavg()
        if "console" in args.parts:
            csettings = console.Settings(
                inferences=min(args.console_inferences, 20_000) if args.quick else args.console_inferences,
                days=args.console_days,
                renders=5 if args.quick else args.console_renders,
            )
            results["console"] = console.run(csettings, cluster, workdir)
        if "scale" in args.parts:
            ssettings = scale.Settings(
                rows=min(args.scale_rows, 50_000) if args.quick else args.scale_rows,
                days=args.scale_days,
                repeat=5 if args.quick else 30,
                layout_rows=10_000 if args.quick else 100_000,
            )
            results["scale"] = scale.run(ssettings, cluster)
        if "variants" in args.parts:  # bench/variant_types.py: dicl lookup at 10k/100k examples, best-of-n overhead
            vsettings = variant_types.Settings(
                sizes=(2_000, 10_000) if args.quick else (10_000, 100_000),
                queries=10 if args.quick else 50,
                exact_queries=1 if args.quick else 2,
                requests=200 if args.quick else 2_000,
            )
            results["variants"] = variant_types.run(vsettings, cluster)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every child process and PostgreSQL")
        code = 130
    except Exception as exc:
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        results["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        stop_and_clean(cluster, workdir, keep=args.keep)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    if lines := gateway_report.verdicts(results.get("gateway"), results.get("writer")):
        results["verdicts"] = lines
        print("\n## Against the issue's targets (ratios; the run does not fail on them)")
        for line in lines:
            print(f"- {line}")
    if any(
        part in results
        for part in (
            *("gateway", "writer", "auth", "front_door", "streams", "bigctx", "agents", "console", "scale", "variants"),
        )
    ):
        path = report.save(results)
        print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
        for png in plots.write_beside(results, path):  # matplotlib (dev extra) absent: no plots
            print(f"plot: {png}")
    print(f"elapsed: {results['elapsed_s']:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

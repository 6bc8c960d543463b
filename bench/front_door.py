"""Part front-door: the HTTP server in front of the app. lsd and the bare proxy each under uvicorn and hypercorn
(and granian, when installed, for lsd), the same wrk load: requests per second and the server's CPU per request.

    python -m bench.run --parts front-door

CPU per request (the server process tree's CPU time over the answered requests) moves less with other load on a
small machine than requests per second do; rounds alternate between the servers and the table shows each one's
median. This is how `gateway.http_server`'s default was chosen (docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.children import Child, Children, wait_for_http
from bench.cpu import tree_cpu_s
from bench.database import Cluster
from bench.gateway import BODY, LSD_CONFIG, MODEL, start_fake
from bench.load import closed_loop
from bench.report import table
from lsd.store.local import free_port


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 2
    connections: int = 32
    warmup_s: float = 3.0
    duration_s: float = 8.0


def servers() -> list[tuple[str, str]]:
    """(app, server) pairs to measure."""
    pairs = [("lsd", "uvicorn"), ("lsd", "hypercorn"), ("bare", "uvicorn"), ("bare", "hypercorn")]
    if importlib.util.find_spec("granian") is not None:
        pairs.append(("lsd", "granian"))
    return pairs


def _start(app: str, server: str, children: Children, workdir: Path, fake_url: str, database_url: str) -> Child:
    port = free_port()
    bind = f"127.0.0.1:{port}"
    name = f"{app}-{server}"
    if app == "bare":
        child = children.python(
            name, "-m", "bench.bare_proxy", "--bind", bind, "--upstream", fake_url, "--server", server
        )
        wait_for_http(f"http://{bind}/inference", child, any_status=True)
        return child
    config = workdir / "front-door.toml"
    config.write_text(
        LSD_CONFIG.format(spool_dir=workdir / "spool-front-door", model=MODEL, api_base=f"{fake_url}/v1/")
    )
    env = {
        "LSD_DATABASE_URL": database_url,
        "LSD_LOG_FORMAT": "json",
        "LSD_LOG_LEVEL": "INFO",
        "LSD_CONFIG": str(config),
    }
    if server == "granian":
        # granian runs the same app factory `lsd serve --workers N` uses (the database is already migrated).
        argv = ["-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--loop", "uvloop", "--no-ws", "--log-level", "warning", "lsd.app:from_environment"]
        child = children.python(name, *argv, env=env)
    else:
        argv = ["-m", "lsd", "serve", "--config", str(config), "--bind", bind, "--http-server", server]
        child = children.python(name, *argv, env=env)
    wait_for_http(f"http://{bind}/health", child, timeout_s=120)
    return child


def run(settings: Settings, children: Children, cluster: Cluster, workdir: Path) -> dict[str, Any]:
    print("\n## Part front-door: lsd and the bare proxy under each HTTP server (wrk, closed loop)")
    fake, fake_url = start_fake(children, 0.0)
    database_url = cluster.create("bench_front_door")
    samples: dict[str, list[dict[str, float]]] = {f"{a}-{s}": [] for a, s in servers()}
    try:
        for round_no in range(settings.rounds):
            for app, server in servers():
                child = _start(app, server, children, workdir, fake_url, database_url)
                url = f"http://{_bind_of(child)}/inference"
                closed_loop(
                    url, BODY, connections=settings.connections, duration_s=settings.warmup_s, script_dir=workdir
                )
                cpu0 = tree_cpu_s(child.pid)
                result = closed_loop(
                    url, BODY, connections=settings.connections, duration_s=settings.duration_s, script_dir=workdir
                )
                cpu_us = 1e6 * (tree_cpu_s(child.pid) - cpu0) / max(result.ok, 1)
                children.stop(child, timeout_s=60)
                if result.ok < result.requests:
                    print(f"  {app} under {server}: {result.requests - result.ok} of {result.requests} not 2xx")
                samples[f"{app}-{server}"].append({"rps": result.rps, "cpu_us": cpu_us, "errors": result.errors})
                print(f"  round {round_no + 1}, {app} under {server}: {result.rps:,.0f} req/s, {cpu_us:.0f} us CPU/req")
    finally:
        children.stop(fake)
    summary = {
        name: {key: statistics.median(s[key] for s in runs) for key in ("rps", "cpu_us", "errors")}
        for name, runs in samples.items()
    }
    rows = [[name, round(v["rps"]), round(v["cpu_us"], 1), v["errors"]] for name, v in summary.items()]
    print()
    print(table(["app under server", "req/s (median)", "server CPU us/request", "errors"], rows))
    return {"settings": asdict(settings), "runs": samples, "median": summary}


def _bind_of(child: Child) -> str:
    """The HOST:PORT a child was started on (from its argv)."""
    argv = [str(a) for a in child.process.args]  # type: ignore[union-attr]
    if "--bind" in argv:
        return argv[argv.index("--bind") + 1]
    return f"127.0.0.1:{argv[argv.index('--port') + 1]}"

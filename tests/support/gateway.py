"""Start LSD for tests: as a real `python -m lsd serve` process, or in-process with hypercorn on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from lsd.app import build_app
from lsd.config import Config, parse
from lsd.store.local import free_port

ROOT = Path(__file__).resolve().parents[2]


def lsd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lsd", *args]


def run_lsd(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LSD_LOG_FORMAT": "text", **(env or {})}
    return subprocess.run(
        lsd_command(*args),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


class Daemon:
    """`lsd serve` as a child process on a free port."""

    def __init__(
        self,
        config_path: Path,
        database_url: str,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        log_path: Path | None = None,
    ) -> None:
        """`config_path` may be a glob (then give `log_path`: by default the log sits beside the config file)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or config_path.with_suffix(".log")
        self._log = self.log_path.open("w")
        self.workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
        self.process = subprocess.Popen(
            lsd_command("serve", "--config", str(config_path), "--bind", f"127.0.0.1:{self.port}", *args),
            env={**os.environ, "LSD_DATABASE_URL": database_url, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        """Until /health answers and, with --workers N, every worker has started (hypercorn logs "Running on"
        once a worker's lifespan, its database pool included, is up): a test that then stops PostgreSQL must not
        catch a worker still starting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lsd exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                healthy = httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200
                if healthy and (self.workers == 1 or self.log().count("Running on") >= self.workers):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"lsd did not become healthy:\n{self.log()}")

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()


class Daemons:
    """`lsd serve` processes started from config text, each config in its own file under `folder` (so each has
    its own log); `stop()` terminates every one still running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Daemon] = []

    def start(
        self,
        config: str,
        database_url: str,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        wait: bool = True,
    ) -> Daemon:
        """A daemon serving `config`; healthy on return unless `wait=False` (then call `wait_ready()`)."""
        path = self.folder / f"lsd{len(self.started)}.toml"
        path.write_text(config)
        daemon = Daemon(path, database_url, env=env, args=args)
        self.started.append(daemon)
        if wait:
            daemon.wait_ready()
        return daemon

    def stop(self) -> None:
        for daemon in self.started:
            daemon.terminate()


@contextlib.asynccontextmanager
async def in_process_gateway(config_text: str | Config, database_url: str) -> AsyncIterator[str]:
    """Serve `config_text` (or a loaded Config) from this process on a free port; yields the base URL."""
    config = config_text if isinstance(config_text, Config) else parse(config_text, base_dir=ROOT)
    app = build_app(config, database_url)
    port = free_port()
    hconfig = HypercornConfig()
    hconfig.bind = [f"127.0.0.1:{port}"]
    hconfig.accesslog = None
    hconfig.graceful_timeout = 5
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, hconfig, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base_url}/health")).status_code == 200:
                    break
            await asyncio.sleep(0.02)
    try:
        yield base_url
    finally:
        stop.set()
        await task

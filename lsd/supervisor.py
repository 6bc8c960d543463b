"""`lsd serve --workers N`: start N worker processes on shared sockets and stop them without losing rows.

hypercorn's own supervisor returns as soon as one worker exits and terminates the others, which would kill
workers still flushing their write queues. This one forwards SIGTERM, SIGINT and SIGHUP as a shutdown event, stops
listening at once (new connections are refused, not left waiting for the drain), and waits for every worker to
finish its lifespan (drain requests, flush or spool rows) on its own. A worker that dies meanwhile is replaced (its
journal, with `durability = "journal"`, is replayed by the replacement); more than RESTART_LIMIT deaths within
RESTART_WINDOW_S stop the gateway instead of looping. Workers watch their parent: if the supervisor itself is killed
they shut down as on SIGTERM instead of serving on, unstoppable, holding the port.

`lsd serve` prepares the database with all of lsd imported, then `exec`s this module (`handover`): the process
that only starts and waits for workers keeps its PID but holds ~20 MiB instead of ~66.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from types import FrameType

from hypercorn.asyncio.run import asyncio_worker, uvloop_worker
from prometheus_client.multiprocess import mark_process_dead

from lsd.servers import ServerSettings, hypercorn_config, listening_socket, run_worker, uvicorn_worker
from lsd.telemetry import logging as lsd_logging
from lsd.telemetry.metrics_dir import (
    MULTIPROC_ENV,
    configured_multiprocess_dir,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)

log = logging.getLogger("lsd.supervisor")


def handover(settings: ServerSettings, workers: int) -> None:
    """Replace this process with `python -m lsd.supervisor`, which supervises `workers` workers serving
    `settings.application_path` (never returns)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, [sys.executable, "-m", "lsd.supervisor", settings.to_json(), str(workers)])


def supervise(settings: ServerSettings, workers: int) -> int:
    """Run `workers` processes serving `settings.application_path`; return 0 when all exited cleanly.

    The workers' Prometheus values go to PROMETHEUS_MULTIPROC_DIR (emptied first), or to a temporary folder
    removed at exit; the variable is set before any worker imports prometheus-client."""
    metrics_dir, own_metrics_dir = prepare_multiprocess_dir(configured_multiprocess_dir())
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        return _supervise(settings, workers)
    finally:
        if own_metrics_dir:
            remove_multiprocess_dir(metrics_dir)


RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _supervise(settings: ServerSettings, workers: int) -> int:
    ctx = get_context("spawn")
    shutdown = ctx.Event()
    sockets: list[socket.socket]
    if settings.kind == "hypercorn":
        hconfig = hypercorn_config(settings)
        created = hconfig.create_sockets()
        sockets = [*created.secure_sockets, *created.insecure_sockets]
        worker = uvloop_worker if hconfig.worker_class == "uvloop" else asyncio_worker
        kwargs: dict[str, object] = {"config": hconfig, "sockets": created, "shutdown_event": shutdown}
        target: Callable[..., object] = worker
    else:
        sockets = [listening_socket(settings)]
        kwargs = {"settings": settings, "sock": sockets[0], "shutdown_event": shutdown}
        target = uvicorn_worker
    # Children inherit ignored signals across exec: only this process reacts to them (a terminal's hangup sent to
    # the whole group must not kill workers with rows in their queues).
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}

    def spawn() -> BaseProcess:
        process = ctx.Process(target=run_worker, args=(target, kwargs, os.getpid(), shutdown))
        process.start()
        return process

    def stop_listening() -> None:
        for sock in sockets:
            sock.close()  # the workers close theirs as they shut down: then the port refuses connections

    processes = [spawn() for _ in range(workers)]
    try:

        def stop(signum: int, frame: FrameType | None) -> None:
            shutdown.set()

        for sig in previous:
            signal.signal(sig, stop)
        failed = False
        deaths: deque[float] = deque()
        while not shutdown.is_set():
            for i, process in enumerate(processes):
                process.join(timeout=0.2)
                if process.exitcode is None or shutdown.is_set():
                    continue
                now = time.monotonic()
                deaths.append(now)
                while deaths and deaths[0] < now - RESTART_WINDOW_S:
                    deaths.popleft()
                if len(deaths) > RESTART_LIMIT:
                    log.error(
                        "worker %s exited with %s, the %d-th worker to die within %g s: stopping the gateway",
                        process.pid,
                        process.exitcode,
                        len(deaths),
                        RESTART_WINDOW_S,
                    )
                    failed = True
                    shutdown.set()
                    break
                log.error("worker %s exited with %s; starting another in its place", process.pid, process.exitcode)
                if process.pid is not None:
                    mark_process_dead(process.pid)  # type: ignore[no-untyped-call]  # its gauges stop; counters stay
                processes[i] = spawn()
        stop_listening()
        for process in processes:
            process.join()
        return 1 if failed or any(p.exitcode != 0 for p in processes) else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_listening()


def main(argv: list[str]) -> int:
    """`python -m lsd.supervisor SETTINGS_JSON WORKERS`, as `handover` runs it."""
    lsd_logging.configure()
    code = supervise(ServerSettings.from_json(argv[0]), int(argv[1]))
    logging.getLogger("lsd").info("lsd stopped")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

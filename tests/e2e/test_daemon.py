"""LSD as a real process over real sockets: an inference lands in three rows; SIGTERM loses no accepted row."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import signal
import time
from pathlib import Path
from uuid import UUID

import httpx
import psutil
import psycopg
import pytest

from lsd.api.status import ABSENT_STORES
from lsd.store.local import LocalServer
from tests.support.clusters import cluster_folder
from tests.support.configs import echo_chat
from tests.support.gateway import Daemon, Daemons
from tests.support.polling import count, eventually


def config(flush_ms: int) -> str:
    return f"""
[gateway.observability.batch_writes]
flush_interval_ms = {flush_ms}
max_rows = 100000
{echo_chat(variant="only")}
"""


@pytest.fixture
def daemon_factory(database_url: str, daemons: Daemons) -> object:
    def start(flush_ms: int = 100, args: tuple[str, ...] = ()) -> Daemon:
        return daemons.start(config(flush_ms), database_url, args=args)

    return start


def test_inference_over_http_writes_three_matching_rows(daemon_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()
    response = httpx.post(
        f"{daemon.base_url}/inference",
        json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi there"}]}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert body["variant_name"] == "only"
    inference_id = UUID(body["inference_id"])
    assert inference_id.version == 7 and UUID(body["episode_id"]).version == 7
    attempts = "SELECT count(*) FROM model_inferences WHERE inference_id = %s"
    assert eventually(lambda: count(database_url, attempts, inference_id), 10) == 1
    with psycopg.connect(database_url) as conn:
        chat = conn.execute(
            "SELECT function_name, variant_name, episode_id, output, config_hash FROM chat_inferences WHERE id = %s",
            (inference_id,),
        ).fetchone()
        data = conn.execute(
            "SELECT rendered_input FROM inference_payloads WHERE inference_id = %s", (inference_id,)
        ).fetchone()
        model = conn.execute(
            "SELECT model_name, model_provider_name, status, input_tokens, output_tokens FROM model_inferences "
            "WHERE inference_id = %s",
            (inference_id,),
        ).fetchone()
        snapshot = conn.execute("SELECT count(*) FROM config_snapshots WHERE hash = %s", (chat[4],)).fetchone()
    assert chat[:3] == ("chat", "only", UUID(body["episode_id"]))
    assert chat[3] == [{"type": "text", "text": "echo: hi there"}]
    assert data is not None and data[0]["messages"][0]["role"] == "user"
    assert model == ("echo", "dummy", "ok", 2, 3)
    assert snapshot == (1,)


def test_health_and_status(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()
    assert httpx.get(f"{daemon.base_url}/health").json() == {"gateway": "ok", "postgres": "ok", **ABSENT_STORES}
    status = httpx.get(f"{daemon.base_url}/status").json()
    assert status["status"] == "ok" and len(status["config_hash"]) == 64


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_load_loses_no_accepted_row(daemon_factory, database_url: str, stop_signal: int) -> None:  # type: ignore[no-untyped-def]
    # A long flush interval keeps accepted rows queued in memory when the signal arrives. SIGHUP too: left at its
    # default, it killed the one-process gateway with its queue (a closed terminal, a `kill -HUP` meant as reload).
    daemon = daemon_factory(flush_ms=60_000)
    accepted: list[str] = []

    async def load() -> None:
        stop = asyncio.Event()

        async def worker(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                try:
                    r = await client.post(
                        f"{daemon.base_url}/inference",
                        json={
                            "function_name": "chat",
                            "input": {"messages": [{"role": "user", "content": "x"}]},
                        },
                    )
                except httpx.HTTPError:
                    stop.set()
                    return
                if r.status_code == 200:
                    accepted.append(r.json()["inference_id"])

        async with httpx.AsyncClient(timeout=10) as client:
            workers = [asyncio.ensure_future(worker(client)) for _ in range(8)]
            while len(accepted) < 200:
                await asyncio.sleep(0.01)
            daemon.process.send_signal(stop_signal)
            await asyncio.wait_for(asyncio.gather(*workers), 30)

    asyncio.run(load())
    assert daemon.process.wait(30) == 0, daemon.log()
    assert len(accepted) >= 200
    with psycopg.connect(database_url) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT id FROM chat_inferences")}
        attempts = conn.execute("SELECT count(DISTINCT inference_id) FROM model_inferences").fetchone()
    assert set(accepted) <= stored
    assert attempts is not None and attempts[0] >= len(accepted)


def test_multiple_workers_serve_and_flush_on_sigterm(daemon_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(flush_ms=60_000, args=("--workers", "2"))
    ids = []
    with httpx.Client() as client:
        for _ in range(20):
            r = client.post(
                f"{daemon.base_url}/inference",
                json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": "w"}]}},
            )
            assert r.status_code == 200
            ids.append(r.json()["inference_id"])
    # The process `lsd serve` started (same PID) became the slim supervisor: it runs no gateway code.
    pid = daemon.process.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"lsd.supervisor" in cmdline
    rss_kib = int(
        next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS")).split()[
            1
        ]
    )
    assert rss_kib < 40 * 1024, f"supervisor RSS {rss_kib} KiB"
    assert daemon.terminate() == 0
    with psycopg.connect(database_url) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT id FROM chat_inferences")}
    assert set(ids) <= stored


def test_one_json_log_line_per_request_without_prompts(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()
    r = httpx.post(
        f"{daemon.base_url}/inference",
        json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": "top secret prompt"}]}},
        headers={"x-request-id": "req-123"},
    )
    assert r.headers["x-request-id"] == "req-123"
    messages = [{"role": "user", "content": "top secret prompt"}]
    other_routes = {  # every route that runs an inference names it in its line, streamed or not
        "/openai/v1/chat/completions": {"model": "lsd::function_name::chat", "messages": messages},
        "/openai/v1/responses": {"model": "lsd::function_name::chat", "input": "top secret prompt", "stream": True},
        "/anthropic/v1/messages": {"model": "lsd::function_name::chat", "max_tokens": 10, "messages": messages},
    }
    for path, body in other_routes.items():
        assert httpx.post(f"{daemon.base_url}{path}", json=body).status_code == 200
    daemon.terminate()
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    access = [e for e in lines if e["logger"] == "lsd.access" and e.get("route") == "/inference"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "req-123" and entry["status"] == 200
    assert entry["inference_id"] == r.json()["inference_id"]
    assert (entry["function"], entry["variant"], entry["model"], entry["provider"]) == ("chat", "only", "echo", "dummy")
    assert entry["latency_ms"] >= 0
    for path in other_routes:
        [line] = [e for e in lines if e["logger"] == "lsd.access" and e.get("route") == path]
        assert line["inference_id"] and (line["function"], line["provider"]) == ("chat", "dummy"), line
    assert [e.get("stream") for e in lines if e.get("route") == "/openai/v1/responses"] == [True]
    assert "top secret" not in daemon.log()


def _workers(daemon: Daemon) -> list[psutil.Process]:
    """The supervisor's worker processes (multiprocessing also starts a resource tracker beside them)."""
    workers = []
    for child in psutil.Process(daemon.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and any("spawn_main" in part for part in child.cmdline()):
                workers.append(child)
        except psutil.Error:
            continue  # gone, or a zombie not reaped yet
    return workers


def test_a_dead_worker_is_replaced_and_a_dead_supervisor_stops_its_workers(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    """One worker killed: another starts in its place and the gateway serves on (it used to stop every worker).
    The supervisor killed: its workers notice, drain and exit, freeing the port (they used to serve on, deaf to
    SIGTERM)."""
    daemon = daemon_factory(args=("--workers", "2"))
    body = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "w"}]}}
    first = _workers(daemon)
    assert len(first) == 2
    first[0].kill()
    assert eventually(lambda: len(_workers(daemon)) == 2 and first[0].pid not in {p.pid for p in _workers(daemon)}, 30)
    assert eventually(lambda: daemon.log().count("Running on") >= 3, 30)  # the replacement's lifespan is up
    assert all(httpx.post(f"{daemon.base_url}/inference", json=body).status_code == 200 for _ in range(10))
    assert "starting another in its place" in daemon.log()
    survivors = _workers(daemon)
    for worker in survivors:  # the replacement too ignores the stop signals: only the supervisor turns them
        ignored = int(next(line for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
                           if line.startswith("SigIgn:")).split()[1], 16)  # fmt: skip
        assert all(ignored >> (sig - 1) & 1 for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    daemon.process.kill()
    daemon.process.wait(10)
    _, alive = psutil.wait_procs(survivors, timeout=30)
    assert not alive, daemon.log()
    assert "the supervisor" in daemon.log() and "is gone: shutting down" in daemon.log()


def test_workers_stop_listening_at_sigterm_while_they_drain(database_url: str, daemons: Daemons) -> None:
    """A connection made during the drain is refused at once (the supervisor's own copy of the socket kept it
    accepting connections nobody would serve until the drain ended)."""
    text = config(100) + '[models.slow]\nrouting = ["d"]\n[models.slow.providers.d]\ntype = "dummy"\n'
    text += 'model_name = "slow"\nlatency_ms = 3000\n'
    daemon = daemons.start(text, database_url, args=("--workers", "2"))
    slow = {"model_name": "slow", "input": {"messages": [{"role": "user", "content": "x"}]}}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.post, f"{daemon.base_url}/inference", json=slow, timeout=30)
        time.sleep(0.5)
        daemon.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        started = time.monotonic()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{daemon.base_url}/health", timeout=5)
        assert time.monotonic() - started < 1
        assert in_flight.result().status_code == 200  # the request in flight is still answered
    assert daemon.process.wait(30) == 0


def test_workers_spool_at_sigterm_while_the_database_is_down_and_replay_later(tmp_path: Path) -> None:
    folder = cluster_folder("lsd-e2e-pg-")
    server = LocalServer(folder, fast_unsafe=True)
    url = server.start()
    try:
        spool = tmp_path / "spool"
        path = tmp_path / "lsd.toml"
        path.write_text(
            config(50) + f'\n[gateway.observability]\nspool_dir = "{spool}"\nshutdown_flush_timeout_s = 2\n'
        )
        daemon = Daemon(path, url, args=("--workers", "2"))
        daemon.wait_ready()
        body = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "x"}]}}
        ids = [httpx.post(f"{daemon.base_url}/inference", json=body).json()["inference_id"] for _ in range(10)]
        server.stop()
        ids += [httpx.post(f"{daemon.base_url}/inference", json=body).json()["inference_id"] for _ in range(20)]
        assert daemon.terminate(60) == 0, daemon.log()
        assert any(spool.rglob("*")), "rows not written must be spooled"
        server.start()
        replay = Daemon(path, url)
        replay.wait_ready()
        deadline = time.monotonic() + 20
        stored: set[str] = set()
        while time.monotonic() < deadline and not set(ids) <= stored:
            with psycopg.connect(url) as conn:
                stored = {str(r[0]) for r in conn.execute("SELECT id FROM chat_inferences")}
            time.sleep(0.2)
        assert replay.terminate() == 0
        assert set(ids) <= stored
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

"""PostgreSQL unreachable: inferences still answer (the cache steps aside), feedback is queued, everything else
that needs the database answers 503 `database_unavailable` within `gateway.database.acquire_timeout_s`; never 500.

Outages stop a private PostgreSQL (as test_durability does); the door's error mapping is also checked on the shared
cluster, with errors PostgreSQL raises on demand.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from uuid import UUID

import httpx
import psycopg
import pytest

from lsd.auth import new_key
from lsd.config import parse
from lsd.errors import ConfigError, DatabaseUnavailable
from lsd.ids import uuid7
from lsd.runtime import build_metrics
from lsd.store import keys
from lsd.store.database import Database, unavailable
from lsd.store.local import LocalServer
from tests.support.gateway import in_process_gateway
from tests.support.private_server import fresh_database, private_server
from tests.support.prometheus import scrape, value

TEMPLATE = "lsd_outage_template"
BOUND_S = 3.0  # acquire_timeout_s (2 s, the default) plus slack: a behaviour bound, not a benchmark

GATEWAY = """
[gateway.observability]
spool_dir = "{spool_dir}"
shutdown_flush_timeout_s = 30

[gateway.observability.batch_writes]
flush_interval_ms = 20

[metrics.accepted]
type = "boolean"
optimize = "max"
level = "inference"

[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "dummy::echo"
"""

CACHED = {
    "function_name": "chat",
    "input": {"messages": [{"role": "user", "content": "the same question"}]},
    "cache_options": {"enabled": "on"},
}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """A private PostgreSQL, with a migrated template database; tests that stop it start it again."""
    yield from private_server("lsd-db-outage-pg-", TEMPLATE)


@pytest.fixture
def own_url(server: LocalServer) -> Iterator[str]:
    """A fresh migrated database on the private server."""
    yield from fresh_database(server, TEMPLATE)


# -- the door: Database.connection / Database.reading ----------------------------------------------------------


def test_unavailable_says_which_errors_mean_postgresql_cannot_answer() -> None:
    assert unavailable(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert unavailable(psycopg.errors.AdminShutdown())
    assert unavailable(psycopg.errors.TooManyConnections())
    assert unavailable(psycopg.errors.QueryCanceled())
    assert unavailable(TimeoutError())
    assert unavailable(ConnectionRefusedError())
    assert not unavailable(psycopg.errors.DeadlockDetected())  # PostgreSQL answered: this statement failed
    assert not unavailable(psycopg.errors.SyntaxError())
    assert not unavailable(ValueError())


async def raise_sqlstate(database: Database, sqlstate: str) -> None:
    async with database.connection("test") as conn:
        await conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$")


async def test_the_door_maps_only_unavailability(database: Database) -> None:
    with pytest.raises(DatabaseUnavailable) as raised:
        await raise_sqlstate(database, "57P01")  # admin_shutdown
    assert (raised.value.http_status, raised.value.error_code) == (503, "database_unavailable")
    assert isinstance(raised.value.__cause__, psycopg.errors.AdminShutdown)
    with pytest.raises(psycopg.errors.DeadlockDetected):
        await raise_sqlstate(database, "40P01")
    with pytest.raises(psycopg.errors.UndefinedTable):
        async with database.reading("test") as conn:
            await conn.execute("SELECT * FROM no_such_table")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        async with database.connection("test", deadline_s=0.2) as conn:
            await conn.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - started < BOUND_S
    async with database.connection("test") as conn:  # the pool is still good
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)


async def test_a_stopped_server_is_unavailable_within_the_acquire_timeout(
    own_url: str, server: LocalServer, tmp_path: Path
) -> None:
    metrics = build_metrics(parse("", base_dir=tmp_path))
    database = Database(own_url, min_size=1, max_size=2, acquire_timeout_s=0.5, metrics=metrics)
    await database.open()
    try:
        await asyncio.to_thread(server.stop)
        for purpose in ("query", "query", "feedback"):  # a dead pooled connection first, then no connection at all
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                async with database.connection(purpose) as conn:
                    await conn.execute("SELECT 1")
            assert time.monotonic() - started < BOUND_S
        counted = metrics.registry.get_sample_value
        assert counted("lsd_database_unavailable_total", {"purpose": "query"}) == 2
        assert counted("lsd_database_unavailable_total", {"purpose": "feedback"}) == 1
        await asyncio.to_thread(server.start)
        for _ in range(100):  # the pool reconnects in the background
            try:
                async with database.connection("query") as conn:
                    await conn.execute("SELECT 1")
                break
            except DatabaseUnavailable:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the pool did not reconnect")
    finally:
        await database.close()
    with pytest.raises(DatabaseUnavailable):  # a closed pool too
        async with database.connection("query"):
            pass


async def test_callers_fail_fast_while_the_pool_is_known_down_and_one_probes(
    own_url: str, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the pool could not give a connection, the next callers are told at once (their fallbacks answer without
    waiting acquire_timeout_s each); after FAST_FAIL_S one caller probes; the pool is used again once it is back."""
    monkeypatch.setattr("lsd.store.database.FAST_FAIL_S", 0.5)
    database = Database(own_url, min_size=1, max_size=2, acquire_timeout_s=0.4)
    await database.open()

    async def timed() -> tuple[bool, float]:
        started = time.monotonic()
        try:
            async with database.connection("auth") as conn:
                await conn.execute("SELECT 1")
            return True, time.monotonic() - started
        except DatabaseUnavailable:
            return False, time.monotonic() - started

    try:
        await asyncio.to_thread(server.stop)
        while (await timed())[1] < 0.3:  # dead pooled connections fail quickly; then the pool has none to give
            pass
        quick = [await timed() for _ in range(5)]
        assert all(not ok and took < 0.1 for ok, took in quick), quick
        await asyncio.sleep(0.5)
        ok, took = await timed()  # the probe waits, as before
        assert not ok and took >= 0.3
        await asyncio.to_thread(server.start)
        for _ in range(100):
            if (await timed())[0]:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the pool did not come back")
        assert all([(await timed())[0] for _ in range(3)])
    finally:
        await database.close()


async def test_a_busy_pool_is_not_taken_for_a_down_database(database_url: str) -> None:
    """A wait that timed out because every connection was lent out (load) leaves the next callers to wait as
    before: failing them fast would turn a busy second into a second of 503s."""
    database = Database(database_url, min_size=1, max_size=1, acquire_timeout_s=0.2)
    await database.open()
    try:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with database.connection("query"):
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await held.wait()
        with pytest.raises(DatabaseUnavailable):  # the only connection is lent out
            async with database.connection("query"):
                pass
        release.set()
        await holder
        async with database.connection("query") as conn:  # at once, not refused for a second
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await database.close()


def test_acquire_timeout_is_parsed_and_checked(tmp_path: Path) -> None:
    assert parse("", base_dir=tmp_path).gateway.database.acquire_timeout_s == 2.0
    text = "[gateway.database]\nacquire_timeout_s = 0.25\n"
    assert parse(text, base_dir=tmp_path).gateway.database.acquire_timeout_s == 0.25
    with pytest.raises(ConfigError, match=r"gateway\.database\.acquire_timeout_s"):
        parse("[gateway.database]\nacquire_timeout_s = 0\n", base_dir=tmp_path)


# -- through the gateway -----------------------------------------------------------------------------------------


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error_code"] == "database_unavailable"
    assert elapsed < BOUND_S


async def test_an_outage_serves_inferences_queues_feedback_and_answers_503_elsewhere(
    own_url: str, server: LocalServer, tmp_path: Path
) -> None:
    config = GATEWAY.format(spool_dir=tmp_path / "spool")
    async with in_process_gateway(config, own_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        first = await http.post("/inference", json=CACHED)
        assert first.status_code == 200, first.text
        target = first.json()["inference_id"]
    # Another gateway (its own memory of recent inferences) serves the outage: feedback must ask the database.
    async with (
        in_process_gateway(config, own_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        await asyncio.to_thread(server.stop)
        statuses: list[int] = []

        # The cache cannot be read (a miss) nor written (skipped): the provider answers, within the cache's bound.
        for _ in range(2):
            answer, elapsed = await timed(http.post("/inference", json=CACHED))
            statuses.append(answer.status_code)
            assert answer.status_code == 200, answer.text
            assert answer.json()["inference_id"] != target  # not the cached answer
            assert elapsed < BOUND_S

        # Metric feedback is accepted without its target check, and queued for the writer.
        feedback = {"metric_name": "accepted", "inference_id": target, "value": True}
        accepted, elapsed = await timed(http.post("/feedback", json=feedback))
        statuses.append(accepted.status_code)
        assert accepted.status_code == 200, accepted.text
        assert elapsed < BOUND_S
        feedback_id = UUID(accepted.json()["feedback_id"])
        # A demonstration needs its inference (function, output shape): 503.
        demonstration = {"metric_name": "demonstration", "inference_id": target, "value": "better"}
        refused, elapsed = await timed(http.post("/feedback", json=demonstration))
        statuses.append(refused.status_code)
        assert_unavailable(refused, elapsed)

        # The query endpoints answer 503 within the acquire timeout.
        for path, body in (
            ("/v1/inferences/list_inferences", {}),
            ("/v1/inferences/get_inferences", {"ids": [target]}),
        ):
            response, elapsed = await timed(http.post(path, json=body))
            statuses.append(response.status_code)
            assert_unavailable(response, elapsed)
        for path in (f"/batch_inference/{uuid7()}", "/v1/evaluations/runs", f"/v1/evaluations/runs/{uuid7()}"):
            response, elapsed = await timed(http.get(path))
            statuses.append(response.status_code)
            assert_unavailable(response, elapsed)
        assert 500 not in statuses

        samples, _, _ = await scrape(http)
        assert value(samples, "lsd_cache_errors_total", operation="read") == 2
        assert value(samples, "lsd_cache_errors_total", operation="write") == 2
        assert value(samples, "lsd_database_unavailable_total", purpose="query") == 2
        assert value(samples, "lsd_database_unavailable_total", purpose="feedback") == 2

        await asyncio.to_thread(server.start)
        for _ in range(200):  # the writer replays what it queued: the feedback row arrives
            with psycopg.connect(own_url) as conn:
                row = conn.execute(
                    "SELECT target_id, value FROM boolean_metric_feedback WHERE id = %s", (feedback_id,)
                ).fetchone()
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row == (UUID(target), True)


AUTH = GATEWAY + "\n[gateway.auth]\nenabled = true\n"


def create_key(url: str) -> str:
    made = new_key()
    with psycopg.connect(url, autocommit=True) as conn:
        keys.insert_key(conn, made.public_id, made.secret_sha256, description=None, organization=None, workspace=None)
    return made.token


async def test_auth_serves_known_keys_and_answers_503_for_unknown_ones(
    own_url: str, server: LocalServer, tmp_path: Path
) -> None:
    known, unseen = create_key(own_url), create_key(own_url)
    body = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    config = AUTH.format(spool_dir=tmp_path / "spool")
    async with (
        in_process_gateway(config, own_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        assert (
            await http.post("/inference", json=body, headers={"authorization": f"Bearer {known}"})
        ).status_code == 200
        await asyncio.to_thread(server.stop)
        served = await http.post("/inference", json=body, headers={"authorization": f"Bearer {known}"})
        assert served.status_code == 200, served.text
        refused, elapsed = await timed(
            http.post("/inference", json=body, headers={"authorization": f"Bearer {unseen}"})
        )
        assert_unavailable(refused, elapsed)
        # Signing in to the console needs the database too: its page says so, not JSON.
        form = await http.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None, form.text
        signin = await http.post("/ui/login", data={"csrf": token[1], "key": unseen, "next": "/ui/"})
        assert signin.status_code == 503 and signin.headers["content-type"].startswith("text/html"), signin.text
        assert "database is unavailable" in signin.text
        await asyncio.to_thread(server.start)


BATCH = {"function_name": "chat", "inputs": [{"messages": [{"role": "user", "content": "one"}]}]}


async def test_a_started_batch_waits_for_the_database_to_record_it(own_url: str, server: LocalServer) -> None:
    """A provider batch is billed once started: a short outage delays its recording, it does not lose it."""
    async with (
        in_process_gateway(GATEWAY.format(spool_dir="/nonexistent"), own_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=60) as http,
    ):
        await asyncio.to_thread(server.stop)
        try:
            submitted = asyncio.create_task(http.post("/batch_inference", json=BATCH))
            await asyncio.sleep(BOUND_S + 0.5)  # past the acquire timeout: a single try would have failed by now
            assert not submitted.done()  # waiting for the database, not refused
        finally:
            await asyncio.to_thread(server.start)
        answer = await submitted
    assert answer.status_code == 200, answer.text
    with psycopg.connect(own_url) as conn:
        row = conn.execute(
            "SELECT provider_batch_id FROM batch_requests WHERE id = %s", (answer.json()["batch_id"],)
        ).fetchone()
    assert row is not None and row[0].startswith("dummy-batch-")


async def test_a_batch_that_cannot_be_recorded_names_its_provider_batch(
    own_url: str, server: LocalServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("lsd.inference.batch.RECORD_RETRY_S", 1.0)
    async with (
        in_process_gateway(GATEWAY.format(spool_dir="/nonexistent"), own_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=60) as http,
    ):
        await asyncio.to_thread(server.stop)
        try:
            answer = await http.post("/batch_inference", json=BATCH)
        finally:
            await asyncio.to_thread(server.start)
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]
    assert "started batch 'dummy-batch-" in message and "cancel it at the provider" in message
    assert any("dummy-batch-" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)

"""A real `lsd serve` behind a real PgBouncer in transaction mode (Debian's package).

The request path (inference, cache, feedback and its target check, list_inferences, the writer's COPY) goes through
PgBouncer with `prepared_statements = false`; the statistics and partition jobs and migrations take session
advisory locks on LSD_SESSION_DATABASE_URL, straight to PostgreSQL. SIGTERM still flushes every accepted row.

API keys (checked in the database through PgBouncer; revocations heard by a LISTEN on the session URL) and rate
limits (atomic bucket updates through PgBouncer) work the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import PgCluster
from tests.support.configs import boolean_metric, echo_chat
from tests.support.gateway import Daemon, Daemons, run_lsd
from tests.support.pgbouncer import PgBouncer
from tests.support.polling import count, eventually

pytestmark = pytest.mark.e2e


def config(flush_ms: int) -> str:
    return f"""
[gateway.database]
prepared_statements = false
pool_max_size = 8

[gateway.observability]
statistics_refresh_interval_s = 0.2

[gateway.observability.batch_writes]
flush_interval_ms = {flush_ms}
{echo_chat(variant="only")}
{boolean_metric("good")}
"""


@pytest.fixture(scope="module")
def bouncer(pg: PgCluster) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pg.admin_url, pool_mode="transaction", pool_size=3)
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def serve(bouncer: PgBouncer, database_url: str, daemons: Daemons) -> Any:
    def start(flush_ms: int = 20) -> Daemon:
        env = {"LSD_SESSION_DATABASE_URL": database_url}
        return daemons.start(config(flush_ms), bouncer.url(database_url), env=env)

    return start


def _transactions(bouncer: PgBouncer, dbname: str) -> int:
    return sum(int(row["total_xact_count"]) for row in bouncer.show("STATS") if row["database"] == dbname)


async def _infer_many(base_url: str, n: int, tag: str) -> list[str]:
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> str:
            r = await client.post(
                f"{base_url}/inference",
                json={
                    "function_name": "chat",
                    "input": {"messages": [{"role": "user", "content": f"m{i}"}]},
                    "tags": {"t": tag},
                },
            )
            assert r.status_code == 200, r.text
            return str(r.json()["inference_id"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_the_request_path_through_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, serve: Any, database_url: str
) -> None:
    dbname = str(psycopg.conninfo.conninfo_to_dict(database_url)["dbname"])
    daemon = serve()
    before = _transactions(bouncer, dbname)
    ids = asyncio.run(_infer_many(daemon.base_url, 60, "bounced"))

    # More than the 5 executions after which psycopg would prepare: nothing is prepared, nothing fails.
    with httpx.Client(base_url=daemon.base_url, timeout=30) as client:
        for _ in range(3):
            for inference_id in ids[:12]:
                r = client.post("/feedback", json={"metric_name": "good", "inference_id": inference_id, "value": True})
                assert r.status_code == 200, r.text
        cached = [
            client.post(
                "/inference",
                json={
                    "function_name": "chat",
                    "input": {"messages": [{"role": "user", "content": "same"}]},
                    "cache_options": {"enabled": "on", "max_age_s": None},
                },
            )
            for _ in range(7)
        ]
        assert all(r.status_code == 200 for r in cached), [r.text for r in cached]

        def listed() -> bool:
            r = client.post("/v1/inferences/list_inferences", json={"function_name": "chat", "tags": {"t": "bounced"}})
            assert r.status_code == 200, r.text
            return len(r.json()["inferences"]) == 20  # the default page

        for _ in range(8):
            assert eventually(listed)

    # A fresh process (nothing remembered) checks feedback targets in the database, through PgBouncer.
    daemon.terminate()
    daemon = serve()
    r = httpx.post(f"{daemon.base_url}/feedback", json={"metric_name": "good", "inference_id": ids[-1], "value": False})
    assert r.status_code == 200, r.text

    rows = "SELECT count(*) FROM boolean_metric_feedback"
    assert eventually(lambda: count(database_url, rows) == 37)
    statistics = "SELECT coalesce(sum(inference_count), 0) FROM inference_by_function_statistics"
    assert eventually(lambda: count(database_url, statistics) >= 61), daemon.log()
    # The traffic really went through PgBouncer (its totals update every stats_period, 1 s here).
    assert eventually(lambda: _transactions(bouncer, dbname) - before > 20)
    assert "prepared statement" not in daemon.log()
    assert "job statistics failed" not in daemon.log()
    # No session advisory lock is left on a pooled server connection (a job may hold one on its own session
    # connection for the moment it runs: wait for that to end).
    assert eventually(lambda: count(database_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0)


def test_sigterm_through_pgbouncer_flushes_every_accepted_row(serve: Any, database_url: str) -> None:
    daemon = serve(flush_ms=60_000)  # rows wait in memory until shutdown
    ids = asyncio.run(_infer_many(daemon.base_url, 100, "flush"))
    assert count(database_url, "SELECT count(*) FROM chat_inferences") == 0
    assert daemon.terminate() == 0, daemon.log()
    with psycopg.connect(database_url) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT id FROM chat_inferences")}
    assert set(ids) <= stored


def test_migrate_through_pgbouncer_takes_its_lock_on_the_session_url(
    bouncer: PgBouncer, empty_database_url: str
) -> None:
    env = {"LSD_DATABASE_URL": bouncer.url(empty_database_url), "LSD_SESSION_DATABASE_URL": empty_database_url}
    result = run_lsd("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert count(empty_database_url, "SELECT count(*) FROM schema_migrations") >= 3
    assert count(empty_database_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


AUTH_CONFIG = """
[gateway.database]
prepared_statements = false

[gateway.auth]
enabled = true
[gateway.auth.cache]
ttl_ms = 600000

[rate_limiting]
lease = 0

[[rate_limiting.rules]]
always = true
model_inferences_per_minute = { capacity = 8, refill_rate = 1 }
scope = [{ api_key_public_id = "lsd::each" }]
""" + echo_chat(variant="only")


def test_api_keys_revocation_and_rate_limits_through_pgbouncer(
    bouncer: PgBouncer, database_url: str, daemons: Daemons
) -> None:
    env = {"LSD_DATABASE_URL": bouncer.url(database_url), "LSD_SESSION_DATABASE_URL": database_url}
    created = run_lsd("keys", "create", "--description", "through pgbouncer", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    public_id = token.split("-")[2]
    daemon = daemons.start(AUTH_CONFIG, bouncer.url(database_url), env={"LSD_SESSION_DATABASE_URL": database_url})
    body = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=daemon.base_url, timeout=30) as http:
        assert http.post("/inference", json=body).status_code == 401
        # The bucket holds 8: the 9th request within the minute is refused (one bucket update each, pooled).
        codes = [http.post("/inference", json=body, headers=auth).status_code for _ in range(9)]
        assert codes == [200] * 8 + [429], daemon.log()
        # Disabled through PgBouncer; the NOTIFY reaches the listener on the direct session connection.
        disabled = run_lsd("keys", "disable", public_id, env=env)
        assert disabled.returncode == 0, disabled.stderr
        assert eventually(lambda: http.post("/inference", json=body, headers=auth).status_code == 401, 5)
    assert "prepared statement" not in daemon.log()

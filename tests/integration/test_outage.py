"""A database that goes away and comes back: /health follows it and the pool recovers."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from lsd.api.status import ABSENT_STORES
from lsd.store import migrate
from lsd.store.local import LocalServer
from tests.support.gateway import in_process_gateway


@pytest.fixture
def own_cluster() -> Iterator[LocalServer]:
    """A private PostgreSQL this test may stop and start without disturbing the others. It lives in its own
    mkdtemp folder: another pytest session on the machine may prune old pytest tmp_path folders."""
    folder = Path(tempfile.mkdtemp(prefix="lsd-outage-pg-"))
    server = LocalServer(folder, fast_unsafe=True)
    server.start()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        migrate.apply(conn)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


async def test_health_is_503_while_the_database_is_down(own_cluster: LocalServer) -> None:
    async with in_process_gateway("", own_cluster.url()) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/health")).status_code == 200
        await asyncio.to_thread(own_cluster.stop)
        down = await http.get("/health")
        assert down.status_code == 503
        assert down.json() == {"gateway": "ok", "postgres": "error", **ABSENT_STORES}
        await asyncio.to_thread(own_cluster.start)
        for _ in range(100):
            if (await http.get("/health")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert (await http.get("/health")).status_code == 200

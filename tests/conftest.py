"""Shared fixtures: one throwaway PostgreSQL per session, a migrated template, one database per test."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lsd.ids import uuid7
from lsd.store import admin, migrate
from lsd.store.database import Database
from lsd.store.local import LocalServer
from tests.support.clusters import cluster_folder
from tests.support.gateway import Daemons

ROOT = Path(__file__).resolve().parents[1]


class PgCluster:
    """The session's PostgreSQL: an admin URL plus a way to make URLs for other databases."""

    def __init__(self, admin_url: str, server: LocalServer | None) -> None:
        self.admin_url = admin_url
        self.server = server
        # Copying a template takes ~0.8 s (hundreds of partition files): copy the next one while a test runs.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._spare: dict[str, concurrent.futures.Future[str]] = {}

    def database_from(self, template: str) -> str:
        future = self._spare.pop(template, None)
        name = future.result() if future else self.create_database(template)
        self._spare[template] = self._executor.submit(self.create_database, template)
        return name

    def discard_spare(self, template: str) -> None:
        future = self._spare.pop(template, None)
        if future is not None:
            self.drop_database(future.result())

    def close(self) -> None:
        for template in list(self._spare):
            self.discard_spare(template)
        self._executor.shutdown()

    def url(self, dbname: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return make_conninfo("", **params)

    def create_database(self, template: str | None = None) -> str:
        name = f"lsd_test_{uuid7().hex[-12:]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            conn.execute(query)
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    url = os.environ.get("LSD_TEST_DATABASE_URL")
    if url:
        cluster = PgCluster(url, None)
        yield cluster
        cluster.close()
        return
    tmp = cluster_folder("lsd-test-pg-")  # in /dev/shm when it can (tests.support.clusters)
    server = LocalServer(tmp, fast_unsafe=True)
    try:
        cluster = PgCluster(server.start(), server)
        yield cluster
        cluster.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg: PgCluster) -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    name = pg.create_database()
    with psycopg.connect(pg.url(name), autocommit=True) as conn:
        migrate.apply(conn)
        # One day beyond what a gateway's partition job asks for (yesterday .. today + 7): a run that crosses midnight
        # (UTC) finds every partition it needs, instead of each test's gateway creating a day of them.
        admin.ensure_partitions(conn, 8)
    yield name
    pg.discard_spare(name)
    pg.drop_database(name)


@pytest.fixture
def database_url(pg: PgCluster, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = pg.database_from(template_db)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open connection pool (1 to 4 connections) on this test's database."""
    db = Database(database_url, min_size=1, max_size=4)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
def empty_database_url(pg: PgCluster) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = pg.create_database()
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """Starts `lsd serve` processes for one test (request `database_url` first: they stop before it is dropped)."""
    started = Daemons(tmp_path)
    yield started
    started.stop()

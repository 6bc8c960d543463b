"""A private PostgreSQL for tests that stop and start it (outages), with a migrated template database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import psycopg
from psycopg import sql

from lsd.ids import uuid7
from lsd.store import migrate
from lsd.store.local import LocalServer
from tests.support.clusters import cluster_folder


def private_server(prefix: str, template: str) -> Iterator[LocalServer]:
    """Start the server and create `template`, migrated; stop and remove it after. (A fixture's body.)

    Its data lives outside pytest's basetemp, which a concurrent pytest session may prune while this one runs."""
    data_dir = cluster_folder(prefix)
    local = LocalServer(data_dir, fast_unsafe=True)
    try:
        local.start()
        with psycopg.connect(local.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
        with psycopg.connect(local.url(template), autocommit=True) as conn:
            migrate.apply(conn)
        yield local
    finally:
        local.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def fresh_database(server: LocalServer, template: str) -> Iterator[str]:
    """A fresh database from `template` on the (re)started server, dropped after. (A fixture's body.)"""
    server.start()
    name = f"lsd_test_{uuid7().hex[-12:]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    yield server.url(name)
    server.start()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

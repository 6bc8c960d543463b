"""The benchmark's PostgreSQL: one throwaway cluster (lsd.store.local), a fresh database per measurement."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from lsd.store import migrate
from lsd.store.local import LocalServer

TEMPLATE = "bench_template"


class Cluster:
    """A LocalServer with fsync on (the realistic setting) unless switched off with `set_durable(False)`."""

    def __init__(self, data_dir: Path) -> None:
        self.server = LocalServer(data_dir, fast_unsafe=False)
        self._template_ready = False

    def start(self) -> str:
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def postmaster_pid(self) -> int | None:
        pidfile = self.server.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def url(self, dbname: str = "postgres") -> str:
        return self.server.url(dbname)

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(), autocommit=True)

    def version(self) -> str:
        with self._admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def settings(self) -> dict[str, str]:
        names = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_wal_size", "wal_level")
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", [list(names)]
            )
            return dict(rows.fetchall())

    def create(self, name: str, *, migrated: bool = False) -> str:
        """A new empty database (dropped first if it exists); `migrated`: a copy of a migrated template."""
        if migrated and not self._template_ready:
            self._create_plain(TEMPLATE)
            with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
                migrate.apply(conn)
            self._template_ready = True
        self.drop(name)
        with self._admin() as conn:
            template = sql.SQL(" TEMPLATE {}").format(sql.Identifier(TEMPLATE)) if migrated else sql.SQL("")
            conn.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), template))
        return self.url(name)

    def _create_plain(self, name: str) -> None:
        self.drop(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def checkpoint(self) -> None:
        """Start a measurement without the previous one's dirty pages still waiting to be written."""
        with self._admin() as conn:
            conn.execute("CHECKPOINT")

    def set_durable(self, durable: bool) -> None:
        """fsync, synchronous_commit and full_page_writes on (the defaults) or off, by ALTER SYSTEM and reload."""
        with self._admin() as conn:
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                if durable:
                    conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
                else:
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(name)))
            conn.execute("SELECT pg_reload_conf()")
        # The reload reaches the server processes asynchronously: wait until a new session sees it.
        expected = "on" if durable else "off"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self._admin() as conn:
                row = conn.execute("SHOW fsync").fetchone()
            if row and row[0] == expected:
                return
            time.sleep(0.05)
        raise RuntimeError(f"fsync did not become {expected} after pg_reload_conf()")


def count_rows(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        counts = {}
        for table in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts

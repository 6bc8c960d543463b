"""LSD_READ_DATABASE_URL with two real PostgreSQL servers, the replica fed by logical replication.

The query API and evaluation-run reads come from the replica; inference and feedback writes, the feedback target
check and the statistics job go to the primary. Pausing the subscription makes the two servers differ, which
shows where each request read from.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from lsd.ids import uuid7
from lsd.store import admin, migrate
from lsd.store.database import DatabaseUrls
from lsd.store.local import LocalServer
from tests.support.clusters import cluster_folder
from tests.support.configs import boolean_metric, echo_chat
from tests.support.gateway import Daemon, Daemons
from tests.support.polling import count, eventually

pytestmark = pytest.mark.e2e

CONFIG = f"""
[gateway.observability]
statistics_refresh_interval_s = 0.2

[gateway.observability.batch_writes]
flush_interval_ms = 20
{echo_chat(variant="only")}
{boolean_metric("good")}
"""

# Insert-only: the replica is a read copy of the observability rows (updates, e.g. of statistics, stay home).
REPLICATED = [
    "chat_inferences",
    "json_inferences",
    "model_inferences",
    "boolean_metric_feedback",
    "float_metric_feedback",
    "comment_feedback",
    "demonstration_feedback",
    "inference_evaluation_runs",
    "inference_evaluation_results",
]


@dataclass
class Pair:
    primary: LocalServer
    replica: LocalServer
    dbname: str

    @property
    def primary_url(self) -> str:
        return self.primary.url(self.dbname)

    @property
    def replica_url(self) -> str:
        return self.replica.url(self.dbname)

    def subscription(self, enabled: bool) -> None:
        with psycopg.connect(self.replica_url, autocommit=True) as conn:
            conn.execute(f"ALTER SUBSCRIPTION lsd_replica {'ENABLE' if enabled else 'DISABLE'}")


def _create_migrated(server: LocalServer, dbname: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(server.url(dbname), autocommit=True) as conn:
        migrate.apply(conn)
        admin.ensure_partitions(conn, 2)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    folder = cluster_folder("lsd-replica-pg-")
    primary = LocalServer(folder / "primary", fast_unsafe=True)
    replica = LocalServer(folder / "replica", fast_unsafe=True)
    try:
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_level = logical")
        primary.stop()
        primary.start()
        replica.start()
        dbname = f"lsd_{uuid7().hex[-12:]}"
        _create_migrated(primary, dbname)
        _create_migrated(replica, dbname)
        with psycopg.connect(primary.url(dbname), autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE PUBLICATION lsd_obs FOR TABLE {} "
                    "WITH (publish = 'insert', publish_via_partition_root = true)"
                ).format(sql.SQL(", ").join(map(sql.Identifier, REPLICATED)))
            )
        with psycopg.connect(replica.url(dbname), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE SUBSCRIPTION lsd_replica CONNECTION {} PUBLICATION lsd_obs").format(
                    sql.Literal(f"host=127.0.0.1 port={primary.port} user=postgres dbname={dbname}")
                )
            )
        yield Pair(primary, replica, dbname)
        with psycopg.connect(replica.url(dbname), autocommit=True) as conn:
            conn.execute("DROP SUBSCRIPTION lsd_replica")
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def serve(pair: Pair, daemons: Daemons) -> Any:
    def start() -> Daemon:
        return daemons.start(CONFIG, pair.primary_url, env={"LSD_READ_DATABASE_URL": pair.replica_url})

    return start


def _listed(daemon: Daemon, tag: str) -> list[str]:
    response = httpx.post(
        f"{daemon.base_url}/v1/inferences/list_inferences", json={"function_name": "chat", "tags": {"t": tag}}
    )
    assert response.status_code == 200, response.text
    return [row["inference_id"] for row in response.json()["inferences"]]


def _infer(daemon: Daemon, tag: str) -> str:
    response = httpx.post(
        f"{daemon.base_url}/inference",
        json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}, "tags": {"t": tag}},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["inference_id"])


def test_queries_read_the_replica_and_writes_go_to_the_primary(pair: Pair, serve: Any) -> None:
    daemon = serve()
    replicated = _infer(daemon, "replicated")
    # With the subscription running, the row reaches the replica and the query API sees it.
    assert eventually(lambda: _listed(daemon, "replicated")) == [replicated]

    pair.subscription(enabled=False)
    try:
        held_back = _infer(daemon, "held-back")
        on_primary = "SELECT count(*) FROM chat_inferences WHERE id = %s"
        assert eventually(lambda: count(pair.primary_url, on_primary, held_back)) == 1
        time.sleep(0.5)
        assert count(pair.replica_url, on_primary, held_back) == 0
        # The primary has the row, the replica not: the query API answers from the replica.
        assert _listed(daemon, "held-back") == []

        # A new process (nothing in its memory) checks the feedback target on the primary: accepted.
        daemon.terminate()
        daemon = serve()
        feedback = httpx.post(
            f"{daemon.base_url}/feedback", json={"metric_name": "good", "inference_id": held_back, "value": True}
        )
        assert feedback.status_code == 200, feedback.text
        feedback_rows = "SELECT count(*) FROM boolean_metric_feedback WHERE target_id = %s"
        assert eventually(lambda: count(pair.primary_url, feedback_rows, held_back)) == 1
        assert count(pair.replica_url, feedback_rows, held_back) == 0

        # The statistics job writes on the primary (the replica's statistics tables are not replicated here).
        statistics = "SELECT coalesce(sum(inference_count), 0) FROM inference_by_function_statistics"
        assert eventually(lambda: count(pair.primary_url, statistics) >= 2)
        assert count(pair.replica_url, statistics) == 0
    finally:
        pair.subscription(enabled=True)
    assert eventually(lambda: _listed(daemon, "held-back")) == [held_back]


def test_evaluation_runs_are_read_from_the_replica(pair: Pair, serve: Any) -> None:
    daemon = serve()
    run_id = uuid7()
    pair.subscription(enabled=False)
    try:
        # A run only the replica holds (as if the primary's copy were not yet visible here): the API lists it.
        with psycopg.connect(pair.replica_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO inference_evaluation_runs (id, created_at, evaluation_name, function_name, variant_name, "
                "status) VALUES (%s, now(), 'only_on_replica', 'chat', 'only', 'completed')",
                (run_id,),
            )
        listed = httpx.get(f"{daemon.base_url}/v1/evaluations/runs", params={"evaluation_name": "only_on_replica"})
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["runs"]] == [str(run_id)]
        detail = httpx.get(f"{daemon.base_url}/v1/evaluations/runs/{run_id}")
        assert detail.status_code == 200, detail.text
        assert count(pair.primary_url, "SELECT count(*) FROM inference_evaluation_runs WHERE id = %s", run_id) == 0
    finally:
        pair.subscription(enabled=True)


def test_urls_from_the_environment() -> None:
    urls = DatabaseUrls.from_environ(
        {"LSD_DATABASE_URL": " postgresql://p/db ", "LSD_READ_DATABASE_URL": "", "LSD_SESSION_DATABASE_URL": "x"}
    )
    assert urls == DatabaseUrls("postgresql://p/db", None, "x")
    assert urls.session_url == "x"
    assert DatabaseUrls.of("postgresql://p/db").session_url == "postgresql://p/db"

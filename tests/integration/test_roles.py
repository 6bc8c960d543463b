"""sql/roles.sql on a real database: `lsd serve` works as lsd_daemon; lsd_daemon cannot rewrite history, touch
keys or change the schema; lsd_analyst reads everything but key digests and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lsd.auth import new_key
from lsd.config import parse
from lsd.runtime import prepare_database
from lsd.store import keys
from lsd.store.statistics import refresh_statistics_sync
from tests.support.configs import echo_chat
from tests.support.gateway import ROOT, in_process_gateway

CONFIG = """
[gateway.auth]
enabled = true
[gateway.database]
disable_automatic_migrations = true
[gateway.observability]
async_writes = false

[[rate_limiting.rules]]
model_inferences_per_minute = 100
always = true
scope = [{ api_key_public_id = "lsd::each" }]
""" + echo_chat()


def as_role(url: str, role: str) -> str:
    params = conninfo_to_dict(url)
    params["user"] = role
    return make_conninfo("", **params)


@pytest.fixture
def roles(database_url: str) -> Iterator[tuple[str, str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute((ROOT / "sql" / "roles.sql").read_text().encode())
        conn.execute((ROOT / "sql" / "roles.sql").read_text().encode())  # idempotent
    yield as_role(database_url, "lsd_daemon"), as_role(database_url, "lsd_analyst")


async def test_the_daemon_works_with_least_privilege(database_url: str, roles: tuple[str, str]) -> None:
    daemon_url, analyst_url = roles
    made = new_key()
    with psycopg.connect(database_url, autocommit=True) as owner:
        keys.insert_key(owner, made.public_id, made.secret_sha256, description=None, organization=None, workspace=None)
    config = parse(CONFIG, base_dir=ROOT)
    prepare_database(config, daemon_url)  # checks migrations, creates partitions, snapshots the config
    auth = {"authorization": f"Bearer {made.token}"}
    async with in_process_gateway(CONFIG, daemon_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        body = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        answer = await http.post("/inference", json=body, headers=auth)
        assert answer.status_code == 200, answer.text
        cached = await http.post("/inference", json={**body, "cache_options": {"enabled": "on"}}, headers=auth)
        assert cached.status_code == 200, cached.text
        feedback = await http.post(
            "/feedback",
            json={"inference_id": answer.json()["inference_id"], "metric_name": "comment", "value": "ok"},
            headers=auth,
        )
        assert feedback.status_code == 200, feedback.text
    with psycopg.connect(daemon_url, autocommit=True) as conn:
        assert refresh_statistics_sync(conn) is not None
        created = conn.execute("SELECT lsd_ensure_partitions(current_date + 40, 0)").fetchone()
        assert created is not None and created[0] > 0  # a new day's partitions, through the owner's function
        assert conn.execute("SELECT count(*) FROM chat_inferences").fetchone() == (2,)
        assert conn.execute("SELECT api_key_public_id FROM comment_feedback").fetchone() == (made.public_id,)
        for statement in (
            "DELETE FROM chat_inferences",
            "UPDATE model_inferences SET output_tokens = 0",
            "INSERT INTO api_keys (public_id, secret_sha256) VALUES ('x', '\\x00')",
            "UPDATE api_keys SET disabled_at = NULL",
            "CREATE TABLE intruder (id int)",
            "DROP TABLE rate_limit_buckets",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM chat_inferences").fetchone() == (2,)
        assert conn.execute("SELECT public_id FROM api_keys").fetchone() == (made.public_id,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT secret_sha256 FROM api_keys")
        for statement in ("INSERT INTO rate_limit_buckets VALUES ('a', 'b', 1, 1, 1)", "DELETE FROM chat_inferences"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute(statement)
        conn.execute("SET default_transaction_read_only = off")  # even so: no privilege
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM chat_inferences")

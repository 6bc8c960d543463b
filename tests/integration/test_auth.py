"""API keys against a real PostgreSQL and real sockets: verification, one 401 for every failure, the cache and
its revocation through LISTEN/NOTIFY, the key's public id on each inference, header tags and the Guard limits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from lsd import auth as lsd_auth
from lsd.auth import AuthService, new_key, parse_key
from lsd.config.auth import AuthConfig
from lsd.errors import DatabaseUnavailable, Unauthorized
from lsd.store import keys
from lsd.store.database import Database
from lsd.store.keys import StoredKey
from tests.support.configs import echo_chat
from tests.support.gateway import in_process_gateway


def create_key(database_url: str, description: str = "test") -> tuple[str, str]:
    made = new_key()
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys.insert_key(
            conn, made.public_id, made.secret_sha256, description=description, organization="acme", workspace=None
        )
    return made.public_id, made.token


def test_key_format() -> None:
    made = new_key()
    assert made.token.startswith(f"sk-lsd-{made.public_id}-")
    assert len(made.public_id) == 12
    assert parse_key(made.token) == (made.public_id, made.secret_sha256)
    for bad in ("", "sk-lsd-", "sk-t0-abcdefghijkl-" + "a" * 48, made.token + "x", made.token.upper(), "Bearer x"):
        assert parse_key(bad) is None


@contextlib.asynccontextmanager
async def listening(auth: AuthService) -> AsyncIterator[None]:
    task = asyncio.create_task(auth.listen())
    for _ in range(200):
        if auth.listening:
            break
        await asyncio.sleep(0.01)
    assert auth.listening
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_verify_refuses_every_bad_key_alike(database: Database, database_url: str) -> None:
    public_id, token = create_key(database_url)
    auth = AuthService(AuthConfig(enabled=True), database)
    assert (await auth.verify(f"Bearer {token}")).public_id == public_id
    other_id, other = create_key(database_url)
    wrong_secret = token[: -len("x")] + ("a" if token[-1] != "a" else "b")
    messages = set()
    for header in (
        None,
        "",
        "Basic abc",
        f"Bearer {token}x",
        "Bearer sk-lsd-zzzzzzzzzzzz-" + "a" * 48,
        f"Bearer {wrong_secret}",
    ):
        with pytest.raises(Unauthorized) as refused:
            await auth.verify(header)
        messages.add(refused.value.message)
    assert len(messages) == 1  # nothing tells which
    assert auth.failures == {"missing": 3, "malformed": 1, "unknown": 1, "wrong_secret": 1}
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert keys.disable_key(conn, other_id) is not None
    with pytest.raises(Unauthorized):
        await auth.verify(f"Bearer {other}")
    assert auth.failures["disabled"] == 1


async def test_disable_reaches_a_warm_cache_through_notify(database: Database, database_url: str) -> None:
    public_id, token = create_key(database_url)
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    async with listening(auth):
        await auth.verify(f"Bearer {token}")
        await auth.verify(f"Bearer {token}")
        assert auth.cache_hits == 1 and auth.cache_misses == 1
        with psycopg.connect(database_url, autocommit=True) as conn:
            keys.disable_key(conn, public_id)
        started = time.monotonic()
        while True:
            try:
                await auth.verify(f"Bearer {token}")
            except Unauthorized:
                break
            assert time.monotonic() - started < 1.0, "the disabled key was still accepted after 1 s"
            await asyncio.sleep(0.01)


async def test_a_read_in_flight_when_the_notice_comes_is_not_cached(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that read the row before `lsd keys disable` committed, and finished after its notice was handled,
    must not keep the old verdict for the cache's TTL (an hour here): a replica admitted a revoked key for minutes."""
    public_id, token = create_key(database_url)
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    read, resume = asyncio.Event(), asyncio.Event()
    real_find_key = lsd_auth.find_key
    notified: list[str] = []
    real_forget = auth.forget

    def forget(key_id: str) -> None:
        real_forget(key_id)
        notified.append(key_id)

    monkeypatch.setattr(auth, "forget", forget)  # before the listener starts: it is handed `auth.forget`

    async def slow_return(db: Database, key_id: str) -> StoredKey | None:
        found = await real_find_key(db, key_id)  # the row as it was: active
        read.set()
        await resume.wait()  # ...and the answer travels back while the key is disabled and its notice handled
        return found

    async with listening(auth):
        monkeypatch.setattr(lsd_auth, "find_key", slow_return)
        check = asyncio.create_task(auth.verify(f"Bearer {token}"))
        await read.wait()
        with psycopg.connect(database_url, autocommit=True) as conn:
            keys.disable_key(conn, public_id)
        started = time.monotonic()
        while public_id not in notified and time.monotonic() - started < 2:
            await asyncio.sleep(0.01)
        assert notified == [public_id]
        resume.set()
        assert (await check).public_id == public_id  # concurrent with the disable: this one request passes
        monkeypatch.setattr(lsd_auth, "find_key", real_find_key)
        with pytest.raises(Unauthorized):
            await auth.verify(f"Bearer {token}")  # the next check reads the row again


async def test_a_read_spanning_a_listener_reconnect_is_not_cached(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change committed while nobody listened sends no notice, and the listener's re-read after LISTEN covers only
    the keys cached then: a read in flight across the reconnect must not be cached either."""
    public_id, token = create_key(database_url)
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    read, resume = asyncio.Event(), asyncio.Event()
    real_find_key = lsd_auth.find_key

    async def slow_return(db: Database, key_id: str) -> StoredKey | None:
        found = await real_find_key(db, key_id)
        read.set()
        await resume.wait()
        return found

    monkeypatch.setattr(lsd_auth, "find_key", slow_return)
    check = asyncio.create_task(auth.verify(f"Bearer {token}"))
    await read.wait()
    auth._lost()  # the listener's connection is gone...
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys.disable_key(conn, public_id)  # ...so this change's notice is heard by nobody
    auth._listening({})  # back, re-reading the keys cached now: not this one, whose read is in flight
    resume.set()
    await check
    assert public_id not in auth._cached_ids()


async def test_without_the_listener_the_cache_is_not_trusted(database: Database, database_url: str) -> None:
    public_id, token = create_key(database_url)
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    await auth.verify(f"Bearer {token}")
    await auth.verify(f"Bearer {token}")
    assert auth.cache_hits == 0 and auth.cache_misses == 2  # never listening: every check asks PostgreSQL
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys.disable_key(conn, public_id)
    with pytest.raises(Unauthorized):
        await auth.verify(f"Bearer {token}")


async def test_the_listener_keeps_the_cache_it_reads_again_and_misses_no_revocation(
    database: Database, database_url: str
) -> None:
    """Keys cached before LISTEN are read again once it is in place, not dropped: those still valid stay cached (a
    fallback if PostgreSQL goes away right after), and a key disabled or deleted while nobody listened is refused."""
    (kept_id, kept), (disabled_id, disabled), (deleted_id, deleted) = (create_key(database_url) for _ in range(3))
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    for token in (kept, disabled, deleted):
        await auth.verify(f"Bearer {token}")
    with psycopg.connect(database_url, autocommit=True) as conn:  # no listener yet: these notices are lost
        keys.disable_key(conn, disabled_id)
        conn.execute("DELETE FROM api_keys WHERE public_id = %s", (deleted_id,))
    assert auth.cache_misses == 3
    async with listening(auth):
        assert (await auth.verify(f"Bearer {kept}")).public_id == kept_id
        for token in (disabled, deleted):
            with pytest.raises(Unauthorized):
                await auth.verify(f"Bearer {token}")
        assert (auth.cache_hits, auth.cache_misses) == (3, 3)  # all three answered from the re-read cache
        assert auth.failures == {"disabled": 1, "unknown": 1}


async def test_a_notice_keeps_a_refusal_as_the_outage_fallback_and_drops_a_pass(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row change re-reads the key next time; meanwhile a cached refusal (disabled) still answers 401 if the
    database is down, while a cached pass is dropped (503 then, never a pass the change may have ended). Disabling
    a disabled key changes nothing, so it sends no notice."""
    (active_id, active), (disabled_id, disabled) = create_key(database_url), create_key(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys.disable_key(conn, disabled_id)
        first = keys.disable_key(conn, disabled_id)
        again = keys.disable_key(conn, disabled_id)
    assert first is not None and again is not None and again.disabled_at == first.disabled_at
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=3_600_000), database)
    async with listening(auth):
        await auth.verify(f"Bearer {active}")
        with pytest.raises(Unauthorized):
            await auth.verify(f"Bearer {disabled}")
        auth.forget(active_id)
        auth.forget(disabled_id)

        async def down(database: Database, public_id: str) -> StoredKey | None:
            raise DatabaseUnavailable("the database is unavailable (auth); try again later")

        with monkeypatch.context() as patched:
            patched.setattr("lsd.auth.find_key", down)
            with pytest.raises(Unauthorized):
                await auth.verify(f"Bearer {disabled}")  # the refusal stands
            with pytest.raises(DatabaseUnavailable):
                await auth.verify(f"Bearer {active}")  # no pass on a verdict a change may have ended
        assert (await auth.verify(f"Bearer {active}")).public_id == active_id


async def test_the_cache_expires_after_its_ttl(database: Database, database_url: str) -> None:
    now = [100.0]
    _, token = create_key(database_url)
    auth = AuthService(AuthConfig(enabled=True, cache_ttl_ms=500), database, clock=lambda: now[0])
    async with listening(auth):
        await auth.verify(f"Bearer {token}")
        await auth.verify(f"Bearer {token}")
        now[0] += 0.5
        await auth.verify(f"Bearer {token}")
    assert (auth.cache_hits, auth.cache_misses) == (1, 2)


CONFIG = f"""
[gateway]
max_json_depth = 8
max_header_count = 40
request_timeout_s = 0.3
[gateway.auth]
enabled = true
[gateway.observability]
async_writes = false
{echo_chat()}
[models.slow]
routing = ["dummy"]
[models.slow.providers.dummy]
type = "dummy"
model_name = "slow"
latency_ms = 2000
"""
MESSAGE = {"messages": [{"role": "user", "content": "hello"}]}


async def test_http_routes_need_a_key_and_record_its_public_id(database_url: str) -> None:
    public_id, token = create_key(database_url)
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/status")).status_code == 200
        body = {"function_name": "chat", "input": MESSAGE, "tags": {"team": "body"}}
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Bearer {token[:-1]}"}):
            refused = await http.post("/inference", json=body, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error_code"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/openai/v1/models")).status_code == 401
        metrics = await http.get("/metrics")  # open unless gateway.auth.protect_metrics
        assert metrics.status_code == 200
        assert 'lsd_auth_failures_total{reason="missing"} 2.0' in metrics.text
        assert 'lsd_auth_failures_total{reason="malformed"} 2.0' in metrics.text
        assert (await http.get("/no/such/route")).status_code == 401
        auth = {"authorization": f"Bearer {token}"}
        ok = await http.post("/inference", json=body, headers={**auth, "lsd-tag-user": "ann", "lsd-tag-team": "header"})
        assert ok.status_code == 200, ok.text
        openai = await http.post(
            "/openai/v1/chat/completions",
            json={"model": "lsd::function_name::chat", "messages": MESSAGE["messages"]},
            headers={**auth, "lsd-tag-user": "bob"},
        )
        assert openai.status_code == 200, openai.text
        # Guard limits.
        deep: object = "x"
        for _ in range(10):
            deep = [deep]
        too_deep = await http.post("/inference", json={**body, "tags": {}, "input": {"messages": deep}}, headers=auth)
        assert too_deep.status_code == 400 and "max_json_depth" in too_deep.json()["error"]
        many = {f"x-h{i}": "1" for i in range(50)}
        assert (await http.post("/inference", json=body, headers={**auth, **many})).status_code == 431
        slow = await http.post("/inference", json={"model_name": "slow", "input": MESSAGE}, headers=auth, timeout=10)
        assert slow.status_code == 504 and slow.json()["error_code"] == "request_timeout"
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT api_key_public_id, tags FROM chat_inferences ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [public_id, public_id]
    assert rows[0][1] == {"user": "ann", "team": "body", "tensorzero::api_key_public_id": public_id}
    assert rows[1][1]["user"] == "bob"


async def test_protect_metrics(database_url: str) -> None:
    _, token = create_key(database_url)
    config = CONFIG.replace(
        "[gateway.auth]\nenabled = true\n", "[gateway.auth]\nenabled = true\nprotect_metrics = true\n"
    )
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"authorization": f"Bearer {token}"})).status_code == 200
        assert (await http.get("/health")).status_code == 200


async def test_a_database_outage_keeps_known_keys_working(database_url: str) -> None:
    public_id, token = create_key(database_url)
    database = Database(database_url, min_size=1, max_size=2)
    await database.open()
    auth = AuthService(AuthConfig(enabled=True), database)
    assert (await auth.verify(f"Bearer {token}")).public_id == public_id
    await database.close()  # PostgreSQL unreachable from now on
    # No key can be disabled while the database is down: the last verdict stands (not trusted otherwise).
    assert (await auth.verify(f"Bearer {token}")).public_id == public_id
    assert auth.stale_hits == 1
    with pytest.raises(Unauthorized):
        await auth.verify(f"Bearer {token[:-1]}{'a' if token[-1] != 'a' else 'b'}")
    with pytest.raises(DatabaseUnavailable):
        await auth.verify(f"Bearer {new_key().token}")  # never seen: 503, not 401

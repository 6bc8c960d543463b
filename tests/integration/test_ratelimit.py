"""Rate limiting against a real PostgreSQL: scopes, priority vs always, refill over mocked time, token and cost
reconciliation, all-or-nothing consumption, leases, and the 429 over HTTP (with no provider call)."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client import generate_latest

from lsd.auth import AuthService
from lsd.config import parse
from lsd.config.auth import AuthConfig
from lsd.config.ratelimit import RateLimitingConfig
from lsd.errors import ConfigError, DatabaseUnavailable, InvalidRequest, RateLimited
from lsd.ratelimit.limiter import RateLimiter
from lsd.ratelimit.rules import LimitRequest
from lsd.runtime import access_sampler
from lsd.store.database import Database
from lsd.store.ratelimit import prune
from lsd.telemetry.metrics import Metrics
from tests.support.configs import echo_chat
from tests.support.gateway import in_process_gateway

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def limits(text: str, *, auth: bool = True) -> RateLimitingConfig:
    head = "[gateway.auth]\nenabled = true\n" if auth else ""
    return parse(head + text, base_dir=Path(".")).rate_limiting


def limiter(database: Database, text: str, clock: Clock | None = None) -> RateLimiter:
    return RateLimiter(limits(text), database, clock=clock or Clock())


async def admitted(lim: RateLimiter, request: LimitRequest, times: int) -> int:
    count = 0
    for _ in range(times):
        try:
            await lim.acquire(request)
        except RateLimited:
            continue
        count += 1
    return count


async def test_refill_over_mocked_time(database: Database) -> None:
    clock = Clock()
    lim = limiter(database, "[[rate_limiting.rules]]\nmodel_inferences_per_minute = 3\nalways = true\n", clock)
    request = LimitRequest(tags={})
    assert await admitted(lim, request, 3) == 3
    with pytest.raises(RateLimited) as refused:
        await lim.acquire(request)
    assert refused.value.rule == "rate_limiting.rules[0]"
    assert refused.value.retry_after_s == 20  # one of 3 per minute comes back in 20 s
    assert "model_inferences_per_minute" in refused.value.message
    assert lim.refusals["rate_limiting.rules[0]"] == 1
    clock.now += 19.9
    assert await admitted(lim, request, 1) == 0
    clock.now += 0.1
    assert await admitted(lim, request, 2) == 1
    clock.now += 3600  # refills to capacity, never beyond
    assert await admitted(lim, request, 5) == 3


async def test_token_bucket_capacity_and_refill_rate(database: Database) -> None:
    clock = Clock()
    lim = limiter(
        database,
        "[[rate_limiting.rules]]\nmodel_inferences_per_second = { capacity = 5, refill_rate = 1 }\nalways = true\n",
        clock,
    )
    assert await admitted(lim, LimitRequest({}), 10) == 5
    clock.now += 2
    assert await admitted(lim, LimitRequest({}), 10) == 2


async def test_every_scope_kind(database: Database) -> None:
    lim = limiter(
        database,
        """
[[rate_limiting.rules]]
model_inferences_per_hour = 2
always = true
scope = [{ tag_key = "user", tag_value = "lsd::each" }]

[[rate_limiting.rules]]
model_inferences_per_hour = 5
always = true
scope = [{ tag_key = "team", tag_value = "tensorzero::total" }]

[[rate_limiting.rules]]
model_inferences_per_hour = 1
always = true
scope = [{ tag_key = "tier", tag_value = "free" }]

[[rate_limiting.rules]]
model_inferences_per_hour = 3
always = true
scope = [{ api_key_public_id = "lsd::each" }]

[[rate_limiting.rules]]
model_inferences_per_hour = 1
always = true
scope = [{ api_key_public_id = "aaaaaaaaaaaa" }]
""",
    )
    # lsd::each: one bucket per value.
    assert await admitted(lim, LimitRequest({"user": "ann"}), 5) == 2
    assert await admitted(lim, LimitRequest({"user": "bob"}), 5) == 2
    # lsd::total: one bucket for every value.
    assert await admitted(lim, LimitRequest({"team": "x"}), 3) == 3
    assert await admitted(lim, LimitRequest({"team": "y"}), 3) == 2
    # a literal: only that value.
    assert await admitted(lim, LimitRequest({"tier": "free"}), 3) == 1
    assert await admitted(lim, LimitRequest({"tier": "paid"}), 3) == 3
    # api keys: each key its own bucket; a literal key its own limit.
    assert await admitted(lim, LimitRequest({}, "bbbbbbbbbbbb"), 5) == 3
    assert await admitted(lim, LimitRequest({}, "cccccccccccc"), 5) == 3
    assert await admitted(lim, LimitRequest({}, "aaaaaaaaaaaa"), 5) == 1
    # no tag, no key: no rule matches.
    assert await admitted(lim, LimitRequest({"other": "z"}), 10) == 10


async def test_priority_vs_always(database: Database) -> None:
    lim = limiter(
        database,
        """
[[rate_limiting.rules]]
model_inferences_per_hour = 1
priority = 1

[[rate_limiting.rules]]
model_inferences_per_hour = 4
priority = 2
scope = [{ tag_key = "vip", tag_value = "yes" }]

[[rate_limiting.rules]]
model_inferences_per_hour = 6
always = true
""",
    )
    # vip: only the priority-2 rule and the always rule apply (the priority-1 limit of 1 does not).
    assert await admitted(lim, LimitRequest({"vip": "yes"}), 10) == 4
    # others: the priority-1 rule applies; the always rule has 2 left after the vip's 4.
    assert await admitted(lim, LimitRequest({}), 10) == 1
    with pytest.raises(RateLimited) as refused:
        await lim.acquire(LimitRequest({}))
    assert refused.value.rule == "rate_limiting.rules[0]"


async def test_all_buckets_or_none(database: Database, database_url: str) -> None:
    lim = limiter(
        database,
        """
[[rate_limiting.rules]]
model_inferences_per_hour = 1
always = true
scope = [{ tag_key = "user", tag_value = "lsd::each" }]

[[rate_limiting.rules]]
model_inferences_per_hour = 10
always = true
""",
    )
    assert await admitted(lim, LimitRequest({"user": "ann"}), 4) == 1
    with psycopg.connect(database_url) as conn:
        rows = dict(conn.execute("SELECT scope_key, balance FROM rate_limit_buckets").fetchall())
    # ann's three refusals took nothing from the shared bucket.
    assert rows[""] == pytest.approx(9, abs=0.01)
    assert rows["tag:user=ann"] == pytest.approx(0, abs=0.01)


async def test_idle_buckets_that_refilled_are_pruned(database: Database, database_url: str) -> None:
    """A full bucket is what a missing one becomes (lsd_rate_limit_take makes it full): pruned once idle an hour;
    one still refilling, or touched lately, stays."""
    rows = [
        ("full-idle", 10.0, 10.0, 1.0, "2 hours"),  # full, idle: pruned
        ("refilled-idle", 0.0, 10.0, 1.0, "2 hours"),  # empty then, refilled since (7,200 s x 1/s): pruned
        ("refilling-idle", 0.0, 100000.0, 1.0, "2 hours"),  # not full yet: kept
        ("full-recent", 10.0, 10.0, 1.0, "10 minutes"),  # full but touched lately: kept
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for scope, balance, capacity, refill, age in rows:
            conn.execute(
                "INSERT INTO rate_limit_buckets (rule_key, scope_key, balance, capacity, refill_per_s, updated_at)"
                " VALUES ('prune-test', %s, %s, %s, %s, now() - %s::interval)",
                (scope, balance, capacity, refill, age),
            )
    assert await prune(database) == 2
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT scope_key FROM rate_limit_buckets WHERE rule_key = 'prune-test' ORDER BY 1")
        assert [r[0] for r in left.fetchall()] == ["full-recent", "refilling-idle"]


async def test_tokens_reserve_the_estimate_and_reconcile(database: Database) -> None:
    lim = limiter(database, "[[rate_limiting.rules]]\ntokens_per_hour = 100\nalways = true\n")
    first = await lim.acquire(LimitRequest({}, tokens=60))
    assert first is not None
    with pytest.raises(RateLimited):
        await lim.acquire(LimitRequest({}, tokens=60))  # 40 left
    first.settle(tokens=10, cost=None)  # it used 10: 50 come back with the next call
    second = await lim.acquire(LimitRequest({}, tokens=60))
    assert second is not None
    second.settle(tokens=90, cost=None)  # used more than reserved: a debt of 30
    await lim.flush(everything=True)
    with pytest.raises(RateLimited):
        await lim.acquire(LimitRequest({}, tokens=1))
    with pytest.raises(InvalidRequest, match="max_tokens"):
        await lim.acquire(LimitRequest({}, tokens=None))


async def test_a_request_larger_than_a_bucket_is_refused_as_unadmittable(database: Database) -> None:
    """Not a 429 whose Retry-After never comes (SDKs retry 429s): a 400 saying it can never be admitted."""
    lim = limiter(database, "[[rate_limiting.rules]]\ntokens_per_hour = 300\nalways = true\n")
    with pytest.raises(InvalidRequest, match=r"holds at most 300 and this request needs 1001 .* never be admitted"):
        await lim.acquire(LimitRequest({}, tokens=1001))
    assert await lim.acquire(LimitRequest({}, tokens=300)) is not None  # the whole bucket is fine


async def test_cost_reserves_default_cost_and_reconciles(database: Database, database_url: str) -> None:
    lim = limiter(
        database, "[rate_limiting]\ndefault_cost = 1.0\n[[rate_limiting.rules]]\ncost_per_day = 2\nalways = true\n"
    )
    a = await lim.acquire(LimitRequest({}))
    b = await lim.acquire(LimitRequest({}))
    assert a is not None and b is not None
    with pytest.raises(RateLimited):
        await lim.acquire(LimitRequest({}))
    a.settle(tokens=None, cost=0.25)
    b.settle(tokens=None, cost=0.25)
    assert await lim.flush(everything=True) == 1
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT balance FROM rate_limit_buckets").fetchone()
    assert row is not None and row[0] == pytest.approx(1.5, abs=0.01)
    assert await admitted(lim, LimitRequest({}), 3) == 1


async def test_leases_spend_locally_and_go_back(database: Database, database_url: str) -> None:
    clock = Clock()
    lim = limiter(
        database,
        "[rate_limiting]\nlease = 0.1\nlease_ttl_ms = 1000\n"
        "[[rate_limiting.rules]]\n"
        "model_inferences_per_hour = { capacity = 100, refill_rate = 0.0001 }\nalways = true\n",
        clock,
    )
    assert await admitted(lim, LimitRequest({}), 10) == 10
    assert lim.round_trips == 1  # one call took 10 (the request's 1 and a lease of 9 more)
    assert lim.local_admissions == 9

    def balance() -> float:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT balance FROM rate_limit_buckets").fetchone()
        assert row is not None
        return float(row[0])

    assert balance() == pytest.approx(90, abs=0.01)
    assert await admitted(lim, LimitRequest({}), 1) == 1  # the next lease: 10 more taken, 9 held
    assert balance() == pytest.approx(80, abs=0.01)
    assert await lim.flush() == 0  # not expired yet
    clock.now += 1.0
    assert await lim.flush() == 1
    assert balance() == pytest.approx(89, abs=0.01)  # the 9 unspent units went back


async def test_exact_mode_is_one_round_trip_per_request(database: Database) -> None:
    lim = limiter(database, "[[rate_limiting.rules]]\nmodel_inferences_per_hour = 100\nalways = true\n")
    assert await admitted(lim, LimitRequest({}), 5) == 5
    assert lim.round_trips == 5 and lim.local_admissions == 0


CONFIG = """
[gateway.observability]
async_writes = false

[[rate_limiting.rules]]
model_inferences_per_hour = 2
always = true
scope = [{ tag_key = "user", tag_value = "lsd::each" }]

[[rate_limiting.rules]]
tokens_per_hour = 1000
always = true
scope = [{ tag_key = "tokens", tag_value = "lsd::total" }]
""" + echo_chat()
MESSAGE = {"messages": [{"role": "user", "content": "hello"}]}


async def test_http_429_names_the_rule_and_makes_no_provider_call(database_url: str) -> None:
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        body = {"function_name": "chat", "input": MESSAGE, "tags": {"user": "ann"}}
        assert (await http.post("/inference", json=body)).status_code == 200
        # The header tag counts like a body tag.
        header = {"lsd-tag-user": "ann"}
        assert (await http.post("/inference", json={**body, "tags": {}}, headers=header)).status_code == 200
        streamed = await http.post("/inference", json={**body, "stream": True})
        assert streamed.status_code == 429 and streamed.json()["rule"] == "rate_limiting.rules[0]"
        refused = await http.post("/inference", json=body)
        assert refused.status_code == 429
        assert refused.json()["rule"] == "rate_limiting.rules[0]"
        assert refused.json()["error_code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        openai = await http.post(
            "/openai/v1/chat/completions",
            json={"model": "lsd::function_name::chat", "messages": MESSAGE["messages"]},
            headers=header,
        )
        assert openai.status_code == 429
        assert "rate_limiting.rules[0]" in openai.json()["error"]["message"]
        metrics = (await http.get("/metrics")).text
        assert 'lsd_rate_limit_refusals_total{rule="rate_limiting.rules[0]"} 3.0' in metrics
        # A token rule without max_tokens anywhere: 400 naming the field.
        tokens = await http.post("/inference", json={**body, "tags": {"tokens": "x"}})
        assert tokens.status_code == 400
        assert tokens.json()["field"] == "params.chat_completion.max_tokens"
        ok = await http.post(
            "/inference",
            json={**body, "tags": {"tokens": "x"}, "params": {"chat_completion": {"max_tokens": 50}}},
        )
        assert ok.status_code == 200
    with psycopg.connect(database_url) as conn:
        calls = conn.execute("SELECT count(*) FROM model_inferences").fetchone()
        tags = conn.execute("SELECT tags FROM chat_inferences ORDER BY id LIMIT 2").fetchall()
    assert calls == (3,)  # the refused requests reached no provider
    assert all(t[0]["user"] == "ann" for t in tags)


async def test_default_max_tokens_admits_a_chat_ui_turn_without_max_tokens(database_url: str) -> None:
    """Open WebUI sends no max_tokens on a chat turn: with `default_max_tokens` a tokens_* limit reserves that many
    output tokens instead of refusing every turn (400), and settles on the reported usage as ever."""
    config = "[rate_limiting]\ndefault_max_tokens = 200\n" + CONFIG
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        body = {"model": "lsd::function_name::chat", "messages": MESSAGE["messages"]}
        for _ in range(2):  # settled on its few real tokens: the next turn fits again
            answer = await http.post("/openai/v1/chat/completions", json=body, headers={"lsd-tag-tokens": "x"})
            assert answer.status_code == 200, answer.text
    # A default no bucket can hold would refuse every such request: a config error naming the setting.
    with pytest.raises(ConfigError, match=r"rate_limiting.default_max_tokens: 2000 is not below the capacity"):
        parse(config.replace("default_max_tokens = 200", "default_max_tokens = 2000", 1), base_dir=Path("."))


async def test_a_database_outage_fails_open_or_closed_as_configured(database_url: str) -> None:
    database = Database(database_url, min_size=1, max_size=2)
    await database.open()
    rule = "[[rate_limiting.rules]]\nmodel_inferences_per_hour = 1\nalways = true\n"
    open_limiter = limiter(database, rule)
    closed_limiter = limiter(database, "[rate_limiting]\nfail_open = false\n" + rule)
    assert await open_limiter.acquire(LimitRequest({})) is not None
    await database.close()
    assert await open_limiter.acquire(LimitRequest({})) is None  # admitted without limits
    assert open_limiter.failed_open == 1
    # ... and /metrics says so (the sampler the metrics job runs), with the auth checks answered from a stale verdict
    metrics = Metrics(latency_buckets=(1.0,), overhead_buckets=(1.0,), ttft_buckets=(1.0,))
    auth = AuthService(AuthConfig(enabled=True), database)
    auth.stale_hits = 4
    sample = access_sampler(metrics, auth, open_limiter)
    sample()
    sample()  # counted once
    text = generate_latest(metrics.registry).decode()
    assert "lsd_rate_limit_failed_open_total 1.0" in text and "lsd_auth_stale_verdicts_total 4.0" in text
    with pytest.raises(DatabaseUnavailable):
        await closed_limiter.acquire(LimitRequest({}))

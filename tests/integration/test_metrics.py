"""`GET /metrics` in-process on a real socket: known traffic in, exact counters out, in the Prometheus format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from lsd.config import parse
from lsd.errors import ConfigError
from tests.support.configs import boolean_metric, dummy_fallback_model, echo_chat
from tests.support.gateway import ROOT, in_process_gateway
from tests.support.prometheus import scrape, value

CONFIG = f"""
[gateway.observability]
async_writes = false

[gateway.metrics]
overhead_buckets = [0.001, 0.01, 0.1]
{echo_chat()}
{dummy_fallback_model("broken", failing="bad", answering="good")}

[functions.fallback]
type = "chat"
[functions.fallback.variants.a]
type = "chat_completion"
model = "broken"

[functions.failing]
type = "chat"
[functions.failing.variants.a]
type = "chat_completion"
model = "dummy::error"
retries = {{ num_retries = 1, max_delay_s = 0.01 }}

[models.twofail]
routing = ["x", "y"]
[models.twofail.providers.x]
type = "dummy"
model_name = "error"
[models.twofail.providers.y]
type = "dummy"
model_name = "error"

[functions.twice]
type = "chat"
[functions.twice.variants.a]
type = "chat_completion"
model = "twofail"
retries = {{ num_retries = 1, max_delay_s = 0.01 }}

[functions.mixed]
type = "chat"
[functions.mixed.variants.c1]
type = "chat_completion"
model = "echo"
weight = 0
[functions.mixed.variants.c2]
type = "chat_completion"
model = "echo"
weight = 0
[functions.mixed.variants.mix]
type = "experimental_mixture_of_n"
candidates = ["c1", "c2"]
weight = 1
[functions.mixed.variants.mix.fuser]
model = "echo"
{boolean_metric("thumbs_up")}
"""

MESSAGE = {"messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


CHAT = {"function": "chat", "variant": "a", "model": "echo", "provider": "dummy"}


async def test_counters_follow_known_traffic(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.post("/inference", json={"function_name": "chat", "input": MESSAGE})).status_code == 200
    r = await client.post("/inference", json={"function_name": "chat", "input": MESSAGE, "stream": True})
    assert r.status_code == 200 and "[DONE]" in r.text
    r = await client.post("/inference", json={"function_name": "fallback", "input": MESSAGE})
    assert r.status_code == 200
    inference_id = r.json()["inference_id"]
    assert (await client.post("/inference", json={"function_name": "failing", "input": MESSAGE})).status_code == 502
    r = await client.post("/feedback", json={"metric_name": "thumbs_up", "inference_id": inference_id, "value": True})
    assert r.status_code == 200
    r = await client.post("/feedback", json={"metric_name": "nope", "inference_id": inference_id, "value": True})
    assert r.status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404

    samples, families, text = await scrape(client)
    ok = {**CHAT, "outcome": "ok"}
    assert value(samples, "lsd_inferences_total", **ok, stream="false") == 3
    assert value(samples, "lsd_inferences_total", **ok, stream="true") == 1
    assert value(samples, "lsd_inference_duration_seconds_count", **ok, stream="false") == 3
    assert value(samples, "lsd_gateway_overhead_seconds_count", **ok, stream="false") == 3
    # the configured buckets, plus +Inf
    assert value(samples, "lsd_gateway_overhead_seconds_bucket", **ok, stream="false", le="+Inf") == 3
    assert (
        "lsd_gateway_overhead_seconds_bucket",
        frozenset({**ok, "stream": "false", "le": "0.01"}.items()),
    ) in samples
    assert ("lsd_gateway_overhead_seconds_bucket", frozenset({**ok, "stream": "false", "le": "0.005"}.items())) not in (
        samples
    )
    assert value(samples, "lsd_time_to_first_token_seconds_count", **CHAT) == 1
    # the dummy counts 2 input tokens ("hello there") and answers "echo: hello there" (3 tokens)
    assert value(samples, "lsd_input_tokens_total", **CHAT) == 4 * 2
    assert value(samples, "lsd_output_tokens_total", **CHAT) == 4 * 3

    fallback = {"function": "fallback", "variant": "a", "model": "broken", "provider": "good"}
    assert value(samples, "lsd_inferences_total", **fallback, outcome="ok", stream="false") == 1
    assert value(samples, "lsd_provider_attempts_total", model="broken", provider="bad", outcome="error") == 1
    assert value(samples, "lsd_provider_attempts_total", model="broken", provider="good", outcome="ok") == 1
    assert value(samples, "lsd_provider_errors_total", model="broken", provider="bad", kind="provider_error") == 1
    assert value(samples, "lsd_fallbacks_total", function="fallback", kind="provider") == 1

    failing = {"function": "failing", "variant": "a", "model": "dummy::error", "provider": "dummy"}
    assert value(samples, "lsd_inferences_total", **failing, outcome="error", stream="false") == 1
    assert value(samples, "lsd_retries_total", function="failing", variant="a") == 1
    assert value(samples, "lsd_provider_attempts_total", model="dummy::error", provider="dummy", outcome="error") == 2

    assert value(samples, "lsd_feedback_total", kind="boolean", outcome="ok") == 1
    assert value(samples, "lsd_feedback_total", kind="unknown", outcome="error") == 1  # never the raw name

    assert value(samples, "lsd_http_requests_total", route="/inference", method="POST", status="200") == 5
    assert value(samples, "lsd_http_requests_total", route="/inference", method="POST", status="502") == 1
    assert value(samples, "lsd_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert "/no/such/path" not in text

    # async_writes = false: every row is committed before its answer, so the writer counted them already
    assert value(samples, "lsd_writer_rows_written_total", table="chat_inferences") == 5
    assert value(samples, "lsd_writer_rows_written_total", table="boolean_metric_feedback") == 1
    assert value(samples, "lsd_writer_flush_duration_seconds_count") >= 1
    assert value(samples, "lsd_writer_queue_rows") == 0
    assert value(samples, "lsd_db_pool_max_connections") == 20
    assert value(samples, "lsd_db_pool_connections") >= 1
    # declared for the rate limiter and authentication, which record into them
    for family in (
        "lsd_rate_limit_refusals",
        "lsd_auth_failures",
        "lsd_cache_requests",
        "lsd_writer_rows_dropped",
        "lsd_writer_rows_spooled",
        "lsd_statistics_refresh_duration_seconds",
    ):
        assert family in families, family


async def test_retries_and_fallbacks_count_calls_after_a_failure_only(client: httpx.AsyncClient) -> None:
    """A variant whose two providers fail, tried twice: x, y, then x, y again is two provider fallbacks and one retry.
    A mixture's candidate and fuser calls, none failing, are no fallback."""
    assert (await client.post("/inference", json={"function_name": "twice", "input": MESSAGE})).status_code == 502
    assert (await client.post("/inference", json={"function_name": "mixed", "input": MESSAGE})).status_code == 200
    samples, _, _ = await scrape(client)
    assert value(samples, "lsd_provider_attempts_total", model="twofail", provider="x", outcome="error") == 2
    assert value(samples, "lsd_fallbacks_total", function="twice", kind="provider") == 2
    assert value(samples, "lsd_retries_total", function="twice", variant="a") == 1
    assert ("lsd_fallbacks_total", frozenset({"function": "twice", "kind": "variant"}.items())) not in samples
    assert not any(name == "lsd_fallbacks_total" and ("function", "mixed") in labels for name, labels in samples)


async def test_metrics_needs_no_credentials_and_counts_itself(client: httpx.AsyncClient) -> None:
    await scrape(client)
    samples, _, _ = await scrape(client)
    assert value(samples, "lsd_http_requests_total", route="/metrics", method="GET", status="200") == 1


async def test_requests_in_flight_include_an_open_inference_and_the_scrape(client: httpx.AsyncClient) -> None:
    samples, _, _ = await scrape(client)
    assert value(samples, "lsd_http_requests_in_flight") == 1  # the scrape itself
    body = {"model_name": "dummy::slow", "input": MESSAGE, "stream": True}
    async with client.stream("POST", "/inference", json=body) as r:  # the dummy answers after 1 s
        assert r.status_code == 200
        samples, _, _ = await scrape(client)
        assert value(samples, "lsd_http_requests_in_flight") == 2
        assert "[DONE]" in (await r.aread()).decode()
    samples, _, _ = await scrape(client)
    assert value(samples, "lsd_http_requests_in_flight") == 1


def test_bucket_config_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        parse("[gateway.metrics]\nlatency_buckets = [1, 0.5]\nttft_bucket = [1]\n", base_dir=ROOT)
    assert "gateway.metrics.latency_buckets: bucket bounds must be strictly increasing" in str(info.value)
    assert "gateway.metrics.ttft_bucket: unknown key (did you mean 'ttft_buckets'?)" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse('[gateway.export.otlp.traces]\nenabled = true\nprotocol = "udp"\n', base_dir=ROOT)
    assert "gateway.export.otlp.traces.protocol: must be one of" in str(info.value)

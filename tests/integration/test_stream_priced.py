"""A streamed inference that ends early is still priced from what it used: a provider stream that breaks mid-way,
and a client that hangs up after the first chunk, leave rows with token counts (estimated where the provider sent
none, and tagged so) and a cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from lsd.store.database import Database
from lsd.store.statistics import refresh_statistics
from tests.fakes.anthropic_server import CACHE_READ, CACHE_WRITE, FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import in_process_gateway
from tests.support.prometheus import scrape

KEY = "sk-fake-priced"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic]]:
    anthropic = FakeAnthropic(api_key=KEY)
    await anthropic.start()
    try:
        async with FakeOpenAI(api_key=KEY) as openai:
            yield openai, anthropic
    finally:
        await anthropic.stop()


@pytest.fixture
async def client(
    fakes: tuple[FakeOpenAI, FakeAnthropic], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("LSD_TEST_PRICED_KEY", KEY)
    openai, anthropic = fakes
    config = f"""
[gateway.observability]
async_writes = false

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_PRICED_KEY"
cost = {{ input_per_million = 1.0, output_per_million = 2.0 }}

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-test"
api_base = "{anthropic.base_url}"
api_key_location = "env::LSD_TEST_PRICED_KEY"
cost = {{ input_per_million = 3.0, output_per_million = 15.0 }}
"""
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchall()


def stream_body(model: str, text: str) -> dict[str, Any]:
    return {"model_name": model, "stream": True, "input": {"messages": [{"role": "user", "content": text}]}}


async def test_a_provider_stream_that_breaks_is_priced_from_an_estimate(
    client: httpx.AsyncClient, database_url: str
) -> None:
    text = "[fake:broken] alpha beta gamma delta"
    async with client.stream("POST", "/inference", json=stream_body("gpt", text)) as r:
        events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert any('"error"' in e for e in events)  # the client was told the stream broke
    [(status, kind, inputs, outputs, cost)] = rows(
        database_url, "SELECT status, error_kind, input_tokens, output_tokens, cost FROM model_inferences"
    )
    assert (status, kind) == ("error", "stream_interrupted")
    # "echo: alpha beta gamma delta" was cut after two deltas: "echo:" and " alpha" arrived (11 characters)
    assert outputs == 3  # ceil(11 / 4)
    assert inputs == 9  # ceil(len(text) / 4): the rendered prompt's 36 characters
    assert float(cost) == pytest.approx((inputs * 1.0 + outputs * 2.0) / 1e6)
    [(tags, row_inputs, row_outputs, row_cost, output)] = rows(
        database_url, "SELECT tags, input_tokens, output_tokens, cost, output FROM chat_inferences"
    )
    # cut by its provider: marked so (a session counts it as failed), as a stream its client left is not (below)
    assert tags == {"lsd::usage_estimated": "input_tokens,output_tokens", "lsd::stream_error": "stream_interrupted"}
    assert (row_inputs, row_outputs, row_cost) == (inputs, outputs, cost)
    assert output == [{"type": "text", "text": "echo: alpha"}]


async def test_a_client_that_hangs_up_still_leaves_a_priced_row(
    fakes: tuple[FakeOpenAI, FakeAnthropic], client: httpx.AsyncClient, database_url: str, database: Database
) -> None:
    async with client.stream("POST", "/inference", json=stream_body("gpt", "[fake:hold] one two three")) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break  # the first delta arrived; hang up
    found: list[tuple[Any, ...]] = []
    for _ in range(100):
        found = rows(database_url, "SELECT error_kind, input_tokens, output_tokens, cost FROM model_inferences")
        if found:
            break
        await asyncio.sleep(0.05)
    fakes[0].release.set()
    [(kind, inputs, outputs, cost)] = found
    assert kind == "client_disconnected"
    assert inputs > 0 and outputs > 0 and cost is not None and float(cost) > 0
    [(tags, row_cost)] = rows(database_url, "SELECT tags, cost FROM chat_inferences")
    assert tags == {"lsd::usage_estimated": "input_tokens,output_tokens"} and row_cost == cost
    # nothing failed: the metrics say cancelled, so the error-ratio alerts do not fire on clients that hang up
    samples, _, _ = await scrape(client)
    attempts = {
        dict(labels)["outcome"]: n for (name, labels), n in samples.items() if name == "lsd_provider_attempts_total"
    }
    assert attempts == {"cancelled": 1}
    assert not [name for name, _ in samples if name == "lsd_provider_errors_total"]
    inferences = {dict(labels)["outcome"] for (name, labels), _ in samples.items() if name == "lsd_inferences_total"}
    assert inferences == {"cancelled"}
    # ... and so say the statistics the console shows: an attempt, not a failure
    await refresh_statistics(database)
    assert rows(database_url, "SELECT attempts, failures FROM model_provider_statistics") == [(1, 0)]
    assert rows(database_url, "SELECT sum(failed_attempts) FROM inference_by_function_statistics") == [(0,)]
    [(inference_id,)] = rows(database_url, "SELECT id FROM chat_inferences")
    page = (await client.get(f"/ui/inferences/{inference_id}")).text
    assert "cancelled by the client" in page and "partial: the client left mid-stream" in page


async def test_a_cut_anthropic_stream_is_priced_at_its_own_rates(client: httpx.AsyncClient, database_url: str) -> None:
    async with client.stream("POST", "/inference", json=stream_body("claude", "cutoff one two three four")) as r:
        [line async for line in r.aiter_lines()]
    [(kind, inputs, outputs, cost)] = rows(
        database_url, "SELECT error_kind, input_tokens, output_tokens, cost FROM model_inferences"
    )
    assert kind == "stream_interrupted"
    assert inputs > 0 and outputs > 0
    assert float(cost) == pytest.approx((inputs * 3.0 + outputs * 15.0) / 1e6)


async def test_a_cut_anthropic_stream_keeps_the_counts_of_its_message_start(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Anthropic counts the input (and the cache) in message_start: a stream the client hangs up on, or that ends in an
    error event, is priced from those counts; only its output is estimated (a cached prompt was stored as 1 token)."""
    async with client.stream("POST", "/inference", json=stream_body("claude", "hold one two three")) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break  # the first delta arrived; hang up
    found: list[tuple[Any, ...]] = []
    for _ in range(100):
        found = rows(database_url, "SELECT error_kind, input_tokens, cache_read_input_tokens FROM model_inferences")
        if found:
            break
        await asyncio.sleep(0.05)
    # the fake counts words (4) and reports 1,000 cache reads and 100 cache writes, in the input
    assert found == [("client_disconnected", 4 + CACHE_READ + CACHE_WRITE, CACHE_READ)]
    async with client.stream("POST", "/inference", json=stream_body("claude", "stream-error one two three")) as r:
        [line async for line in r.aiter_lines()]
    found = rows(
        database_url, "SELECT error_kind, input_tokens FROM model_inferences WHERE error_kind <> 'client_disconnected'"
    )
    assert found == [("server_error", 4)]
    tags = rows(database_url, "SELECT tags FROM chat_inferences ORDER BY id")
    assert tags == [  # the client that left, then the stream its provider's error event cut
        ({"lsd::usage_estimated": "output_tokens"},),
        ({"lsd::usage_estimated": "output_tokens", "lsd::stream_error": "server_error"},),
    ]


async def test_a_complete_stream_keeps_the_reported_usage(client: httpx.AsyncClient, database_url: str) -> None:
    async with client.stream("POST", "/inference", json=stream_body("gpt", "one two")) as r:
        [line async for line in r.aiter_lines()]
    [(tags, inputs, outputs, cost)] = rows(
        database_url, "SELECT tags, input_tokens, output_tokens, cost FROM chat_inferences"
    )
    assert tags == {}  # nothing estimated
    assert (inputs, outputs) == (2, 3)  # the fake counts words: "one two", "echo: one two"
    assert float(cost) == pytest.approx((2 * 1.0 + 3 * 2.0) / 1e6)


async def test_a_broken_responses_stream_fails_with_its_priced_usage(
    client: httpx.AsyncClient, database_url: str
) -> None:
    body = {"model": "lsd::model_name::gpt", "input": "[fake:broken] alpha beta gamma delta", "stream": True}
    async with client.stream("POST", "/openai/v1/responses", json=body) as r:
        lines = [line async for line in r.aiter_lines()]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[-1] == "response.failed" and "error" in events
    last = orjson.loads(lines[[i for i, line in enumerate(lines) if line.startswith("data: ")][-1]][6:])
    usage = last["response"]["usage"]
    [(inputs, outputs, cost)] = rows(database_url, "SELECT input_tokens, output_tokens, cost FROM chat_inferences")
    assert (usage["input_tokens"], usage["output_tokens"]) == (inputs, outputs) == (9, 3)
    assert usage["tensorzero_cost"] == pytest.approx(float(cost))


@pytest.mark.parametrize("include_usage", [True, False])
async def test_a_broken_chat_completions_stream_gets_no_finish_reason(
    client: httpx.AsyncClient, database_url: str, include_usage: bool
) -> None:
    """A cut answer never reads as finished: the error event, then (with include_usage) the priced usage in a chunk
    with no choices, then [DONE]: no chunk says `finish_reason: "stop"` (the AI SDK took that as a whole answer)."""
    body = {
        "model": "lsd::model_name::gpt",
        "messages": [{"role": "user", "content": "[fake:broken] alpha beta gamma delta"}],
        "stream": True,
        "stream_options": {"include_usage": include_usage},
    }
    async with client.stream("POST", "/openai/v1/chat/completions", json=body) as r:
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [orjson.loads(line[6:]) for line in lines[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")] == [None] * len(
        [c for c in chunks if c.get("choices")]
    )
    errors = [c for c in chunks if "error" in c]
    assert len(errors) == 1
    after = chunks[chunks.index(errors[0]) + 1 :]
    [(inputs, outputs, cost)] = rows(database_url, "SELECT input_tokens, output_tokens, cost FROM chat_inferences")
    if include_usage:
        [last] = after
        assert last["choices"] == [] and (last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]) == (
            inputs,
            outputs,
        )
        assert last["usage"]["tensorzero_cost"] == pytest.approx(float(cost))
    else:
        assert after == []

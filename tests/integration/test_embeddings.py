"""Embeddings through the one inference path: rows readable right after the answer with async_writes = false,
timeouts, retries and fallbacks across providers, every attempt recorded, metrics like any inference."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import in_process_gateway
from tests.support.prometheus import scrape, value

KEY = "sk-test-secret-key-0123456789"


def config(openai: FakeOpenAI) -> str:
    def entry(model: str, pname: str, model_name: str, timeout: str = "") -> str:
        return f"""
[embedding_models.{model}.providers.{pname}]
type = "openai"
model_name = "{model_name}"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"
{timeout}
"""

    return f"""
[gateway.observability]
async_writes = false

[embedding_models.plain]
routing = ["openai"]
{entry("plain", "openai", "text-embedding-3-small")}

[embedding_models.fallback]
routing = ["broken", "good"]
{entry("fallback", "broken", "error-500")}
{entry("fallback", "good", "text-embedding-3-small")}

[embedding_models.retried]
routing = ["flaky"]
retries = {{ num_retries = 2, max_delay_s = 0.01 }}
{entry("retried", "flaky", "flaky-2")}

[embedding_models.unretried]
routing = ["flaky"]
{entry("unretried", "flaky", "flaky-1")}

[embedding_models.gem]
routing = ["gemini"]
[embedding_models.gem.providers.gemini]
type = "google_ai_studio_gemini"
model_name = "text-embedding-004"
api_base = "http://127.0.0.1:9/"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[embedding_models.timed]
routing = ["slow", "good"]
{entry("timed", "slow", "slow-3000", "timeouts = { non_streaming = { total_ms = 200 } }")}
{entry("timed", "good", "text-embedding-3-small")}

# TensorZero's form of a provider's limit: `timeout_ms` on the provider
[embedding_models.tz_timed]
routing = ["slow", "good"]
{entry("tz_timed", "slow", "slow-3000", "timeout_ms = 200")}
{entry("tz_timed", "good", "text-embedding-3-small")}

[embedding_models.azure]
routing = ["azure"]
[embedding_models.azure.providers.azure]
type = "azure"
deployment_id = "my-embedder"
endpoint = "{openai.url}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[embedding_models.router]
routing = ["openrouter"]
[embedding_models.router.providers.openrouter]
type = "openrouter"
model_name = "openai/text-embedding-3-small"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[embedding_models.dummy]
routing = ["dummy"]
[embedding_models.dummy.providers.dummy]
type = "dummy"
model_name = "test-embeddings"
cost = {{ input_per_million = 2.0, output_per_million = 0.0 }}

[embedding_models.dummy_keyed]
routing = ["dummy"]
[embedding_models.dummy_keyed.providers.dummy]
type = "dummy"
api_key_location = "dynamic::dummy_key"

[embedding_models.dummy_fallback]
routing = ["dummy"]
[embedding_models.dummy_fallback.providers.dummy]
type = "dummy"
api_key_location = {{ default = "dynamic::dummy_key", fallback = "env::LSD_TEST_UNSET_VARIABLE" }}
"""


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def client(
    database_url: str, monkeypatch: pytest.MonkeyPatch, openai: FakeOpenAI
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("LSD_TEST_OPENAI_KEY", KEY)
    async with (
        in_process_gateway(config(openai), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        yield http


def rows(database_url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


async def embed(client: httpx.AsyncClient, model: str, text: str = "hello world") -> httpx.Response:
    return await client.post(
        "/openai/v1/embeddings", json={"model": f"lsd::embedding_model_name::{model}", "input": text}
    )


def attempts(database_url: str, inference_id: str) -> list[tuple[object, ...]]:
    return rows(
        database_url,
        "SELECT attempt, model_provider_name, status, error_kind, inference_kind FROM model_inferences"
        " WHERE inference_id = %s ORDER BY attempt",
        inference_id,
    )


def inference_id_of(database_url: str, model: str) -> str:
    found = rows(database_url, "SELECT id FROM embedding_inferences WHERE embedding_model_name = %s", model)
    assert len(found) == 1, found
    return str(found[0][0])


async def test_async_writes_false_row_readable_right_after_the_answer(
    client: httpx.AsyncClient, database_url: str
) -> None:
    r = await embed(client, "plain", "one two three")
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 8
    # No wait, no polling: with async_writes = false the answer comes after the commit, as for chat.
    found = rows(
        database_url,
        "SELECT model_provider_name, num_inputs, dimensions, input_tokens FROM embedding_inferences"
        " WHERE embedding_model_name = 'plain'",
    )
    assert found == [("openai", 1, 8, 3)]
    inference_id = inference_id_of(database_url, "plain")
    assert attempts(database_url, inference_id) == [(1, "openai", "ok", None, "embedding")]


async def test_falls_back_to_the_next_provider(client: httpx.AsyncClient, database_url: str) -> None:
    r = await embed(client, "fallback")
    assert r.status_code == 200, r.text
    inference_id = inference_id_of(database_url, "fallback")
    assert attempts(database_url, inference_id) == [
        (1, "broken", "error", "server_error", "embedding"),
        (2, "good", "ok", None, "embedding"),
    ]


async def test_retries_with_the_models_retries(client: httpx.AsyncClient, database_url: str) -> None:
    r = await embed(client, "retried")
    assert r.status_code == 200, r.text
    inference_id = inference_id_of(database_url, "retried")
    assert [a[2] for a in attempts(database_url, inference_id)] == ["error", "error", "ok"]


async def test_without_retries_a_failure_is_a_502_with_its_attempt_recorded(
    client: httpx.AsyncClient, database_url: str
) -> None:
    r = await embed(client, "unretried")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "all_attempts_failed"
    # the model's providers alone (an embedding call has no variants: no "All variants failed with errors: : ")
    assert r.json()["error"]["message"].startswith("All model providers failed to infer with errors: ")
    found = rows(database_url, "SELECT status, inference_kind FROM model_inferences WHERE model_name = 'unretried'")
    assert found == [("error", "embedding")]
    assert rows(database_url, "SELECT count(*) FROM embedding_inferences") == [(0,)]


async def test_a_provider_timeout_moves_on_to_the_next(client: httpx.AsyncClient, database_url: str) -> None:
    r = await embed(client, "timed")
    assert r.status_code == 200, r.text
    inference_id = inference_id_of(database_url, "timed")
    assert attempts(database_url, inference_id) == [
        (1, "slow", "error", "timeout", "embedding"),
        (2, "good", "ok", None, "embedding"),
    ]


async def test_embeddings_are_counted_like_inferences(client: httpx.AsyncClient) -> None:
    assert (await embed(client, "fallback")).status_code == 200
    samples, _, _ = await scrape(client)
    labels = {"function": "", "variant": "", "model": "fallback", "provider": "good", "stream": "false"}
    assert value(samples, "lsd_inferences_total", **labels, outcome="ok") == 1
    assert value(samples, "lsd_provider_attempts_total", model="fallback", provider="broken", outcome="error") == 1


async def test_an_empty_input_is_a_400_and_reaches_no_provider(client: httpx.AsyncClient, database_url: str) -> None:
    for text in ("", ["ok", ""]):
        r = await client.post(
            "/openai/v1/embeddings", json={"model": "lsd::embedding_model_name::plain", "input": text}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "input", r.text
    assert rows(database_url, "SELECT count(*) FROM embedding_inferences") == [(0,)]


async def test_token_ids_go_to_an_openai_provider_as_given(
    client: httpx.AsyncClient, openai: FakeOpenAI, database_url: str
) -> None:
    """LangChain's OpenAIEmbeddings sends token ids by default: one input's, or several inputs'."""
    for given, sent in [([15339, 1917], [[15339, 1917]]), ([[15339], [1917, 0]], [[15339], [1917, 0]])]:
        r = await client.post(
            "/openai/v1/embeddings", json={"model": "lsd::embedding_model_name::plain", "input": given}
        )
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == len(sent)
        assert openai.requests[-1].body["input"] == sent
    stored = rows(database_url, "SELECT input, num_inputs FROM embedding_inferences ORDER BY id")
    assert stored == [([[15339, 1917]], 1), ([[15339], [1917, 0]], 2)]


async def test_token_ids_for_a_model_without_a_provider_taking_them_are_a_400(
    client: httpx.AsyncClient, database_url: str
) -> None:
    r = await client.post("/openai/v1/embeddings", json={"model": "lsd::embedding_model_name::gem", "input": [1, 2]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input", r.text
    assert "google_ai_studio_gemini" in r.json()["error"]["message"]
    for bad in ([1, "a"], [[1], []], [[1], "a"], [-1], [1.5], [True]):
        r = await client.post("/openai/v1/embeddings", json={"model": "lsd::embedding_model_name::plain", "input": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input", (bad, r.text)
    assert rows(database_url, "SELECT count(*) FROM embedding_inferences") == [(0,)]


async def test_timeout_ms_on_an_embedding_provider_is_its_limit(client: httpx.AsyncClient, database_url: str) -> None:
    r = await embed(client, "tz_timed")
    assert r.status_code == 200, r.text
    assert attempts(database_url, inference_id_of(database_url, "tz_timed")) == [
        (1, "slow", "error", "timeout", "embedding"),
        (2, "good", "ok", None, "embedding"),
    ]


async def test_azure_and_openrouter_providers_embed(client: httpx.AsyncClient, openai: FakeOpenAI) -> None:
    for model in ("azure", "router"):
        r = await embed(client, model, "one two")
        assert r.status_code == 200, r.text
        assert len(r.json()["data"][0]["embedding"]) == 8
        assert r.json()["usage"]["prompt_tokens"] == 2
    azure, router = openai.requests[-2:]
    assert azure.path == "/openai/deployments/my-embedder/embeddings" and "api-version" in azure.query
    assert azure.headers["api-key"] == KEY
    assert router.path == "/v1/embeddings" and router.body["model"] == "openai/text-embedding-3-small"


async def test_the_dummy_embeds_deterministically_and_prices_by_its_cost(
    client: httpx.AsyncClient, database_url: str
) -> None:
    r = await client.post(
        "/openai/v1/embeddings",
        json={"model": "lsd::embedding_model_name::dummy", "input": ["a b c", "a b c", "d"], "dimensions": 4},
    )
    assert r.status_code == 200, r.text
    vectors = [d["embedding"] for d in r.json()["data"]]
    assert len(vectors[0]) == 4 and vectors[0] == vectors[1] != vectors[2]
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-9  # unit vectors
    assert r.json()["usage"]["prompt_tokens"] == 7  # words, at least one an input
    assert r.json()["usage"]["tensorzero_cost"] == pytest.approx(7 * 2.0 / 1e6)


async def test_a_dynamic_key_on_the_dummy_is_required_as_on_http_providers(client: httpx.AsyncClient) -> None:
    body = {"model": "lsd::embedding_model_name::dummy_keyed", "input": "hi"}
    missing = await client.post("/openai/v1/embeddings", json=body)
    assert missing.status_code == 400 and "dummy_key" in missing.text
    given = await client.post("/openai/v1/embeddings", json={**body, "tensorzero::credentials": {"dummy_key": "k"}})
    assert given.status_code == 200, given.text


async def test_the_dummy_needs_no_environment_variable_and_bounds_its_dimensions(client: httpx.AsyncClient) -> None:
    body = {"model": "lsd::embedding_model_name::dummy_fallback", "input": "hi"}
    assert (await client.post("/openai/v1/embeddings", json=body)).status_code == 200  # the env fallback: no key
    huge = await client.post(
        "/openai/v1/embeddings", json={"model": "lsd::embedding_model_name::dummy", "input": "hi", "dimensions": 10**8}
    )
    assert huge.status_code == 400 and "dimensions" in huge.text

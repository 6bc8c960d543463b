"""What a provider said, carried back and forth on /inference: thoughts name the provider type that wrote them
(TensorZero's `provider_type`) and a conversation sent back gives each provider only the thoughts of its own type
(or of none), as a signature is its vendor's: Anthropic refuses one it did not issue; a provider's Retry-After comes
with the 502 when every attempt failed; a variant's thinking budget reaches Anthropic as its `thinking`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.anthropic_server import RETRY_AFTER_S, SIGNATURE, FakeAnthropic
from tests.support.gateway import in_process_gateway

KEY = "sk-ant-fake-thoughts"


@pytest.fixture
async def claude() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=KEY)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def client(
    claude: FakeAnthropic, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("LSD_TEST_THOUGHTS_KEY", KEY)
    config = f"""
[gateway.observability]
async_writes = false

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-fake"
api_base = "{claude.base_url}"
api_key_location = "env::LSD_TEST_THOUGHTS_KEY"

[functions.thinker]
type = "chat"
[functions.thinker.variants.deep]
type = "chat_completion"
model = "claude"
max_tokens = 4096
thinking_budget_tokens = 1024
"""
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


def thought(signature: str, provider_type: str | None) -> dict[str, Any]:
    block = {"type": "thought", "text": "Earlier thinking.", "signature": signature}
    return block if provider_type is None else {**block, "provider_type": provider_type}


async def test_answers_name_the_provider_type_and_foreign_thoughts_stay_home(
    client: httpx.AsyncClient, claude: FakeAnthropic
) -> None:
    r = await client.post(
        "/inference", json={"model_name": "claude", "input": {"messages": [{"role": "user", "content": "thinking"}]}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"][0] == {
        "type": "thought",
        "text": "The user said thinking.",
        "signature": SIGNATURE,
        "provider_type": "anthropic",
    }
    cases = [
        (thought(SIGNATURE, "anthropic"), 1),  # its own type: sent back
        (thought(SIGNATURE, None), 1),  # no type (a client that drops it): sent, as before
        (thought(SIGNATURE, "gcp_vertex_anthropic"), 1),  # Claude's signatures are valid on Vertex and Bedrock too
        (thought("CiQB-gemini-signature", "google_ai_studio_gemini"), 0),  # another vendor's: left out
    ]
    for block, sent in cases:
        messages = [
            {"role": "user", "content": "thinking"},
            {"role": "assistant", "content": [block, {"type": "text", "text": "echo"}]},
            {"role": "user", "content": "and then"},
        ]
        r = await client.post("/inference", json={"model_name": "claude", "input": {"messages": messages}})
        assert r.status_code == 200, (block, r.text)  # the fake refuses a signature it did not sign
        assistant = claude.last.json["messages"][1]["content"]
        assert [b["type"] for b in assistant].count("thinking") == sent, block
    r = await client.post(
        "/inference",
        json={"model_name": "claude", "input": {"messages": [{"role": "user", "content": [thought("s", 5)]}]}},  # type: ignore[arg-type]
    )
    assert r.status_code == 400 and "provider_type" in r.text


async def test_a_providers_retry_after_comes_with_the_502(client: httpx.AsyncClient) -> None:
    """Every attempt failed, the last with a Retry-After: the 502 says it too (the OpenAI and Anthropic SDKs, and
    TensorZero clients' own retries, wait that long)."""
    body = {"model_name": "claude", "input": {"messages": [{"role": "user", "content": "error-429 now"}]}}
    r = await client.post("/inference", json=body)
    assert r.status_code == 502 and r.headers["retry-after"] == str(RETRY_AFTER_S)
    body["input"]["messages"][0]["content"] = "error-400 now"  # type: ignore[index]
    r = await client.post("/inference", json=body)
    assert r.status_code == 502 and "retry-after" not in r.headers


async def test_a_variants_thinking_budget_is_sent_and_recorded(
    client: httpx.AsyncClient, claude: FakeAnthropic, database_url: str
) -> None:
    r = await client.post(
        "/inference", json={"function_name": "thinker", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    )
    assert r.status_code == 200, r.text
    sent = claude.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and sent["max_tokens"] == 4096
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT inference_params FROM chat_inferences WHERE id = %s", (r.json()["inference_id"],))
        params = row.fetchone()
    assert params is not None and params[0]["chat_completion"]["thinking_budget_tokens"] == 1024

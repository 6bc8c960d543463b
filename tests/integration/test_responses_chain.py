"""`previous_response_id` across the async writer: a follow-up sent the moment its previous response is answered,
before that response's rows are committed, waits for them instead of answering 404."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.test_auth import create_key
from tests.support.configs import echo_chat
from tests.support.gateway import in_process_gateway

SLOW_FLUSH = f"""
[gateway.observability.batch_writes]
flush_interval_ms = 1500
{echo_chat()}
"""
WITH_AUTH = f"""
[gateway.auth]
enabled = true
[gateway.observability]
async_writes = false
{echo_chat()}
"""
NOT_RECORDING = f"""
[gateway.observability]
enabled = false
{echo_chat()}
"""


@pytest.fixture
async def client(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    config = getattr(request, "param", SLOW_FLUSH)
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


async def test_a_follow_up_waits_for_the_previous_response_to_be_committed(client: httpx.AsyncClient) -> None:
    first = await client.post("/openai/v1/responses", json={"model": "lsd::function_name::chat", "input": "one"})
    assert first.status_code == 200, first.text
    follow = await client.post(
        "/openai/v1/responses",
        json={"model": "lsd::function_name::chat", "input": "two", "previous_response_id": first.json()["id"]},
    )
    assert follow.status_code == 200, follow.text
    assert follow.json()["output"][0]["content"][0]["text"] == "echo: two"
    assert follow.json()["previous_response_id"] == first.json()["id"]


async def test_an_unknown_id_is_a_404_at_once(client: httpx.AsyncClient) -> None:
    old = "resp_" + "0" * 12 + "7" + "0" * 19  # a UUIDv7 of 1970: never waited for
    r = await client.post(
        "/openai/v1/responses", json={"model": "lsd::function_name::chat", "input": "x", "previous_response_id": old}
    )
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "previous_response_id"


@pytest.mark.parametrize("client", [NOT_RECORDING], indirect=True)
async def test_nothing_to_continue_when_nothing_is_recorded(client: httpx.AsyncClient) -> None:
    first = await client.post("/openai/v1/responses", json={"model": "lsd::function_name::chat", "input": "one"})
    follow = await client.post(
        "/openai/v1/responses",
        json={"model": "lsd::function_name::chat", "input": "two", "previous_response_id": first.json()["id"]},
    )
    assert follow.status_code == 404 and "records no inferences" in follow.json()["error"]["message"]


@pytest.mark.parametrize("client", [WITH_AUTH], indirect=True)
async def test_only_the_key_that_made_a_response_continues_it(client: httpx.AsyncClient, database_url: str) -> None:
    mine, theirs = create_key(database_url)[1], create_key(database_url)[1]
    body = {"model": "lsd::function_name::chat", "input": "one"}
    first = await client.post("/openai/v1/responses", json=body, headers={"Authorization": f"Bearer {mine}"})
    assert first.status_code == 200, first.text
    follow = {**body, "previous_response_id": first.json()["id"]}
    other = await client.post("/openai/v1/responses", json=follow, headers={"Authorization": f"Bearer {theirs}"})
    assert other.status_code == 404 and other.json()["error"]["param"] == "previous_response_id"
    same = await client.post("/openai/v1/responses", json=follow, headers={"Authorization": f"Bearer {mine}"})
    assert same.status_code == 200, same.text

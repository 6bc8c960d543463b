"""The official `anthropic` SDK against a real `lsd serve` with aws_bedrock, gcp_vertex_anthropic and
gcp_vertex_gemini behind it (their fakes: SigV4 checked, Bearer tokens issued for a service-account key): plain and
streamed messages with tools, the rows each call leaves (provider type, tokens, cache tokens, cost), and a debug log
without any credential."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from anthropic import AsyncAnthropic

from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.vertex_server import FakeVertex
from tests.support.gateway import Daemon

ACCESS_KEY, SECRET_KEY, TOKEN = "AKIDE2ECLOUD00000007", "e2e-cloud-secret/0123456789abcdefghij", "IQoJE2ECloudSession7"
WEATHER = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
INPUT, OUTPUT, CACHE_READ_PRICE, CACHE_WRITE_PRICE = 3.0, 15.0, 0.30, 3.75


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeBedrock, FakeVertex]]:
    async with (
        FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, token=TOKEN) as bedrock,
        FakeVertex() as vertex,
    ):
        yield bedrock, vertex


@pytest.fixture
def daemon(fakes: tuple[FakeBedrock, FakeVertex], tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    bedrock, vertex = fakes
    key_file = tmp_path / "vertex-key.json"
    key_file.write_bytes(orjson.dumps(vertex.service_account_info()))
    vertex_keys = f'location = "us-central1"\nproject_id = "fake-project"\napi_base = "{vertex.base_url}"'
    config = tmp_path / "lsd.toml"
    config.write_text(
        f"""
[gateway.observability]
async_writes = false

[models.bedrock]
routing = ["bedrock"]
[models.bedrock.providers.bedrock]
type = "aws_bedrock"
model_id = "anthropic.claude-sonnet-4-5-20250929-v1:0"
region = "us-east-1"
endpoint_url = "{bedrock.url}"

[models.bedrock_cached]
routing = ["bedrock"]
[models.bedrock_cached.providers.bedrock]
type = "aws_bedrock"
model_id = "cache"
region = "us-east-1"
endpoint_url = "{bedrock.url}"
[models.bedrock_cached.providers.bedrock.cost]
input_per_million = {INPUT}
output_per_million = {OUTPUT}
cache_read_per_million = {CACHE_READ_PRICE}
cache_write_per_million = {CACHE_WRITE_PRICE}

[models.vertex_claude]
routing = ["vertex"]
[models.vertex_claude.providers.vertex]
type = "gcp_vertex_anthropic"
model_id = "claude-sonnet-4-5@20250929"
credential_location = "path_from_env::LSD_E2E_VERTEX_KEY"
{vertex_keys}

[models.vertex_gemini]
routing = ["vertex"]
[models.vertex_gemini.providers.vertex]
type = "gcp_vertex_gemini"
model_id = "gemini-2.5-flash"
credential_location = "path::{key_file}"
{vertex_keys}
"""
    )
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_EC2_METADATA_DISABLED": "true",
        "LSD_E2E_VERTEX_KEY": str(key_file),
        "LSD_LOG_LEVEL": "DEBUG",
    }
    running = Daemon(config, database_url, env=env)
    running.wait_ready()
    yield running
    assert running.terminate() == 0


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncAnthropic]:
    sdk = AsyncAnthropic(base_url=f"{daemon.base_url}/anthropic", api_key="unused-lsd-key", max_retries=0)
    yield sdk
    await sdk.close()


def attempt(database_url: str, message_id: str) -> tuple[Any, ...]:
    inference = UUID(hex=message_id.removeprefix("msg_"))
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            """SELECT provider_type, status, input_tokens, output_tokens, cache_read_input_tokens,
                      cache_write_input_tokens, cost, streamed
               FROM model_inferences WHERE inference_id = %s""",
            (inference,),
        ).fetchone()
    assert found is not None
    return tuple(found)


PROVIDERS = {"bedrock": "aws_bedrock", "vertex_claude": "gcp_vertex_anthropic", "vertex_gemini": "gcp_vertex_gemini"}


async def test_messages_through_each_cloud_provider(
    client: AsyncAnthropic, daemon: Daemon, fakes: tuple[FakeBedrock, FakeVertex], database_url: str
) -> None:
    for model, provider_type in PROVIDERS.items():
        message = await client.messages.create(
            model=model, max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
        )
        assert [block.text for block in message.content if block.type == "text"] == ["echo: hello there"]
        assert message.stop_reason == "end_turn" and message.usage.input_tokens > 0
        row = attempt(database_url, message.id)
        assert row[:2] == (provider_type, "ok") and row[2] == message.usage.input_tokens and row[7] is False

        async with client.messages.stream(
            model=model,
            max_tokens=100,
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "tool", "name": "weather"},
            messages=[{"role": "user", "content": "Oslo"}],
        ) as stream:
            final = await stream.get_final_message()
        [call] = [block for block in final.content if block.type == "tool_use"]
        assert call.name == "weather" and call.input and final.stop_reason == "tool_use", model
        row = attempt(database_url, final.id)
        assert row[:2] == (provider_type, "ok") and row[3] > 0 and row[7] is True
    log = daemon.log()
    vertex = fakes[1]
    assert vertex.issued
    for secret in (SECRET_KEY, TOKEN, ACCESS_KEY, *vertex.issued):
        assert secret not in log


async def test_bedrock_cache_tokens_are_recorded_and_priced(client: AsyncAnthropic, database_url: str) -> None:
    message = await client.messages.create(
        model="bedrock_cached", max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
    )
    assert message.usage.cache_read_input_tokens == 3 and message.usage.cache_creation_input_tokens == 2
    _, _, input_tokens, output_tokens, read, written, cost, _ = attempt(database_url, message.id)
    assert (read, written) == (3, 2)
    plain = input_tokens - read - written
    expected = (plain * INPUT + read * CACHE_READ_PRICE + written * CACHE_WRITE_PRICE + output_tokens * OUTPUT) / 1e6
    assert cost == pytest.approx(Decimal(str(expected)))
